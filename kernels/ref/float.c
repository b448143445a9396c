/* float.c — reference kernels for the unquantized types F32, F16 and BF16.
 *
 * Their dot type is F32: activations stay in float. (ggml converts the activation row to F16 or
 * BF16 for F16/BF16 weights; elm's contract keeps it F32, which is at least as accurate, so the
 * results differ from ggml's in the last bits for those two weight types only.)
 *
 * The dot products multiply in float and accumulate in double, as ggml's portable scalar path
 * does: the reference is then accurate to about one float rounding per product, whatever n.
 */
#include <string.h>

#include "kernels/fp16.h"
#include "kernels/ref/ref.h"

/* ---- F32 --------------------------------------------------------------------------------- */

void elm_ref_f32_to_float(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void elm_ref_f32_from_float(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void elm_ref_f32_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const float *x = w;
    const float *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}

/* ---- F16 (IEEE half) --------------------------------------------------------------------- */

void elm_ref_f16_to_float(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = elm_fp16_to_f32(h[i]);
}

void elm_ref_f16_from_float(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = elm_f32_to_fp16(src[i]);
}

void elm_ref_f16_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const uint16_t *x = w;
    const float *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(elm_fp16_to_f32(x[i]) * y[i]);
    *s = (float)sum;
}

/* ---- BF16 -------------------------------------------------------------------------------- */

void elm_ref_bf16_to_float(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = elm_bf16_to_f32(h[i]);
}

void elm_ref_bf16_from_float(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = elm_f32_to_bf16(src[i]);
}

void elm_ref_bf16_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const uint16_t *x = w;
    const float *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(elm_bf16_to_f32(x[i]) * y[i]);
    *s = (float)sum;
}
