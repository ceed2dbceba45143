/*
 * arena.h - size-class allocator over the arena region.
 *
 * Touched only under the writer lock.  Blocks carry an 8-byte header (size
 * class and a magic for consistency checks).  Classes step by 8 bytes from
 * 32 to 64, then by an eighth of a power of two, so internal waste stays
 * under 12.5% (under 25% below 64 bytes).  A freed block of 64 KiB or more
 * gives its pages back to the kernel (MADV_REMOVE) but keeps its header.  A
 * freed block goes on its class's free list and is reused by the next
 * allocation of that class; fresh blocks are cut from the top of the
 * region.  Every update is a single pointer store at its commit point, so a
 * writer killed mid-operation can leak a block but never corrupts a list.
 * Running out is an ordinary error (NULL), answered with 507 upstream.
 */
#ifndef KVSD_ARENA_H
#define KVSD_ARENA_H

#include <stddef.h>
#include <stdint.h>

#define ARENA_NCLASSES 276 /* 4, then 8 per power of two: blocks up to almost 2^40 bytes */

struct arena_sh {
    char *base; /* first byte of the region */
    char *top;  /* next never-used byte */
    char *end;  /* one past the region */
    void *free[ARENA_NCLASSES];
    uint64_t used;   /* bytes in allocated blocks, headers included */
    uint64_t nalloc; /* live allocations */
};

/* Lay out an arena over [mem, mem + len). */
void arena_init(struct arena_sh *arena, void *mem, size_t len);

void *arena_alloc_sh(struct arena_sh *arena, size_t n); /* NULL when full */
void arena_free_sh(struct arena_sh *arena, void *p);    /* p may be NULL */
size_t arena_block_size(const void *p);                 /* usable bytes of p's block */

/* Bytes still allocatable (top space plus free lists). */
uint64_t arena_free_bytes(const struct arena_sh *arena);
/* Walk the free lists and headers; 0 if consistent, -1 and a reason. */
int arena_check(const struct arena_sh *arena, const char **why);

#endif
