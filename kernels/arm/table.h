/* table.h — the kernel table of one ARM variant, from the kernels of the headers beside it.
 * Included last by kernels/arm/neon.c, dotprod.c and i8mm.c, which define ELM_VARIANT_NAME and
 * ELM_VARIANT_TABLE first. Entries left out (NULL) are filled from the reference by dispatch.c:
 * the dequantizers other than Q4_0/Q8_0/F16, the F32/F16/BF16 dot products, the weight
 * quantizers and the operations around the matmuls (norm, rope, softmax, SiLU, attention) run
 * the reference's code, correct and slower. */
#include "kernels/kernels.h"

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
    .kv_dot = {[ELM_TYPE_Q8_0] = q8_0_vec_dot},
};
