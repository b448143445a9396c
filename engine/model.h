/* model.h — the transformers elm runs: the decoders "llama" (Llama 1-3, with Llama-3 RoPE
 * frequency factors), "qwen2", "phi3" and "gemma2", with a batched forward pass over sequences'
 * KV caches (kv.h), and the encoder "bert" as an embedding model (elm_model_embed).
 *
 * One struct elm_model is immutable after load and shared by every sequence: weights live in
 * the GGUF mapping (or, in the daemon, in a pinned hugepage copy of the data section). The
 * matrices its kernels read packed (elm_tensor.layout) are packed in that copy, or, over a
 * read-only mapping, in a region of the model's own (elm_model.packed). The
 * forward pass takes a batch of tokens that may belong to different sequences, each with its
 * own KV cache and position. Every per-token computation (norms, matmul rows through
 * elm_matmul, attention over its own sequence) is done in the same order whatever the batch
 * holds, so a sequence's logits are bit-identical alone or batched with others.
 */
#ifndef ELM_MODEL_H
#define ELM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/residency.h"
#include "engine/gguf.h"
#include "engine/vocab.h"
#include "kernels/kernels.h"

struct elm_kv; /* engine/kv.h: the cache a token of a batch reads and writes */

enum elm_arch { ELM_ARCH_LLAMA, ELM_ARCH_QWEN2, ELM_ARCH_PHI3, ELM_ARCH_GEMMA2, ELM_ARCH_BERT };
enum elm_rope_mode {
    ELM_ROPE_NORM, /* rotate adjacent pairs (2i, 2i+1): llama */
    ELM_ROPE_NEOX, /* rotate (i, i + n_rot/2): qwen2, phi3, gemma2 */
};
enum elm_pooling { ELM_POOL_NONE, ELM_POOL_MEAN, ELM_POOL_CLS }; /* GGUF pooling_type 0, 1, 2 */

/* The GGUF name of an architecture ("llama", "qwen2", ...). */
const char *elm_arch_name(enum elm_arch a);

struct elm_hparams {
    enum elm_arch arch;
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    /* The widest layer's: files may give these per layer (struct elm_layer), as pruned ones do;
     * scratch and the KV cache are sized by these */
    int32_t n_head;
    int32_t n_head_kv;
    int32_t n_ff;
    int32_t head_dim;  /* attention.key_length, default n_embd / n_head (gemma2 differs) */
    int32_t n_rot;     /* rotated dims per head (rope.dimension_count, default head_dim) */
    float eps;         /* RMSNorm epsilon (LayerNorm epsilon for bert) */
    float rope_base;   /* rope.freq_base */
    float rope_scale;  /* position multiplier: 1 / linear scaling factor */
    enum elm_rope_mode rope_mode;
    float q_scale;            /* scores are (q·k) * q_scale: 1/sqrt(head_dim) but for gemma2 27B */
    int32_t n_swa;            /* sliding window: a query at i sees keys j > i - n_swa; 0: none */
    bool swa_even_only;       /* the window applies to layers 0, 2, 4, ... only (gemma2) */
    float attn_softcap;       /* scores s become c * tanh(s / c) before the mask; 0: none */
    float final_softcap;      /* the same on the logits; 0: none */
    float embd_scale;         /* the token embedding is multiplied by this (gemma2: sqrt(n_embd)) */
    enum elm_pooling pooling; /* bert: how token states become one embedding */
};

/* A weight matrix [ne1 rows][ne0 columns] of any elm_type, or a 1-D F32 vector. */
struct elm_tensor {
    enum elm_type type;
    int64_t ne0, ne1;
    const void *data; /* NULL when absent (optional tensors) */
    /* ROWS, or what the model's kernels multiply fastest (elm_matmul_layout): then only
     * elm_matmul may read data. The embeddings and a tied output, read by row, stay ROWS. */
    enum elm_layout layout;
};

/* One block. phi3's fused attn_qkv and gate|up tensors are split into views of their rows
 * (wq/wk/wv, w_gate/w_up point into the same data), which gives the bits of the fused product:
 * every output element is one vec_dot of its own row either way. */
struct elm_layer {
    int32_t n_ff, n_head, n_head_kv;            /* this layer's widths (pruned files differ) */
    const float *attn_norm;                     /* [n_embd]; bert: NULL (post-norm) */
    struct elm_tensor wq, wk, wv, wo;           /* [n_embd -> n_head*hd], [-> n_head_kv*hd] ... */
    const float *bq, *bk, *bv, *bo;             /* qwen2/bert biases, NULL when absent */
    const float *attn_post_norm;                /* gemma2: RMS norm of the attention output */
    const float *ffn_norm;                      /* [n_embd] */
    struct elm_tensor w_gate, w_up, w_down;     /* down(act(gate x) * up x); bert: no gate */
    const float *b_up, *b_down;                 /* bert FFN biases */
    const float *ffn_post_norm;                 /* gemma2: RMS norm of the FFN output */
    /* bert LayerNorms: x = LN(x + attn) with attn_out_norm, x = LN(x + ffn) with out_norm */
    const float *attn_out_norm, *attn_out_norm_b, *out_norm, *out_norm_b;
};

struct elm_model {
    struct elm_hparams hp;
    struct elm_gguf *gguf;   /* owned: the header (and, for elm_model_load, the mapping) */
    struct elm_vocab *vocab; /* owned */
    const struct elm_kernels *k;  /* the variant, or &k_order when an order was asked for */
    struct elm_kernels k_order;   /* the variant with another summation order (kernels.h) */
    struct elm_tensor tok_embd;   /* [n_vocab rows][n_embd] */
    const float *output_norm;     /* [n_embd] */
    struct elm_tensor output;     /* [n_vocab rows][n_embd]; == tok_embd when tied */
    const float *rope_freqs;      /* [n_rot / 2] Llama-3 frequency factors, or NULL */
    struct elm_tensor tok_types;  /* bert: [n_token_types rows][n_embd] */
    struct elm_tensor pos_embd;   /* bert: [n_ctx_train rows][n_embd] */
    const float *tok_norm, *tok_norm_b; /* bert: LayerNorm of the summed embeddings */
    struct elm_layer *layers;     /* [n_layer], owned */
    int n_threads;
    void **owned;                 /* F32 copies of norms/biases: freed with it */
    int n_owned;
    struct elm_region packed;     /* owned: the packed operands when not packed in place */
    uint64_t weight_bytes;        /* bytes of tensor data used */
};

struct elm_model_params {
    int n_threads;             /* <= 0: number of online CPUs */
    const char *kernel;        /* NULL: elm_kernels_active() */
    /* llama.cpp's summation order to reproduce where it depends on the vector width (softmax,
     * SiLU, attention): the default AVX-512 one, or AVX2 to compare with a run of llama.cpp
     * built for AVX2 only (docs/compression.md). */
    enum elm_order order;
    /* Build the model without a tokenizer when the file's tokenizer is not supported (vocab is
     * then NULL and callers feed token ids): for checking a forward pass against reference ids
     * before elm can tokenize that vocabulary. Nothing that tokenizes may use such a model. */
    bool vocab_optional;
    /* With elm_model_create's data: tensor i starts at data + tensor_offsets[i] (the loader's
     * copy holds only the tensors the model uses, packed); NULL: at its file offset. */
    const uint64_t *tensor_offsets;
};

/* Maps PATH and builds the model with its vocabulary. Caller owns *out. Errors: ELM_EFORMAT,
 * ELM_EUNSUPPORTED, ELM_EMODEL, -errno; message in err. */
int elm_model_load(const char *path, const struct elm_model_params *p, struct elm_model **out,
                   char *err, size_t errlen);

/* Builds a model from an already parsed file. Takes ownership of g on success only. data, when
 * not NULL, is a copy of the file's data section (g->data_size bytes) that must outlive the model
 * (the daemon's pinned copy): the matrices the model's kernels multiply packed (elm_tensor.layout)
 * are rewritten there, in place. When NULL the weights are read from g's buffer, and those to
 * pack are copied, packed, into memory the model owns. */
int elm_model_create(struct elm_gguf *g, void *data, const struct elm_model_params *p,
                     struct elm_model **out, char *err, size_t errlen);

/* Checks what elm_model_create checks first (architecture and hyperparameters), without building
 * anything: a loader refuses a file it cannot run before it reads the weights. 0 or the error
 * elm_model_create would return, with its message in err. */
int elm_model_check(const struct elm_gguf *g, char *err, size_t errlen);

/* Marks in used[g->n_tensors] every tensor elm_model_create would read, after the checks that
 * need no weight byte (architecture, hyperparameters, each tensor's presence, type and shape):
 * the loader reads only those. 0 or the error elm_model_create would return, message in err. */
int elm_model_used_tensors(const struct elm_gguf *g, bool *used, char *err, size_t errlen);

void elm_model_destroy(struct elm_model **m); /* NULL-safe, nulls *m */

#define ELM_CTX_DEFAULT_MAX 4096 /* the default context's ceiling, in tokens */

/* The context a sequence gets when its user names none: configured when > 0, else the model's
 * training context, at most ELM_CTX_DEFAULT_MAX (a long-context model's full window would take
 * gigabytes of KV cache by default). A file that states no training context (context_length
 * 0) gets ELM_CTX_DEFAULT_MAX. elmd's sessions and `elmctl generate --local` both use this. */
int32_t elm_model_ctx_default(const struct elm_model *m, int32_t configured);

/* ---- forward pass -------------------------------------------------------------------------- */

struct elm_batch_item {
    int32_t token;
    int32_t pos;       /* position in its sequence; K/V of positions < pos must be in kv */
    struct elm_kv *kv; /* its sequence's cache; K/V for pos is written by the pass; pos must be
                          backed by a page (elm_kv_reserve) */
    float *logits;     /* out: n_vocab floats, or NULL when not wanted */
};

struct elm_work; /* scratch buffers for batches of up to n_batch tokens; one per calling thread */

/* Scratch for batches of up to n_batch tokens at positions below n_ctx_max. Caller owns *out.
 * Profiling: see prof.h (elm_work_set_prof). */
int elm_work_create(const struct elm_model *m, int32_t n_batch, int32_t n_ctx_max,
                    struct elm_work **out);
void elm_work_destroy(struct elm_work **w);
int32_t elm_work_n_batch(const struct elm_work *w);

/* Which weight a matmul of the pass multiplies (the GGUF tensor blk.N.attn_q ... output). */
enum elm_mat_role {
    ELM_MAT_Q,
    ELM_MAT_K,
    ELM_MAT_V,
    ELM_MAT_O,
    ELM_MAT_GATE,
    ELM_MAT_UP,
    ELM_MAT_DOWN,
    ELM_MAT_OUTPUT, /* layer -1 */
};

/* Sees the F32 input of every matmul of a pass (the importance matrix, engine/imatrix.h):
 * fn(ctx, layer, role, x, ncols, n) with x the n input rows of ncols floats (before any
 * activation quantization), called on the forward pass's thread in graph order, before the
 * product. The rows are only valid during the call. An observer keeps its own errors. phi3's
 * fused QKV and gate|up are reported per view (Q, K, V; GATE, UP), with the same rows. */
struct elm_matmul_observer {
    void (*fn)(void *ctx, int layer, enum elm_mat_role role, const float *x, int64_t ncols,
               int n);
    /* Optional (NULL: not called): the residual stream, n rows of n_embd floats, entering block
     * `layer` (layer 0: the embeddings; layer n_layer: after the last block, before the final
     * norm). Block l's influence is measured between calls l and l + 1 (`elmctl prune`). */
    void (*hidden)(void *ctx, int layer, const float *x, int64_t n_embd, int n);
    void *ctx;
};

/* Attaches an observer to a work area (NULL detaches; the struct is copied). */
void elm_work_set_observer(struct elm_work *w, const struct elm_matmul_observer *o);

/* Runs n items (n <= n_batch) through the model. Items of one sequence must be in increasing
 * position order. Returns 0, -EINVAL (bad batch: n out of range, no cache, or a cache from a
 * pool made for another model shape), ELM_ETOKEN, or ELM_ECONTEXT when a position is at or
 * past the cache's n_ctx or the work's n_ctx_max, or has no page in its cache (a pooled
 * sequence that did not reserve it). The whole batch is checked first: on an error nothing is
 * written, neither K/V nor logits. */
int elm_model_forward(const struct elm_model *m, struct elm_work *w,
                      const struct elm_batch_item *items, int n);

/* ---- embeddings (bert) --------------------------------------------------------------------- */

/* True for models that make embeddings (elm_model_embed) rather than logits. */
bool elm_model_is_embedding(const struct elm_model *m);

/* Embeds n_seq token sequences (seq i: n_ids[i] ids at ids[i], with [CLS]/[SEP] already in
 * place, as the tokenizer adds them) in one pass: out[i * n_embd ...] is sequence i's pooled
 * state (mean or CLS, as the file says), divided by its L2 norm. Every sequence is computed
 * the same alone or with others. Returns 0, -EINVAL (not an embedding model, n_seq <= 0, an
 * empty sequence), ELM_ETOKEN, ELM_ECONTEXT (a sequence longer than context_length), -ENOMEM. */
int elm_model_embed(const struct elm_model *m, const int32_t *const *ids, const int32_t *n_ids,
                    int n_seq, float *out);

#endif
