/* table.h — the kernel table and tile table of one ARM variant, from the kernels of the headers
 * beside it. Included last by kernels/arm/neon.c, dotprod.c and i8mm.c, which define
 * ELM_VARIANT_NAME, ELM_VARIANT_TABLE and ELM_VARIANT_TILES first. Entries left out (NULL) are
 * filled from the reference by dispatch.c: the dequantizers other than Q4_0/Q8_0/F16, the
 * F32/F16/BF16 dot products, the weight quantizers, rope, softmax and SiLU run the reference's
 * code, correct and slower (ops.h says why). */
#include "kernels/kernels.h"
#include "kernels/tiles.h"

const struct elm_kernels ELM_VARIANT_TABLE = {
    .name = ELM_VARIANT_NAME,
    .to_float =
        {
            [ELM_TYPE_Q4_0] = q4_0_to_float,
            [ELM_TYPE_Q8_0] = q8_0_to_float,
            [ELM_TYPE_F16] = f16_to_float,
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
        },
    .rmsnorm = simd_rmsnorm,
    .kv_dot = {[ELM_TYPE_F32] = simd_kv_dot_f32,
               [ELM_TYPE_F16] = simd_kv_dot_f16,
               [ELM_TYPE_Q8_0] = q8_0_vec_dot},
    .kv_mix = {[ELM_TYPE_F32] = simd_kv_mix_f32,
               [ELM_TYPE_F16] = simd_kv_mix_f16,
               [ELM_TYPE_Q8_0] = simd_kv_mix_q8_0},
    .kv_fold = simd_kv_fold,
};

/* Q4_0 and Q8_0, the types of the ARM tiles (tile.h); the others go one vec_dot per element */
const struct elm_tiles ELM_VARIANT_TILES = {
    .name = ELM_VARIANT_NAME,
    .k =
        {
            [ELM_TYPE_Q4_0] = {.vec_dot = q4_0_vec_dot,
                               .tile = q4_0_tile,
                               .rows = ARM_TILE_R,
                               .toks = Q40_TILE_T,
                               .rows_gemv = ARM_TILE_R},
            [ELM_TYPE_Q8_0] = {.vec_dot = q8_0_vec_dot,
                               .tile = q8_0_tile,
                               .rows = ARM_TILE_R,
                               .toks = Q80_TILE_T,
                               .rows_gemv = ARM_TILE_R},
        },
};
