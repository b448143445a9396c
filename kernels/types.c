/* types.c — the table of tensor element types elm knows: block size, bytes per block, and the
 * activation format ("dot type") each weight type's vec_dot consumes.
 *
 * Ids, names, block sizes and byte counts are ggml's, because GGUF files store ggml type ids and
 * ggml's block layouts (see blocks.h, whose _Static_asserts pin the same byte counts). The
 * table is indexed by id; ids elm does not run have a NULL name and elm_type_get() returns NULL
 * for them, so a GGUF reader can reject such a tensor with a clear error instead of guessing.
 */
#include "kernels/kernels.h"

#include <strings.h>

#include "kernels/blocks.h"

/* Designated initializers keep each row next to its id; unlisted ids stay zeroed (unknown). */
static const struct elm_type_info type_table[ELM_TYPE_COUNT] = {
    [ELM_TYPE_F32] = {"f32", 1, 4, ELM_TYPE_F32, false, true},
    [ELM_TYPE_F16] = {"f16", 1, 2, ELM_TYPE_F32, false, true},
    [ELM_TYPE_BF16] = {"bf16", 1, 2, ELM_TYPE_F32, false, true},
    [ELM_TYPE_Q4_0] = {"q4_0", ELM_QK, sizeof(struct elm_block_q4_0), ELM_TYPE_Q8_0, true, true},
    [ELM_TYPE_Q4_1] = {"q4_1", ELM_QK, sizeof(struct elm_block_q4_1), ELM_TYPE_Q8_1, true, true},
    [ELM_TYPE_Q5_0] = {"q5_0", ELM_QK, sizeof(struct elm_block_q5_0), ELM_TYPE_Q8_0, true, true},
    [ELM_TYPE_Q5_1] = {"q5_1", ELM_QK, sizeof(struct elm_block_q5_1), ELM_TYPE_Q8_1, true, true},
    [ELM_TYPE_Q8_0] = {"q8_0", ELM_QK, sizeof(struct elm_block_q8_0), ELM_TYPE_Q8_0, true, true},
    /* Q8_1 and Q8_K exist only as activation formats: never valid as a model tensor type. */
    [ELM_TYPE_Q8_1] = {"q8_1", ELM_QK, sizeof(struct elm_block_q8_1), ELM_TYPE_Q8_1, true, false},
    [ELM_TYPE_Q2_K] = {"q2_k", ELM_QK_K, sizeof(struct elm_block_q2_k), ELM_TYPE_Q8_K, true, true},
    [ELM_TYPE_Q3_K] = {"q3_k", ELM_QK_K, sizeof(struct elm_block_q3_k), ELM_TYPE_Q8_K, true, true},
    [ELM_TYPE_Q4_K] = {"q4_k", ELM_QK_K, sizeof(struct elm_block_q4_k), ELM_TYPE_Q8_K, true, true},
    [ELM_TYPE_Q5_K] = {"q5_k", ELM_QK_K, sizeof(struct elm_block_q5_k), ELM_TYPE_Q8_K, true, true},
    [ELM_TYPE_Q6_K] = {"q6_k", ELM_QK_K, sizeof(struct elm_block_q6_k), ELM_TYPE_Q8_K, true, true},
    [ELM_TYPE_IQ4_NL] = {"iq4_nl", ELM_QK, sizeof(struct elm_block_iq4_nl), ELM_TYPE_Q8_0, true,
                         true},
    [ELM_TYPE_IQ4_XS] = {"iq4_xs", ELM_QK_K, sizeof(struct elm_block_iq4_xs), ELM_TYPE_Q8_K, true,
                         true},
    [ELM_TYPE_Q8_K] = {"q8_k", ELM_QK_K, sizeof(struct elm_block_q8_k), ELM_TYPE_Q8_K, true, false},
};

const struct elm_type_info *elm_type_get(uint32_t type)
{
    if (type >= ELM_TYPE_COUNT || type_table[type].name == NULL)
        return NULL;
    return &type_table[type];
}

int elm_type_from_name(const char *name)
{
    if (name == NULL)
        return -1;
    for (int t = 0; t < ELM_TYPE_COUNT; t++)
        if (type_table[t].name != NULL && strcasecmp(type_table[t].name, name) == 0)
            return t;
    return -1;
}

size_t elm_row_bytes(enum elm_type type, int64_t n)
{
    const struct elm_type_info *ti = elm_type_get((uint32_t)type);
    if (ti == NULL || n < 0)
        return 0;
    return (size_t)(n / ti->block) * (size_t)ti->block_bytes;
}
