/*
 * arena.c - the size-class allocator behind every store entry, table slot
 * array and other variable-sized object in shared memory.
 *
 * The region is a run of blocks cut from the bottom up: [base, top) is
 * tiled by blocks, each starting with an 8-byte header {class, magic}, and
 * [top, end) has never been used.  A free block keeps its header (magic
 * ARENA_FREE) and stores the next pointer of its class's free list right
 * after it.  Only writers holding the store's writer lock call the _sh
 * functions; the counters are stored atomically so /metrics may read them
 * without the lock.
 *
 * Crash consistency: each operation has exactly one commit point, a single
 * pointer store (free[c] or top).  Everything before it writes only memory
 * that no list or bound reaches yet; everything after it is bookkeeping.
 * A writer killed at any instruction therefore leaves at worst one block
 * that is neither allocated to anyone nor on a list (a leak), never a list
 * pointing at a block in use.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"
#include "shm.h"

#define ARENA_USED 0xa110c8edu
#define ARENA_FREE 0xf3eeb10cu
#define ARENA_MIN 32 /* smallest block, header included */
#define ARENA_ALIGN 8

struct arena_hdr {
    uint32_t class;
    uint32_t magic;
};

/* Block size (header included) of class c: 32, 40, 48, 56 (8-byte
 * steps), then 8 classes per power of two from 64 on: 64, 72, ..., 120,
 * 128, 144, ..., 240, 256, 288, ...  Blocks are cut next to each other,
 * so what a class rounds up is memory touched: a 16-byte key with a
 * 100-byte value (172 bytes with headers) takes 176, not 192 as with 4
 * classes per power of two (issue 13). */
static uint64_t class_size(unsigned c)
{
    unsigned octave, step;

    if (c < 4)
        return ARENA_MIN + (uint64_t)c * ARENA_ALIGN;
    octave = (c - 4) / 8, step = (c - 4) % 8;
    return ((uint64_t)64 << octave) + ((uint64_t)step << (octave + 3));
}

/* Smallest class whose blocks hold `total` bytes, or -1 if none does. */
static int size_class(uint64_t total)
{
    unsigned k;
    uint64_t q, steps;
    int c;

    if (total <= 64)
        return total <= ARENA_MIN ? 0 : (int)((total - ARENA_MIN + ARENA_ALIGN - 1) / ARENA_ALIGN);
    k = 63u - (unsigned)__builtin_clzll(total - 1); /* 2^k < total <= 2^(k+1), k >= 6 */
    q = (uint64_t)1 << (k - 3);
    steps = ((total - ((uint64_t)1 << k)) + q - 1) / q; /* 1..8 */
    c = (int)(4 + (k - 6) * 8 + steps);
    return c < ARENA_NCLASSES ? c : -1;
}

static struct arena_hdr *hdr_of(const void *p)
{
    return (struct arena_hdr *)((char *)p - sizeof(struct arena_hdr));
}

static void **next_of(struct arena_hdr *h)
{
    return (void **)(h + 1);
}

void arena_init(struct arena_sh *arena, void *mem, size_t len)
{
    uintptr_t b = ((uintptr_t)mem + 63) & ~(uintptr_t)63;
    uintptr_t e = ((uintptr_t)mem + len) & ~(uintptr_t)(ARENA_ALIGN - 1);

    memset(arena, 0, sizeof(*arena));
    if (e < b)
        e = b;
    arena->base = (char *)b;
    arena->top = arena->base;
    arena->end = (char *)e;
}

static void count_alloc(struct arena_sh *arena, uint64_t size)
{
    __atomic_store_n(&arena->used, arena->used + size, __ATOMIC_RELAXED);
    __atomic_store_n(&arena->nalloc, arena->nalloc + 1, __ATOMIC_RELAXED);
}

/* Pop the head of class c's free list; NULL if it is empty. */
static struct arena_hdr *pop_free(struct arena_sh *arena, int c)
{
    struct arena_hdr *h = arena->free[c];

    if (h == NULL)
        return NULL;
    /* The commit point: from here the block is ours, not the list's. */
    __atomic_store_n(&arena->free[c], *next_of(h), __ATOMIC_RELAXED);
    return h;
}

void *arena_alloc_sh(struct arena_sh *arena, size_t n)
{
    struct arena_hdr *h;
    uint64_t size;
    int c, d;

    if (n > ((uint64_t)1 << 40) || (c = size_class((uint64_t)n + sizeof(*h))) < 0)
        return NULL;
    size = class_size((unsigned)c);
    if ((h = pop_free(arena, c)) == NULL) {
        if ((uint64_t)(arena->end - arena->top) >= size) {
            h = (struct arena_hdr *)arena->top;
            h->class = (uint32_t)c;
            h->magic = ARENA_USED;
            /* The commit point: the header above was written past top,
             * where nothing looks, so a crash before this only loses it. */
            __atomic_store_n(&arena->top, arena->top + size, __ATOMIC_RELAXED);
            count_alloc(arena, size);
            return h + 1;
        }
        /* The top is exhausted: a larger free block beats failing the
         * write with 507.  It keeps its class; the caller gets the slack. */
        for (d = c + 1; d < ARENA_NCLASSES && h == NULL; ++d)
            h = pop_free(arena, d);
        if (h == NULL)
            return NULL;
    }
    h->magic = ARENA_USED;
    count_alloc(arena, class_size(h->class));
    return h + 1;
}

/* A freed block this large gives its pages back to the kernel. */
#define ARENA_RELEASE_MIN (64u << 10)

/* Free the whole pages of a free block past its header and list link:
 * retired table slot arrays and large values would otherwise stay
 * resident until reused.  The arena is in the shared anonymous mapping
 * (shmem), so MADV_REMOVE frees the pages for every process (MADV_DONTNEED
 * would only unmap them from this one); the next use faults in zeroed
 * pages, which no allocation relies on not being.  Elsewhere (a unit
 * test's malloc) it fails and changes nothing. */
static void release_pages(struct arena_hdr *h, uint64_t size)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = ((uintptr_t)(next_of(h) + 1) + page - 1) & ~(page - 1);
    uintptr_t to = ((uintptr_t)h + size) & ~(page - 1);

    if (from < to)
        (void)madvise((void *)from, to - from, MADV_REMOVE);
}

void arena_free_sh(struct arena_sh *arena, void *p)
{
    struct arena_hdr *h;
    uint64_t size;

    if (p == NULL)
        return;
    h = hdr_of(p);
    /* A double free or a wild pointer would put a live block on a free
     * list and corrupt the store silently later; stop here instead. */
    if (h->magic != ARENA_USED || h->class >= ARENA_NCLASSES || (char *)h < arena->base || (char *)h >= arena->top)
        abort();
    size = class_size(h->class);
    if (size >= ARENA_RELEASE_MIN)
        release_pages(h, size);
    h->magic = ARENA_FREE;
    *next_of(h) = arena->free[h->class];
    /* The commit point: the block joins its list with one store. */
    __atomic_store_n(&arena->free[h->class], h, __ATOMIC_RELAXED);
    __atomic_store_n(&arena->used, arena->used - size, __ATOMIC_RELAXED);
    __atomic_store_n(&arena->nalloc, arena->nalloc - 1, __ATOMIC_RELAXED);
}

size_t arena_block_size(const void *p)
{
    return (size_t)(class_size(hdr_of(p)->class) - sizeof(struct arena_hdr));
}

/* Every block below top is either allocated (counted in used) or free, so
 * the difference is exact up to blocks leaked by a crashed writer.  This
 * keeps the function O(1) and safe without the lock, for /metrics. */
uint64_t arena_free_bytes(const struct arena_sh *arena)
{
    uint64_t total = (uint64_t)(arena->end - arena->base);
    uint64_t used = __atomic_load_n(&arena->used, __ATOMIC_RELAXED);

    return used < total ? total - used : 0;
}

int arena_check(const struct arena_sh *arena, const char **why)
{
    const char *p;
    uint64_t limit;
    int c;

    if (arena->base > arena->top || arena->top > arena->end)
        return check_fail(why, "arena bounds out of order");
    /* The blocks must tile [base, top) exactly. */
    for (p = arena->base; p < arena->top;) {
        const struct arena_hdr *h = (const struct arena_hdr *)p;
        if (h->class >= ARENA_NCLASSES)
            return check_fail(why, "block header with a bad class");
        if (h->magic != ARENA_USED && h->magic != ARENA_FREE)
            return check_fail(why, "block header with a bad magic");
        if (class_size(h->class) > (uint64_t)(arena->top - p))
            return check_fail(why, "block runs past top");
        p += class_size(h->class);
    }
    /* used/nalloc are not compared with the blocks: a writer killed
     * between a commit point and the counter update legitimately leaves
     * them off by one block. */
    if (arena->used > (uint64_t)(arena->top - arena->base))
        return check_fail(why, "used counter exceeds the blocks cut");
    /* Each free list holds only free blocks of its class, inside the
     * arena, without a cycle (bounded by the number of blocks possible). */
    limit = (uint64_t)(arena->top - arena->base) / ARENA_MIN;
    for (c = 0; c < ARENA_NCLASSES; ++c) {
        const struct arena_hdr *h = arena->free[c];
        uint64_t n = 0;
        for (; h != NULL; h = *(void *const *)(h + 1)) {
            if ((const char *)h < arena->base || (const char *)h >= arena->top ||
                ((uintptr_t)h & (ARENA_ALIGN - 1)) != 0)
                return check_fail(why, "free list points outside the arena");
            if (h->magic != ARENA_FREE)
                return check_fail(why, "free list holds a block not marked free");
            if (h->class != (uint32_t)c)
                return check_fail(why, "free list holds a block of another class");
            if (++n > limit)
                return check_fail(why, "free list has a cycle");
        }
    }
    return 0;
}
