/* q_k_quant.c — weight quantizers for the K-quants Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.
 *
 * These reproduce ggml's quantize_row_q*_K_ref, which is what llama-quantize runs when it has no
 * importance matrix, so that elm writes the same bytes. Each type first fits a scale (and for
 * Q2_K/Q4_K/Q5_K a minimum) per sub-block with a small search, then quantizes the sub-block
 * scales themselves against one fp16 super-block scale, and finally re-rounds every element
 * against the scale it will actually be decoded with.
 *
 * Bit-exactness with ggml depends on evaluating the same float expressions in the same order:
 * the searches compare sums of squares whose last bit can flip a choice. So the code below keeps
 * ggml's operand order (e.g. (w * x) * l, not w * (x * l)), accumulates sequentially, and relies
 * on the build not contracting a*b+c into fused multiply-adds (this file is built with ISO C and
 * no -m flags, where GCC and Clang keep them separate).
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/ref/ref.h"

/* A group whose largest magnitude is below this is treated as all zeros (ggml's threshold). */
#define GROUP_EPS 1e-15f

static inline int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The element of largest magnitude (first on ties), with its sign; *amax gets |that|. */
static float signed_max(const float *x, int n, float *amax)
{
    float max = 0.0f, am = 0.0f;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > am) {
            am = ax;
            max = x[i];
        }
    }
    *amax = am;
    return max;
}

/* ---- scale searches ---------------------------------------------------------------------- */

/* Symmetric quantization to [-nmax, nmax-1] with weights qw (x^2 when NULL; weighted least
 * squares), trying 18 scales around nmax/max and keeping the one with the largest
 * sumlx^2/suml2, which is the same as the smallest weighted squared error at the optimal scale.
 * Returns the scale; L gets q + nmax. Used by Q6_K (n 16, nmax 32) and, with an importance
 * matrix, by Q4_0, Q5_0 and Q3_K (q_imatrix.c). */
float elm_ref_fit_symmetric(int n, int nmax, const float *x, int8_t *L, const float *qw)
{
    float amax;
    const float max = signed_max(x, n, &amax);
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(elm_round_even(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(elm_round_even(iscale * x[i]), -nmax, nmax - 1);
            float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clamp_int(elm_round_even(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's per-16 fit: start from nmax/max, then up to 5 passes of coordinate descent that move
 * one quant at a time when that raises sumlx^2/suml2 (weights x^2). L gets q + nmax. */
static float fit_symmetric_descent(int n, int nmax, const float *x, int8_t *L)
{
    float amax;
    const float max = signed_max(x, n, &amax);
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(elm_round_even(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0.0f) {
                float sl2 = suml2 - w * L[i] * L[i];
                int nl = clamp_int(elm_round_even(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (nl != L[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric fit x ~ scale * L + min with L in [0, nmax] and min <= 0, for Q2_K/Q4_K/Q5_K.
 * Starts from the min/max grid, then tries nstep+1 grid spacings (nmax + rmin + rdelta*is) over
 * the range; for each it solves the weighted least-squares scale and offset for that rounding
 * and keeps the one with the smallest weighted error (absolute error when use_mad).
 * Returns the scale; *neg_min gets -min (>= 0). */
float elm_ref_fit_scale_min(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                            float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                            bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0.0f)
        min = 0.0f; /* the offset only ever subtracts: all-positive groups keep min 0 */
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = elm_round_even(iscale * (x[i] - min));
        L[i] = (uint8_t)clamp_int(l, 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(elm_round_even(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0.0f;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += weights[i] * diff;
            }
            if (err < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* ---- shared packing ---------------------------------------------------------------------- */

/* 2-bit fields of Q2_K and Q3_K: byte l of each 32-byte half h holds elements 128h + l,
 * +32, +64, +96 in bit pairs 0, 2, 4, 6 (so one byte load feeds four sub-blocks). */
void elm_ref_pack_2bit(uint8_t *qs, const uint8_t *L)
{
    for (int h = 0; h < ELM_QK_K; h += 128)
        for (int l = 0; l < 32; l++)
            qs[h / 4 + l] = (uint8_t)(L[h + l] | (L[h + l + 32] << 2) | (L[h + l + 64] << 4) |
                                      (L[h + l + 96] << 6));
}

/* Q4_K/Q5_K scale field: 8 six-bit scales and 8 six-bit mins in 12 bytes (see ref.h). */
void elm_ref_pack_k4_scales(uint8_t *packed, const uint8_t *ls, const uint8_t *lm)
{
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            packed[j] = ls[j];
            packed[j + 4] = lm[j];
        } else {
            packed[j + 4] = (uint8_t)((ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4));
            packed[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            packed[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Q4_K and Q5_K share everything but the quant range and the search parameters. */
static void quantize_k4_common(const float *x, uint16_t *d_out, uint16_t *dmin_out, uint8_t *packed,
                               uint8_t *L, int nmax, float rmin, float rdelta, int nstep)
{
    float scales[8], mins[8], weights[32];
    uint8_t Laux[32], ls[8], lm[8];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        /* weight each element by the group's RMS plus its own magnitude: large values matter
         * more, small ones are not ignored */
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++)
            sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(xs[l]);
        scales[j] = elm_ref_fit_scale_min(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin,
                                          rdelta, nstep, false);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; j++) {
        uint8_t s = (uint8_t)elm_round_even(inv_scale * scales[j]);
        uint8_t m = (uint8_t)elm_round_even(inv_min * mins[j]);
        ls[j] = s < 63 ? s : 63;
        lm[j] = m < 63 ? m : 63;
    }
    memset(packed, 0, ELM_K_SCALE_BYTES);
    elm_ref_pack_k4_scales(packed, ls, lm);
    *d_out = elm_f32_to_fp16(max_scale / 63.0f);
    *dmin_out = elm_f32_to_fp16(max_min / 63.0f);

    elm_ref_k4_requantize(x, *d_out, *dmin_out, packed, L, nmax);
}

void elm_ref_k4_requantize(const float *x, uint16_t d16, uint16_t dmin16, const uint8_t *packed,
                           uint8_t *L, int nmax)
{
    /* re-round every element against the scale and min it will be decoded with */
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        elm_k4_scale_min(packed, j, &sc, &m);
        const float d = elm_fp16_to_f32(d16) * sc;
        if (d == 0.0f)
            continue;
        const float dm = elm_fp16_to_f32(dmin16) * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clamp_int(elm_round_even((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

/* ---- Q2_K ------------------------------------------------------------------------------- */

void elm_ref_q2_k_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q2_k *y = dst;
    const float q4scale = 15.0f; /* scales and mins are 4-bit */
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float *x = src + i * ELM_QK_K;
        uint8_t L[ELM_QK_K], Laux[16];
        float weights[16], scales[16], mins[16];
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++)
                weights[l] = fabsf(x[16 * j + l]);
            scales[j] = elm_ref_fit_scale_min(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j],
                                              Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        if (max_scale > 0.0f) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] = (uint8_t)elm_round_even(iscale * scales[j]);
            y[i].d = elm_f32_to_fp16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = elm_f32_to_fp16(0.0f);
        }
        if (max_min > 0.0f) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] |= (uint8_t)(elm_round_even(iscale * mins[j]) << 4);
            y[i].dmin = elm_f32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = elm_f32_to_fp16(0.0f);
        }
        elm_ref_q2_k_finish(&y[i], x, L);
    }
}

void elm_ref_q2_k_finish(struct elm_block_q2_k *y, const float *x, uint8_t *L)
{
    for (int j = 0; j < 16; j++) {
        const float d = elm_fp16_to_f32(y->d) * (y->scales[j] & 0x0f);
        if (d == 0.0f)
            continue;
        const float dm = elm_fp16_to_f32(y->dmin) * (y->scales[j] >> 4);
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (uint8_t)clamp_int(elm_round_even((x[16 * j + l] + dm) / d), 0, 3);
    }
    elm_ref_pack_2bit(y->qs, L);
}

/* ---- Q3_K ------------------------------------------------------------------------------- */

void elm_ref_q3_k_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q3_k *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float *x = src + i * ELM_QK_K;
        int8_t L[ELM_QK_K];
        float scales[16];
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_symmetric_descent(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale != 0.0f) {
            /* the signed largest scale maps to -32, as in the symmetric element fits */
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) {
                int8_t l = (int8_t)elm_round_even(iscale * scales[j]);
                l = (int8_t)(clamp_int(l, -32, 31) + 32);
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0x0f);
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
                y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = elm_f32_to_fp16(1 / iscale);
        } else {
            y[i].d = elm_f32_to_fp16(0.0f);
        }
        elm_ref_q3_k_finish(&y[i], x, L);
    }
}

void elm_ref_q3_k_finish(struct elm_block_q3_k *y, const float *x, int8_t *L)
{
    int8_t sc[16];
    elm_k3_scales(y->scales, sc);
    for (int j = 0; j < 16; j++) {
        const float d = elm_fp16_to_f32(y->d) * sc[j];
        if (d == 0.0f)
            continue;
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (int8_t)(clamp_int(elm_round_even(x[16 * j + l] / d), -4, 3) + 4);
    }
    /* bit 2 of element j goes to hmask[j % 32], bit j / 32; the low two bits to qs */
    uint8_t low[ELM_QK_K];
    memset(y->hmask, 0, sizeof y->hmask);
    for (int j = 0; j < ELM_QK_K; j++) {
        int q = L[j];
        if (q > 3) {
            y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            q -= 4;
        }
        low[j] = (uint8_t)q;
    }
    elm_ref_pack_2bit(y->qs, low);
}

/* ---- Q4_K / Q5_K ------------------------------------------------------------------------ */

void elm_ref_q4_k_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q4_k *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        uint8_t L[ELM_QK_K];
        quantize_k4_common(src + i * ELM_QK_K, &y[i].d, &y[i].dmin, y[i].scales, L, 15, -1.0f, 0.1f,
                           20);
        elm_ref_q4_k_pack(&y[i], L);
    }
}

void elm_ref_q4_k_pack(struct elm_block_q4_k *y, const uint8_t *L)
{
    /* each 32-byte run holds two 32-element sub-blocks: low nibbles, then high nibbles */
    for (int j = 0; j < ELM_QK_K; j += 64)
        for (int l = 0; l < 32; l++)
            y->qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

void elm_ref_q5_k_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q5_k *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        uint8_t L[ELM_QK_K];
        quantize_k4_common(src + i * ELM_QK_K, &y[i].d, &y[i].dmin, y[i].scales, L, 31, -0.5f, 0.1f,
                           15);
        elm_ref_q5_k_pack(&y[i], L);
    }
}

void elm_ref_q5_k_pack(struct elm_block_q5_k *y, const uint8_t *L)
{
    /* low 4 bits as Q4_K; bit 4 of element 64k + l goes to qh[l] bit 2k, of 64k + 32 + l to
     * qh[l] bit 2k + 1 */
    memset(y->qh, 0, sizeof y->qh);
    for (int j = 0; j < ELM_QK_K; j += 64) {
        const int bit = j / 32;
        for (int l = 0; l < 32; l++) {
            int q1 = L[j + l], q2 = L[j + l + 32];
            y->qh[l] |= (uint8_t)(((q1 >> 4) << bit) | ((q2 >> 4) << (bit + 1)));
            y->qs[j / 2 + l] = (uint8_t)((q1 & 0x0f) | ((q2 & 0x0f) << 4));
        }
    }
}

/* ---- Q6_K ------------------------------------------------------------------------------- */

void elm_ref_q6_k_from_float(const float *src, void *dst, int64_t n)
{
    elm_ref_q6_k_quantize_imatrix(src, dst, n, NULL);
}

/* With an importance matrix only the element weights of the 16-element fits change (qw alone,
 * no sigma2 term, as ggml's quantize_row_q6_K_impl); the sub-scales are quantized the same way. */
void elm_ref_q6_k_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_q6_k *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float *x = src + i * ELM_QK_K;
        int8_t L[ELM_QK_K];
        float scales[16];
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = elm_ref_fit_symmetric(16, 32, x + 16 * j, L + 16 * j,
                                              qw ? qw + i * ELM_QK_K + 16 * j : NULL);
            if (fabsf(scales[j]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs_scale < GROUP_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* int8 scales: the signed largest one maps to -128 */
        const float iscale = -128.0f / max_scale;
        y[i].d = elm_f32_to_fp16(1 / iscale);
        for (int j = 0; j < 16; j++) {
            int s = elm_round_even(iscale * scales[j]);
            y[i].scales[j] = (int8_t)(s < 127 ? s : 127);
        }
        for (int j = 0; j < 16; j++) {
            const float d = elm_fp16_to_f32(y[i].d) * y[i].scales[j];
            if (d == 0.0f)
                continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    (int8_t)(clamp_int(elm_round_even(x[16 * j + l] / d), -32, 31) + 32);
        }
        /* per 128-element half: ql byte l holds elements l (low nibble) and l+64 (high), byte
         * l+32 holds l+32 and l+96; qh byte l holds the top two bits of all four */
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h;
            uint8_t *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0x0f) | ((Lh[l + 64] & 0x0f) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0x0f) | ((Lh[l + 96] & 0x0f) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                  ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}
