/* ref.h — the portable scalar reference kernels, one set per type, and the helpers they share.
 *
 * These functions are the oracle: every SIMD variant is tested against them, and elm's
 * quantizer uses them to write files. They follow ggml's definitions exactly where exactness is
 * possible: block layouts, the weight quantizers (ggml's *_ref functions, which llama-quantize
 * runs when there is no importance matrix), and the activation quantizers (what ggml's x86 build
 * runs). Dot products take exact integer sums per block and scale them in float, as ggml does;
 * only the order of the float additions may differ from a given SIMD build.
 *
 * dispatch.c collects them into elm_kernels_ref. Nothing outside kernels/ includes this file.
 */
#ifndef ELM_KERNELS_REF_H
#define ELM_KERNELS_REF_H

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
