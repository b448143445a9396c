/* ops.h — the few rounding operations of the newer architectures that the kernel table
 * (kernels.h) does not hold: GELU as ggml's CPU build computes it, LayerNorm, and tanh
 * soft-capping. They are plain scalar code whose every step is fixed (a table lookup, sums in
 * double, one float operation per element), so they give the same bits on every machine and
 * whatever the batch holds.
 */
#ifndef ELM_OPS_H
#define ELM_OPS_H

#include <stdint.h>

/* g[i] = gelu(g[i]) * u[i] (u NULL: g[i] = gelu(g[i])), with ggml's GELU: the tanh
 * approximation looked up in a table of F16 values by the input rounded to F16; inputs <= -10
 * give 0 and >= 10 themselves. Thread-safe (the table is built once). */
void elm_gelu_mul(float *g, const float *u, int64_t n);

/* y = (x - mean) / sqrt(var + eps) * w + b, the mean and variance summed in double as ggml's
 * norm does; y may equal x. */
void elm_layernorm(float *y, const float *x, const float *w, const float *b, int64_t n, float eps);

/* x[i] = c * tanh(x[i] * (1/c)): gemma2's soft-capping of attention scores and logits. */
void elm_softcap(float *x, int64_t n, float c);

#endif
