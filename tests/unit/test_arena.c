/*
 * test_arena.c - unit tests for the shared-memory size-class allocator
 * (shm/arena.c): size classes, reuse of freed blocks, exhaustion and
 * recovery from it, the consistency checker, the abort on a double free,
 * and large freed blocks giving their pages back (in a shared mapping, as
 * in kvsd; the rest needs none: the arena works over any memory).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "tap.h"

#define BIG (1u << 20)
#define SMALL (64u << 10)

static struct arena_sh arena;

static void test_classes(void)
{
    size_t n, worst_ok = 1, fits = 1, aligned = 1;
    void *p;

    p = arena_alloc_sh(&arena, 1);
    ok(p != NULL, "alloc 1 byte");
    is_int(arena_block_size(p), 24, "smallest block holds 24 bytes (32 with header)");
    arena_free_sh(&arena, p);
    p = arena_alloc_sh(&arena, 25);
    is_int(arena_block_size(p), 32, "25 bytes take the 40-byte class");
    arena_free_sh(&arena, p);
    p = arena_alloc_sh(&arena, 56);
    is_int(arena_block_size(p), 56, "56 bytes fit the 64-byte class exactly");
    arena_free_sh(&arena, p);

    p = arena_alloc_sh(&arena, 164);
    is_int(arena_block_size(p), 168, "164 bytes (an entry of a 16-byte key, 100-byte value) take the 176-byte class");
    arena_free_sh(&arena, p);

    /* Every size gets a block that holds it, 8-aligned, wasting < 25%
     * below 64 bytes and < 12.5% from there on. */
    for (n = 1; n < 70000; n += 1 + n / 64) {
        if ((p = arena_alloc_sh(&arena, n)) == NULL) {
            fits = 0;
            break;
        }
        fits &= arena_block_size(p) >= n;
        aligned &= ((uintptr_t)p & 7) == 0;
        if (n + 8 > 64)
            worst_ok &= (arena_block_size(p) + 8) * 8 < (n + 8) * 9 + 8 * 8;
        else if (n + 8 > 32)
            worst_ok &= (arena_block_size(p) + 8) * 4 < (n + 8) * 5 + 4 * 8;
        arena_free_sh(&arena, p);
    }
    ok(fits, "every size from 1 to 70000 bytes gets a block that holds it");
    ok(aligned, "blocks are 8-byte aligned");
    ok(worst_ok, "internal waste stays under an eighth (a quarter below 64 bytes)");
    ok(arena_alloc_sh(&arena, SIZE_MAX) == NULL, "an impossible size returns NULL");
    ok(arena_alloc_sh(&arena, (size_t)1 << 33) == NULL, "a size beyond the region returns NULL");
}

static void test_reuse(void)
{
    void *a, *b, *c;
    uint64_t used0 = arena.used, n0 = arena.nalloc;
    char *top0;

    a = arena_alloc_sh(&arena, 100);
    b = arena_alloc_sh(&arena, 100);
    ok(a != NULL && b != NULL && a != b, "two live blocks are distinct");
    memset(a, 0xaa, 100);
    memset(b, 0xbb, 100);
    is_int(arena.nalloc, n0 + 2, "nalloc counts live blocks");
    is_int(arena.used, used0 + 2 * (arena_block_size(a) + 8), "used counts blocks with headers");
    top0 = arena.top;
    arena_free_sh(&arena, a);
    is_int(arena.nalloc, n0 + 1, "free lowers nalloc");
    c = arena_alloc_sh(&arena, 97);
    ok(c == a, "a freed block is reused by the next allocation of its class");
    ok(arena.top == top0, "reuse does not cut from the top");
    arena_free_sh(&arena, b);
    arena_free_sh(&arena, c);
    arena_free_sh(&arena, NULL);
    is_int(arena.used, used0, "used back to where it was");
    is_int(arena.nalloc, n0, "nalloc back to where it was");
    ok(arena_check(&arena, NULL) == 0, "arena consistent after reuse");
}

static void test_exhaustion(void)
{
    static struct arena_sh small;
    void *mem = aligned_alloc(64, SMALL), *ptrs[256], *p, *big;
    uint64_t total;
    const char *why = NULL;
    int n = 0, i;

    arena_init(&small, mem, SMALL);
    total = arena_free_bytes(&small);
    ok(total > SMALL - 128 && total <= SMALL, "free bytes of a new arena are about its size");
    big = arena_alloc_sh(&small, 4000);
    while (n < 256 && (ptrs[n] = arena_alloc_sh(&small, 1000)) != NULL)
        ++n;
    ok(n > 40 && n < 256, "allocations succeed until the region is full (%d)", n);
    ok(arena_alloc_sh(&small, 1000) == NULL, "a full arena returns NULL");
    ok(arena_alloc_sh(&small, 8000) == NULL, "a full arena returns NULL for larger sizes too");
    ok(arena_check(&small, &why) == 0, "full arena is consistent");

    arena_free_sh(&small, ptrs[n / 2]);
    p = arena_alloc_sh(&small, 1000);
    ok(p == ptrs[n / 2], "freeing makes room again: the freed block is reused");
    ptrs[n / 2] = p;
    ok(arena_alloc_sh(&small, 1000) == NULL, "and the arena is full again");

    arena_free_sh(&small, big);
    p = arena_alloc_sh(&small, 100);
    ok(p == big, "with the top exhausted, a small request takes a larger free block");
    ok(arena_block_size(p) >= 4000, "which keeps its size class");
    arena_free_sh(&small, p);

    for (i = 0; i < n; ++i)
        arena_free_sh(&small, ptrs[i]);
    is_int(small.used, 0, "all freed: used is 0");
    is_int(small.nalloc, 0, "all freed: nalloc is 0");
    is_int(arena_free_bytes(&small), total, "all freed: free bytes back to the start");
    ok(arena_check(&small, &why) == 0, "arena consistent after freeing everything");

    /* A corrupted free block is caught. */
    ((uint32_t *)ptrs[0])[-1] ^= 1;
    why = NULL;
    i = arena_check(&small, &why);
    ok(i == -1 && why != NULL, "corrupted free block detected (%s)", why ? why : "");
    ((uint32_t *)ptrs[0])[-1] ^= 1;
    ok(arena_check(&small, NULL) == 0, "consistent again once repaired");
    free(mem);
}

static void test_double_free(void)
{
    int status = 0;
    pid_t pid = fork();

    if (pid == 0) {
        void *p = arena_alloc_sh(&arena, 10);
        arena_free_sh(&arena, p);
        arena_free_sh(&arena, p);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "a double free aborts instead of corrupting a list");
}

/* Resident pages of [p, p + n) (n a multiple of the page size). */
static size_t resident(void *p, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), i, count = 0;
    unsigned char vec[1024];

    if (n / page > sizeof(vec) || mincore(p, n, vec) != 0)
        abort();
    for (i = 0; i < n / page; ++i)
        count += vec[i] & 1;
    return count;
}

/* In shared anonymous memory, as in kvsd, a large freed block gives its
 * pages back (retired table slot arrays, large values) and is reused as
 * usual; a small one keeps them. */
static void test_release(void)
{
    size_t len = 2 * BIG, page = (size_t)sysconf(_SC_PAGESIZE);
    struct arena_sh shared;
    const char *why = NULL;
    char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), *p, *q;

    if (mem == MAP_FAILED)
        abort();
    arena_init(&shared, mem, len);
    p = arena_alloc_sh(&shared, BIG / 2);
    q = arena_alloc_sh(&shared, 1000);
    memset(p, 1, BIG / 2);
    memset(q, 2, 1000);
    ok(resident(mem, len) >= BIG / 2 / page, "a 512 KiB block written: %zu pages resident", resident(mem, len));
    arena_free_sh(&shared, p);
    arena_free_sh(&shared, q);
    ok(resident(mem, len) <= 3, "freed: its pages are given back (%zu resident)", resident(mem, len));
    ok(q[999] == 2, "a small freed block keeps its pages");
    ok(arena_check(&shared, &why) == 0, "the arena is consistent (%s)", why ? why : "");
    ok(arena_alloc_sh(&shared, BIG / 2) == p, "the released block is reused");
    memset(p, 3, BIG / 2);
    ok(p[BIG / 2 - 1] == 3 && arena_check(&shared, &why) == 0, "and holds what is written to it");
    munmap(mem, len);
}

int main(void)
{
    void *mem = aligned_alloc(64, BIG);

    plan(42);
    arena_init(&arena, mem, BIG);
    ok(arena.base >= (char *)mem && arena.end <= (char *)mem + BIG, "arena inside its memory");
    test_classes();
    test_reuse();
    test_exhaustion();
    test_double_free();
    test_release();
    free(mem);
    return done_testing();
}
