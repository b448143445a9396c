/* checked.h — overflow-checked size arithmetic for everything read from files or shared memory.
 *
 * Each returns true when the result overflowed; *out is then unspecified and must not be used.
 */
#ifndef ELM_CHECKED_H
#define ELM_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool elm_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

static inline bool elm_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

/* Round v up to a multiple of align (a power of two). */
static inline bool elm_align_up_u64(uint64_t v, uint64_t align, uint64_t *out)
{
    return elm_add_overflow_u64(v, align - 1, out) ? true : (*out &= ~(align - 1), false);
}

#endif
