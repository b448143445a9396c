/* q_k.c — dequantization and dot products of the K-quants (Q2_K ... Q6_K) and the Q8_K
 * activation format they are multiplied with. Weight quantizers are in q_k_quant.c.
 *
 * A K-quant super-block covers 256 elements in sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32
 * (Q4_K, Q5_K) with small integer scales under one fp16 super-scale d; Q2_K/Q4_K/Q5_K also
 * subtract a per-sub-block minimum under a second super-scale dmin.
 *
 * Dot products follow ggml's decomposition:
 *   sum_i w_i a_i = d_a * ( d * sum_sub sc_sub * sum(q * qa)  -  dmin * sum_sub m_sub * sum(qa) )
 * The inner sums are exact integers. sum(qa) over each 16 elements is precomputed in the Q8_K
 * block (bsums), which is why Q8_K exists: the minimum term costs 16 multiplies per block.
 * The float part reproduces the x86 build the references came from (docs/kernels.md): eight
 * float lanes, lane k holding the scaled integer products of elements 4k..4k+3 of every run of
 * 32, advanced by fmaf(d_a * d, lane sum, lane) once per super-block; the minimum terms go into
 * the same lanes (Q2_K), four lanes of their own (Q4_K) or a scalar fmaf chain (Q5_K).
 *
 * Q8_K activations: ggml's x86 build runs the portable quantize_row_q8_K_ref, so this is exact:
 * scale -127/max with the signed largest element (it maps to -127), values rounded half to even,
 * d stored as a float (1/iscale). The -127 (not -128) is what ggml has used since its IQ2 types.
 */
#include <math.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/ref/ref.h"

/* ---- Q8_K -------------------------------------------------------------------------------- */

void elm_ref_q8_k_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q8_k *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float *x = src + i * ELM_QK_K;
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < ELM_QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < ELM_QK_K; j++) {
            int v = elm_round_even(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < ELM_QK_K / 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void elm_ref_q8_k_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q8_k *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++)
        for (int j = 0; j < ELM_QK_K; j++)
            dst[i * ELM_QK_K + j] = x[i].d * (float)x[i].qs[j];
}

/* ---- the lane layout of the super-block dot products ------------------------------------ */

/* lane[k] = sum over the 8 runs of 32 elements r of sc16[2r + (k >= 4)] * (the integer products
 * of elements 32r + 4k .. 32r + 4k + 3). sc16 is the scale of each group of 16 (a scale of 32
 * elements is given twice). Exact in int32 for every K-quant. */
static void k_lanes(const int prod[ELM_QK_K], const int sc16[16], int32_t lane[8])
{
    for (int k = 0; k < 8; k++) {
        int32_t sum = 0;
        for (int r = 0; r < 8; r++) {
            const int *p = prod + 32 * r + 4 * k;
            sum += sc16[2 * r + (k >= 4)] * (p[0] + p[1] + p[2] + p[3]);
        }
        lane[k] = sum;
    }
}

static void k_lanes_fma(float acc[8], float d, const int prod[ELM_QK_K], const int sc16[16])
{
    int32_t lane[8];
    k_lanes(prod, sc16, lane);
    for (int k = 0; k < 8; k++)
        acc[k] = fmaf(d, (float)lane[k], acc[k]);
}

/* The minimum term of Q4_K/Q5_K in four integer lanes: lane k covers sub-blocks 2k and 2k+1,
 * each minimum times the sum of its 32 activations. */
static void k4_min_lanes(const uint8_t *packed, const int16_t bsums[16], int32_t lane[4])
{
    for (int k = 0; k < 4; k++) {
        lane[k] = 0;
        for (int j = 2 * k; j < 2 * k + 2; j++) {
            uint8_t sc, m;
            elm_k4_scale_min(packed, j, &sc, &m);
            lane[k] += m * (bsums[2 * j] + bsums[2 * j + 1]);
        }
    }
}

/* ---- Q2_K: x = d * sc * q - dmin * m, q in 0..3, 16 sub-blocks of 16 ------------------ */

/* Quant j of a Q2_K/Q3_K 2-bit field (see pack_2bit in q_k_quant.c). */
static inline int q2_at(const uint8_t *qs, int j)
{
    const int half = j / 128, r = j % 128;
    return (qs[32 * half + r % 32] >> (2 * (r / 32))) & 3;
}

void elm_ref_q2_k_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q2_k *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        const float dmin = elm_fp16_to_f32(x[i].dmin);
        float *y = dst + i * ELM_QK_K;
        for (int j = 0; j < ELM_QK_K; j++) {
            const uint8_t sc = x[i].scales[j / 16];
            const float dl = d * (float)(sc & 0x0f);
            const float ml = dmin * (float)(sc >> 4);
            y[j] = dl * (float)q2_at(x[i].qs, j) - ml;
        }
    }
}

void elm_ref_q2_k_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q2_k *x = w;
    const struct elm_block_q8_k *y = a;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = y[i].d * elm_fp16_to_f32(x[i].d);
        const float dmin = -(y[i].d * elm_fp16_to_f32(x[i].dmin));
        /* minimum term first, in the same lanes: lane k covers sub-blocks 2k and 2k+1 */
        for (int k = 0; k < 8; k++) {
            const int32_t mins = (x[i].scales[2 * k] >> 4) * y[i].bsums[2 * k] +
                                 (x[i].scales[2 * k + 1] >> 4) * y[i].bsums[2 * k + 1];
            acc[k] = fmaf(dmin, (float)mins, acc[k]);
        }
        int prod[ELM_QK_K], sc16[16];
        for (int j = 0; j < ELM_QK_K; j++)
            prod[j] = q2_at(x[i].qs, j) * y[i].qs[j];
        for (int g = 0; g < 16; g++)
            sc16[g] = x[i].scales[g] & 0x0f;
        k_lanes_fma(acc, d, prod, sc16);
    }
    *s = elm_hsum8(acc);
}

/* ---- Q3_K: x = d * (sc - 32) * (q - 4 * !hbit), 16 sub-blocks of 16 ------------------- */

static inline int q3_at(const struct elm_block_q3_k *b, int j)
{
    const int hbit = (b->hmask[j % 32] >> (j / 32)) & 1;
    return q2_at(b->qs, j) - (hbit ? 0 : 4);
}

void elm_ref_q3_k_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q3_k *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        int8_t sc[16];
        elm_k3_scales(x[i].scales, sc);
        float *y = dst + i * ELM_QK_K;
        for (int j = 0; j < ELM_QK_K; j++)
            y[j] = d * (float)sc[j / 16] * (float)q3_at(&x[i], j);
    }
}

void elm_ref_q3_k_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q3_k *x = w;
    const struct elm_block_q8_k *y = a;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        int8_t sc[16];
        elm_k3_scales(x[i].scales, sc);
        int prod[ELM_QK_K], sc16[16];
        for (int j = 0; j < ELM_QK_K; j++)
            prod[j] = q3_at(&x[i], j) * y[i].qs[j];
        for (int g = 0; g < 16; g++)
            sc16[g] = sc[g];
        k_lanes_fma(acc, y[i].d * elm_fp16_to_f32(x[i].d), prod, sc16);
    }
    *s = elm_hsum8(acc);
}

/* ---- Q4_K: x = d * sc * q - dmin * m, q in 0..15, 8 sub-blocks of 32 ------------------- */

/* Element j of a Q4_K/Q5_K nibble field: 32-byte run j / 64, low nibble for the first 32. */
static inline int q4_at(const uint8_t *qs, int j)
{
    const uint8_t b = qs[32 * (j / 64) + j % 32];
    return (j % 64) < 32 ? b & 0x0f : b >> 4;
}

void elm_ref_q4_k_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q4_k *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        const float dmin = elm_fp16_to_f32(x[i].dmin);
        float *y = dst + i * ELM_QK_K;
        for (int sb = 0; sb < 8; sb++) {
            uint8_t sc, m;
            elm_k4_scale_min(x[i].scales, sb, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                y[32 * sb + l] = dl * (float)q4_at(x[i].qs, 32 * sb + l) - ml;
        }
    }
}

void elm_ref_q4_k_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q4_k *x = w;
    const struct elm_block_q8_k *y = a;
    float acc[8] = {0}, acc_m[4] = {0};
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = y[i].d * elm_fp16_to_f32(x[i].d);
        const float dmin = -(y[i].d * elm_fp16_to_f32(x[i].dmin));
        int32_t mins[4];
        k4_min_lanes(x[i].scales, y[i].bsums, mins);
        for (int k = 0; k < 4; k++)
            acc_m[k] = fmaf(dmin, (float)mins[k], acc_m[k]);
        int prod[ELM_QK_K], sc16[16];
        for (int j = 0; j < ELM_QK_K; j++)
            prod[j] = q4_at(x[i].qs, j) * y[i].qs[j];
        for (int sb = 0; sb < 8; sb++) {
            uint8_t sc, m;
            elm_k4_scale_min(x[i].scales, sb, &sc, &m);
            sc16[2 * sb] = sc16[2 * sb + 1] = sc;
        }
        k_lanes_fma(acc, d, prod, sc16);
    }
    /* the four minimum lanes fold as a 128-bit register: 2,3 onto 0,1, then 1 onto 0 */
    *s = elm_hsum8(acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]));
}

/* ---- Q5_K: Q4_K plus a fifth bit in qh ------------------------------------------------- */

static inline int q5_at(const struct elm_block_q5_k *b, int j)
{
    /* bit 4 of element j: qh[j % 32], bit 2 * (j / 64) for the first 32 of each 64, +1 after */
    const int bit = 2 * (j / 64) + ((j % 64) >= 32);
    return q4_at(b->qs, j) | (((b->qh[j % 32] >> bit) & 1) << 4);
}

void elm_ref_q5_k_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q5_k *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        const float dmin = elm_fp16_to_f32(x[i].dmin);
        float *y = dst + i * ELM_QK_K;
        for (int sb = 0; sb < 8; sb++) {
            uint8_t sc, m;
            elm_k4_scale_min(x[i].scales, sb, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                y[32 * sb + l] = dl * (float)q5_at(&x[i], 32 * sb + l) - ml;
        }
    }
}

void elm_ref_q5_k_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q5_k *x = w;
    const struct elm_block_q8_k *y = a;
    float acc[8] = {0}, summs = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = y[i].d * elm_fp16_to_f32(x[i].d);
        const float dmin = -(y[i].d * elm_fp16_to_f32(x[i].dmin));
        int32_t mins[4];
        k4_min_lanes(x[i].scales, y[i].bsums, mins);
        /* here the minimum term is one integer, added into a scalar fused chain */
        summs = fmaf(dmin, (float)((mins[0] + mins[1]) + (mins[2] + mins[3])), summs);
        int prod[ELM_QK_K], sc16[16];
        for (int j = 0; j < ELM_QK_K; j++)
            prod[j] = q5_at(&x[i], j) * y[i].qs[j];
        for (int sb = 0; sb < 8; sb++) {
            uint8_t sc, m;
            elm_k4_scale_min(x[i].scales, sb, &sc, &m);
            sc16[2 * sb] = sc16[2 * sb + 1] = sc;
        }
        k_lanes_fma(acc, d, prod, sc16);
    }
    *s = elm_hsum8(acc) + summs;
}

/* ---- Q6_K: x = d * sc * (q - 32), int8 scales, 16 sub-blocks of 16 --------------------- */

static inline int q6_at(const struct elm_block_q6_k *b, int j)
{
    /* within each 128-element half: element r's low nibble is in ql[64h + r % 64] (low nibble
     * for r < 64, high nibble after), its top two bits in qh[32h + r % 32], pair r / 32 */
    const int h = j / 128, r = j % 128;
    const uint8_t lb = b->ql[64 * h + r % 64];
    const int lo = r < 64 ? lb & 0x0f : lb >> 4;
    const int hi = (b->qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
    return (lo | (hi << 4)) - 32;
}

void elm_ref_q6_k_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q6_k *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        float *y = dst + i * ELM_QK_K;
        for (int j = 0; j < ELM_QK_K; j++)
            y[j] = d * (float)x[i].scales[j / 16] * (float)q6_at(&x[i], j);
    }
}

void elm_ref_q6_k_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q6_k *x = w;
    const struct elm_block_q8_k *y = a;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        int prod[ELM_QK_K], sc16[16];
        for (int j = 0; j < ELM_QK_K; j++)
            prod[j] = q6_at(&x[i], j) * y[i].qs[j];
        for (int g = 0; g < 16; g++)
            sc16[g] = x[i].scales[g];
        k_lanes_fma(acc, y[i].d * elm_fp16_to_f32(x[i].d), prod, sc16);
    }
    *s = elm_hsum8(acc);
}
