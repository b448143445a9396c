/* q4_0_amx.h — the avx512 variant's Q4_0 prefill entries: tiles of up to 16 tokens, which take
 * the AMX tile unit where the process may use it (ELM_FEED_AMX, kernels/feed.c) and are two
 * calls of q4_0_tile.h's 8-token tile elsewhere.
 *
 * One tdpbssd multiplies a 16-token x 32-byte tile of activations (A: one block of each token)
 * by an 8 x 64-byte tile of weights (B: the block's 8 groups of 4 bytes of 16 rows, the layout
 * q40w_unpack makes for the vector tile, here with the nibbles' -8 applied: signed by signed,
 * so no correction term) into 16 x 16 exact int32 block sums: the reference's isum of every
 * (token, row) at once. The float step stays the reference's and the vector units': the sums
 * stored to memory, then per token fma((float)isum, d_w * d_a, acc), 16 rows a register. A
 * 32-deep tdpbssd uses half of what the unit can do in one, but a deeper one would add two
 * blocks' sums before their scales, which the reference does not. Four blocks are multiplied
 * into the four C tiles while the previous four's sums go through the float step, so that no
 * step waits for a product's latency. The stores of the sums (1 KiB a block) and the float
 * step, not the products, take most of the time (docs/kernels-perf.md, s26).
 *
 * A tiles are loaded straight from the activations' rows, as rows of 32 bytes as apart. Only
 * the tokens' scales are prepared, as floats, and kept for the other panels (kept.h's slots,
 * q40w_scratch's generation). A compact copy of the token tile, kept for the whole matmul, was
 * 5-7 % faster (the 34-byte blocks' rows cross lines) but takes 16 x 36 bytes per block of every
 * token of a prompt, megabytes a thread; kept for a row chunk only, its copy cost more than it
 * saved. So only whole tiles of 16 tokens go to AMX: the A tile's rows are all tokens of the call,
 * and a matmul's last, ragged tile of a token chunk takes the vector tile. The signed panel is
 * kept like the vector tile's, in the same buffer, under its own key kind. Tile configuration is
 * per thread: loaded on a thread's first AMX call, kept after (loading it and releasing the
 * tiles around every call cost 3-6 % of a 512-token product; an idle core is not held out of
 * its deep sleep by loaded tiles, which Linux's intel_idle clears first). Included only by
 * kernels/avx512/avx512.c, after q4_0_tile.h; compiled with -mamx-tile -mamx-int8.
 */
#ifndef ELM_AVX512_Q4_0_AMX_H
#define ELM_AVX512_Q4_0_AMX_H

#include <immintrin.h>
#include <string.h>

#include "kernels/avx512/q4_0_tile.h"

#define Q40A_T       16   /* tokens per tile: the A tile's rows */
#define Q40A_ABLOCKS 4096 /* kept token tiles' scales: this many blocks (256 KiB) */
#define Q40A_SLOTS   64   /* at most this many token tiles kept */
#define Q40A_KIND    2    /* the panel key's kind bit of a signed (AMX) panel */

/* One block of a token tile: the tokens' scales. */
struct q40a_ablock {
    float da[Q40A_T];
};

struct q40a_scratch {
    struct q40a_ablock ab[Q40A_ABLOCKS];
    struct kept_tag tag[Q40A_SLOTS];
    _Alignas(64) int32_t c[8][Q40A_T][16]; /* two groups of four blocks' sums (aligned loads) */
    bool configured;          /* this thread has loaded the tile configuration */
};

static _Thread_local struct q40a_scratch *q40a_scratch_p;

/* The tile registers: 0-3 the sums of four blocks (16 x 16 int32), 4-5 activations (16 tokens
 * x 32 bytes), 6-7 weights (8 groups x 16 rows x 4 bytes). */
static void q40a_configure(struct q40a_scratch *x)
{
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } __attribute__((aligned(64))) cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) {
        cfg.rows[i] = i >= 6 ? ELM_QK / 4 : Q40A_T;
        cfg.colsb[i] = i == 4 || i == 5 ? ELM_QK : 64;
    }
    /* gcc's ldtilecfg names only the first bytes of cfg as its operand */
    __asm__ volatile("" ::: "memory");
    _tile_loadconfig(&cfg);
    x->configured = true;
}

/* The scales of the 16 tokens at a, kept or made now (q40w_acts' rule). */
static const struct q40a_ablock *q40a_acts(struct q40a_scratch *x, uint64_t gen, const uint8_t *a,
                                           size_t as, int64_t nb)
{
    bool make;
    const int64_t slot =
        kept_slot(x->tag, Q40A_ABLOCKS, Q40A_SLOTS, Q40A_T, a, as, nb, Q40A_T, gen, &make);
    struct q40a_ablock *ab = &x->ab[slot * nb];
    if (make)
        for (int t = 0; t < Q40A_T; t++) {
            const struct elm_block_q8_0 *v = (const struct elm_block_q8_0 *)(a + (size_t)t * as);
            for (int64_t b = 0; b < nb; b++)
                ab[b].da[t] = h2f(v[b].d);
        }
    return ab;
}

/* Block b's sums into tile C (zeroed first), with tiles A and B. */
#define Q40A_DP(C, A, B, b)                                                                        \
    do {                                                                                           \
        _tile_zero(C);                                                                             \
        _tile_loadd(A, q + (b) * sizeof(struct elm_block_q8_0), as);                               \
        _tile_loadd(B, &wb[b].w[0], 64);                                                           \
        _tile_dpbssd(C, A, B);                                                                     \
    } while (0)

/* The reference's float step of block b for 16 tokens, from its stored sums c. */
ALWAYS_INLINE void q40a_step(__m512 acc[Q40A_T], const int32_t c[Q40A_T][16],
                             const struct q40w_wblock *wb, const struct q40a_ablock *ab)
{
    const __m512 dw = _mm512_load_ps(&wb->dw);
    UNROLL for (int t = 0; t < Q40A_T; t++) acc[t] =
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[t])),
                        _mm512_mul_ps(dw, _mm512_set1_ps(ab->da[t])), acc[t]);
}

/* The 16 tokens at a (as apart; ab their scales) against the signed panel wb; rows [0, nr) of
 * each token's outputs are stored (X8: all 16, in natural order). pf: the rest of the panel
 * after next. */
static void q40a_run(struct q40a_scratch *x, const struct q40w_wblock *wb, const uint8_t *a,
                     size_t as, const struct q40a_ablock *ab, int64_t nb, float *y, int64_t ys,
                     int nr, const uint8_t *pf, bool X8)
{
    const uint8_t *q = a + offsetof(struct elm_block_q8_0, qs);
    /* the tile loads are asm that gcc does not know to read memory: the panel's stores first */
    __asm__ volatile("" ::: "memory");
    __m512 acc[Q40A_T];
    UNROLL for (int t = 0; t < Q40A_T; t++) acc[t] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        if (pf)
            prefetch_span(pf + b * Q40W_PF_RUN, 4 * Q40W_PF_RUN);
        Q40A_DP(0, 4, 6, b);
        Q40A_DP(1, 5, 7, b + 1);
        Q40A_DP(2, 4, 6, b + 2);
        Q40A_DP(3, 5, 7, b + 3);
        /* the two halves of x->c take groups in turn */
        int32_t(*c)[Q40A_T][16] = x->c + (b & 4 ? 4 : 0);
        int32_t(*prev)[Q40A_T][16] = x->c + (b & 4 ? 0 : 4);
        if (b) /* the previous four blocks, while the unit works on these */
            for (int i = 0; i < 4; i++)
                q40a_step(acc, prev[i], &wb[b - 4 + i], &ab[b - 4 + i]);
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
        _tile_stored(2, c[2], 64);
        _tile_stored(3, c[3], 64);
    }
    if (b)
        for (int i = 0; i < 4; i++)
            q40a_step(acc, x->c[(b & 4 ? 0 : 4) + i], &wb[b - 4 + i], &ab[b - 4 + i]);
    for (; b < nb; b++) {
        Q40A_DP(0, 4, 6, b);
        _tile_stored(0, x->c[0], 64);
        q40a_step(acc, x->c[0], &wb[b], &ab[b]);
    }
    UNROLL for (int t = 0; t < Q40A_T; t++) q40w_store(y + t * ys, nr, acc[t], X8);
}

/* The call on AMX, if the process's feed is AMX and the call one it takes (else false, nothing
 * done): nr rows (16 when X8), 16 tokens, rows the unpacked buffer holds. */
static bool q40a_call(int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a, size_t as,
                      int nt, float *y, int64_t ys, int stream, bool X8)
{
    const int64_t nb = n / ELM_QK;
    if (elm_kernels_feed() != ELM_FEED_AMX || nt != Q40A_T || nr > Q40W_R || (X8 && nr != Q40W_R) ||
        nb < 1 || nb > Q40W_MAX_BLOCKS)
        return false;
    if (!q40a_scratch_p)
        q40a_scratch_p = elm_scratch_thread(sizeof(struct q40a_scratch));
    struct q40a_scratch *x = q40a_scratch_p;
    struct q40w_scratch *s = q40w_begin(stream);
    if (!x || !s)
        return false;
    if (X8) /* both of the packed tiles' buffers start the matmul afresh */
        (void)q40v_begin(stream);
    if (!x->configured)
        q40a_configure(x);
    const uint8_t *pf = stream & ELM_TILE_STREAM ? w + 2 * Q40W_R * ws : NULL;
    const int kind = X8 | Q40A_KIND;
    struct q40w_wblock *wb;
    struct elm_panel_key *key = q40w_slot(s, w, ws, nb, &wb);
    if (!elm_panel_is(key, w, ws, nb, nr, kind)) {
        q40w_unpack(wb, w, ws, nr, nb, pf, X8, true);
        elm_panel_set(key, w, ws, nb, nr, kind);
    }
    if (pf) /* the unpack asked for the first Q40W_PF_UNPACK bytes a block */
        pf += nb * Q40W_PF_UNPACK;
    q40a_run(x, wb, a, as, q40a_acts(x, s->gen, a, as, nb), nb, y, ys, nr, pf, X8);
    return true;
}

/* A call of more than 8 tokens that AMX does not take (no AMX, or a ragged tile): the 8-token
 * tile twice, the second on the panel the first kept. */
static void q40a_halves(elm_tile_fn eight, int64_t n, const uint8_t *w, size_t ws, int nr,
                        const uint8_t *a, size_t as, int nt, float *y, int64_t ys, int stream)
{
    eight(n, w, ws, nr, a, as, Q40W_T, y, ys, stream | ELM_TILE_MORE);
    eight(n, w, ws, nr, a + Q40W_T * as, as, nt - Q40W_T, y + Q40W_T * ys, ys,
          stream & ELM_TILE_MORE);
}

/* The elm_tile_fn of the avx512 Q4_0 entry, rows as in the file: nt <= Q40A_T. */
static void q40a_tile(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nt,
                      float *y, int64_t ys, int stream)
{
    if (nt <= Q40W_T)
        q40w_tile(n, w, ws, nr, a, as, nt, y, ys, stream);
    else if (!q40a_call(n, w, ws, nr, a, as, nt, y, ys, stream, false))
        q40a_halves(q40w_tile, n, w, ws, nr, a, as, nt, y, ys, stream);
}

/* Its tile_x8, for weights packed at load (ELM_LAYOUT_X8). */
static void q40a_tile_x8(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                         int nt, float *y, int64_t ys, int stream)
{
    if (nt <= Q40W_T)
        q40w_tile_x8(n, w, ws, nr, a, as, nt, y, ys, stream);
    else if (!q40a_call(n, w, ws, nr, a, as, nt, y, ys, stream, true))
        q40a_halves(q40w_tile_x8, n, w, ws, nr, a, as, nt, y, ys, stream);
}

#endif
