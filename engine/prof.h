/* prof.h — where a forward pass spends its time, per operation and per layer.
 *
 * A caller (elm-bench profile) hands a struct elm_prof to a work area; every pass through that
 * work area then adds its wall-clock nanoseconds to the counters. The clock is read between
 * operations only (never inside a kernel or a parallel region), so an unprofiled pass pays one
 * NULL test per operation and a profiled one about 40 clock reads per layer.
 */
#ifndef ELM_PROF_H
#define ELM_PROF_H

#include <stdint.h>

enum elm_prof_op {
    ELM_PROF_EMBED,     /* token embedding rows to float */
    ELM_PROF_NORM,      /* RMSNorm (attention, FFN and output norms); the attention residual
                         * add and the Q/K/V and gate/up activations' quantization, done in
                         * the same call (forward.c, rows.c) */
    ELM_PROF_QUANTIZE,  /* other activations quantized to the weights' dot type (Wo, output) */
    ELM_PROF_MAT_QKV,   /* the Q, K and V projections (and their biases) */
    ELM_PROF_ROPE,      /* RoPE of q and k, and K/V stored in the cache; the cos/sin tables */
    ELM_PROF_ATTENTION, /* q·K, softmax, weights·V over the cache */
    ELM_PROF_MAT_O,     /* attention output projection */
    ELM_PROF_MAT_FFN,   /* gate, up and down projections */
    ELM_PROF_SILU,      /* silu(gate) * up, and its quantization for Wdown */
    ELM_PROF_RESIDUAL,  /* the FFN's residual addition (gemma2: its post-norm first) */
    ELM_PROF_OUTPUT,    /* output projection (logits) */
    ELM_PROF_OP_COUNT
};

/* "embed", "norm", "quantize", "mat_qkv", ... Static; "?" when out of range. */
const char *elm_prof_op_name(int op);

/* 1 for the matrix multiplications (MAT_QKV, MAT_O, MAT_FFN, OUTPUT), else 0. */
int elm_prof_op_is_matmul(int op);

struct elm_prof {
    int n_layer;               /* rows of per_layer (the caller allocates; >= model's n_layer) */
    uint64_t *per_layer;       /* [n_layer][ELM_PROF_OP_COUNT] ns, added to; may be NULL */
    uint64_t ns[ELM_PROF_OP_COUNT]; /* ns per operation over the whole pass, added to */
    uint64_t passes;           /* forward passes counted */
    uint64_t tokens;           /* batch items counted */
    uint64_t matmul_bytes;     /* weight bytes the matrix multiplications read */
};

struct elm_work;
/* Counts every later pass of w into p (NULL stops). p is borrowed: it must outlive its use. */
void elm_work_set_prof(struct elm_work *w, struct elm_prof *p);

#endif
