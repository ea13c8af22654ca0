/*
 * core/copy_bytes.h - a copy of n bytes between buffers that do not overlap, for the copies of a whole
 * gradient (autograd/backward.c: a leaf's .grad made from the caller's grad_out, a copy on write) and
 * the iterator's same-dtype copies of contiguous runs (core/iter.c: clone, contiguous, to_dtype).
 *
 * glibc 2.36's memmove on AMD stops using `rep movsb` above its data cache size (48 KiB here: the L1d it
 * takes for the L2) and copies with a loop of vector loads and stores.  From 1 MiB (source and destination
 * beyond a Zen 5 core's 1 MiB L2) `rep movsb` is faster on this host: one thread, CPU time, medians of 15,
 * 1 MiB 24.7-26.5 -> 19.6-20.5 µs, 1.5 MiB 37-39 -> 32-34, 8 MiB 281-297 -> 223-225; below 1 MiB the two
 * are equal (384-896 KiB within 3%), so smaller copies keep memcpy (docs/benchmarks.md, session 21).
 * The same bytes either way.
 */
#ifndef AG_CORE_COPY_BYTES_H
#define AG_CORE_COPY_BYTES_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Under AddressSanitizer every copy is memcpy, which it checks (it does not see inside an asm). */
#if defined(__SANITIZE_ADDRESS__)
#define AG_COPY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AG_COPY_ASAN 1
#endif
#endif

/* Copies n bytes from src to dst (not overlapping); `rep movsb` from AG_COPY_MOVSB_MIN bytes on x86-64. */
#define AG_COPY_MOVSB_MIN ((size_t)1 << 20)
static inline void ag__copy_bytes(void *restrict dst, const void *restrict src, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(AG_COPY_ASAN)
    if (n >= AG_COPY_MOVSB_MIN) {
        __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
        return;
    }
#endif
    memcpy(dst, src, n);
}

/* Moves n bytes from src to dst as memmove does; ag__copy_bytes's `rep movsb` where the two do not overlap. */
static inline void ag__move_bytes(void *dst, const void *src, size_t n) {
    const uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src; /* addresses: the buffers may be unrelated */
    if (n >= AG_COPY_MOVSB_MIN && (d + n <= s || s + n <= d)) ag__copy_bytes(dst, src, n);
    else memmove(dst, src, n);
}
#endif
