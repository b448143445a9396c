/* q_imatrix.c — the weight quantizers llama-quantize runs when it has an importance matrix
 * (ggml's quantize_row_*_impl with quant_weights), for Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K
 * and Q5_K (Q6_K and the IQ4 types take the matrix in their one quantizer: q_k_quant.c, iq4.c).
 *
 * The imatrix qw holds, per input column j, the mean of x_j^2 over the calibration tokens: how
 * much an error in that column of the weight row moves the matmul's output. Each element is
 * weighed qw_j * sqrt(sigma2 + x_j^2), sigma2 being a mean square of the row (the whole row for
 * the 32-element types, the super-block for the K-quants, times 2 for Q3_K/Q4_K/Q5_K), and every
 * scale is a weighted least-squares fit. Unlike the reference quantizers, the K-quants' sub-block
 * scales are fitted too, weighted by the sum of their elements' weights (fit_positive).
 *
 * As everywhere in kernels/ref/, float expressions keep ggml's operand order (no contraction),
 * so the bytes are llama.cpp's.
 */
#include <math.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/ref/ref.h"

/* The scale/min search of the imatrix paths (ggml's make_qkx3_quants arguments). */
#define QKX3_RMIN   -0.9f
#define QKX3_RDELTA 0.05f
#define QKX3_NSTEP  36

/* sum of x^2 over n elements, in order */
static float sum_sq(const float *x, int64_t n)
{
    float s = 0.0f;
    for (int64_t j = 0; j < n; j++)
        s += x[j] * x[j];
    return s;
}

/* weight[j] = qw[j] * sqrt(sigma2 + x[j]^2) for n elements */
static void imatrix_weights(const float *x, const float *qw, float sigma2, int n, float *weight)
{
    for (int j = 0; j < n; j++)
        weight[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
}

static float sum_of(const float *w, int n)
{
    float s = 0.0f;
    for (int j = 0; j < n; j++)
        s += w[j];
    return s;
}

/* Non-negative values x (sub-block scales or mins) onto 0..nmax with weights qw (ggml's
 * make_qp_quants): the best of 9 trial scales around nmax/max by weighted squared error, then
 * up to 5 passes that move single quants when that improves the weighted fit. Returns the
 * scale; L gets the quants. */
static float fit_positive(int n, int nmax, const float *x, uint8_t *L, const float *qw)
{
    float max = 0.0f;
    for (int i = 0; i < n; i++)
        max = max > x[i] ? max : x[i];
    if (max == 0.0f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)elm_round_even(iscale * x[i]);
    const float scale = 1 / iscale;
    float best_mse = 0.0f;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0)
            continue;
        const float iscale_is = (0.1f * is + nmax) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = elm_round_even(iscale_is * x[i]);
            l = l < nmax ? l : nmax;
            float diff = x[i] - scale_is * l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = elm_round_even(iscale * x[i]);
        l = l < nmax ? l : nmax;
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * l;
        suml2 += qw[i] * l * l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = qw[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int nl = elm_round_even(x[i] * sl2 / slx);
                nl = nl < nmax ? nl : nmax;
                if (nl != L[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)nl;
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
    return sumlx / suml2;
}

/* ---- 32-element types: sigma2 over the whole row ------------------------------------------ */

void elm_ref_q4_0_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_q4_0 *y = dst;
    const float sigma2 = sum_sq(src, n) / n;
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        const float *x = src + b * ELM_QK;
        float weight[ELM_QK];
        int8_t L[ELM_QK];
        imatrix_weights(x, qw + b * ELM_QK, sigma2, ELM_QK, weight);
        y[b].d = elm_f32_to_fp16(elm_ref_fit_symmetric(ELM_QK, 8, x, L, weight));
        for (int j = 0; j < 16; j++)
            y[b].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void elm_ref_q5_0_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_q5_0 *y = dst;
    const float sigma2 = sum_sq(src, n) / n;
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        const float *x = src + b * ELM_QK;
        float weight[ELM_QK];
        int8_t L[ELM_QK];
        imatrix_weights(x, qw + b * ELM_QK, sigma2, ELM_QK, weight);
        y[b].d = elm_f32_to_fp16(elm_ref_fit_symmetric(ELM_QK, 16, x, L, weight));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const uint8_t q0 = (uint8_t)L[j], q1 = (uint8_t)L[j + 16];
            y[b].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 & 0x10u) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10u) >> 4) << (j + 16);
        }
        memcpy(y[b].qh, &qh, sizeof qh);
    }
}

void elm_ref_q4_1_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_q4_1 *y = dst;
    const float sigma2 = sum_sq(src, n) / n;
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        const float *x = src + b * ELM_QK;
        float weight[ELM_QK], neg_min;
        uint8_t L[ELM_QK], Laux[ELM_QK];
        imatrix_weights(x, qw + b * ELM_QK, sigma2, ELM_QK, weight);
        const float d = elm_ref_fit_scale_min(ELM_QK, 15, x, weight, L, &neg_min, Laux, QKX3_RMIN,
                                              QKX3_RDELTA, QKX3_NSTEP, false);
        y[b].d = elm_f32_to_fp16(d);
        y[b].m = elm_f32_to_fp16(-neg_min);
        for (int j = 0; j < 16; j++)
            y[b].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void elm_ref_q5_1_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_q5_1 *y = dst;
    const float sigma2 = sum_sq(src, n) / n;
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        const float *x = src + b * ELM_QK;
        float weight[ELM_QK], neg_min;
        uint8_t L[ELM_QK], Laux[ELM_QK];
        imatrix_weights(x, qw + b * ELM_QK, sigma2, ELM_QK, weight);
        const float d = elm_ref_fit_scale_min(ELM_QK, 31, x, weight, L, &neg_min, Laux, QKX3_RMIN,
                                              QKX3_RDELTA, QKX3_NSTEP, false);
        y[b].d = elm_f32_to_fp16(d);
        y[b].m = elm_f32_to_fp16(-neg_min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const uint8_t q0 = L[j], q1 = L[j + 16];
            y[b].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 & 0x10u) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10u) >> 4) << (j + 16);
        }
        memcpy(y[b].qh, &qh, sizeof qh);
    }
}

/* ---- K-quants: sigma2 per super-block ----------------------------------------------------- */

void elm_ref_q2_k_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_q2_k *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float *x = src + i * ELM_QK_K;
        const float sigma2 = sum_sq(x, ELM_QK_K) / ELM_QK_K;
        float weight[16], scales[16], mins[16], sw[16];
        uint8_t L[ELM_QK_K], Laux[16], Ls[16], Lm[16];
        for (int j = 0; j < 16; j++) {
            imatrix_weights(x + 16 * j, qw + i * ELM_QK_K + 16 * j, sigma2, 16, weight);
            sw[j] = sum_of(weight, 16);
            scales[j] = elm_ref_fit_scale_min(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux,
                                              QKX3_RMIN, QKX3_RDELTA, QKX3_NSTEP, false);
        }
        const float dm = fit_positive(16, 15, scales, Ls, sw);
        const float mm = fit_positive(16, 15, mins, Lm, sw);
        y[i].d = elm_f32_to_fp16(dm);
        y[i].dmin = elm_f32_to_fp16(mm);
        for (int j = 0; j < 16; j++)
            y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        elm_ref_q2_k_finish(&y[i], x, L);
    }
}

void elm_ref_q3_k_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_q3_k *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float *x = src + i * ELM_QK_K;
        const float sigma2 = 2 * sum_sq(x, ELM_QK_K) / ELM_QK_K;
        float weight[16], scales[16], sw[16];
        int8_t L[ELM_QK_K], Ls[16];
        for (int j = 0; j < 16; j++) {
            imatrix_weights(x + 16 * j, qw + i * ELM_QK_K + 16 * j, sigma2, 16, weight);
            sw[j] = sum_of(weight, 16);
            scales[j] = elm_ref_fit_symmetric(16, 4, x + 16 * j, L + 16 * j, weight);
        }
        /* the 16 signed sub-scales as 6 bits (biased by 32), fitted like the elements */
        memset(y[i].scales, 0, sizeof y[i].scales);
        const float d_block = elm_ref_fit_symmetric(16, 32, scales, Ls, sw);
        for (int j = 0; j < 16; j++) {
            int l = Ls[j];
            if (j < 8)
                y[i].scales[j] = (uint8_t)(l & 0x0f);
            else
                y[i].scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
            y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        y[i].d = elm_f32_to_fp16(d_block);
        elm_ref_q3_k_finish(&y[i], x, L);
    }
}

/* Q4_K and Q5_K: 8 sub-blocks of 32 with a scale and a min each, both fitted to 6 bits. */
static void k4_imatrix(const float *x, const float *qw, int nmax, uint16_t *d, uint16_t *dmin,
                       uint8_t *packed, uint8_t *L)
{
    const float sigma2 = 2 * sum_sq(x, ELM_QK_K) / ELM_QK_K;
    float weight[32], scales[8], mins[8], sw[8];
    uint8_t Laux[32], Ls[8], Lm[8];
    for (int j = 0; j < 8; j++) {
        imatrix_weights(x + 32 * j, qw + 32 * j, sigma2, 32, weight);
        sw[j] = sum_of(weight, 32);
        scales[j] = elm_ref_fit_scale_min(32, nmax, x + 32 * j, weight, L + 32 * j, &mins[j], Laux,
                                          QKX3_RMIN, QKX3_RDELTA, QKX3_NSTEP, false);
    }
    const float d_block = fit_positive(8, 63, scales, Ls, sw);
    const float m_block = fit_positive(8, 63, mins, Lm, sw);
    memset(packed, 0, ELM_K_SCALE_BYTES);
    elm_ref_pack_k4_scales(packed, Ls, Lm);
    *d = elm_f32_to_fp16(d_block);
    *dmin = elm_f32_to_fp16(m_block);
    elm_ref_k4_requantize(x, *d, *dmin, packed, L, nmax);
}

void elm_ref_q4_k_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_q4_k *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        uint8_t L[ELM_QK_K];
        k4_imatrix(src + i * ELM_QK_K, qw + i * ELM_QK_K, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        elm_ref_q4_k_pack(&y[i], L);
    }
}

void elm_ref_q5_k_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_q5_k *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        uint8_t L[ELM_QK_K];
        k4_imatrix(src + i * ELM_QK_K, qw + i * ELM_QK_K, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        elm_ref_q5_k_pack(&y[i], L);
    }
}
