/* ops.h — NEON kernels of the operations around the matmuls that a decode step repeats over the
 * whole context: attention's scores (kv_dot over F32/F16 caches), its weighted sum of value rows
 * (kv_mix over F32/F16/Q8_0 caches) and the fold of that sum's lanes (kv_fold), plus rmsnorm.
 * Compiled once per ARM variant (simd.h); included only by the variant files.
 *
 * Each gives the reference's bits (kernels/ref/ops.c), whose orders are those of a 512-bit
 * register: its 16 lanes are four float32x4_t here (lanes 0..3, 4..7, 8..11, 12..15), every
 * fmaf a vfmaq, every fold the reference's pairs. Where the reference walks one chain per lane
 * (kv_dot F16, kv_mix), the lanes are independent and NEON takes four at a time.
 *
 * Left to the reference: softmax and SiLU (their exp scales by 2^n in one rounding, which NEON
 * has no instruction for where the result is subnormal), rope (a few dozen pairs per head) and
 * the F32/F16/BF16 dot products (one double chain per row; x86 gains there only in its tiles).
 */
#ifndef ELM_ARM_OPS_H
#define ELM_ARM_OPS_H

#include "kernels/arm/q_legacy.h"
#include "kernels/arm/simd.h"
#include "kernels/blocks.h"

/* 16 lanes in four registers (a[0] = lanes 0..3, ...) folded as elm_hsum16: lanes l and l + 8
 * first, then elm_hsum8 of the eight sums (hsum8_f32). */
ALWAYS_INLINE float hsum16_f32(const float32x4_t a[4])
{
    return hsum8_f32(vaddq_f32(a[0], a[2]), vaddq_f32(a[1], a[3]));
}

/* Four halves at p as floats (exact). */
ALWAYS_INLINE float32x4_t load_h4(const uint16_t *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

/* ---- rmsnorm --------------------------------------------------------------------------------- */

static void simd_rmsnorm(float *y, const float *x, const float *g, int64_t n, float eps)
{
    /* the squares four at a time; their double sum stays one chain in element order */
    double ss = 0.0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float sq[4];
        const float32x4_t v = vld1q_f32(x + i);
        vst1q_f32(sq, vmulq_f32(v, v));
        UNROLL for (int l = 0; l < 4; l++) ss += (double)sq[l];
    }
    for (; i < n; i++)
        ss += (double)(x[i] * x[i]);
    const float mean = (float)(ss / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (i = 0; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vld1q_f32(g + i)));
    for (; i < n; i++)
        y[i] = (x[i] * scale) * g[i];
}

/* ---- attention: scores ----------------------------------------------------------------------- */

static void simd_kv_dot_f32(int64_t n, float *s, const void *k, const void *q)
{
    const float *x = k, *y = q;
    float32x4_t acc[4][4];
    UNROLL for (int j = 0; j < 4; j++) UNROLL for (int c = 0; c < 4; c++) acc[j][c] =
        vdupq_n_f32(0.0f);
    const int64_t np = n - n % 64;
    for (int64_t i = 0; i < np; i += 64)
        UNROLL for (int j = 0; j < 4; j++) UNROLL for (int c = 0; c < 4; c++) acc[j][c] = vfmaq_f32(
            acc[j][c], vld1q_f32(x + i + 16 * j + 4 * c), vld1q_f32(y + i + 16 * j + 4 * c));
    float32x4_t lane[4];
    UNROLL for (int c = 0; c < 4; c++) lane[c] =
        vaddq_f32(vaddq_f32(acc[0][c], acc[2][c]), vaddq_f32(acc[1][c], acc[3][c]));
    float sum = hsum16_f32(lane);
    /* the tail as the reference adds it: rounded products, the last n % 8 fused */
    const int64_t nf = n - n % 8;
    int64_t i = np;
    for (; i < nf; i++)
        sum += x[i] * y[i];
    for (; i < n; i++)
        sum = fmaf(x[i], y[i], sum);
    *s = sum;
}

static void simd_kv_dot_f16(int64_t n, float *s, const void *k, const void *q)
{
    const uint16_t *x = k, *y = q;
    float32x4_t lane[4];
    UNROLL for (int c = 0; c < 4; c++) lane[c] = vdupq_n_f32(0.0f);
    const int64_t nv = n - n % 16;
    for (int64_t i = 0; i < nv; i += 16)
        UNROLL for (int c = 0; c < 4; c++) lane[c] =
            vfmaq_f32(lane[c], load_h4(x + i + 4 * c), load_h4(y + i + 4 * c));
    /* a partial last group continues lanes 0.. of the same chains */
    float t[16];
    UNROLL for (int c = 0; c < 4; c++) vst1q_f32(t + 4 * c, lane[c]);
    for (int64_t i = nv; i < n; i++)
        t[i - nv] = fmaf(h2f(x[i]), h2f(y[i]), t[i - nv]);
    UNROLL for (int c = 0; c < 4; c++) lane[c] = vld1q_f32(t + 4 * c);
    *s = hsum16_f32(lane);
}

/* ---- attention: weighted sum of value rows --------------------------------------------------- */

/* lane[d] = fmaf(v(d), wp, lane[d]) for d < hd, v(d) four at a time from vrow4 */
#define KV_MIX_ROW(hd, lane, wp, vrow4, vscalar)                                                   \
    do {                                                                                           \
        int64_t d_ = 0;                                                                            \
        for (; d_ + 4 <= (hd); d_ += 4)                                                            \
            vst1q_f32((lane) + d_, vfmaq_n_f32(vld1q_f32((lane) + d_), vrow4(d_), (wp)));          \
        for (; d_ < (hd); d_++)                                                                    \
            (lane)[d_] = fmaf(vscalar(d_), (wp), (lane)[d_]);                                      \
    } while (0)

static void simd_kv_mix_f32(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                            int64_t v_stride)
{
    for (int64_t p = 0; p < n; p++) {
        const float *row = (const float *)((const char *)v + p * v_stride);
        float *lane = lanes + (p % 16) * hd;
#define F32_4(d) vld1q_f32(row + (d))
#define F32_1(d) row[d]
        KV_MIX_ROW(hd, lane, w[p], F32_4, F32_1);
#undef F32_4
#undef F32_1
    }
}

static void simd_kv_mix_f16(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                            int64_t v_stride)
{
    for (int64_t p = 0; p < n; p++) {
        const uint16_t *row = (const uint16_t *)((const char *)v + p * v_stride);
        const float wp = h2f(f2h(w[p])); /* the weight rounded to the cache type, as ref */
        float *lane = lanes + (p % 16) * hd;
#define F16_4(d) load_h4(row + (d))
#define F16_1(d) h2f(row[d])
        KV_MIX_ROW(hd, lane, wp, F16_4, F16_1);
#undef F16_4
#undef F16_1
    }
}

/* hd is a multiple of 32 (kernels.h): whole blocks, each value d * q (exact) times the weight. */
static void simd_kv_mix_q8_0(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                             int64_t v_stride)
{
    for (int64_t p = 0; p < n; p++) {
        const struct elm_block_q8_0 *b =
            (const struct elm_block_q8_0 *)((const char *)v + p * v_stride);
        float *lane = lanes + (p % 16) * hd;
        for (int64_t i = 0; i < hd / ELM_QK; i++) {
            const float d = h2f(b[i].d);
            float x[ELM_QK];
            bytes_to_float16(vld1q_s8(b[i].qs), d, x);
            bytes_to_float16(vld1q_s8(b[i].qs + 16), d, x + 16);
            float *l = lane + i * ELM_QK;
            UNROLL for (int c = 0; c < ELM_QK / 4; c++)
                vst1q_f32(l + 4 * c, vfmaq_n_f32(vld1q_f32(l + 4 * c), vld1q_f32(x + 4 * c), w[p]));
        }
    }
}

static void simd_kv_fold(int64_t hd, const float *lanes, float *out)
{
    int64_t d = 0;
    for (; d + 4 <= hd; d += 4) {
        float32x4_t h[8];
        UNROLL for (int l = 0; l < 8; l++) h[l] =
            vaddq_f32(vld1q_f32(lanes + l * hd + d), vld1q_f32(lanes + (l + 8) * hd + d));
        /* elm_hsum8 of h, output by output: ((h0+h4) + (h2+h6)) + ((h1+h5) + (h3+h7)) */
        const float32x4_t r0 = vaddq_f32(h[0], h[4]), r1 = vaddq_f32(h[1], h[5]);
        const float32x4_t r2 = vaddq_f32(h[2], h[6]), r3 = vaddq_f32(h[3], h[7]);
        vst1q_f32(out + d, vaddq_f32(vaddq_f32(r0, r2), vaddq_f32(r1, r3)));
    }
    for (; d < hd; d++) {
        float32x4_t a[4];
        UNROLL for (int c = 0; c < 4; c++)
        {
            const float t[4] = {lanes[(4 * c) * hd + d], lanes[(4 * c + 1) * hd + d],
                                lanes[(4 * c + 2) * hd + d], lanes[(4 * c + 3) * hd + d]};
            a[c] = vld1q_f32(t);
        }
        out[d] = hsum16_f32(a);
    }
}

#endif
