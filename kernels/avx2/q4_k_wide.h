/* q4_k_wide.h — the avx2 variant's Q4_K prefill tile: the shared 1 row x 8 token tile's
 * arithmetic (q_k.h, q45_k_impl) over a panel unpacked once per token chunk instead of once per
 * 8 tokens.
 *
 * The shared tile splits every run's nibbles (a load, a shift, two masks per 64 elements),
 * unpacks the 6-bit scales (k4_scales), picks each run's scale vector (a vpshufb per run) and
 * the minimum scales for each row in every call, and its minimum lanes pair two tokens' bsums
 * by a vpmaddwd per token and a vphaddd per pair, again per row. Here a 4-row panel's quants
 * (as bytes), per-run scale vectors, minimum scales (k4_tpair_mins), d and -dmin are
 * written once into a per-thread buffer and reused by every token tile of the chunk
 * (ELM_TILE_MORE), and a token tile's bsums are summed in pairs once per chunk (kept.h). Per row,
 * token and super-block what is left: 8 vpmaddubsw + 8 vpmaddwd + 8 vpaddd (k_pair.h's lone
 * calls pair the runs, 4 vpmaddwd), the d product, convert and fma, and half a vpmaddwd,
 * multiply, convert and fma for the minimum lanes (two tokens per register).
 *
 * The bits are q45_k_impl's: the lanes hold the same exact integers (lane k of run R: the
 * scaled sum of elements 4k..4k+3, the eight runs added in int32), then per super-block
 * fma(d_a * d_w, lane, acc); the minimum lanes are the reference's four (lane k:
 * min[2k] * sum32[2k] + min[2k+1] * sum32[2k+1], exact int32), fma'd with d_a * -dmin_w as
 * k4_min_pair does (through k4_tpair, q_k.h), and folded by k4_min_fold.
 *
 * Buffer: 576 bytes a row and super-block, 144 KiB for 4 rows of up to 64 super-blocks (16384
 * columns; longer rows take the shared tile), and 64 KiB of prepared token tiles (256 bytes a
 * block and 8 tokens); kept under q6_k_wide.h's rules (keyed by
 * pointers, dropped by an ELM_TILE_FRESH call). A panel is unpacked only when more calls will
 * use it (ELM_TILE_MORE); a lone call of 2..8 tokens (batched decode) takes k_pair.h's rows,
 * one token the shared tile.
 * Included only by kernels/avx2/avx2.c, after q_k.h.
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
#define Q4V_PBLOCKS    256 /* kept token tiles: this many blocks in all (64 KiB) */
#define Q4V_SLOTS      32  /* at most this many token tiles kept */

/* One super-block of one panel row. */
struct q4v_block {
    __m256i q[8];  /* run R: its 32 quants, 0..15 */
    __m256i sc[8]; /* run R: its 6-bit scale in every int16 */
    __m256i mins;  /* [m0..m3, m0..m3 | m4..m7, m4..m7] as int16 */
    float d;       /* the row's d */
    float ndmin;   /* -dmin */
    float pad[6];
};

struct q4v_scratch {
    struct q4v_block wb[Q4V_R][Q4V_MAX_BLOCKS]; /* [row][block] */
    /* kept token tiles (kept.h): slot i's blocks from i * nb, each [pair] */
    struct k4_tpair pair[Q4V_PBLOCKS][Q4V_T / 2]; /* token pair p of each block */
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
            UNROLL for (int R = 0; R < 8; R++) _mm256_store_si256(
                &o->sc[R], _mm256_shuffle_epi8(scv, _mm256_set1_epi16((short)K16_PICK(R))));
            _mm256_store_si256(&o->mins, k4_tpair_mins(sm));
            UNROLL for (int j = 0; j < 4; j++)
            { /* 64 elements: runs 2j (low nibbles), 2j+1 (high), as q45_k_impl */
                const __m256i raw = loadu256(x->qs + 32 * j);
                _mm256_store_si256(&o->q[2 * j], _mm256_and_si256(raw, m4));
                _mm256_store_si256(&o->q[2 * j + 1],
                                   _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
            }
        }
}

/* The token tile at a, prepared (k4_tpair_make): kept if this thread made it since the last
 * FRESH call (the chunk's tiles serve every panel), else made now. */
static const struct k4_tpair *q4v_acts(struct q4v_scratch *s, const uint8_t *a, size_t as, int nt,
                                       int64_t nb)
{
    int64_t nslot = Q4V_PBLOCKS / nb;
    if (nslot > Q4V_SLOTS)
        nslot = Q4V_SLOTS;
    bool make;
    const int64_t slot = kept_slot(s->ptag, nslot, Q4V_T, a, as, nb, nt, s->gen, &make);
    struct k4_tpair(*pr)[Q4V_T / 2] = &s->pair[slot * nb];
    if (make)
        for (int64_t b = 0; b < nb; b++)
            for (int p = 0; 2 * p < nt; p++)
                pr[b][p] = k4_tpair_make(
                    BLK(elm_block_q8_k, a, as, 2 * p, b),
                    BLK(elm_block_q8_k, a, as, 2 * p + 1 < nt ? 2 * p + 1 : 2 * p, b));
    return pr[0];
}

/* Row r of the panel against the NT tokens at a (pairs: their q4v_acts); pf: when not NULL, the
 * next panel's row r, prefetched a block's share at a time (the first token tile of a panel brings
 * the next). */
ALWAYS_INLINE void q4v_run(const struct q4v_scratch *s, const struct k4_tpair *pairs, int r,
                           int64_t nb, const uint8_t *a, size_t as, float *y, int64_t ys,
                           const uint8_t *pf, const int NT)
{
    const int NP = (NT + 1) / 2; /* token pairs */
    __m256 acc[Q4V_T], accm[Q4V_T / 2];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    UNROLL for (int p = 0; p < NP; p++) accm[p] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            prefetch_span(pf + b * sizeof(struct elm_block_q4_k), sizeof(struct elm_block_q4_k));
        const struct q4v_block *o = &s->wb[r][b];
        const struct elm_block_q8_k *v[Q4V_T];
        UNROLL for (int t = 0; t < NT; t++) v[t] = BLK(elm_block_q8_k, a, as, t, b);
        const __m256 ndm = _mm256_broadcast_ss(&o->ndmin);
        const __m256i mins = _mm256_load_si256(&o->mins);
        UNROLL for (int p = 0; p < NP; p++) accm[p] =
            k4_min_tpair(accm[p], mins, ndm, &pairs[b * (Q4V_T / 2) + p]);
        __m256i li[Q4V_T];
        UNROLL for (int t = 0; t < NT; t++) li[t] = _mm256_setzero_si256();
        UNROLL for (int R = 0; R < 8; R++)
        {
            const __m256i q = _mm256_load_si256(&o->q[R]), sc = _mm256_load_si256(&o->sc[R]);
            UNROLL for (int t = 0; t < NT; t++)
            {
                li[t] = madd_acc(li[t], _mm256_maddubs_epi16(q, loadu256(v[t]->qs + 32 * R)), sc);
                KEEP_CHAIN(li[t]);
            }
        }
        const __m256 dw = _mm256_broadcast_ss(&o->d);
        UNROLL for (int t = 0; t < NT; t++)
        {
            const __m256 d = _mm256_mul_ps(_mm256_broadcast_ss(&v[t]->d), dw);
            acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(li[t]), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++) y[t * ys] =
        hsum8_ps(acc[t]) + k4_min_fold(accm[t / 2], t % 2);
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
    const struct k4_tpair *pairs = q4v_acts(s, a, as, nt, nb);
    /* the first token tile of a panel (matmul.c: STREAM only when t is 0) brings the next */
    const uint8_t *pf = stream & ELM_TILE_STREAM ? (const uint8_t *)w + Q4V_R * ws : NULL;
    for (int r = 0; r < nr; r++) {
        const uint8_t *pr = pf ? pf + (size_t)r * ws : NULL;
        switch (nt) {
        case 1:
            q4v_run(s, pairs, r, nb, a, as, y + r, ys, pr, 1);
            break;
        case 2:
            q4v_run(s, pairs, r, nb, a, as, y + r, ys, pr, 2);
            break;
        case 3:
            q4v_run(s, pairs, r, nb, a, as, y + r, ys, pr, 3);
            break;
        case 4:
            q4v_run(s, pairs, r, nb, a, as, y + r, ys, pr, 4);
            break;
        case 5:
            q4v_run(s, pairs, r, nb, a, as, y + r, ys, pr, 5);
            break;
        case 6:
            q4v_run(s, pairs, r, nb, a, as, y + r, ys, pr, 6);
            break;
        case 7:
            q4v_run(s, pairs, r, nb, a, as, y + r, ys, pr, 7);
            break;
        default:
            q4v_run(s, pairs, r, nb, a, as, y + r, ys, pr, 8);
            break;
        }
    }
}

#endif
