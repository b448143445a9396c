/* q4_k_wide.h — the avx2 variant's Q4_K prefill tile: the shared 1 row x 8 token tile's
 * arithmetic (q_k.h, q45_k_impl) over a panel unpacked once per token chunk instead of once per
 * 8 tokens.
 *
 * The shared tile splits every run's nibbles (a load, a shift, two masks per 64 elements),
 * unpacks the 6-bit scales (k4_scales), picks each run's scale vector (a vpshufb per run) and
 * the minimum scales for each row in every call, and its minimum lanes pair two tokens' bsums
 * by a vpmaddwd per token and a vphaddd per pair, again per row. Here a 4-row panel's quants
 * (as bytes), scale vectors, minimum scales (k4_tpair_mins), d and -dmin are
 * written once into a per-thread buffer and reused by every token tile of the chunk
 * (ELM_TILE_MORE), and a token tile's bsums are summed in pairs once per chunk (kept.h). The
 * runs go in pairs, as in k_pair.h's lone calls: the panel holds them paired, and the token
 * tile's activations are paired once per chunk and kept beside its bsums. Per row, token and
 * super-block what is left: 8 vpmaddubsw, 4 vpaddw, 4 vpmaddwd and 4 vpaddd, the d product,
 * convert and fma, and half a vpmaddwd, multiply, convert and fma for the minimum lanes (two
 * tokens per register).
 *
 * The bits are q45_k_impl's: the lanes hold the same exact integers (lane k of run R: the
 * scaled sum of elements 4k..4k+3, the eight runs added in int32), then per super-block
 * fma(d_a * d_w, lane, acc); the minimum lanes are the reference's four (lane k:
 * min[2k] * sum32[2k] + min[2k+1] * sum32[2k+1], exact int32), fma'd with d_a * -dmin_w as
 * k4_min_pair does (through k4_tpair, q_k.h), and folded by k4_min_fold.
 *
 * Buffer: 448 bytes a row and super-block, 112 KiB for 4 rows of up to 64 super-blocks (16384
 * columns; longer rows take the shared tile), and 288 KiB of prepared token tiles (2.25 KiB a
 * block and 8 tokens, 128 blocks: a token chunk of matmul.c needs at most 84); kept under
 * q6_k_wide.h's rules (keyed by pointers, dropped by an ELM_TILE_FRESH call). A panel is
 * unpacked only when more calls will use it (ELM_TILE_MORE); a lone call of 2..8 tokens
 * (batched decode) takes k_pair.h's rows, one token the shared tile. Included only by
 * kernels/avx2/avx2.c, after q_k.h.
 */
#ifndef ELM_AVX2_Q4_K_WIDE_H
#define ELM_AVX2_Q4_K_WIDE_H

#include <stddef.h>

#include "common/scratch.h"
#include "kernels/avx2/k_pair.h"
#include "kernels/avx2/kept.h"
#include "kernels/avx2/q_k.h"
#include "kernels/tiles.h"

#define Q4V_R          4   /* rows per panel */
#define Q4V_T          8   /* tokens per call: 8 int32 chains of one row in registers */
#define Q4V_MAX_BLOCKS 64  /* 16384 columns; longer rows take the shared tile */
#define Q4V_PBLOCKS    128 /* kept token tiles: this many blocks in all (288 KiB) */
#define Q4V_SLOTS      32  /* at most this many token tiles kept */
#define Q4V_CB         8   /* blocks per chunk of q4v_run: 16 KiB of paired activations */

/* One super-block of one panel row. */
struct q4v_block {
    __m256i lo[4], hi[4]; /* run pair j: runs 2j, 2j + 1's quants (0..15), paired (k_pair.h) */
    __m256i sc2[4];       /* run pair j: the runs' 6-bit scales, paired */
    __m256i mins;         /* [m0..m3, m0..m3 | m4..m7, m4..m7] as int16 */
    float d;              /* the row's d */
    float ndmin;          /* -dmin */
    float pad[6];
};

struct q4v_scratch {
    struct q4v_block wb[Q4V_R][Q4V_MAX_BLOCKS]; /* [row][block] */
    /* kept token tiles (kept.h): slot i's blocks from i * nb */
    struct k4_tpair pair[Q4V_PBLOCKS][Q4V_T / 2]; /* token pair p of each block */
    struct kp_act pa[Q4V_PBLOCKS][Q4V_T];         /* token t's activations, paired */
    struct kept_tag ptag[Q4V_SLOTS];
    uint64_t gen; /* advanced by every FRESH call */
    /* the panel wb holds (w NULL: none) */
    const void *w;
    size_t ws;
    int64_t nb;
    int nr;
};

/* This thread's scratch, made on its first call (common/scratch.h: not static TLS); NULL when
 * memory is short, and then the shared tile does the work. */
static _Thread_local struct q4v_scratch *q4v_scratch_p;

/* Unpacks rows [0, nr) of the panel (rows past nr are never read). The scales stay in one
 * register: K16_PICK spreads run R's over a vector, vpermq lays out the minimum scales. */
static void q4v_unpack(struct q4v_scratch *s, const uint8_t *w, size_t ws, int nr, int64_t nb)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int r = 0; r < nr; r++)
        for (int64_t b = 0; b < nb; b++) {
            const struct elm_block_q4_k *x =
                (const void *)(w + (size_t)r * ws + (size_t)b * sizeof(struct elm_block_q4_k));
            struct q4v_block *o = &s->wb[r][b];
            /* d and dmin converted together (h2f's instruction); -dmin by its sign bit */
            const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)load_u32(x)));
            _mm_storel_epi64((__m128i *)&o->d, _mm_castps_si128(_mm_xor_ps(
                                                   dd, _mm_setr_ps(0.0f, -0.0f, 0.0f, 0.0f))));
            /* [sc0..sc7 | m0..m7] as int16 */
            const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_vec(x->scales));
            const __m256i scv = _mm256_permute2x128_si256(sm, sm, 0x00);
            _mm256_store_si256(&o->mins, k4_tpair_mins(sm));
            UNROLL for (int j = 0; j < 4; j++)
            { /* 64 elements: runs 2j (low nibbles), 2j+1 (high), as q45_k_impl */
                const __m256i raw = loadu256(x->qs + 32 * j);
                const __m256i q0 = _mm256_and_si256(raw, m4),
                              q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                _mm256_store_si256(&o->lo[j], k16_pair_lo(q0, q1));
                _mm256_store_si256(&o->hi[j], k16_pair_hi(q0, q1));
                const __m256i pick = _mm256_set1_epi32(K16_PICK2(2 * j, 2 * j + 1));
                _mm256_store_si256(&o->sc2[j], _mm256_shuffle_epi8(scv, pick));
            }
        }
}

/* The token tile at a, prepared (k4_tpair_make, kp_pair_block): kept if this thread made it
 * since the last FRESH call (the chunk's tiles serve every panel), else made now. Returns its
 * slot: its blocks are pair[] and pa[] from slot * nb. */
static int64_t q4v_acts(struct q4v_scratch *s, const uint8_t *a, size_t as, int nt, int64_t nb)
{
    int64_t nslot = Q4V_PBLOCKS / nb;
    if (nslot > Q4V_SLOTS)
        nslot = Q4V_SLOTS;
    bool make;
    const int64_t slot = kept_slot(s->ptag, nslot, Q4V_T, a, as, nb, nt, s->gen, &make);
    if (make)
        for (int64_t b = 0; b < nb; b++) {
            for (int p = 0; 2 * p < nt; p++)
                s->pair[slot * nb + b][p] = k4_tpair_make(
                    BLK(elm_block_q8_k, a, as, 2 * p, b),
                    BLK(elm_block_q8_k, a, as, 2 * p + 1 < nt ? 2 * p + 1 : 2 * p, b));
            for (int t = 0; t < nt; t++)
                kp_pair_block(&s->pa[slot * nb + b][t], BLK(elm_block_q8_k, a, as, t, b),
                              _mm256_setzero_si256());
        }
    return slot;
}

/* A panel row's float lanes for NT tokens, kept between chunks of blocks */
struct q4v_lanes {
    __m256 acc[Q4V_T], accm[Q4V_T / 2];
};

/* Blocks [b0, b1) of the panel's rows [0, nr) against the NT tokens at a (kept in slot:
 * q4v_acts), advancing L[r]. Rows go inside a chunk of blocks so that the chunk's paired
 * activations (2 KiB a block) stay in L1 for all of them: over whole rows, 5632 columns
 * (44 KiB of them) streamed from L2 once per row and ran 5 % slower than unpaired.
 * pf: when not NULL, the next panel, row r's share of each block prefetched with it (the first
 * token tile of a panel brings the next). */
ALWAYS_INLINE void q4v_run(const struct q4v_scratch *s, int64_t slot, int nr, int64_t b0,
                           int64_t b1, int64_t nb, const uint8_t *a, size_t as, struct q4v_lanes *L,
                           const uint8_t *pf, size_t ws, const int NT)
{
    const int NP = (NT + 1) / 2; /* token pairs */
    for (int r = 0; r < nr; r++) {
        __m256 acc[Q4V_T], accm[Q4V_T / 2];
        UNROLL for (int t = 0; t < NT; t++) acc[t] = L[r].acc[t];
        UNROLL for (int p = 0; p < NP; p++) accm[p] = L[r].accm[p];
        for (int64_t b = b0; b < b1; b++) {
            if (pf)
                prefetch_span(pf + (size_t)r * ws + b * sizeof(struct elm_block_q4_k),
                              sizeof(struct elm_block_q4_k));
            const struct q4v_block *o = &s->wb[r][b];
            const __m256 ndm = _mm256_broadcast_ss(&o->ndmin);
            const __m256i mins = _mm256_load_si256(&o->mins);
            UNROLL for (int p = 0; p < NP; p++) accm[p] =
                k4_min_tpair(accm[p], mins, ndm, &s->pair[slot * nb + b][p]);
            __m256i li[Q4V_T];
            UNROLL for (int j = 0; j < 4; j++)
                kp_tokens(li, _mm256_load_si256(&o->lo[j]), _mm256_load_si256(&o->hi[j]),
                          _mm256_load_si256(&o->sc2[j]), s->pa[slot * nb + b], j, NT, 4);
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

/* The elm_tile_fn of the avx2 Q4_K entry: nt <= Q4V_T; nr <= Q4V_R with several tokens (one
 * token: a whole row chunk, for the shared tile). */
static void q4_k_tile_wide(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                           int nt, float *y, int64_t ys, int stream)
{
    struct q4v_scratch *s =
        q4v_scratch_p ? q4v_scratch_p : (q4v_scratch_p = elm_scratch_thread(sizeof *s));
    const int64_t nb = n / ELM_QK_K;
    if (s && (stream & ELM_TILE_FRESH)) { /* a new matmul: what pointers kept may have changed */
        s->w = NULL;
        s->gen++;
    }
    const bool kept = s && s->w == w && s->ws == ws && s->nb == nb && s->nr == nr;
    /* a lone call (batched decode): k_pair.h */
    if (!kept && !(stream & ELM_TILE_MORE) && kp_lone(n, w, ws, nr, a, as, nt, y, ys, stream, 4))
        return;
    if (!s || (!kept && !(stream & ELM_TILE_MORE)) || nr > Q4V_R || nb < 1 || nb > Q4V_MAX_BLOCKS) {
        elm_tile_in_panels(q4_k_tile, KQ_R, KQ_T, n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    if (!kept) {
        q4v_unpack(s, w, ws, nr, nb);
        s->w = w;
        s->ws = ws;
        s->nb = nb;
        s->nr = nr;
    }
    const int64_t slot = q4v_acts(s, a, as, nt, nb);
    /* the first token tile of a panel (matmul.c: STREAM only when t is 0) brings the next */
    const uint8_t *pf = stream & ELM_TILE_STREAM ? (const uint8_t *)w + Q4V_R * ws : NULL;
    struct q4v_lanes L[Q4V_R];
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < Q4V_T; t++)
            L[r].acc[t] = L[r].accm[t / 2] = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < nb; b0 += Q4V_CB) {
        const int64_t b1 = b0 + Q4V_CB < nb ? b0 + Q4V_CB : nb;
#define Q4V_RUN(T) q4v_run(s, slot, nr, b0, b1, nb, a, as, L, pf, ws, T)
        if (nt == 1)
            Q4V_RUN(1);
        else
            ELM_TILE_FOR_T(nt, Q4V_RUN);
#undef Q4V_RUN
    }
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++)
            y[r + t * ys] = hsum8_ps(L[r].acc[t]) + k4_min_fold(L[r].accm[t / 2], t % 2);
}

#endif
