/* ops.c — reference kernels for the operations around the matmuls: RMS norm, rotary embedding,
 * softmax, the SiLU-gated product, and the two halves of attention over a KV cache (the scores
 * q·k and the weighted sum of value rows).
 *
 * Each one computes the floats that llama.cpp's x86 CPU build (AVX-512, FMA) computed for the
 * zoo references: the same operations in the same order, a lane array standing for a vector
 * register and fmaf() for a fused instruction. docs/kernels.md says why every last bit matters
 * (an activation that rounds differently flips its quantization in the next matmul) and how
 * each order was established. exp() is not libm's: exp_lane() reproduces, operation for
 * operation, the polynomial the vector code evaluates, so softmax and SiLU round the same way.
 *
 * Attention sums are laid out as llama.cpp lays them out for a batch of several tokens
 * (its tiled matmul). For a single token llama.cpp takes another path with another order;
 * elm must give a token the same result whatever batch it comes in, so it keeps the batch
 * order, which the prompt (and so every later position) depends on. kernels.h and
 * docs/kernels.md give the measured cost of that choice.
 */
#include <math.h>
#include <stdbool.h>

#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"

#define LANES 16 /* floats in a 512-bit register */

/* ---- exp as the vector code computes it --------------------------------------------------- */

/* One lane of the vectorized exp: e^x = 2^n * p(b) with n = x / ln 2 rounded to an integer and
 * b = x - n ln 2 (ln 2 split in two constants so that the reduction loses nothing), p a
 * degree-5 polynomial in b evaluated as fused multiply-adds over b and b^2. The scaling by 2^n
 * rounds once, as the scale instruction does (ldexpf is exact, also for subnormal results);
 * |n| > 192 saturates to 0 or infinity. Takes finite values or -inf (which gives 0). */
static float exp_lane(float x)
{
    const float shifter = 0x1.8p23f; /* adding it rounds to an integer, ties to even */
    const float z = fmaf(x, 0x1.715476p+0f, shifter);
    const float n = z - shifter;
    if (!(fabsf(n) <= 192.0f)) /* -inf comes here as n = -inf */
        return n > 0.0f ? INFINITY : 0.0f;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fmaf(
        fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
        u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    return ldexpf(j, (int)n);
}

/* ---- RMS norm ----------------------------------------------------------------------------- */

void elm_ref_rmsnorm(float *y, const float *x, const float *g, int64_t n, float eps)
{
    /* squares rounded in float and summed in double, in order; the mean rounded to float */
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)(x[i] * x[i]);
    const float mean = (float)(ss / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    /* two operations in llama.cpp's graph: the norm, then the product with the weight */
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] * scale) * g[i];
}

/* ---- rotary position embedding ------------------------------------------------------------ */

void elm_ref_rope_table(float *cs, int n_rot, int32_t pos, float base, float scale)
{
    /* theta_i = pos * base^(-2i/n_rot), built by repeated multiplication in float */
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        cs[2 * i] = cosf(theta * scale);
        cs[2 * i + 1] = sinf(theta * scale);
        theta *= theta_scale;
    }
}

void elm_ref_rope(float *x, int n_rot, const float *cs, bool neox)
{
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float x0 = x[a], x1 = x[b];
        /* x0 c - x1 s and x0 s + x1 c, compiled with the first product of each fused */
        x[a] = fmaf(x0, c, -(x1 * s));
        x[b] = fmaf(x0, s, x1 * c);
    }
}

/* ---- softmax -------------------------------------------------------------------------------- */

void elm_ref_softmax(float *x, int64_t n)
{
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = fmaxf(mx, x[i]);
    /* exp 16 lanes at a time; each block folded as a register (elm_hsum16), the block sums
     * added in double. Entries past n stand for masked cache positions: their exp is 0, which
     * changes no sum, so a short last block is padded with zeros. */
    double sum = 0.0;
    for (int64_t i = 0; i < n; i += LANES) {
        float e[LANES] = {0};
        for (int l = 0; l < LANES && i + l < n; l++)
            e[l] = x[i + l] = exp_lane(x[i + l] - mx);
        sum += (double)elm_hsum16(e);
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

/* ---- SiLU-gated product ---------------------------------------------------------------------- */

void elm_ref_silu_mul(float *g, const float *u, int64_t n)
{
    /* silu(x) = x / (1 + exp(-x)) 16 lanes at a time; a remainder (none when n is a multiple
     * of 16) goes through libm's expf, as llama.cpp's scalar tail does */
    const int64_t nv = n - n % LANES;
    for (int64_t i = 0; i < n; i++) {
        const float e = i < nv ? exp_lane(0.0f - g[i]) : expf(-g[i]);
        g[i] = g[i] / (1.0f + e) * u[i];
    }
}

/* ---- attention: scores -------------------------------------------------------------------- */

/* The dot product of two float rows as llama.cpp's vectorized loop adds it: four 16-lane
 * accumulators over each 64 elements (element 64i + 16j + l into accumulator j, lane l),
 * folded as (acc0 + acc2) + (acc1 + acc3) and then across lanes; elements past the last 64
 * are added after that in order, as the compiled tail loop does: rounded products eight at a
 * time, the last n % 8 fused. */
void elm_ref_kv_dot_f32(int64_t n, float *s, const void *k, const void *q)
{
    const float *x = k, *y = q;
    float acc[4][LANES] = {{0}};
    const int64_t np = n - n % 64;
    for (int64_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < LANES; l++)
                acc[j][l] = fmaf(x[i + LANES * j + l], y[i + LANES * j + l], acc[j][l]);
    float lane[LANES];
    for (int l = 0; l < LANES; l++)
        lane[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    float sum = elm_hsum16(lane);
    const int64_t nf = n - n % 8;
    int64_t i = np;
    for (; i < nf; i++)
        sum += x[i] * y[i];
    for (; i < n; i++)
        sum = fmaf(x[i], y[i], sum);
    *s = sum;
}

/* Half rows, as the tiled matmul of a batch takes them: 16 lanes, lane l a fused chain over
 * elements l, l + 16, ... in order, then folded. (A product of two halves is exact in float.) */
void elm_ref_kv_dot_f16(int64_t n, float *s, const void *k, const void *q)
{
    const uint16_t *x = k, *y = q;
    float lane[LANES] = {0};
    for (int64_t i = 0; i < n; i++)
        lane[i % LANES] = fmaf(elm_fp16_to_f32(x[i]), elm_fp16_to_f32(y[i]), lane[i % LANES]);
    *s = elm_hsum16(lane);
}

/* ---- attention: weighted sum of value rows ----------------------------------------------- */

/* out[d] = sum_p w[p] V[p][d] as the tiled matmul of a batch adds it: 16 lanes over the cache
 * positions, lane l a fused chain over positions l, l + 16, ... in order, then folded. The
 * positions past n that llama.cpp's padded cache window adds have weight 0 and change no lane,
 * so they are not visited (their cache rows may hold anything). The lanes live in the caller's
 * buffer so that a paged cache can walk its pages one run at a time (kernels.h). */
void elm_ref_kv_mix_f32_lanes(int n_lanes, int64_t n, int64_t hd, float *lanes, const float *w,
                              const void *v, int64_t v_stride)
{
    for (int64_t p = 0; p < n; p++) {
        const float *row = (const float *)((const char *)v + p * v_stride);
        float *lane = lanes + (p % n_lanes) * hd;
        for (int64_t d = 0; d < hd; d++)
            lane[d] = fmaf(row[d], w[p], lane[d]);
    }
}

/* The same over a half cache; the weights are rounded to half first, as llama.cpp converts
 * them to the cache type before the product. */
void elm_ref_kv_mix_f16_lanes(int n_lanes, int64_t n, int64_t hd, float *lanes, const float *w,
                              const void *v, int64_t v_stride)
{
    for (int64_t p = 0; p < n; p++) {
        const uint16_t *row = (const uint16_t *)((const char *)v + p * v_stride);
        const float wp = elm_fp16_to_f32(elm_f32_to_fp16(w[p]));
        float *lane = lanes + (p % n_lanes) * hd;
        for (int64_t d = 0; d < hd; d++)
            lane[d] = fmaf(elm_fp16_to_f32(row[d]), wp, lane[d]);
    }
}

/* A Q8_0 cache: each value dequantized (d * q: an 11-bit by 8-bit product, exact in float, so
 * any order of dequantizing gives these bits) times the float weight. The weights are not
 * rounded to Q8_0 or F16: V is already the lossy part, and the weights' exponent range matters
 * (one block scale for 32 weights would flush the small ones to 0). */
void elm_ref_kv_mix_q8_0_lanes(int n_lanes, int64_t n, int64_t hd, float *lanes, const float *w,
                               const void *v, int64_t v_stride)
{
    for (int64_t p = 0; p < n; p++) {
        const struct elm_block_q8_0 *b =
            (const struct elm_block_q8_0 *)((const char *)v + p * v_stride);
        float *lane = lanes + (p % n_lanes) * hd;
        for (int64_t d = 0; d < hd; d++) {
            const float x = elm_fp16_to_f32(b[d / 32].d) * (float)b[d / 32].qs[d % 32];
            lane[d] = fmaf(x, w[p], lane[d]);
        }
    }
}

void elm_ref_kv_mix_f32(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                        int64_t v_stride)
{
    elm_ref_kv_mix_f32_lanes(LANES, n, hd, lanes, w, v, v_stride);
}

void elm_ref_kv_mix_f16(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                        int64_t v_stride)
{
    elm_ref_kv_mix_f16_lanes(LANES, n, hd, lanes, w, v, v_stride);
}

void elm_ref_kv_mix_q8_0(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                         int64_t v_stride)
{
    elm_ref_kv_mix_q8_0_lanes(LANES, n, hd, lanes, w, v, v_stride);
}

void elm_ref_kv_fold(int64_t hd, const float *lanes, float *out)
{
    for (int64_t d = 0; d < hd; d++) {
        float lane[LANES];
        for (int l = 0; l < LANES; l++)
            lane[l] = lanes[l * hd + d];
        out[d] = elm_hsum16(lane);
    }
}
