#ifndef GANYMEDE_CALLOCATOR_H
#define GANYMEDE_CALLOCATOR_H
// glibc's allocator statistics and trimming, which Swift's Glibc module does not export
// (<malloc.h> is not in its module map). Elsewhere the functions report nothing and do nothing.
#include <stddef.h>
#include <stdlib.h>  // defines __GLIBC__ (through <features.h>) where it applies
#if defined(__GLIBC__)
#include <malloc.h>
#endif

/// Bytes held by live allocations (arenas plus separate mmaps) and bytes freed but kept in the
/// arenas; both 0 without glibc.
static inline void ganymede_heap_stats(size_t *in_use, size_t *free_bytes) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 info = mallinfo2();
    *in_use = info.uordblks + info.hblkhd;
    *free_bytes = info.fordblks;
#else
    *in_use = 0;
    *free_bytes = 0;
#endif
}

/// Returns freed memory at the top of the heap and whole free pages inside every arena to the
/// system (`malloc_trim(0)`); 1 if any memory was released.
static inline int ganymede_heap_trim(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return 0;
#endif
}

#endif
