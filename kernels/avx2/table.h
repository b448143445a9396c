/* table.h — the kernel table and tile table of one SIMD variant, from the kernels of the
 * headers beside it. Included last by kernels/avx2/avx2.c and kernels/avx512/avx512.c, which
 * define ELM_VARIANT_NAME, ELM_VARIANT_TABLE and ELM_VARIANT_TILES first. Entries left out
 * (NULL) are filled from the reference by dispatch.c. */
#include "kernels/kernels.h"
#include "kernels/tiles.h"

const struct elm_kernels ELM_VARIANT_TABLE = {
    .name = ELM_VARIANT_NAME,
    .to_float =
        {
            [ELM_TYPE_Q4_0] = q4_0_to_float,
            [ELM_TYPE_Q4_1] = q4_1_to_float,
            [ELM_TYPE_Q5_0] = q5_0_to_float,
            [ELM_TYPE_Q5_1] = q5_1_to_float,
            [ELM_TYPE_Q8_0] = q8_0_to_float,
            [ELM_TYPE_F16] = f16_to_float,
            [ELM_TYPE_Q4_K] = q4_k_to_float,
            [ELM_TYPE_Q5_K] = q5_k_to_float,
            [ELM_TYPE_Q6_K] = q6_k_to_float,
            [ELM_TYPE_IQ4_NL] = iq4_nl_to_float,
            [ELM_TYPE_IQ4_XS] = iq4_xs_to_float,
        },
    .from_float =
        {
            [ELM_TYPE_Q8_0] = q8_0_from_float,
            [ELM_TYPE_Q8_1] = q8_1_from_float,
            [ELM_TYPE_Q8_K] = q8_k_from_float,
            [ELM_TYPE_F16] = f16_from_float,
        },
    .vec_dot =
        {
            [ELM_TYPE_F32] = f32_vec_dot,
            [ELM_TYPE_F16] = f16_vec_dot,
            [ELM_TYPE_BF16] = bf16_vec_dot,
            [ELM_TYPE_Q4_0] = q4_0_vec_dot,
            [ELM_TYPE_Q4_1] = q4_1_vec_dot,
            [ELM_TYPE_Q5_0] = q5_0_vec_dot,
            [ELM_TYPE_Q5_1] = q5_1_vec_dot,
            [ELM_TYPE_Q8_0] = q8_0_vec_dot,
            [ELM_TYPE_Q2_K] = q2_k_vec_dot,
            [ELM_TYPE_Q3_K] = q3_k_vec_dot,
            [ELM_TYPE_Q4_K] = q4_k_vec_dot,
            [ELM_TYPE_Q5_K] = q5_k_vec_dot,
            [ELM_TYPE_Q6_K] = q6_k_vec_dot,
            [ELM_TYPE_IQ4_NL] = iq4_nl_vec_dot,
            [ELM_TYPE_IQ4_XS] = iq4_xs_vec_dot,
        },
    .rmsnorm = simd_rmsnorm,
    .rope = simd_rope,
    .softmax = simd_softmax,
    .silu_mul = simd_silu_mul,
    .kv_dot = {[ELM_TYPE_F32] = simd_kv_dot_f32,
               [ELM_TYPE_F16] = simd_kv_dot_f16,
               [ELM_TYPE_Q8_0] = q8_0_vec_dot},
    .kv_dots = {[ELM_TYPE_F16] = simd_kv_dots_f16},
    .kv_dots_group = {[ELM_TYPE_F16] = simd_kv_dots_group_f16},
    .kv_mix = {[ELM_TYPE_F32] = simd_kv_mix_f32,
               [ELM_TYPE_F16] = simd_kv_mix_f16,
               [ELM_TYPE_Q8_0] = simd_kv_mix_q8_0},
    .kv_mix_group = {[ELM_TYPE_F32] = simd_kv_mix_group_f32,
                     [ELM_TYPE_F16] = simd_kv_mix_group_f16,
                     [ELM_TYPE_Q8_0] = simd_kv_mix_group_q8_0},
    .kv_fold = simd_kv_fold,
};

#define TILE(fn, dot, r, t, rg)                                                                    \
    {                                                                                              \
        .vec_dot = dot, .tile = fn, .rows = r, .toks = t, .rows_gemv = rg                          \
    }

/* A variant may give a type a tile of its own, with its own panel shape, by defining TILE_<TYPE>
 * before including this file (kernels/avx512/avx512.c). */
#ifndef TILE_Q4_0
#define TILE_Q4_0 TILE(q4_0_tile, q4_0_vec_dot, Q40_R, Q40_T, Q40_R_GEMV)
#endif
#ifndef TILE_Q4_1
#define TILE_Q4_1 TILE(q4_1_tile, q4_1_vec_dot, LEG_R, LEG_T, LEG_R_GEMV)
#endif
#ifndef TILE_Q5_0
#define TILE_Q5_0 TILE(q5_0_tile, q5_0_vec_dot, LEG_R, LEG_T, LEG_R_GEMV)
#endif
#ifndef TILE_Q5_1
#define TILE_Q5_1 TILE(q5_1_tile, q5_1_vec_dot, LEG_R, LEG_T, LEG_R_GEMV)
#endif
#ifndef TILE_Q8_0
#define TILE_Q8_0 TILE(q8_0_tile, q8_0_vec_dot, LEG_R, LEG_T, LEG_R_GEMV)
#endif
#ifndef TILE_Q2_K
#define TILE_Q2_K TILE(q2_k_tile, q2_k_vec_dot, KQ_R, KQ_T, KQ_R_GEMV)
#endif
#ifndef TILE_Q3_K
#define TILE_Q3_K TILE(q3_k_tile, q3_k_vec_dot, KQ_R, KQ_T, KQ_R_GEMV)
#endif
#ifndef TILE_Q4_K
#define TILE_Q4_K TILE(q4_k_tile, q4_k_vec_dot, KQ_R, KQ_T, KQ_R_GEMV)
#endif
#ifndef TILE_Q5_K
#define TILE_Q5_K TILE(q5_k_tile, q5_k_vec_dot, KQ_R, KQ_T, KQ_R_GEMV)
#endif
#ifndef TILE_Q6_K
#define TILE_Q6_K TILE(q6_k_tile, q6_k_vec_dot, KQ_R, KQ_T, KQ_R_GEMV)
#endif
#ifndef TILE_IQ4_NL
#define TILE_IQ4_NL TILE(iq4_nl_tile, iq4_nl_vec_dot, LEG_R, LEG_T, LEG_R_GEMV)
#endif
#ifndef TILE_IQ4_XS
#define TILE_IQ4_XS TILE(iq4_xs_tile, iq4_xs_vec_dot, LEG_R, LEG_T, LEG_R_GEMV)
#endif

const struct elm_tiles ELM_VARIANT_TILES = {
    .name = ELM_VARIANT_NAME,
    .k =
        {
            [ELM_TYPE_F32] = TILE(f32_tile, f32_vec_dot, FLT_R, FLT_T, FLT_R_GEMV),
            [ELM_TYPE_F16] = TILE(f16_tile, f16_vec_dot, FLT_R, FLT_T, FLT_R_GEMV),
            [ELM_TYPE_BF16] = TILE(bf16_tile, bf16_vec_dot, FLT_R, FLT_T, FLT_R_GEMV),
            [ELM_TYPE_Q4_0] = TILE_Q4_0,
            [ELM_TYPE_Q4_1] = TILE_Q4_1,
            [ELM_TYPE_Q5_0] = TILE_Q5_0,
            [ELM_TYPE_Q5_1] = TILE_Q5_1,
            [ELM_TYPE_Q8_0] = TILE_Q8_0,
            [ELM_TYPE_Q2_K] = TILE_Q2_K,
            [ELM_TYPE_Q3_K] = TILE_Q3_K,
            [ELM_TYPE_Q4_K] = TILE_Q4_K,
            [ELM_TYPE_Q5_K] = TILE_Q5_K,
            [ELM_TYPE_Q6_K] = TILE_Q6_K,
            [ELM_TYPE_IQ4_NL] = TILE_IQ4_NL,
            [ELM_TYPE_IQ4_XS] = TILE_IQ4_XS,
        },
};
