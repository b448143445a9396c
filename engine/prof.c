/* prof.c — the names and classes of the profiled operations (prof.h). The counting itself is
 * in forward.c, which owns the work area and knows where each operation ends. */
#include "engine/prof.h"

static const char *const names[ELM_PROF_OP_COUNT] = {
    [ELM_PROF_EMBED] = "embed",       [ELM_PROF_NORM] = "norm",
    [ELM_PROF_QUANTIZE] = "quantize", [ELM_PROF_MAT_QKV] = "mat_qkv",
    [ELM_PROF_ROPE] = "rope",         [ELM_PROF_ATTENTION] = "attention",
    [ELM_PROF_MAT_O] = "mat_o",       [ELM_PROF_MAT_FFN] = "mat_ffn",
    [ELM_PROF_SILU] = "silu",         [ELM_PROF_RESIDUAL] = "residual",
    [ELM_PROF_OUTPUT] = "output",
};

const char *elm_prof_op_name(int op)
{
    return op >= 0 && op < ELM_PROF_OP_COUNT ? names[op] : "?";
}

int elm_prof_op_is_matmul(int op)
{
    return op == ELM_PROF_MAT_QKV || op == ELM_PROF_MAT_O || op == ELM_PROF_MAT_FFN ||
           op == ELM_PROF_OUTPUT;
}
