/* blocks.h — byte layouts of ggml's quantized blocks, as stored in GGUF files.
 *
 * Each struct reproduces ggml's layout field for field (fp16 values are stored as raw uint16_t
 * and converted with fp16.h), and a _Static_assert pins every size so that a padding surprise or
 * a typo cannot silently change what a file means. A quantized row is an array of these blocks;
 * weights are read straight out of the mapped file, so the layouts must match to the byte.
 *
 * Legacy types (Q4_0 ... Q8_1) cover ELM_QK = 32 elements per block; the K-quants cover a
 * "super-block" of ELM_QK_K = 256 elements split into 16 or 8 sub-blocks with their own scales.
 */
#ifndef ELM_BLOCKS_H
#define ELM_BLOCKS_H

#include <stdint.h>

#define ELM_QK   32  /* elements per legacy block */
#define ELM_QK_K 256 /* elements per K-quant super-block */
/* 8 six-bit scales + 8 six-bit mins (Q4_K, Q5_K), or 16 six-bit scales (Q3_K), in 12 bytes */
#define ELM_K_SCALE_BYTES 12

/* x = d * (q - 8), q in 0..15; byte j holds element j (low nibble) and j+16 (high nibble). */
struct elm_block_q4_0 {
    uint16_t d;
    uint8_t qs[ELM_QK / 2];
};
_Static_assert(sizeof(struct elm_block_q4_0) == 18, "q4_0 block is 18 bytes");

/* x = d * q + m, q in 0..15; nibble order as Q4_0. */
struct elm_block_q4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[ELM_QK / 2];
};
_Static_assert(sizeof(struct elm_block_q4_1) == 20, "q4_1 block is 20 bytes");

/* x = d * (q - 16), q in 0..31: low 4 bits as Q4_0, bit 4 of element j is bit j of qh
 * (qh is 4 bytes, little-endian, not aligned: hence the byte array). */
struct elm_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[ELM_QK / 2];
};
_Static_assert(sizeof(struct elm_block_q5_0) == 22, "q5_0 block is 22 bytes");

/* x = d * q + m, q in 0..31; bits as Q5_0. */
struct elm_block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[ELM_QK / 2];
};
_Static_assert(sizeof(struct elm_block_q5_1) == 24, "q5_1 block is 24 bytes");

/* x = d * q, q in -127..127. */
struct elm_block_q8_0 {
    uint16_t d;
    int8_t qs[ELM_QK];
};
_Static_assert(sizeof(struct elm_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* Activation format for Q4_1/Q5_1: x = d * q, and s = d * sum(q) (fp16) so that the weight's
 * offset m contributes m * s without touching the quants. */
struct elm_block_q8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[ELM_QK];
};
_Static_assert(sizeof(struct elm_block_q8_1) == 36, "q8_1 block is 36 bytes");

/* Q2_K: 16 sub-blocks of 16. scales[i] = scale (low 4 bits) | min (high 4 bits);
 * x = d * scale * q - dmin * min, q in 0..3. qs: 2 bits per element, see ref/q_k.c for order. */
struct elm_block_q2_k {
    uint8_t scales[ELM_QK_K / 16];
    uint8_t qs[ELM_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
};
_Static_assert(sizeof(struct elm_block_q2_k) == 84, "q2_k block is 84 bytes");

/* Q3_K: 16 sub-blocks of 16, 6-bit signed scales (biased by 32) packed in 12 bytes;
 * x = d * (scale - 32) * (q - 4 * !hbit), low 2 bits in qs, third bit in hmask. */
struct elm_block_q3_k {
    uint8_t hmask[ELM_QK_K / 8];
    uint8_t qs[ELM_QK_K / 4];
    uint8_t scales[ELM_K_SCALE_BYTES];
    uint16_t d;
};
_Static_assert(sizeof(struct elm_block_q3_k) == 110, "q3_k block is 110 bytes");

/* Q4_K: 8 sub-blocks of 32, 6-bit scale and min each packed in 12 bytes;
 * x = d * scale * q - dmin * min, q in 0..15. */
struct elm_block_q4_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[ELM_K_SCALE_BYTES];
    uint8_t qs[ELM_QK_K / 2];
};
_Static_assert(sizeof(struct elm_block_q4_k) == 144, "q4_k block is 144 bytes");

/* Q5_K: as Q4_K plus a fifth bit per element in qh; q in 0..31. */
struct elm_block_q5_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[ELM_K_SCALE_BYTES];
    uint8_t qh[ELM_QK_K / 8];
    uint8_t qs[ELM_QK_K / 2];
};
_Static_assert(sizeof(struct elm_block_q5_k) == 176, "q5_k block is 176 bytes");

/* Q6_K: 16 sub-blocks of 16, int8 scales; x = d * scale * (q - 32), q in 0..63 with the low
 * 4 bits in ql and the high 2 bits in qh. */
struct elm_block_q6_k {
    uint8_t ql[ELM_QK_K / 2];
    uint8_t qh[ELM_QK_K / 4];
    int8_t scales[ELM_QK_K / 16];
    uint16_t d;
};
_Static_assert(sizeof(struct elm_block_q6_k) == 210, "q6_k block is 210 bytes");

/* Activation format for every K-quant: float scale, int8 quants, and the sum of each group of
 * 16 quants (bsums) so that the weights' per-sub-block minimums cost one multiply per group. */
struct elm_block_q8_k {
    float d;
    int8_t qs[ELM_QK_K];
    int16_t bsums[ELM_QK_K / 16];
};
_Static_assert(sizeof(struct elm_block_q8_k) == 292, "q8_k block is 292 bytes");

/* IQ4_NL: 32 elements, x = d * kvalues[q] with q a 4-bit index into a fixed non-linear table
 * (ELM_IQ4_VALUES: denser near zero, where most weights are); nibble order as Q4_0. */
struct elm_block_iq4_nl {
    uint16_t d;
    uint8_t qs[ELM_QK / 2];
};
_Static_assert(sizeof(struct elm_block_iq4_nl) == 18, "iq4_nl block is 18 bytes");

/* IQ4_XS: 8 sub-blocks of 32 with IQ4_NL's table, x = d * (ls - 32) * kvalues[q]; the 6-bit
 * sub-scale ls of sub-block j has its low 4 bits in nibble j % 2 of scales_l[j / 2] and its high
 * 2 bits in bits 2j, 2j+1 of scales_h; qs holds 16 bytes per sub-block in Q4_0's nibble order. */
struct elm_block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[ELM_QK_K / 64];
    uint8_t qs[ELM_QK_K / 2];
};
_Static_assert(sizeof(struct elm_block_iq4_xs) == 136, "iq4_xs block is 136 bytes");

/* The 16 values an IQ4 index stands for (ggml's kvalues_iq4nl). */
#define ELM_IQ4_VALUES                                                                             \
    {                                                                                              \
        -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113                   \
    }

#endif
