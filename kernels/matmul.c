/* matmul.c — the reference matrix multiply: weight rows against quantized activation rows.
 *
 * Every output element y[t][r] is one vec_dot call on weight row r and activation row t, with
 * the same arguments whatever ntok is or how the rows are split among threads. That is what
 * makes batched (prompt) and token-by-token (generation) evaluation bit-identical, and results
 * independent of the thread count. OpenMP splits the weight rows statically; each thread then
 * streams its rows once for all tokens. A tiled faster version can replace this one as long as
 * it keeps that one-call-per-element property.
 */
#include <stdint.h>

#include "kernels/kernels.h"

void elm_matmul(const struct elm_kernels *k, enum elm_type type, const void *w, int64_t ncols,
                int64_t nrows, const void *xq, size_t xq_stride, int64_t ntok, float *y,
                int64_t y_stride)
{
    /* tables from elm_kernels_get() have no holes; a raw variant table might */
    void (*dot)(int64_t, float *, const void *, const void *) = k->vec_dot[type];
    if (dot == NULL)
        dot = elm_kernels_ref.vec_dot[type];
    const size_t row_bytes = elm_row_bytes(type, ncols);
    const uint8_t *wb = w;
    const uint8_t *xb = xq;

#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < nrows; r++) {
        const void *wr = wb + (size_t)r * row_bytes;
        for (int64_t t = 0; t < ntok; t++)
            dot(ncols, &y[t * y_stride + r], wr, xb + (size_t)t * xq_stride);
    }
}
