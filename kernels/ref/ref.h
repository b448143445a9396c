/* ref.h — the portable scalar reference kernels (one set per type, plus the operations of
 * ops.c) and the helpers they share.
 *
 * These functions are the oracle: every SIMD variant is tested against them, and elm's
 * quantizer uses them to write files. They follow ggml's definitions exactly where exactness is
 * possible: block layouts, the weight quantizers (ggml's *_ref functions, which llama-quantize
 * runs when there is no importance matrix), and the activation quantizers (what ggml's x86 build
 * runs). Dot products take exact integer sums per block and add them in float in the order of
 * the x86 SIMD build the zoo references were computed with, and ops.c does the same for the
 * other operations of the forward pass, so that elm reproduces those references bit for bit
 * (docs/kernels.md).
 *
 * dispatch.c collects them into elm_kernels_ref. Nothing outside kernels/ includes this file.
 */
#ifndef ELM_KERNELS_REF_H
#define ELM_KERNELS_REF_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Round to nearest, ties to even, for |x| < 2^22, without calling libm. Adding 1.5 * 2^23 moves
 * x into the binade where the float spacing is exactly 1, so the FPU's default rounding (to
 * nearest even) performs the rounding; the low mantissa bits then hold the integer (offset by
 * 2^22). ggml's K-quant code rounds this way, so using the same rule keeps ties identical. */
static inline int elm_round_even(float x)
{
    float biased = x + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* ---- the float arithmetic of the reference outputs ------------------------------------------
 * The zoo references were computed by llama.cpp's x86 build with 8- and 16-lane SIMD. Adding the
 * same products in a different order gives different last bits, and a last-bit change in an
 * activation can flip its rounding when the next matmul quantizes it, which random-weight models
 * amplify. So the reference kernels add in exactly the order of those SIMD loops (see
 * docs/kernels.md): a lane array stands for a vector register, fmaf() for a fused multiply-add
 * instruction (elm builds with contraction off, so every other a * b + c rounds twice). */

/* The sum of 8 float lanes as x86 code folds a 256-bit register: the high half onto the low
 * half, then lanes 2,3 onto 0,1, then lane 1 onto lane 0. */
static inline float elm_hsum8(const float a[8])
{
    const float r0 = a[0] + a[4], r1 = a[1] + a[5], r2 = a[2] + a[6], r3 = a[3] + a[7];
    return (r0 + r2) + (r1 + r3);
}

/* The sum of 16 float lanes folded the same way (a 512-bit register: 16 -> 8 -> 4 -> 2 -> 1). */
static inline float elm_hsum16(const float a[16])
{
    float h[8];
    for (int l = 0; l < 8; l++)
        h[l] = a[l] + a[l + 8];
    return elm_hsum8(h);
}

/* ---- float types (ref/float.c) ---------------------------------------------------------- */
void elm_ref_f32_to_float(const void *src, float *dst, int64_t n);
void elm_ref_f32_from_float(const float *src, void *dst, int64_t n);
void elm_ref_f32_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_f16_to_float(const void *src, float *dst, int64_t n);
void elm_ref_f16_from_float(const float *src, void *dst, int64_t n);
void elm_ref_f16_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_bf16_to_float(const void *src, float *dst, int64_t n);
void elm_ref_bf16_from_float(const float *src, void *dst, int64_t n);
void elm_ref_bf16_vec_dot(int64_t n, float *s, const void *w, const void *a);

/* ---- legacy 32-element blocks (ref/q_legacy.c) ------------------------------------------ */
void elm_ref_q4_0_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q4_0_from_float(const float *src, void *dst, int64_t n);
void elm_ref_q4_0_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_q4_1_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q4_1_from_float(const float *src, void *dst, int64_t n);
void elm_ref_q4_1_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_q5_0_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q5_0_from_float(const float *src, void *dst, int64_t n);
void elm_ref_q5_0_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_q5_1_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q5_1_from_float(const float *src, void *dst, int64_t n);
void elm_ref_q5_1_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_q8_0_to_float(const void *src, float *dst, int64_t n);
/* Activation rounding of ggml's x86 build (scale 127/amax, ties to even): from_float[Q8_0]. */
void elm_ref_q8_0_from_float(const float *src, void *dst, int64_t n);
/* Weight rounding of ggml's quantize_row_q8_0_ref (scale 1/d, ties away from zero). */
void elm_ref_q8_0_quantize_weights(const float *src, void *dst, int64_t n);
void elm_ref_q8_0_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_q8_1_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q8_1_from_float(const float *src, void *dst, int64_t n);

/* ---- K-quants, 256-element super-blocks (ref/q_k.c, ref/q_k_quant.c) -------------------- */
void elm_ref_q2_k_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q2_k_from_float(const float *src, void *dst, int64_t n);
void elm_ref_q2_k_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_q3_k_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q3_k_from_float(const float *src, void *dst, int64_t n);
void elm_ref_q3_k_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_q4_k_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q4_k_from_float(const float *src, void *dst, int64_t n);
void elm_ref_q4_k_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_q5_k_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q5_k_from_float(const float *src, void *dst, int64_t n);
void elm_ref_q5_k_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_q6_k_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q6_k_from_float(const float *src, void *dst, int64_t n);
void elm_ref_q6_k_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_q8_k_to_float(const void *src, float *dst, int64_t n);
void elm_ref_q8_k_from_float(const float *src, void *dst, int64_t n);

/* Shared by the K-quant quantizers with and without an importance matrix (q_k_quant.c):
 * the symmetric fit of ggml's make_qx_quants (rmse_type 1; weights qw, or x^2 when NULL), the
 * asymmetric scale/min fit of make_qkx2/qkx3_quants, and the 2-bit and 6-bit field packing. */
float elm_ref_fit_symmetric(int n, int nmax, const float *x, int8_t *L, const float *qw);
float elm_ref_fit_scale_min(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                            float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                            bool use_mad);
void elm_ref_pack_2bit(uint8_t *qs, const uint8_t *L);
void elm_ref_pack_k4_scales(uint8_t *packed, const uint8_t *ls, const uint8_t *lm);
/* The last steps once a super-block's scales are set: re-round every element against the scale
 * (and min) it decodes with, then pack (L: the fitted quants, overwritten). */
struct elm_block_q2_k;
struct elm_block_q3_k;
struct elm_block_q4_k;
struct elm_block_q5_k;
void elm_ref_q2_k_finish(struct elm_block_q2_k *y, const float *x, uint8_t *L);
void elm_ref_q3_k_finish(struct elm_block_q3_k *y, const float *x, int8_t *L);
void elm_ref_k4_requantize(const float *x, uint16_t d16, uint16_t dmin16, const uint8_t *packed,
                           uint8_t *L, int nmax);
void elm_ref_q4_k_pack(struct elm_block_q4_k *y, const uint8_t *L);
void elm_ref_q5_k_pack(struct elm_block_q5_k *y, const uint8_t *L);

/* ---- IQ4_NL / IQ4_XS (ref/iq4.c) --------------------------------------------------------- */
void elm_ref_iq4_nl_to_float(const void *src, float *dst, int64_t n);
void elm_ref_iq4_nl_from_float(const float *src, void *dst, int64_t n);
void elm_ref_iq4_nl_vec_dot(int64_t n, float *s, const void *w, const void *a);
void elm_ref_iq4_xs_to_float(const void *src, float *dst, int64_t n);
void elm_ref_iq4_xs_from_float(const float *src, void *dst, int64_t n);
void elm_ref_iq4_xs_vec_dot(int64_t n, float *s, const void *w, const void *a);
/* The quantizers with an importance matrix qw (n values, or NULL: from_float). */
void elm_ref_iq4_nl_quantize(const float *src, void *dst, int64_t n, const float *qw);
void elm_ref_iq4_xs_quantize(const float *src, void *dst, int64_t n, const float *qw);

/* ---- importance-weighted quantizers (ref/q_imatrix.c) --------------------------------------
 * ggml's quantize_row_*_impl for a whole row of n values with the imatrix qw (n values, not
 * NULL): what llama-quantize runs for these types when it has an importance matrix. */
void elm_ref_q4_0_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void elm_ref_q4_1_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void elm_ref_q5_0_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void elm_ref_q5_1_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void elm_ref_q2_k_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void elm_ref_q3_k_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void elm_ref_q4_k_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void elm_ref_q5_k_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw);
void elm_ref_q6_k_quantize_imatrix(const float *src, void *dst, int64_t n, const float *qw);

/* ---- operations around the matmuls (ref/ops.c) ------------------------------------------- */
void elm_ref_rmsnorm(float *y, const float *x, const float *g, int64_t n, float eps);
void elm_ref_rope_table(float *cs, int n_rot, int32_t pos, float base, float scale);
void elm_ref_rope(float *x, int n_rot, const float *cs, bool neox);
void elm_ref_softmax(float *x, int64_t n);
void elm_ref_silu_mul(float *g, const float *u, int64_t n);
void elm_ref_kv_dot_f32(int64_t n, float *s, const void *k, const void *q);
void elm_ref_kv_dot_f16(int64_t n, float *s, const void *k, const void *q);
/* kv_mix accumulates into lanes[16][hd] (kernels.h); kv_fold folds them */
void elm_ref_kv_mix_f32(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                        int64_t v_stride);
void elm_ref_kv_mix_f16(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                        int64_t v_stride);
void elm_ref_kv_mix_q8_0(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                         int64_t v_stride);
void elm_ref_kv_fold(int64_t hd, const float *lanes, float *out);
/* kv_mix over n_lanes lanes (16: the default order; 8: llama.cpp's AVX2 order, order8.c) */
void elm_ref_kv_mix_f32_lanes(int n_lanes, int64_t n, int64_t hd, float *lanes, const float *w,
                              const void *v, int64_t v_stride);
void elm_ref_kv_mix_f16_lanes(int n_lanes, int64_t n, int64_t hd, float *lanes, const float *w,
                              const void *v, int64_t v_stride);
void elm_ref_kv_mix_q8_0_lanes(int n_lanes, int64_t n, int64_t hd, float *lanes, const float *w,
                               const void *v, int64_t v_stride);
/* the same operations in llama.cpp's AVX2 order (ref/order8.c, ELM_ORDER_AVX2) */
void elm_ref8_softmax(float *x, int64_t n);
void elm_ref8_silu_mul(float *g, const float *u, int64_t n);
void elm_ref8_kv_dot_f32(int64_t n, float *s, const void *k, const void *q);
void elm_ref8_kv_dot_f16(int64_t n, float *s, const void *k, const void *q);
void elm_ref8_kv_mix_f32(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                         int64_t v_stride);
void elm_ref8_kv_mix_f16(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                         int64_t v_stride);
void elm_ref8_kv_mix_q8_0(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                          int64_t v_stride);
void elm_ref8_kv_fold(int64_t hd, const float *lanes, float *out);

/* Unpacks the 12-byte 6-bit scale/min field of Q4_K and Q5_K: sub-block j (0..7). */
static inline void elm_k4_scale_min(const uint8_t *packed, int j, uint8_t *scale, uint8_t *min)
{
    if (j < 4) {
        /* the first four live in the low 6 bits of bytes 0..3 (scales) and 4..7 (mins) */
        *scale = packed[j] & 63;
        *min = packed[j + 4] & 63;
    } else {
        /* the last four: low 4 bits in the nibbles of bytes 8..11, high 2 bits in the top bits
         * of bytes 0..3 (scales) and 4..7 (mins) */
        *scale = (uint8_t)((packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4));
        *min = (uint8_t)((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
    }
}

/* elm_k3_scales' 16 values plus 32 (0..63), as the four little-endian words of bytes 0..3, 4..7,
 * 8..11 and 12..15, by llama.cpp's word arithmetic: what the SIMD kernels load as one vector
 * and subtract 32 from. */
static inline void elm_k3_scale_words(const uint8_t *packed, uint32_t w[4])
{
    uint32_t a[3];
    memcpy(a, packed, sizeof a);
    const uint32_t m2 = 0x03030303u, m4 = 0x0f0f0f0fu;
    w[0] = (a[0] & m4) | ((a[2] & m2) << 4);
    w[1] = (a[1] & m4) | (((a[2] >> 2) & m2) << 4);
    w[2] = ((a[0] >> 4) & m4) | (((a[2] >> 4) & m2) << 4);
    w[3] = ((a[1] >> 4) & m4) | (((a[2] >> 6) & m2) << 4);
}

/* Unpacks Q3_K's 16 six-bit scales (stored biased by 32) into signed values. */
static inline void elm_k3_scales(const uint8_t *packed, int8_t out[16])
{
    for (int j = 0; j < 16; j++) {
        /* low nibble: byte j for j < 8, else the high nibble of byte j - 8;
         * top two bits: byte 8 + j % 4, bit pair j / 4 */
        int lo = j < 8 ? packed[j] & 0x0f : packed[j - 8] >> 4;
        int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

#endif
