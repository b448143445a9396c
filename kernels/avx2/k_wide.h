/* k_wide.h — the avx2 variant's Q4_K and Q6_K prefill tile: the shared tiles' arithmetic (q_k.h:
 * q45_k_impl, q16_impl) with the runs paired as k_pair.h pairs them, over a 4-row panel unpacked
 * once per token chunk.
 *
 * The shared tiles rebuild every run's quants (Q4_K: a load, a shift, two masks per 64
 * elements; Q6_K: ql and qh, shifts, masks, an or), unpack and pick the run's scales and, for
 * Q4_K, the minimum scales, for each row in every call. Here a 4-row panel's weights, paired
 * (k_pair.h's kp_q4_weights, kp_q6_weights: runs 2j, 2j + 1 in one register), their paired
 * scales, Q4_K's minimum scales (k4_tpair_mins) and -dmin or Q6_K's zero-token lanes, and d are
 * written once into a per-thread buffer and reused by every token tile of the chunk
 * (ELM_TILE_MORE). A token tile's activations are paired once per chunk (kp_pair_block;
 * Q6_K's biased to a + 128) and kept, with Q4_K's bsums pairs (kept.h). Per row, token and
 * super-block what is left: 8 vpmaddubsw, 4 vpaddw, 4 vpmaddwd and 4 vpaddd (kp_tokens), the
 * d product, convert and fma; Q4_K adds half a vpmaddwd, multiply, convert and fma for the
 * minimum lanes (two tokens per register), Q6_K a vpsubd of the zero token's lanes. Before the
 * pairing the runs took 8 vpmaddwd and 8 vpaddd (Q6_K also a vpsubw per run and row).
 *
 * The bits are the shared tiles': the lanes hold the same exact integers (lane k of run R: the
 * scaled sum of elements 4k..4k+3, the eight runs added in int32), then per super-block
 * fma(d_a * d_w, lane, acc), folded by hsum8; Q4_K's minimum lanes are the reference's four
 * (lane k: min[2k] * sum32[2k] + min[2k+1] * sum32[2k+1], exact int32), fma'd with
 * d_a * -dmin_w as k4_min_pair does (through k4_tpair, q_k.h), and folded by k4_min_fold.
 *
 * Buffer: 448 bytes a row and super-block, 112 KiB for 4 rows of up to 64 super-blocks (16384
 * columns; longer rows take the shared tile), and 288 KiB of prepared token tiles (2.25 KiB a
 * block and 8 tokens, 128 blocks: a token chunk of matmul.c needs at most 84); kept under
 * q4_0_wide.h's rules (keyed by pointers, dropped by an ELM_TILE_FRESH call). A panel is
 * unpacked only when more calls will use it (ELM_TILE_MORE); a lone call of 2..8 tokens
 * (batched decode; Q6_K 3..8) takes k_pair.h's rows, one token the shared tile. Included only
 * by kernels/avx2/avx2.c, after q_k.h.
 */
#ifndef ELM_AVX2_K_WIDE_H
#define ELM_AVX2_K_WIDE_H

#include <stddef.h>

#include "common/scratch.h"
#include "kernels/avx2/k_pair.h"
#include "kernels/avx2/kept.h"
#include "kernels/avx2/q_k.h"
#include "kernels/tiles.h"

#define KW_R          4   /* rows per panel */
#define KW_T          8   /* tokens per call: 8 int32 chains of one row in registers */
#define KW_MAX_BLOCKS 64  /* 16384 columns; longer rows take the shared tile */
#define KW_PBLOCKS    128 /* kept token tiles: this many blocks in all (288 KiB) */
#define KW_SLOTS      32  /* at most this many token tiles kept */
#define KW_CB         8   /* blocks per chunk of kw_run: 16 KiB of paired activations */

/* One super-block of one panel row (KIND 4: Q4_K, 6: Q6_K). */
struct kw_block {
    __m256i lo[4], hi[4]; /* run pair j: runs 2j, 2j + 1's weights, paired (k_pair.h) */
    __m256i sc2[4];       /* run pair j: the runs' scales, paired */
    __m256i mz;  /* Q4_K: the minimum scales (k4_tpair_mins); Q6_K: the zero token's lanes */
    float d;     /* the row's d */
    float ndmin; /* Q4_K: -dmin */
    float pad[6];
};

struct kw_scratch {
    struct kw_block wb[KW_R][KW_MAX_BLOCKS]; /* [row][block] */
    /* kept token tiles (kept.h): slot i's blocks from i * nb */
    struct k4_tpair pair[KW_PBLOCKS][KW_T / 2]; /* Q4_K: token pair p of each block */
    struct kp_act pa[KW_PBLOCKS][KW_T];         /* token t's activations, paired */
    struct kept_tag ptag[KW_SLOTS];
    uint64_t gen;             /* advanced by every FRESH call */
    struct elm_panel_key key; /* the panel wb holds */
};

/* This thread's scratch, made on its first call (common/scratch.h: not static TLS); NULL when
 * memory is short, and then the shared tile does the work. */
static _Thread_local struct kw_scratch *kw_scratch_p;

/* Unpacks rows [0, nr) of the panel (rows past nr are never read). */
ALWAYS_INLINE void kw_unpack(struct kw_scratch *s, const uint8_t *w, size_t ws, int nr, int64_t nb,
                             const int KIND)
{
    const size_t bb = KIND == 6 ? sizeof(struct elm_block_q6_k) : sizeof(struct elm_block_q4_k);
    for (int r = 0; r < nr; r++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *xb = w + (size_t)r * ws + (size_t)b * bb;
            struct kw_block *o = &s->wb[r][b];
            if (KIND == 6) {
                const struct elm_block_q6_k *x = (const void *)xb;
                o->d = h2f(x->d);
                o->ndmin = 0.0f;
                __m256i scv[2];
                kp_q6_scales(x, scv);
                __m256i z = _mm256_setzero_si256();
                UNROLL for (int j = 0; j < 4; j++)
                    kp_q6_weights(x, scv, j, &o->lo[j], &o->hi[j], &o->sc2[j], &z);
                _mm256_store_si256(&o->mz, z);
            } else {
                const struct elm_block_q4_k *x = (const void *)xb;
                /* d and dmin converted together (h2f's instruction); -dmin by its sign bit */
                const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)load_u32(x)));
                _mm_storel_epi64((__m128i *)&o->d, _mm_castps_si128(_mm_xor_ps(
                                                       dd, _mm_setr_ps(0.0f, -0.0f, 0.0f, 0.0f))));
                __m256i mins;
                const __m256i scv = kp_q4_scales(x, &mins);
                _mm256_store_si256(&o->mz, mins);
                UNROLL for (int j = 0; j < 4; j++)
                    kp_q4_weights(x, scv, j, &o->lo[j], &o->hi[j], &o->sc2[j]);
            }
        }
}

/* The token tile at a, prepared (kp_pair_block; Q4_K also k4_tpair_make): kept if this thread
 * made it since the last FRESH call (the chunk's tiles serve every panel), else made now.
 * Returns its slot: its blocks are pair[] and pa[] from slot * nb. */
ALWAYS_INLINE int64_t kw_acts(struct kw_scratch *s, const uint8_t *a, size_t as, int nt, int64_t nb,
                              const int KIND)
{
    bool make;
    const int64_t slot =
        kept_slot(s->ptag, KW_PBLOCKS, KW_SLOTS, KW_T, a, as, nb, nt, s->gen, &make);
    if (make)
        for (int64_t b = 0; b < nb; b++) {
            if (KIND == 4)
                for (int p = 0; 2 * p < nt; p++)
                    s->pair[slot * nb + b][p] = k4_tpair_make(
                        BLK(elm_block_q8_k, a, as, 2 * p, b),
                        BLK(elm_block_q8_k, a, as, 2 * p + 1 < nt ? 2 * p + 1 : 2 * p, b));
            for (int t = 0; t < nt; t++)
                kp_pair_block(&s->pa[slot * nb + b][t], BLK(elm_block_q8_k, a, as, t, b),
                              _mm256_set1_epi8(KIND == 6 ? -128 : 0));
        }
    return slot;
}

/* A panel row's float lanes for NT tokens, kept between chunks of blocks */
struct kw_lanes {
    __m256 acc[KW_T], accm[KW_T / 2];
};

/* Blocks [b0, b1) of the panel's rows [0, nr) against the NT tokens at a (kept in slot:
 * kw_acts), advancing L[r]. Rows go inside a chunk of blocks so that the chunk's paired
 * activations (2 KiB a block) stay in L1 for all of them: over whole rows, Q4_K at 5632
 * columns (44 KiB of them) streamed from L2 once per row and ran 5 % slower than unpaired.
 * pf: when not NULL, the next panel, row r's share of each block prefetched with it (the first
 * token tile of a panel brings the next). */
ALWAYS_INLINE void kw_run(const struct kw_scratch *s, int64_t slot, int nr, int64_t b0, int64_t b1,
                          int64_t nb, const uint8_t *a, size_t as, struct kw_lanes *L,
                          const uint8_t *pf, size_t ws, const int NT, const int KIND)
{
    const size_t bb = KIND == 6 ? sizeof(struct elm_block_q6_k) : sizeof(struct elm_block_q4_k);
    const int NP = KIND == 4 ? (NT + 1) / 2 : 0; /* Q4_K's token pairs */
    for (int r = 0; r < nr; r++) {
        __m256 acc[KW_T], accm[KW_T / 2];
        UNROLL for (int t = 0; t < NT; t++) acc[t] = L[r].acc[t];
        UNROLL for (int p = 0; p < NP; p++) accm[p] = L[r].accm[p];
        for (int64_t b = b0; b < b1; b++) {
            if (pf)
                prefetch_span(pf + (size_t)r * ws + b * bb, bb);
            const struct kw_block *o = &s->wb[r][b];
            if (KIND == 4) {
                const __m256 ndm = _mm256_broadcast_ss(&o->ndmin);
                const __m256i mins = _mm256_load_si256(&o->mz);
                UNROLL for (int p = 0; p < NP; p++) accm[p] =
                    k4_min_tpair(accm[p], mins, ndm, &s->pair[slot * nb + b][p]);
            }
            __m256i li[KW_T];
            UNROLL for (int j = 0; j < 4; j++)
                kp_tokens(li, _mm256_load_si256(&o->lo[j]), _mm256_load_si256(&o->hi[j]),
                          _mm256_load_si256(&o->sc2[j]), s->pa[slot * nb + b], j, NT, KIND);
            if (KIND == 6) {
                const __m256i z = _mm256_load_si256(&o->mz);
                UNROLL for (int t = 0; t < NT; t++) li[t] = _mm256_sub_epi32(li[t], z);
            }
            const __m256 dw = _mm256_broadcast_ss(&o->d);
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256 d =
                    _mm256_mul_ps(_mm256_broadcast_ss(&BLK(elm_block_q8_k, a, as, t, b)->d), dw);
                acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(li[t]), acc[t]);
            }
        }
        UNROLL for (int t = 0; t < NT; t++) L[r].acc[t] = acc[t];
        UNROLL for (int p = 0; p < NP; p++) L[r].accm[p] = accm[p];
    }
}

/* The elm_tile_fn of the avx2 Q4_K and Q6_K entries: nt <= KW_T; nr <= KW_R with several tokens
 * (one token: a whole row chunk, for the shared tile). */
ALWAYS_INLINE void kw_tile(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                           int nt, float *y, int64_t ys, int stream, const int KIND)
{
    struct kw_scratch *s =
        kw_scratch_p ? kw_scratch_p : (kw_scratch_p = elm_scratch_thread(sizeof *s));
    const int64_t nb = n / ELM_QK_K;
    if (s)
        kept_begin(&s->key, &s->gen, stream);
    const bool kept = s && elm_panel_is(&s->key, w, ws, nb, nr, KIND);
    /* a lone call (batched decode): k_pair.h */
    if (!kept && !(stream & ELM_TILE_MORE) && kp_lone(n, w, ws, nr, a, as, nt, y, ys, stream, KIND))
        return;
    if (!s || (!kept && !(stream & ELM_TILE_MORE)) || nr > KW_R || nb < 1 || nb > KW_MAX_BLOCKS) {
        elm_tile_in_panels(KIND == 6 ? q6_k_tile : q4_k_tile, KQ_R, KQ_T, n, w, ws, nr, a, as, nt,
                           y, ys, stream);
        return;
    }
    if (!kept) {
        kw_unpack(s, w, ws, nr, nb, KIND);
        elm_panel_set(&s->key, w, ws, nb, nr, KIND);
    }
    const int64_t slot = kw_acts(s, a, as, nt, nb, KIND);
    /* the first token tile of a panel (matmul.c: STREAM only when t is 0) brings the next */
    const uint8_t *pf = stream & ELM_TILE_STREAM ? (const uint8_t *)w + KW_R * ws : NULL;
    struct kw_lanes L[KW_R];
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < KW_T; t++)
            L[r].acc[t] = L[r].accm[t / 2] = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < nb; b0 += KW_CB) {
        const int64_t b1 = b0 + KW_CB < nb ? b0 + KW_CB : nb;
#define KW_RUN(T) kw_run(s, slot, nr, b0, b1, nb, a, as, L, pf, ws, T, KIND)
        if (nt == 1)
            KW_RUN(1);
        else
            ELM_TILE_FOR_T(nt, KW_RUN);
#undef KW_RUN
    }
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++)
            y[r + t * ys] = KIND == 6
                                ? hsum8_ps(L[r].acc[t])
                                : hsum8_ps(L[r].acc[t]) + k4_min_fold(L[r].accm[t / 2], t % 2);
}

static void q4_k_tile_wide(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                           int nt, float *y, int64_t ys, int stream)
{
    kw_tile(n, w, ws, nr, a, as, nt, y, ys, stream, 4);
}

static void q6_k_tile_wide(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                           int nt, float *y, int64_t ys, int stream)
{
    kw_tile(n, w, ws, nr, a, as, nt, y, ys, stream, 6);
}

#endif
