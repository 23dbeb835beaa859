/* fdbench-alloc.so: an LD_PRELOAD shim that counts heap allocations.
 *
 * Every malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign,
 * valloc and pvalloc call of the process is counted (and every free), then
 * served by glibc's own allocator through its __libc_* entry points, so no
 * dlsym() is needed and there is no recursion at start-up. This sees the
 * allocations of C code, GLib, jansson and the Rust library alike (Rust's
 * default global allocator calls malloc/realloc/posix_memalign).
 *
 * A receiver reads the counters through fdbench_alloc_stats() before and
 * after its timed loop (found with dlsym(RTLD_DEFAULT, ...)). The counters
 * are process-wide; the receivers are single-threaded. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static unsigned long long n_alloc, n_free;

#define COUNT(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)

__attribute__((visibility("default"))) void fdbench_alloc_stats(unsigned long long *allocs,
                                                                 unsigned long long *frees)
{
    *allocs = __atomic_load_n(&n_alloc, __ATOMIC_RELAXED);
    *frees = __atomic_load_n(&n_free, __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    COUNT(n_alloc);
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    COUNT(n_alloc);
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    if (p && n == 0) {
        COUNT(n_free);
    } else {
        COUNT(n_alloc);
        if (p)
            COUNT(n_free);
    }
    return __libc_realloc(p, n);
}

void free(void *p)
{
    if (p)
        COUNT(n_free);
    __libc_free(p);
}

static int pow2(size_t a) { return a && !(a & (a - 1)); }

int posix_memalign(void **out, size_t align, size_t n)
{
    if (!pow2(align) || align % sizeof(void *))
        return EINVAL;
    COUNT(n_alloc);
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    COUNT(n_alloc);
    return __libc_memalign(align, n);
}

void *memalign(size_t align, size_t n)
{
    COUNT(n_alloc);
    return __libc_memalign(align, n);
}

void *valloc(size_t n)
{
    COUNT(n_alloc);
    return __libc_memalign(4096, n);
}

void *pvalloc(size_t n)
{
    COUNT(n_alloc);
    return __libc_memalign(4096, (n + 4095) & ~(size_t)4095);
}
