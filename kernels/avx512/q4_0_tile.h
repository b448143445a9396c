/* q4_0_tile.h — the avx512 variant's Q4_0 prefill tile: one output per 32-bit lane.
 *
 * The shared q4_0_impl (kernels/avx2/q_legacy.h) gives each (row pair, token) 8 lanes of
 * partial sums and then reduces, permutes scales, converts: most of its instructions are not
 * multiply-adds. Here a zmm accumulator holds 16 rows of one token, one output per lane, and
 * vpdpbusd accumulates each lane's whole block: for group g (elements 4g..4g+3) the register
 * operand is the 16 rows' weight bytes of group g, the other the token's 4 activation bytes in
 * every lane. A block costs 8 vpdpbusd, one cvt, one mul and one fma per 16 outputs, all on
 * registers filled by loads.
 *
 * The float chain is the reference's (elm_ref_q4_0_vec_dot), block after block:
 * sum = fma((float)isum, d_w * d_a, sum), with isum the exact block sum (< 2^24, so its
 * conversion is exact) and d_w * d_a one float product. The -8 offset of the nibbles is an exact
 * integer correction per (token, block), -8 * sum(a), used as the start of the vpdpbusd chain.
 *
 * The weights must be unpacked into that layout ([block][group][16 rows x 4 bytes], nibbles as
 * bytes 0..15, plus the 16 row scales as floats), which costs more than one tile's worth of
 * arithmetic saves; matmul.c multiplies each panel of rows with every token tile of a token
 * chunk, so the unpacked panel is kept in a per-thread buffer while the calls are for the same
 * panel, and the prepared token tiles (corrections, scales) are kept for the other panels of
 * the row chunk. Reuse is keyed by pointers, which is safe only within one matmul: it relies on
 * the ELM_TILE_FRESH flag of tiles.h (set on every thread's first call in a matmul), which drops
 * everything kept. A stream call (the first on a panel: its weights come from memory, as in
 * batched decode) prefetches the panel after next a few lines per block of its unpack and of its
 * run, so that memory works through both (prefetched all during the unpack, the prefetches
 * queued behind each other and the arithmetic found memory idle; during the run only, memory
 * idled through the unpack; measured in docs/kernels-perf.md). A stream call that no other
 * token tile of its chunk follows (ELM_TILE_MORE clear: an 8-token pass, batched decode) has
 * no use for the buffer and runs straight from the weights (q40w_run_direct). Calls with
 * fewer than 4 tokens and rows too long for the buffer take the shared tile.
 * Weights packed at load (ELM_LAYOUT_X8, kernels/pack.c) have their own entry, q40w_tile_x8:
 * the same calls, the 16-row panel being two packed panels, one insert per register where
 * rows take 16 loads and a transpose. Its lanes stay in the panels' row order (the unpacked
 * buffer too, so a run stores by the kind of the panel it holds): a lane permute per register
 * and the scales' back to ln_row's order cost 6 % of the 8-token run. One token and the rest
 * take the avx2 packed tile (kernels/avx2/q4_0_x8.h), compiled here.
 * tests/kernel/test_simd.c rewrites weights and activations in place between
 * products to catch a stale reuse. Included only by kernels/avx512/avx512.c, after q_legacy.h.
 */
#ifndef ELM_AVX512_Q4_0_TILE_H
#define ELM_AVX512_Q4_0_TILE_H

#include <stddef.h>

#include "common/scratch.h"
#include "kernels/avx2/kept.h"
#include "kernels/avx2/q4_0_x8.h"
#include "kernels/avx2/q_legacy.h"
#include "kernels/avx512/lanes.h"
#include "kernels/tiles.h"

#define Q40W_R          16   /* rows per panel: one zmm of outputs per token */
#define Q40W_T          8    /* tokens per tile (8 accumulators + 8 weight registers) */
#define Q40W_MIN_T      4    /* fewer tokens: the shared tile */
#define Q40W_MAX_BLOCKS 1024 /* 32768 columns; longer rows take the shared tile */
#define Q40W_ABLOCKS    4096 /* kept token tiles: this many blocks in all (256 KiB) */
#define Q40W_SLOTS      64   /* at most this many token tiles kept */
#define Q40W_PANELS     4    /* unpacked panels kept: a row chunk's (matmul.c's CHUNK_GEMM rows) */
/* Bytes of the panel after next prefetched per block of the unpack and of the run (together a
 * block of the 16 rows; the rule is tiles.h's). */
#define Q40W_PF_UNPACK ELM_TILE_PF_UNPACK(Q40W_R * sizeof(struct elm_block_q4_0))
#define Q40W_PF_RUN    (Q40W_R * sizeof(struct elm_block_q4_0) - Q40W_PF_UNPACK)
_Static_assert(Q40W_MIN_T >= 2 && Q40W_T == 8,
               "ELM_TILE_FOR_T (tiles.h) lists the token counts 2..8");

/* One block of a 16-row panel: lane l of each vector is row ln_row(l) (of packed panels, row l). */
struct q40w_wblock {
    __m512i w[8]; /* group g: the 4 weight bytes (0..15) of elements 4g..4g+3 */
    __m512 dw;    /* the rows' scales */
};

/* One block of a token tile: one cache line. */
struct q40w_ablock {
    int32_t corr[Q40W_T]; /* -8 * sum of the token's 32 activation bytes */
    float da[Q40W_T];     /* the token's scale */
};

struct q40w_scratch {
    struct q40w_wblock wb[Q40W_MAX_BLOCKS];
    struct q40w_ablock ab[Q40W_ABLOCKS];
    struct kept_tag atag[Q40W_SLOTS];
    uint64_t gen; /* advanced by every FRESH call: kept token tiles older than it are stale */
    struct elm_panel_key key[Q40W_PANELS]; /* the panels wb holds (q40w_slot) */
};

/* This thread's scratch, made on its first call (common/scratch.h: not static TLS, which every
 * thread of every program linking the engine would zero at start); NULL when memory is short. */
static _Thread_local struct q40w_scratch *q40w_scratch_p;

static inline struct q40w_scratch *q40w_scratch_get(void)
{
    if (!q40w_scratch_p)
        q40w_scratch_p = elm_scratch_thread(sizeof(struct q40w_scratch));
    return q40w_scratch_p;
}

/* The scratch for a call with these stream flags (kept_begin, for every panel kept). */
static inline struct q40w_scratch *q40w_begin(int stream)
{
    struct q40w_scratch *s = q40w_scratch_get();
    if (!s)
        return NULL;
    kept_begin(&s->key[0], &s->gen, stream);
    if (stream & ELM_TILE_FRESH)
        for (int i = 1; i < Q40W_PANELS; i++)
            elm_panel_forget(&s->key[i]);
    return s;
}

/* Where the panel at w (rows ws bytes apart, nb blocks) is unpacked: the key of its slot, and
 * the slot's blocks in *wb. matmul.c multiplies the panels of a row chunk with one token chunk
 * after another, so rows short enough for a quarter of the buffer take one of Q40W_PANELS
 * slots (the chunk's panels, 16 rows apart, consecutive ones) and each token chunk after the
 * first finds them unpacked; one slot made it unpack every panel once per token chunk, 16 % of
 * a 512-token AMX product (docs/kernels-perf.md, s26). Longer rows take the whole buffer. A
 * slot's rows and the whole buffer's forget each other: matmul never mixes them (a matmul's
 * rows have one length, and its first call forgets every panel), but a stale panel would be
 * wrong bits, so the rule does not rest on that. */
static inline struct elm_panel_key *q40w_slot(struct q40w_scratch *s, const uint8_t *w, size_t ws,
                                              int64_t nb, struct q40w_wblock **wb)
{
    const int64_t share = Q40W_MAX_BLOCKS / Q40W_PANELS;
    if (nb > share) {
        for (int i = 1; i < Q40W_PANELS; i++)
            elm_panel_forget(&s->key[i]);
        *wb = s->wb;
        return &s->key[0];
    }
    if (s->key[0].nb > share)
        elm_panel_forget(&s->key[0]);
    const int64_t i = (int64_t)(((uintptr_t)w / (Q40W_R * ws)) % Q40W_PANELS);
    *wb = s->wb + i * share;
    return &s->key[i];
}

/* w[g], the weight bytes (0..15) of group g, from raw[g'], dword g' of the 16 bytes of qs (lane
 * l from row ln_row(l)): byte j holds element j (low nibble) and element j + 16 (high). */
ALWAYS_INLINE void q40w_nibbles(const __m512i raw[4], __m512i w[8])
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    UNROLL for (int g = 0; g < 4; g++)
    {
        w[g] = _mm512_and_si512(raw[g], m4);
        w[g + 4] = _mm512_and_si512(_mm512_srli_epi16(raw[g], 4), m4);
    }
}

/* Block b of the 16 rows of rs in lane order (ln_row): w[g] the weight bytes (0..15) of group
 * g, dw the rows' scales. What the unpack stores. */
ALWAYS_INLINE void q40w_block(const struct ln_rowset *rs, int64_t b, __m512i w[8], __m512 *dw)
{
    __m512i raw[4];
    ln_gather4(rs, b, offsetof(struct elm_block_q4_0, qs), raw);
    q40w_nibbles(raw, w);
    *dw = ln_gather_f16(rs, b, offsetof(struct elm_block_q4_0, d));
}

/* Block b of the 16 rows of the packed panels p and q (the next), lane l holding row l (their
 * natural order, which one insert a register gives; rows come in ln_row's): wg the weight bytes
 * of each group, dw the scales. */
ALWAYS_INLINE void q40w_block_x8(const uint8_t *p, const uint8_t *q, int64_t nb, int64_t b,
                                 __m512i wg[8], __m512 *dw)
{
    __m512i raw[4];
    UNROLL for (int g = 0; g < 4; g++) raw[g] =
        _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(q40x_qs(p, b) + 32 * g)),
                           loadu256(q40x_qs(q, b) + 32 * g), 1);
    q40w_nibbles(raw, wg);
    const size_t d = (size_t)nb * Q40X_QS + (size_t)b * 16;
    *dw = _mm512_cvtph_ps(
        _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + d))),
                                _mm_loadu_si128((const __m128i *)(q + d)), 1));
}

/* Stores a run's outputs of one token: rows [0, nr) in ln_row's lane order, or all 16 in
 * natural order (X8). */
ALWAYS_INLINE void q40w_store(float *y, int nr, __m512 v, const bool X8)
{
    if (X8)
        _mm512_storeu_ps(y, v);
    else
        ln_store(y, nr, 0, v);
}

/* Unpacks rows [0, nr) of the panel with lanes.h's row set and gathers (the same transposed
 * lane order, ln_row); lanes of rows nr..15 get a copy of row nr - 1's weights (their outputs
 * are never stored) and zero scales. A pointer and a step per row and 16 scalar scale loads
 * made this ~120 instructions per block, about as much time as an 8-token run over it.
 * X8: the panel is two packed panels at w (nr is 16), their lanes in row order. SIGNED: the
 * weights as q - 8 (-8..7), for AMX's signed products (q4_0_amx.h). */
ALWAYS_INLINE void q40w_unpack(struct q40w_wblock *wb, const uint8_t *w, size_t ws, int nr,
                               int64_t nb, const uint8_t *pf, const bool X8, const bool SIGNED)
{
    struct ln_rowset rs;
    if (!X8)
        ln_rows(&rs, w, ws, nr, 0, sizeof(struct elm_block_q4_0));
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            prefetch_span(pf + b * Q40W_PF_UNPACK, Q40W_PF_UNPACK);
        struct q40w_wblock *o = &wb[b];
        __m512i wg[8];
        __m512 dw;
        if (X8)
            q40w_block_x8(w, w + Q40V_R * ws, nb, b, wg, &dw);
        else
            q40w_block(&rs, b, wg, &dw);
        UNROLL for (int g = 0; g < 8; g++) _mm512_store_si512(
            &o->w[g], SIGNED ? _mm512_sub_epi8(wg[g], _mm512_set1_epi8(8)) : wg[g]);
        _mm512_store_ps(&o->dw, dw);
    }
}

/* The per-block corrections and scales of tokens [0, nt), into ab[0..nb). */
static void q40w_prep(struct q40w_ablock *ab, const uint8_t *a, size_t as, int nt, int64_t nb)
{
    const __m256i e8 = _mm256_set1_epi8(8);
    for (int t = 0; t < nt; t++) {
        const struct elm_block_q8_0 *v = (const struct elm_block_q8_0 *)(a + (size_t)t * as);
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            __m256i p[8];
            UNROLL for (int j = 0; j < 8; j++) p[j] =
                dot4(_mm256_setzero_si256(), e8, loadu256(v[b + j].qs));
            int32_t c[8];
            _mm256_storeu_si256(
                (__m256i *)c,
                _mm256_sub_epi32(_mm256_setzero_si256(),
                                 hsum8x8_epi32(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7])));
            UNROLL for (int j = 0; j < 8; j++)
            {
                ab[b + j].corr[t] = c[j];
                ab[b + j].da[t] = h2f(v[b + j].d);
            }
        }
        for (; b < nb; b++) {
            ab[b].corr[t] = -hsum_epi32(dot4(_mm256_setzero_si256(), e8, loadu256(v[b].qs)));
            ab[b].da[t] = h2f(v[b].d);
        }
    }
}

/* Dword g of the token's 32 activation bytes at qt in every lane: a broadcast load when g is
 * among the last LOADS of the 8, else a vpshufd of the broadcast qword holding it (the compiler
 * loads each qword once per step). */
ALWAYS_INLINE __m512i q40w_dword(const uint8_t *qt, int g, const int LOADS)
{
    if (g >= 8 - LOADS)
        return _mm512_set1_epi32((int)load_u32(qt + 4 * g));
    const __m512i x = _mm512_set1_epi64((long long)load_u64(qt + 8 * (g / 2)));
    return g % 2 ? _mm512_shuffle_epi32(x, 0x55) : _mm512_shuffle_epi32(x, 0x00);
}

/* Block b of the panel (weights wg, scales dw) against NT tokens (the activations at a, as apart;
 * ab their block b): acc[t] += the reference's float step of the block, 16 outputs at once.
 * LOADS: how many of a token's 8 group dwords come by dword broadcast loads, the last ones (0, 4
 * or 8); the others by vpshufd of a qword broadcast. */
ALWAYS_INLINE void q40w_step(__m512 acc[], const __m512i wg[8], __m512 dw,
                             const struct q40w_ablock *ab, const uint8_t *a, size_t as, int64_t b,
                             const int NT, const int LOADS)
{
    /* Two tokens at a time, each with two chains of 4 dependent vpdpbusd (groups 0-3 from the
     * correction, 4-7 from zero; the integer sum is exact in any order): 4 independent chains
     * in a row, against a latency of 4 and two a cycle. Each vpdpbusd needs its token's group
     * dword in every lane, by a load (a dword broadcast, on the load ports only) or by a vpshufd.
     * Where the shuffles have pipes of their own (Zen 5), all loads made the run bound by loads
     * (two vector loads a cycle) and all shuffles by the vector pipes: half of each is 8 % off
     * the 8-token run in cache and 10-30 % from memory, but none by load where the rows' own 16
     * loads a block (q40w_run_direct) already fill the load ports. Where the shuffles share a
     * port with the multiply-adds (Intel's port 5), every shuffle delays one: all by loads is
     * 13-20 % off. q40w_call takes the counts of the process's elm_kernels_feed(). */
    const uint8_t *q =
        a + (size_t)b * sizeof(struct elm_block_q8_0) + offsetof(struct elm_block_q8_0, qs);
    UNROLL for (int t0 = 0; t0 < NT; t0 += 2)
    {
        const int nq = NT - t0 < 2 ? NT - t0 : 2;
        __m512i lo[2], hi[2];
        UNROLL for (int j = 0; j < nq; j++)
        {
            const uint8_t *qt = q + (size_t)(t0 + j) * as;
            lo[j] = _mm512_set1_epi32(ab->corr[t0 + j]);
            hi[j] = _mm512_setzero_si512();
            UNROLL for (int p = 0; p < 2; p++)
            {
                lo[j] = _mm512_dpbusd_epi32(lo[j], wg[2 * p], q40w_dword(qt, 2 * p, LOADS));
                hi[j] = _mm512_dpbusd_epi32(hi[j], wg[2 * p + 4], q40w_dword(qt, 2 * p + 4, LOADS));
                lo[j] = _mm512_dpbusd_epi32(lo[j], wg[2 * p + 1], q40w_dword(qt, 2 * p + 1, LOADS));
                hi[j] = _mm512_dpbusd_epi32(hi[j], wg[2 * p + 5], q40w_dword(qt, 2 * p + 5, LOADS));
            }
        }
        /* sum = fmaf((float)isum, d_w * d_a, sum) */
        UNROLL for (int j = 0; j < nq; j++) acc[t0 + j] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo[j], hi[j])),
                            _mm512_mul_ps(dw, _mm512_set1_ps(ab->da[t0 + j])), acc[t0 + j]);
    }
}

/* NT tokens against the unpacked panel (of packed panels: X8); rows [0, nr) of each token's
 * outputs are stored. */
ALWAYS_INLINE void q40w_run(const struct q40w_wblock *panel, const struct q40w_ablock *abs,
                            int64_t nb, const uint8_t *a, size_t as, float *y, int64_t ys, int nr,
                            const uint8_t *pf, const int NT, const bool X8, const int LOADS)
{
    __m512 acc[Q40W_T];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const struct q40w_wblock *wb = &panel[b];
        if (pf) /* the rest of the panel after next, spread over this one's arithmetic */
            prefetch_span(pf + b * Q40W_PF_RUN, Q40W_PF_RUN);
        __m512i wg[8];
        UNROLL for (int g = 0; g < 8; g++) wg[g] = _mm512_load_si512(&wb->w[g]);
        q40w_step(acc, wg, _mm512_load_ps(&wb->dw), &abs[b], a, as, b, NT, LOADS);
    }
    UNROLL for (int t = 0; t < NT; t++) q40w_store(y + t * ys, nr, acc[t], X8);
}

/* NT tokens against rows [0, nr) of the panel straight from the weights, each block unpacked
 * into registers as the run reaches it: for a panel that no later call reuses (a matmul's only
 * token tile, as in batched decode), where the unpack into the buffer cost about as much as
 * the run (its nine stores a block, and the run's reloads), and the two took turns. The loads
 * of the next block's weights and scales are issued before this block's arithmetic (the last
 * block loads itself again), so that their latency overlaps it: ~10 % faster than loading
 * each block as it comes. Same sums, same order. pf: the panel after next, a block's share per
 * block. */
ALWAYS_INLINE void q40w_run_direct(const uint8_t *w, size_t ws, int nr, int64_t nb,
                                   const struct q40w_ablock *abs, const uint8_t *a, size_t as,
                                   float *y, int64_t ys, const uint8_t *pf, const int NT,
                                   const int LOADS)
{
    const size_t qs = offsetof(struct elm_block_q4_0, qs), d = offsetof(struct elm_block_q4_0, d);
    struct ln_rowset rs;
    ln_rows(&rs, w, ws, nr, 0, sizeof(struct elm_block_q4_0));
    __m512 acc[Q40W_T];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    __m512i z[4]; /* the next block's rows, for ln_transpose4 */
    ln_load4(&rs, 0, qs, z);
    __m512 dn = ln_gather_f16(&rs, 0, d);
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            prefetch_span(pf + b * Q40W_R * sizeof(struct elm_block_q4_0),
                          Q40W_R * sizeof(struct elm_block_q4_0));
        __m512i raw[4], wg[8];
        ln_transpose4(z, raw);
        const __m512 dw = dn;
        const int64_t next = b + 1 < nb ? b + 1 : b;
        ln_load4(&rs, next, qs, z);
        dn = ln_gather_f16(&rs, next, d);
        q40w_nibbles(raw, wg);
        q40w_step(acc, wg, dw, &abs[b], a, as, b, NT, LOADS);
    }
    UNROLL for (int t = 0; t < NT; t++) ln_store(y + t * ys, nr, 0, acc[t]);
}

/* The prepared token tile at a: a kept one if this thread made it since the last FRESH call
 * (the activations of a matmul do not change during it), else made now (kept.h). The tiles of
 * a token chunk are T * as apart, so they fall in consecutive slots; the same tile is used by
 * every row panel of a row chunk. */
static const struct q40w_ablock *q40w_acts(struct q40w_scratch *s, const uint8_t *a, size_t as,
                                           int nt, int64_t nb)
{
    bool make;
    const int64_t slot =
        kept_slot(s->atag, Q40W_ABLOCKS, Q40W_SLOTS, Q40W_T, a, as, nb, nt, s->gen, &make);
    struct q40w_ablock *ab = &s->ab[slot * nb];
    if (make)
        q40w_prep(ab, a, as, nt, nb);
    return ab;
}

/* NT tokens against the 16 rows of the packed panels at p, straight from them: for a call that
 * no later one reuses (batched decode), as q40w_run_direct does for rows, with its pf. */
ALWAYS_INLINE void q40w_run_direct_x8(const uint8_t *p, size_t ws, int64_t nb,
                                      const struct q40w_ablock *abs, const uint8_t *a, size_t as,
                                      float *y, int64_t ys, const uint8_t *pf, const int NT,
                                      const int LOADS)
{
    __m512 acc[Q40W_T];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            prefetch_span(pf + b * Q40W_R * sizeof(struct elm_block_q4_0),
                          Q40W_R * sizeof(struct elm_block_q4_0));
        __m512i wg[8];
        __m512 dw;
        q40w_block_x8(p, p + Q40V_R * ws, nb, b, wg, &dw);
        q40w_step(acc, wg, dw, &abs[b], a, as, b, NT, LOADS);
    }
    UNROLL for (int t = 0; t < NT; t++) q40w_store(y + t * ys, Q40W_R, acc[t], true);
}

/* A call of Q40W_MIN_T..Q40W_T tokens over a panel of the 16 rows at w (nr of them, nb blocks
 * each), in the file's layout or packed (X8). A stream call that no other token tile of its
 * chunk follows runs straight from the weights; the others unpack the panel into the buffer
 * once, for every token tile of the chunk. */
ALWAYS_INLINE void q40w_call(struct q40w_scratch *s, const uint8_t *w, size_t ws, int nr,
                             int64_t nb, const void *a, size_t as, int nt, float *y, int64_t ys,
                             int stream, const bool X8)
{
    /* the panel after next, as the K-quant lane tiles do (q_k_tile.h): a whole run more
     * between a line's prefetch and its unpack than with the next panel, and into L2, not L1,
     * which the unpacked panel the run streams through needs; measured no faster nor slower
     * than the next panel into L1 under load, while no prefetch at all is ~45 % slower
     * (docs/kernels-perf.md) */
    const uint8_t *pf = stream & ELM_TILE_STREAM ? w + 2 * Q40W_R * ws : NULL;
    struct q40w_wblock *wb;
    struct elm_panel_key *key = q40w_slot(s, w, ws, nb, &wb);
    const bool kept = elm_panel_is(key, w, ws, nb, nr, X8);
    /* the dwords by loads (q40w_step): all, or where the shuffles have pipes of their own, half
     * (none for the rows' direct run, whose loads are many); RUN_LOADS(T) or RUN_SPLIT(T) */
    const bool loads = elm_kernels_feed() != ELM_FEED_SPLIT;
#define Q40W_BY_FEED(RUN)                                                                          \
    do {                                                                                           \
        if (loads)                                                                                 \
            ELM_TILE_FOR_T(nt, RUN##_LOADS);                                                       \
        else                                                                                       \
            ELM_TILE_FOR_T(nt, RUN##_SPLIT);                                                       \
    } while (0)
    if (!kept && !(stream & ELM_TILE_MORE)) {
        const struct q40w_ablock *abs = q40w_acts(s, a, as, nt, nb);
#define Q40W_DIRECT(T, L)                                                                          \
    X8 ? q40w_run_direct_x8(w, ws, nb, abs, a, as, y, ys, pf, T, L ? 8 : 4)                        \
       : q40w_run_direct(w, ws, nr, nb, abs, a, as, y, ys, pf, T, L ? 8 : 0)
#define Q40W_DIRECT_LOADS(T) Q40W_DIRECT(T, true)
#define Q40W_DIRECT_SPLIT(T) Q40W_DIRECT(T, false)
        Q40W_BY_FEED(Q40W_DIRECT);
#undef Q40W_DIRECT_SPLIT
#undef Q40W_DIRECT_LOADS
#undef Q40W_DIRECT
        return;
    }
    if (!kept) {
        q40w_unpack(wb, w, ws, nr, nb, pf, X8, false);
        elm_panel_set(key, w, ws, nb, nr, X8);
    }
    const struct q40w_ablock *abs = q40w_acts(s, a, as, nt, nb);
    if (pf) /* the unpack asked for the first Q40W_PF_UNPACK bytes a block */
        pf += nb * Q40W_PF_UNPACK;
#define Q40W_RUN_LOADS(T) q40w_run(wb, abs, nb, a, as, y, ys, nr, pf, T, X8, 8)
#define Q40W_RUN_SPLIT(T) q40w_run(wb, abs, nb, a, as, y, ys, nr, pf, T, X8, 4)
    Q40W_BY_FEED(Q40W_RUN);
#undef Q40W_RUN_SPLIT
#undef Q40W_RUN_LOADS
#undef Q40W_BY_FEED
}

/* The elm_tile_fn of the avx512 Q4_0 entry: nt <= Q40W_T; nr <= Q40W_R with several tokens
 * (one token: a whole row chunk, for the shared tile). */
static void q40w_tile(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nt,
                      float *y, int64_t ys, int stream)
{
    struct q40w_scratch *s = q40w_begin(stream);
    const int64_t nb = n / ELM_QK;
    if (!s || nt < Q40W_MIN_T || nr > Q40W_R || nb < 1 || nb > Q40W_MAX_BLOCKS) {
        elm_tile_in_panels(q4_0_tile, Q40_R, Q40_T, n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    q40w_call(s, w, ws, nr, nb, a, as, nt, y, ys, stream, false);
}

/* The tile_x8 of the avx512 Q4_0 entry (tiles.h), for weights packed at load (ELM_LAYOUT_X8):
 * nt <= Q40W_T; any nr for one token, nr <= Q40W_R for several. 4..8 tokens over 16 rows keep
 * the zmm tile (its panel two packed panels, q40w_block_x8); the rest, one token above all,
 * takes the avx2 packed tile (kernels/avx2/q4_0_x8.h, compiled here with this variant's flags),
 * which reads the panels in place. */
static void q40w_tile_x8(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                         int nt, float *y, int64_t ys, int stream)
{
    /* both tiles' buffers start the matmul afresh, whichever of them this call takes */
    struct q40w_scratch *s = q40w_begin(stream);
    const int64_t nb = n / ELM_QK;
    if (!s || nt < Q40W_MIN_T || nr != Q40W_R || nb < 1 || nb > Q40W_MAX_BLOCKS) {
        q4_0_tile_x8(n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    (void)q40v_begin(stream);
    q40w_call(s, w, ws, nr, nb, a, as, nt, y, ys, stream, true);
}

#endif
