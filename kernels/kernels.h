/* kernels.h — the per-type table and the dispatch table of compute kernels.
 *
 * Every weight type elm runs is described once in a type table (block size, bytes per block,
 * the activation format its dot product consumes). The functions live in a dispatch table of
 * per-ISA variants: "ref" is the portable scalar oracle that every SIMD variant is tested
 * against; "avx2" and "avx512" on x86-64, "neon", "dotprod" and "i8mm" on ARM64 are chosen at
 * start-up by a CPU probe (the build uses no -march flags: each variant's file has its own) and
 * can be forced with ELM_KERNEL=<name>.
 *
 * Type ids are ggml's, because they are stored in GGUF files.
 *
 * Besides the matmul kernels the table holds the other operations of the forward pass that
 * round (norm, rotary embedding, softmax, SiLU, attention over the KV cache), so that every
 * float the engine produces comes from a kernel that a SIMD variant can replace and a test can
 * hold to the reference.
 *
 * Activation quantization: a quantized weight row is never multiplied with float activations.
 * As ggml does, the activation row is first quantized to the type's dot_type (Q8_0 for Q4_0,
 * Q5_0, Q8_0, IQ4_NL; Q8_1 for Q4_1, Q5_1; Q8_K for every K-quant and IQ4_XS), and vec_dot
 * takes the integer dot product block by block. F32, F16 and BF16 weights take F32 activations
 * (dot_type F32).
 */
#ifndef ELM_KERNELS_H
#define ELM_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum elm_type {
    ELM_TYPE_F32 = 0,
    ELM_TYPE_F16 = 1,
    ELM_TYPE_Q4_0 = 2,
    ELM_TYPE_Q4_1 = 3,
    ELM_TYPE_Q5_0 = 6,
    ELM_TYPE_Q5_1 = 7,
    ELM_TYPE_Q8_0 = 8,
    ELM_TYPE_Q8_1 = 9,
    ELM_TYPE_Q2_K = 10,
    ELM_TYPE_Q3_K = 11,
    ELM_TYPE_Q4_K = 12,
    ELM_TYPE_Q5_K = 13,
    ELM_TYPE_Q6_K = 14,
    ELM_TYPE_Q8_K = 15,
    ELM_TYPE_IQ4_NL = 20,
    ELM_TYPE_IQ4_XS = 23,
    ELM_TYPE_BF16 = 30,
    ELM_TYPE_COUNT = 40 /* size of the id space we index tables by (ggml ids go up to ~39) */
};

struct elm_type_info {
    const char *name;      /* "q4_0", ... ; NULL for ids elm does not know */
    int32_t block;         /* elements per block (1 for float types) */
    int32_t block_bytes;   /* bytes per block */
    enum elm_type dot_type; /* activation format vec_dot expects */
    bool quantized;
    bool is_weight;        /* may appear as a tensor type in a model (Q8_1/Q8_K may not) */
};

/* NULL when the id is unknown to elm (or out of range). */
const struct elm_type_info *elm_type_get(uint32_t type);
/* Looks a type up by name ("q4_k", case-insensitive); -1 when unknown. */
int elm_type_from_name(const char *name);
/* Bytes of a row of n elements; n must be a multiple of the block size (checked by callers). */
size_t elm_row_bytes(enum elm_type type, int64_t n);

/* One ISA variant. Arrays are indexed by enum elm_type; a NULL entry means "not provided by this
 * variant": elm_kernels_get() fills such holes from the ref table, so callers never see NULL for
 * a type that ref supports. n is always a multiple of the type's block size. */
struct elm_kernels {
    const char *name; /* "ref", "avx2", "avx512", "neon", "dotprod", "i8mm" */
    /* dst[0..n) = dequantized src row */
    void (*to_float[ELM_TYPE_COUNT])(const void *src, float *dst, int64_t n);
    /* quantizes a float row (weights for the quantizer, activations for vec_dot) */
    void (*from_float[ELM_TYPE_COUNT])(const float *src, void *dst, int64_t n);
    /* *s = dot(weight row w of type T, activation row a of type dot_type(T)), n elements */
    void (*vec_dot[ELM_TYPE_COUNT])(int64_t n, float *s, const void *w, const void *a);

    /* ---- the operations around the matmuls ---------------------------------------------
     * The forward pass does every rounding operation through this table, so that a variant
     * can replace each one and test_quant can hold it to the reference. Like vec_dot, the
     * reference versions add in the exact order of the build the zoo references came from
     * (llama.cpp on x86 with AVX-512; docs/kernels.md). None of them may depend on anything
     * but its own arguments: that is what keeps results batch-invariant. */

    /* y[i] = x[i] / sqrt(mean(x^2) + eps) * g[i], n elements; y may equal x */
    void (*rmsnorm)(float *y, const float *x, const float *g, int64_t n, float eps);
    /* cs[2i], cs[2i+1] = cos, sin of pos * scale * base^(-2i/n_rot), for i < n_rot / 2 */
    void (*rope_table)(float *cs, int n_rot, int32_t pos, float base, float scale);
    /* Rotates the first n_rot dims of one head vector in place by the angles in cs: the pairs
     * (2i, 2i+1), or (i, i + n_rot/2) when neox. */
    void (*rope)(float *x, int n_rot, const float *cs, bool neox);
    /* x[0..n) = softmax(x[0..n)) in place */
    void (*softmax)(float *x, int64_t n);
    /* g[i] = silu(g[i]) * u[i] with silu(x) = x / (1 + e^-x). The vector code works in blocks of
     * 16 from the start of the row: call it once per row (n = n_ff). */
    void (*silu_mul)(float *g, const float *u, int64_t n);

    /* Attention over a KV cache, indexed by the cache type (F32, F16 or Q8_0).
     * kv_dot: *s = k · q over n elements (one head); k is a cache row and q is in the cache
     *   type too: an F16 cache takes q converted by from_float[F16], as llama.cpp converts it;
     *   a Q8_0 cache takes q quantized by from_float[Q8_0] and is the Q8_0 vec_dot of the
     *   matmuls (llama.cpp's path for a q8_0 K cache). n is a multiple of 32 for Q8_0.
     * kv_mix: lanes[l * hd + d] += sum over p < n with p % 16 == l of w[p] * V(p, d), for
     *   d < hd: the softmax weights applied to n value rows, V(p, d) element d of the row
     *   v + p * v_stride (bytes). The 16 lanes per output are the sum's partial sums, each a
     *   fused chain in position order; the caller zeroes lanes[16 * hd] once and may then call
     *   kv_mix over consecutive runs of positions (a paged cache: one call per page) as long as
     *   every run but the last is a multiple of 16 long, and gets the bits of one call over
     *   all positions. An F16 cache takes the weights rounded to F16 (as llama.cpp converts
     *   them to the cache type); a Q8_0 cache takes them as they are and its values
     *   dequantized (d * q, exact in float). hd is a multiple of 32 for Q8_0.
     * kv_fold: out[d] = the 16 lanes of output d folded as a 512-bit register (elm_hsum16).
     * (Tables made by elm_kernels_with_order(ELM_ORDER_AVX2) use 8 lanes and elm_hsum8; the
     * caller's lanes buffer holds 16 * hd either way.)
     * The order of the sums over p is the one llama.cpp uses for a batch of several tokens.
     * For a token decoded alone it uses another order (whose last bits may differ); elm keeps
     * one order for every batch, and measured that the zoo references still hold. */
    void (*kv_dot[ELM_TYPE_COUNT])(int64_t n, float *s, const void *k, const void *q);
    /* kv_dots: s[i] = what kv_dot gives for the row k + i * k_stride (bytes), i < np: the
     *   scores of a page's positions in one call, bit for bit those of kv_dot of the same
     *   table. Optional (NULL: call kv_dot per row); a table that replaces kv_dot[t] must
     *   clear kv_dots[t] (elm_kernels_with_order does). */
    void (*kv_dots[ELM_TYPE_COUNT])(int64_t n, int64_t np, float *s, const void *k,
                                    int64_t k_stride, const void *q);
    /* kv_dots_group: kv_dots for the g query heads of a GQA group over the same np rows:
     *   s[j * s_stride + i] = what kv_dot gives for the row k + i * k_stride and the query
     *   q + j * q_stride (bytes, in the cache type), j < g. A row is converted once for every
     *   head. Optional, cleared like kv_dots. */
    void (*kv_dots_group[ELM_TYPE_COUNT])(int64_t g, int64_t n, int64_t np, float *s,
                                          int64_t s_stride, const void *k, int64_t k_stride,
                                          const void *q, int64_t q_stride);
    void (*kv_mix[ELM_TYPE_COUNT])(int64_t n, int64_t hd, float *lanes, const float *w,
                                   const void *v, int64_t v_stride);
    /* kv_mix_group: the g query heads of a GQA group over the same n value rows, for each head
     *   j < g the bits kv_mix of the same table gives for its weights w + j * w_stride into its
     *   lanes + j * 16 * hd (zeroed by the caller). Position p is row p % page (rows v_stride
     *   bytes apart) of the page v[p / page]; page is a multiple of 16. One call covers all the
     *   positions (no carrying over runs). A row's values are converted once for every head.
     *   Optional (NULL: kv_mix per head and page); a table that replaces kv_mix[t] must clear
     *   kv_mix_group[t] (elm_kernels_with_order does). */
    void (*kv_mix_group[ELM_TYPE_COUNT])(int64_t g, int64_t n, int64_t hd, float *lanes,
                                         const float *w, int64_t w_stride, const void *const *v,
                                         int64_t page, int64_t v_stride);
    void (*kv_fold)(int64_t hd, const float *lanes, float *out);
};

/* The summation order of the operations whose last bits depend on llama.cpp's vector width
 * (softmax, SiLU, attention over the cache): the one its x86 build computes with AVX-512 (the
 * default, the order the zoo references came from) or with AVX2 only (the order evalref's
 * perplexities were computed in; docs/compression.md). ELM_ORDER_AVX2 keeps 8 lanes in kv_mix
 * and kv_fold instead of 16, and runs scalar reference code on every machine. */
enum elm_order { ELM_ORDER_AVX512 = 0, ELM_ORDER_AVX2 = 1 };

/* *dst = base, with the order-dependent operations replaced by those of `order`. */
void elm_kernels_with_order(struct elm_kernels *dst, const struct elm_kernels *base,
                            enum elm_order order);

/* The variant chosen for this process: ELM_KERNEL if set (falls back to the probe, with a
 * warning on stderr, when the CPU lacks it), else the best the CPU supports. Thread-safe. */
const struct elm_kernels *elm_kernels_active(void);
/* A named variant, or NULL when unknown or when this CPU cannot run it. */
const struct elm_kernels *elm_kernels_get(const char *name);
/* True when the named variant is built into elm and the CPU (and OS, for AVX state) supports
 * it. */
bool elm_kernels_cpu_has(const char *name);
/* The i-th variant built into elm for this architecture, best first, ending with "ref"; NULL
 * past the end. Whether this CPU runs it: elm_kernels_cpu_has(). For tests and reports that
 * go over every variant. */
const char *elm_kernels_variant(size_t i);

/* How the avx512 Q4_0 tile gives its multiply-adds each token's activation dwords
 * (kernels/avx512/q4_0_tile.h, q40w_step): half by loads and half by shuffles where the shuffles
 * have pipes of their own (ELM_FEED_SPLIT: AMD's Zen 5), all by loads where the shuffles and
 * the multiply-adds share a port (ELM_FEED_LOADS: Intel's port 5). ELM_FEED_AMX: as LOADS, but
 * whole tiles of 16 tokens go to the AMX tile unit (kernels/avx512/q4_0_amx.h), where the CPU has
 * AMX-INT8 and the kernel lets this process use it. The same bits every way, only the speed
 * differs. Chosen once per process (AMX where usable, else AMD: split, any other: loads);
 * elm_kernels_set_feed() overrides it, for tests, between matmuls, and refuses AMX (-ENOTSUP)
 * where the probe found it unusable. */
enum elm_feed { ELM_FEED_SPLIT = 0, ELM_FEED_LOADS = 1, ELM_FEED_AMX = 2 };
enum elm_feed elm_kernels_feed(void);
int elm_kernels_set_feed(enum elm_feed feed);
/* The matrix unit k's tiles hand work to: "AMX" when k is the avx512 variant and the feed is
 * ELM_FEED_AMX (its Q4_0 prefill), else "". For reports (elmctl status, elm-bench). */
const char *elm_kernels_matrix_unit(const struct elm_kernels *k);

/* How a weight matrix lies in memory.
 * ELM_LAYOUT_ROWS: the file's, row after row (elm_row_bytes apart).
 * ELM_LAYOUT_X8 (Q4_0 only): each whole group of 8 rows, counted from row 0, is one panel in
 *   the bytes of its 8 rows: first, block after block, the block's quant bytes as 4 groups of
 *   8 x 4 bytes (group g holds bytes 4g..4g+3 of each row's block, row after row: one 256-bit
 *   register per group), then, block after block, the 8 rows' fp16 scales. The last nrows % 8
 *   rows stay as they were. The same bytes in another order: a row's values are unchanged, but
 *   no longer contiguous, so only elm_matmul may read such a matrix. A variant whose matmul
 *   reads panels (elm_matmul_layout) then needs no unpacking at run time. */
enum elm_layout { ELM_LAYOUT_ROWS = 0, ELM_LAYOUT_X8 = 1 };

/* The layout in which k's elm_matmul reads weights of this type fastest: ELM_LAYOUT_X8 where the
 * variant has a tile for it (avx2 and avx512, Q4_0), else ELM_LAYOUT_ROWS. */
enum elm_layout elm_matmul_layout(const struct elm_kernels *k, enum elm_type type);

/* Rewrites nrows rows of ncols elements of type, in the file's layout at src, into layout at dst
 * (dst may be src: the rewrite is in place, panel by panel). Returns 0, -EINVAL when the layout
 * does not apply to the type or ncols is not a multiple of its block, or -ENOMEM. */
int elm_pack_weights(enum elm_layout layout, enum elm_type type, void *dst, const void *src,
                     int64_t ncols, int64_t nrows);

/* Multiply: y[t*y_stride + r] = dot(W row r, activation row t) for r < nrows, t < ntok.
 * W is in layout, which must be ELM_LAYOUT_ROWS or what elm_matmul_layout(k, type) gives.
 * xq holds ntok activation rows already in dot_type(type), xq_stride bytes apart.
 * Each output element is computed by the same vec_dot call whatever ntok or the thread count,
 * so results are bit-identical between batched and token-by-token evaluation.
 * Parallelised over rows by the pool (common/pool.h) inside; from a pool thread it runs alone. */
void elm_matmul(const struct elm_kernels *k, enum elm_type type, enum elm_layout layout,
                const void *w, int64_t ncols, int64_t nrows, const void *xq, size_t xq_stride,
                int64_t ntok, float *y, int64_t y_stride);

/* The portable scalar table: the oracle every SIMD variant is tested against. Complete: every
 * type in the type table has to_float; every weight type has vec_dot; every dot_type and every
 * quantizable weight type has from_float. */
extern const struct elm_kernels elm_kernels_ref;

/* Quantizes one weight row the way llama-quantize does without an importance matrix (ggml's
 * *_ref quantizers), for any weight type (F32/F16/BF16 convert). The same as
 * elm_kernels_ref.from_float[type] except for Q8_0, whose from_float is the activation rounding
 * of ggml's x86 build (127/amax, ties to even) while weights use 1/d and ties away from zero.
 * Returns 0, or -EINVAL when type is not a weight type or n is not a multiple of its block. */
int elm_quantize_row(enum elm_type type, const float *src, void *dst, int64_t n);

/* The same with an importance matrix: imatrix[j] weighs column j of the row (n values; from
 * llama.cpp's imatrix file, divided by its call count). It changes the result, as in ggml's
 * quantize_* with quant_weights, for Q4_0, Q4_1, Q5_0, Q5_1, the K-quants and IQ4_NL/IQ4_XS;
 * other types ignore it, and NULL is elm_quantize_row. Needs the whole row, because some types
 * weigh by the row's mean square. Returns 0 or -EINVAL as elm_quantize_row. */
int elm_quantize_row_imatrix(enum elm_type type, const float *src, void *dst, int64_t n,
                             const float *imatrix);

#endif
