/* q8_0_wide.h — the avx2 variant's Q8_0, Q5_0, Q4_1, Q5_1, IQ4_NL and IQ4_XS prefill tile: one
 * output per 32-bit lane, the AVX2 counterpart of the avx512 Q8_0 lane tile
 * (kernels/avx512/q_legacy_tile.h; the panel reuse rules are q4_0_wide.h's).
 *
 * The reference (elm_ref_q8_0_vec_dot) keeps eight float lanes per output: lane k advances by
 * fma(d_w * d_a, (float)(the integer products of elements 4k..4k+3), lane) once per block and
 * the eight fold as elm_hsum8 at the end. The shared tile (q_legacy.h) holds one output's eight
 * lanes in a ymm, so every (row, token, block) pays its own scale product, broadcast and fold
 * bookkeeping, and a 4 x 2 tile's accumulators, weights and scales do not fit 16 registers (the
 * compiler spilled five accumulators). Here accumulator k holds lane k of 8 rows of one token,
 * and lane k's exact integer comes from 16-bit products: the panel holds the 8 rows' weights
 * 4k, 4k+1 (vector e[k]) and 4k+2, 4k+3 (o[k]) sign-extended to int16 pairs, the token's
 * activations are int16 too, and two vpmaddwd by the broadcast activation pairs plus a vpaddd
 * give the lane for all 8 rows. A block costs per token and 8 outputs 8 x (2 vpmaddwd, vpaddd,
 * convert, fma) and one multiply of the rows' scales by the token's: 33 uops on the two ports
 * that multiply, convert and fma on AVX2 cores, plus 8 vpaddd on a third (scripts/avx2-ports.c).
 * The int8 route (llama.cpp's sign trick, vpsignb + vpmaddubsw + vpmaddwd by ones per lane)
 * took 41 on those two ports; the int16 panel is the same 512 bytes a block as its |w| and w.
 * The convert and fma per lane and block are the reference's float steps, so no schedule
 * drops them. The fold of the eight lanes is the reference's hsum8, elementwise on 8 rows.
 * Vector loads bind as much: a core issues about two a cycle (Zen 5: loads, broadcasts and
 * folded operands alike; scripts/avx2-ports.c), and a token costs 34 a block. So tokens go two
 * at a time where they can (q80v_run2): each weight vector loaded serves both, 27 loads a token.
 *
 * Q5_0 has the same float structure (elm_ref_q5_0_vec_dot: lane k the exact integer of
 * (q - 16) x a over elements 4k..4k+3, one fma per block, Q8_0 activations), so its panel holds
 * q - 16 (-16..15) as signed weights and the same run serves it exactly. Q4_1's lanes are the
 * same too (weights 0..15), over Q8_1 activations, plus the reference's offset chain
 * fma(m_w, s_a, summs) per block, 8 rows per vector, added after the fold. Q5_1 is Q4_1 with
 * weights 0..31 (elm_ref_q5_1_vec_dot: the same lanes, Q8_1 activations, offset chain), and
 * IQ4_NL is Q8_0 with the weights looked up in the iq4_nl table (elm_ref_iq4_nl_vec_dot: lane k
 * the exact integer of value x a over 4k..4k+3, one fma per block by d_w * d_a, Q8_0
 * activations); the panel holds the table values (-127..113).
 *
 * IQ4_XS (elm_ref_iq4_xs_vec_dot) differs in one way: its lane k is the exact integer
 * sum over the 8 sub-blocks of a 256-element super-block of ls_b x (value x a over 4k..4k+3),
 * and the float step (convert, fma by d_w * d_a with Q8_K's float d_a) comes once per
 * super-block. ls_b x value is an exact integer of at most 32 x 127 = 4064, so the panel holds
 * it as the int16 weight of sub-block b (the panel stays one 32-element block per sub-block),
 * the run adds the 8 sub-blocks' lanes as int32 (at most 8 x 4 x 4064 x 128 in size, exact as
 * the reference's int32) and converts and fmas once per super-block.
 *
 * The unpacked panel ([block]: e and o per group as 8 rows x 2 int16 pairs, the 8 scales and
 * offsets as floats; 576 bytes a block, 198 KiB for the longest row taken) lives in a per-thread
 * buffer, unpacked in a matmul's first call on the panel (`stream`, which also prefetches the next
 * panel) and reused by the panel's later token tiles, under q4_0_wide.h's rules (the key includes
 * the type). The int16 activations are kept per thread for the matmul's token chunk
 * (struct q80v_acts). Included only by kernels/avx2/avx2.c, after q_legacy.h.
 */
#ifndef ELM_AVX2_Q8_0_WIDE_H
#define ELM_AVX2_Q8_0_WIDE_H

#include <stddef.h>

#include "common/scratch.h"
#include "kernels/avx2/iq4.h"
#include "kernels/avx2/q_legacy.h"
#include "kernels/tiles.h"

#define Q80V_R          8   /* rows per panel: one ymm per lane of outputs */
#define Q80V_T          8   /* tokens per call (each is its own pass over the panel) */
#define Q80V_MIN_T      2   /* fewer tokens: the shared tile */
#define Q80V_MAX_BLOCKS 352 /* 11264 columns; longer rows take the shared tile */
#define Q80V_CHUNK      16  /* blocks per chunk of q80v_run2: whole IQ4_XS super-blocks */
_Static_assert(Q80V_CHUNK % (ELM_QK_K / ELM_QK) == 0, "q80v_run2's chunks hold super-blocks");

/* The KIND of every function below: the weight type */
enum { Q80V_Q8_0, Q80V_Q5_0, Q80V_Q4_1, Q80V_Q5_1, Q80V_IQ4_NL, Q80V_IQ4_XS };

/* The kinds with Q8_1 activations and the reference's offset chain fma(m_w, s_a, summs) */
ALWAYS_INLINE bool q80v_offset(const int KIND)
{
    return KIND == Q80V_Q4_1 || KIND == Q80V_Q5_1;
}

/* 32-element blocks per float step of the reference (and per weight block in memory) */
ALWAYS_INLINE int q80v_sub(const int KIND)
{
    return KIND == Q80V_IQ4_XS ? ELM_QK_K / ELM_QK : 1;
}

/* One block of an 8-row panel: lane l of each vector is row l, the weights as int16 pairs. Group
 * k's two vectors, e (elements 4k, 4k+1 of the 8 rows) and o (4k+2, 4k+3), are eo[q80v_at(k)]
 * and eo[q80v_at(k) + 1]: the even groups first, then the odd ones, so that each half of the
 * two-token run (q80v_half) reads four whole cache lines of a block. */
struct q80v_block {
    __m256i eo[16];
    __m256 d; /* the rows' scales */
    __m256 m; /* Q4_1, Q5_1: the rows' offsets */
};

ALWAYS_INLINE int q80v_at(int k)
{
    return 8 * (k & 1) + 2 * (k >> 1);
}

/* One block of a token's activations as int16 (dword 2k: elements 4k, 4k+1; 2k+1: 4k+2, 4k+3,
 * as the panel's e and o) with its scales as floats. */
struct q80v_ablock {
    int16_t q[ELM_QK];
    float d;
    float s; /* Q8_1's s (Q4_1, Q5_1) */
};

/* The activations of the tokens a thread has met in this matmul, converted once: a call's tokens
 * are a token tile of the matmul's current chunk (kernels/matmul.c), and every panel of the
 * chunk runs the same tiles, so converting per call redid the work once per panel (it was
 * ~13 % of a 64-token call). Tokens [0, n) of slot are those at base + i * as, in the order the
 * tiles met them; a call outside them that does not continue them (a new chunk past the
 * capacity, a new matmul) starts over. */
#define Q80V_ACT_BYTES (448 << 10) /* a whole chunk: 2 x its 192 KiB of Q8_0 plus the scales */
struct q80v_acts {
    const uint8_t *base; /* NULL: none */
    size_t as;
    int64_t nb, n, cap;
    int kind;
    struct q80v_ablock slot[]; /* [token][block] */
};

struct q80v_scratch {
    struct q80v_block wb[Q80V_MAX_BLOCKS];
    struct elm_panel_key key; /* the panel wb holds */
};

/* This thread's scratch, made on its first call (common/scratch.h: not static TLS); NULL when
 * memory is short, and then the shared tile does the work. */
static _Thread_local struct q80v_scratch *q80v_scratch_p;
static _Thread_local struct q80v_acts *q80v_acts_p;

/* Unpacks rows [0, nr) of the panel of KIND (Q5_0 stored as q - 16, IQ4_NL and IQ4_XS as their
 * table values, IQ4_XS's times its sub-block scale); rows nr..7 get zero scales. pf: when not
 * NULL, the next panel's rows, prefetched a weight block's share at a time (the weights come from
 * memory). */
ALWAYS_INLINE void q80v_unpack_kind(struct q80v_scratch *s, const uint8_t *w, size_t ws, int nr,
                                    int64_t nb, const uint8_t *pf, const int KIND)
{
    static const struct elm_block_iq4_xs zero; /* the largest of the six blocks */
    const size_t bb = KIND == Q80V_Q8_0     ? sizeof(struct elm_block_q8_0)
                      : KIND == Q80V_Q5_0   ? sizeof(struct elm_block_q5_0)
                      : KIND == Q80V_Q4_1   ? sizeof(struct elm_block_q4_1)
                      : KIND == Q80V_Q5_1   ? sizeof(struct elm_block_q5_1)
                      : KIND == Q80V_IQ4_NL ? sizeof(struct elm_block_iq4_nl)
                                            : sizeof(struct elm_block_iq4_xs);
    const int sub = q80v_sub(KIND);
    const uint8_t *base[Q80V_R];
    size_t step[Q80V_R];
    for (int r = 0; r < Q80V_R; r++) {
        /* a missing row: an all-zero block (zero scale; its Q5_0 weights are -16, its IQ4 ones
         * -127 (x -32), which the zero scale makes harmless, and its outputs are never stored) */
        base[r] = r < nr ? w + (size_t)r * ws : (const uint8_t *)&zero;
        step[r] = r < nr ? bb : 0;
    }
    const __m256i me = _mm256_setr_epi8(0, 0, 0, 1, 0, 4, 0, 5, 0, 8, 0, 9, 0, 12, 0, 13, 0, 0, 0,
                                        1, 0, 4, 0, 5, 0, 8, 0, 9, 0, 12, 0, 13);
    const __m256i mo = _mm256_add_epi8(me, _mm256_set1_epi8(2));
    for (int64_t b = 0; b < nb; b++) {
        const int64_t i = b / sub;    /* the weight block */
        const int j = (int)(b % sub); /* IQ4_XS: the sub-block */
        if (pf && j == 0)
            prefetch_span(pf + i * Q80V_R * bb, Q80V_R * bb);
        const uint8_t *x[Q80V_R];
        UNROLL for (int r = 0; r < Q80V_R; r++) x[r] = base[r] + (size_t)i * step[r];
        /* an 8x8 dword transpose: g[k] lane l = dword k of row l */
        __m256i q[8], t[8], h[8];
        UNROLL for (int r = 0; r < 8; r++)
        {
            if (KIND == Q80V_Q8_0) {
                q[r] = loadu256(((const struct elm_block_q8_0 *)x[r])->qs);
            } else if (KIND == Q80V_Q5_0) {
                const struct elm_block_q5_0 *x5 = (const struct elm_block_q5_0 *)x[r];
                q[r] = _mm256_sub_epi8(q5_quants(x5->qs, x5->qh), _mm256_set1_epi8(16));
            } else if (KIND == Q80V_Q4_1) {
                q[r] = unpack_nibbles16(((const struct elm_block_q4_1 *)x[r])->qs);
            } else if (KIND == Q80V_Q5_1) {
                const struct elm_block_q5_1 *x5 = (const struct elm_block_q5_1 *)x[r];
                q[r] = q5_quants(x5->qs, x5->qh);
            } else if (KIND == Q80V_IQ4_NL) {
                q[r] = iq4_values32(((const struct elm_block_iq4_nl *)x[r])->qs);
            } else {
                q[r] = iq4_values32(((const struct elm_block_iq4_xs *)x[r])->qs + 16 * j);
            }
        }
        /* IQ4_XS: the rows' scales of sub-block j, in both int16 halves of lane l */
        __m256i ls = _mm256_setzero_si256();
        if (KIND == Q80V_IQ4_XS) {
            int32_t l2[Q80V_R];
            UNROLL for (int r = 0; r < Q80V_R; r++)
            {
                const int v = iq4_xs_ls((const struct elm_block_iq4_xs *)x[r], j);
                l2[r] = (int32_t)((uint32_t)(uint16_t)v * 0x10001u);
            }
            ls = _mm256_loadu_si256((const __m256i *)l2);
        }
        UNROLL for (int i4 = 0; i4 < 4; i4++)
        {
            t[2 * i4] = _mm256_unpacklo_epi32(q[2 * i4], q[2 * i4 + 1]);
            t[2 * i4 + 1] = _mm256_unpackhi_epi32(q[2 * i4], q[2 * i4 + 1]);
        }
        /* h[4j + i]: rows 4j..4j+3 of dwords i (low half) and i + 4 (high half) */
        UNROLL for (int j2 = 0; j2 < 2; j2++)
        {
            h[4 * j2 + 0] = _mm256_unpacklo_epi64(t[4 * j2], t[4 * j2 + 2]);
            h[4 * j2 + 1] = _mm256_unpackhi_epi64(t[4 * j2], t[4 * j2 + 2]);
            h[4 * j2 + 2] = _mm256_unpacklo_epi64(t[4 * j2 + 1], t[4 * j2 + 3]);
            h[4 * j2 + 3] = _mm256_unpackhi_epi64(t[4 * j2 + 1], t[4 * j2 + 3]);
        }
        struct q80v_block *o = &s->wb[b];
        UNROLL for (int i4 = 0; i4 < 4; i4++)
        {
            const __m256i lo = _mm256_permute2x128_si256(h[i4], h[4 + i4], 0x20);
            const __m256i hi = _mm256_permute2x128_si256(h[i4], h[4 + i4], 0x31);
            /* byte b of a dword to the high byte of a word, then the arithmetic shift: the
             * weights sign-extended, (4k, 4k+1) in e and (4k+2, 4k+3) in o */
            __m256i v[4] = {_mm256_srai_epi16(_mm256_shuffle_epi8(lo, me), 8),
                            _mm256_srai_epi16(_mm256_shuffle_epi8(hi, me), 8),
                            _mm256_srai_epi16(_mm256_shuffle_epi8(lo, mo), 8),
                            _mm256_srai_epi16(_mm256_shuffle_epi8(hi, mo), 8)};
            if (KIND == Q80V_IQ4_XS) /* exact: |ls x value| <= 32 x 127 */
                UNROLL for (int k = 0; k < 4; k++) v[k] = _mm256_mullo_epi16(v[k], ls);
            _mm256_store_si256(&o->eo[q80v_at(i4)], v[0]);
            _mm256_store_si256(&o->eo[q80v_at(i4 + 4)], v[1]);
            _mm256_store_si256(&o->eo[q80v_at(i4) + 1], v[2]);
            _mm256_store_si256(&o->eo[q80v_at(i4 + 4) + 1], v[3]);
        }
        uint16_t d[Q80V_R]; /* the scale opens every block type */
        UNROLL for (int r = 0; r < Q80V_R; r++) d[r] = load_u16(x[r]);
        _mm256_store_ps((float *)&o->d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d)));
        if (q80v_offset(KIND)) { /* and the offset follows it */
            UNROLL for (int r = 0; r < Q80V_R; r++) d[r] = load_u16(x[r] + 2);
            _mm256_store_ps((float *)&o->m, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d)));
        }
    }
}

/* One token's activations (its Q8_0 row at a; Q8_1 for the offset kinds, Q8_K for IQ4_XS) as
 * int16 blocks into o (IQ4_XS: 8 per Q8_K block, each with the block's d). */
ALWAYS_INLINE void q80v_convert(struct q80v_ablock *o, int64_t nb, const uint8_t *a, const int KIND)
{
    const size_t ab =
        q80v_offset(KIND) ? sizeof(struct elm_block_q8_1) : sizeof(struct elm_block_q8_0);
    const size_t aq = q80v_offset(KIND) ? offsetof(struct elm_block_q8_1, qs)
                                        : offsetof(struct elm_block_q8_0, qs);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q;
        if (KIND == Q80V_IQ4_XS) {
            const struct elm_block_q8_k *v = (const struct elm_block_q8_k *)a + b / q80v_sub(KIND);
            q = (const uint8_t *)v->qs + ELM_QK * (b % q80v_sub(KIND));
            o[b].d = v->d;
            o[b].s = 0.0f;
        } else {
            const uint8_t *v = a + (size_t)b * ab; /* the scale first, then (Q8_1) s */
            q = v + aq;
            o[b].d = h2f(load_u16(v));
            o[b].s = q80v_offset(KIND) ? h2f(load_u16(v + 2)) : 0.0f;
        }
        _mm256_storeu_si256((__m256i *)o[b].q,
                            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q)));
        _mm256_storeu_si256((__m256i *)(o[b].q + 16),
                            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + 16))));
    }
}

/* The converted activations of the call's nt tokens at a (stride as): their first slot, found or
 * made; NULL when they do not fit the buffer at all. */
ALWAYS_INLINE const struct q80v_ablock *
q80v_acts_get(struct q80v_acts *c, int64_t nb, const uint8_t *a, size_t as, int nt, const int KIND)
{
    int64_t i = -1;
    const uintptr_t off = (uintptr_t)a - (uintptr_t)c->base; /* huge when a is below base */
    if (c->base && as != 0 && c->as == as && c->nb == nb && c->kind == KIND && off % as == 0 &&
        off / as < (uintptr_t)c->n + 1)
        i = (int64_t)(off / as);
    if (i >= 0 && i + nt <= c->n) /* met before */
        return &c->slot[i * nb];
    if (i != c->n || i + nt > c->cap) { /* not the next tokens, or no room for them: start over */
        c->base = a;
        c->as = as;
        c->nb = nb;
        c->kind = KIND;
        c->n = 0;
        c->cap =
            (int64_t)((Q80V_ACT_BYTES - sizeof *c) / (sizeof(struct q80v_ablock) * (size_t)nb));
        i = 0;
        if (nt > c->cap)
            return NULL;
    }
    for (int t = 0; t < nt; t++)
        q80v_convert(&c->slot[(i + t) * nb], nb, a + (size_t)t * as, KIND);
    c->n = i + nt;
    return &c->slot[i * nb];
}

/* Lane k's exact integer for 8 rows, their weight pairs e and o of group k against a token's
 * activations v: two int16 pair products of each row, added. */
ALWAYS_INLINE __m256i q80v_lane_of(__m256i e, __m256i o, const uint8_t *v, int k)
{
    const __m256i ae = _mm256_set1_epi32((int32_t)load_u32(v + 8 * k));
    const __m256i ao = _mm256_set1_epi32((int32_t)load_u32(v + 8 * k + 4));
    return _mm256_add_epi32(_mm256_madd_epi16(e, ae), _mm256_madd_epi16(o, ao));
}

/* The same from the panel's block p */
ALWAYS_INLINE __m256i q80v_lane(const struct q80v_block *p, const uint8_t *v, int k)
{
    return q80v_lane_of(_mm256_load_si256(&p->eo[q80v_at(k)]),
                        _mm256_load_si256(&p->eo[q80v_at(k) + 1]), v, k);
}

/* Rows [0, nr) of out, stored at y. */
ALWAYS_INLINE void q80v_store(__m256 out, float *y, int nr)
{
    if (nr == Q80V_R) {
        _mm256_storeu_ps(y, out);
    } else {
        float o[Q80V_R];
        _mm256_storeu_ps(o, out);
        for (int r = 0; r < nr; r++)
            y[r] = o[r];
    }
}

/* Blocks [b0, b1) of half h (0 or 1) of two tokens' lanes, k = h, h + 2, h + 4, h + 6;
 * acc[0..3] are token t0's lanes, acc[4..7] t1's. A half at a time because all 8 lanes of two
 * tokens, 16 accumulators, do not fit the 16 registers; 4 lanes x 2 tokens do. Per token and
 * block: 8 weight loads (each serves both tokens), 16 activation broadcasts and 3 for the
 * scales (each half makes its own d_w x d_a products): 27 loads against 26 multiply-port uops,
 * where one token alone took 34 against 25. IQ4_XS adds its 8 sub-blocks' lanes as int32 first
 * (b0 and b1 are then whole super-blocks). */
ALWAYS_INLINE void q80v_half(const struct q80v_scratch *s, int64_t b0, int64_t b1,
                             const struct q80v_ablock *t0, const struct q80v_ablock *t1, int h,
                             __m256 acc[8], const int KIND)
{
    const int sub = q80v_sub(KIND);
    __m256 a[8];
    UNROLL for (int i = 0; i < 8; i++) a[i] = acc[i];
    for (int64_t b = b0; b < b1; b += sub) {
        __m256 dw = _mm256_load_ps((const float *)&s->wb[b].d);
        IN_REGISTER(dw);
        const __m256 d0 = _mm256_mul_ps(dw, _mm256_broadcast_ss(&t0[b].d));
        const __m256 d1 = _mm256_mul_ps(dw, _mm256_broadcast_ss(&t1[b].d));
        __m256i l0[4], l1[4];
        UNROLL for (int j = 0; j < sub; j++)
        {
            const struct q80v_block *p = &s->wb[b + j];
            const uint8_t *v0 = (const uint8_t *)t0[b + j].q, *v1 = (const uint8_t *)t1[b + j].q;
            UNROLL for (int i = 0; i < 4; i++)
            {
                const int k = h + 2 * i;
                __m256i e = _mm256_load_si256(&p->eo[q80v_at(k)]);
                __m256i o = _mm256_load_si256(&p->eo[q80v_at(k) + 1]);
                IN_REGISTER(e);
                IN_REGISTER(o);
                const __m256i x0 = q80v_lane_of(e, o, v0, k), x1 = q80v_lane_of(e, o, v1, k);
                if (sub == 1) { /* converted and fma'd at once: 8 lanes more would spill */
                    a[i] = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(x0), a[i]);
                    a[4 + i] = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(x1), a[4 + i]);
                    continue;
                }
                l0[i] = j == 0 ? x0 : _mm256_add_epi32(l0[i], x0);
                l1[i] = j == 0 ? x1 : _mm256_add_epi32(l1[i], x1);
                KEEP_CHAIN(l0[i]);
                KEEP_CHAIN(l1[i]);
            }
        }
        if (sub > 1) {
            UNROLL for (int i = 0; i < 4; i++)
            {
                a[i] = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(l0[i]), a[i]);
                a[4 + i] = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(l1[i]), a[4 + i]);
            }
        }
    }
    UNROLL for (int i = 0; i < 8; i++) acc[i] = a[i];
}

/* That half's share of the reference's hsum8, (a_h + a_h+4) + (a_h+2 + a_h+6), of the token
 * whose lanes are a[0..3] */
ALWAYS_INLINE __m256 q80v_half_fold(const __m256 a[4])
{
    return _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
}

/* Blocks [b0, b1) of the offset chain of the Q4_1 and Q5_1 references for two tokens:
 * summs = fmaf(m_w, s_a, summs) per block, 8 rows per vector. */
ALWAYS_INLINE void q80v_summs2(const struct q80v_scratch *s, int64_t b0, int64_t b1,
                               const struct q80v_ablock *t0, const struct q80v_ablock *t1,
                               __m256 summs[2])
{
    __m256 s0 = summs[0], s1 = summs[1];
    for (int64_t b = b0; b < b1; b++) {
        __m256 m = _mm256_load_ps((const float *)&s->wb[b].m);
        IN_REGISTER(m);
        s0 = _mm256_fmadd_ps(m, _mm256_broadcast_ss(&t0[b].s), s0);
        s1 = _mm256_fmadd_ps(m, _mm256_broadcast_ss(&t1[b].s), s1);
    }
    summs[0] = s0;
    summs[1] = s1;
}

/* Two tokens, activations at t0 and t1, against the unpacked panel; rows [0, nr) of their
 * outputs are stored at y0 and y1. */
ALWAYS_INLINE void q80v_run2(const struct q80v_scratch *s, int64_t nb, const struct q80v_ablock *t0,
                             const struct q80v_ablock *t1, float *y0, float *y1, int nr,
                             const int KIND)
{
    /* both halves over a chunk of blocks at a time, so that the second finds the chunk's panel
     * (9 KiB) in L1: over a whole panel longer than L1 each half streams it from L2 (at 5632
     * columns that was 13 % slower than one token at a time) */
    __m256 acc[2][8];
    UNROLL for (int h = 0; h < 2; h++) UNROLL for (int i = 0; i < 8; i++) acc[h][i] =
        _mm256_setzero_ps();
    __m256 summs[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b0 = 0; b0 < nb; b0 += Q80V_CHUNK) {
        const int64_t b1 = b0 + Q80V_CHUNK < nb ? b0 + Q80V_CHUNK : nb;
        q80v_half(s, b0, b1, t0, t1, 0, acc[0], KIND);
        q80v_half(s, b0, b1, t0, t1, 1, acc[1], KIND);
        if (q80v_offset(KIND)) /* a third pass: beside a half's registers the two chains spill */
            q80v_summs2(s, b0, b1, t0, t1, summs);
    }
    __m256 out0 = _mm256_add_ps(q80v_half_fold(acc[0]), q80v_half_fold(acc[1]));
    __m256 out1 = _mm256_add_ps(q80v_half_fold(acc[0] + 4), q80v_half_fold(acc[1] + 4));
    if (q80v_offset(KIND)) {
        out0 = _mm256_add_ps(out0, summs[0]);
        out1 = _mm256_add_ps(out1, summs[1]);
    }
    q80v_store(out0, y0, nr);
    q80v_store(out1, y1, nr);
}

/* One token, its activations converted at t, against the unpacked panel; rows [0, nr) of its
 * outputs are stored at y. */
ALWAYS_INLINE void q80v_run(const struct q80v_scratch *s, int64_t nb, const struct q80v_ablock *t,
                            float *y, int nr, const int KIND)
{
    const int sub = q80v_sub(KIND);
    __m256 acc[8], summs = _mm256_setzero_ps();
    UNROLL for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b += sub) {
        /* d_w * d_a for the 8 rows, the reference's rounded product */
        const __m256 dd =
            _mm256_mul_ps(_mm256_load_ps((const float *)&s->wb[b].d), _mm256_broadcast_ss(&t[b].d));
        if (q80v_offset(KIND)) /* summs = fmaf(m_w, s_a, summs), as the reference */
            summs = _mm256_fmadd_ps(_mm256_load_ps((const float *)&s->wb[b].m),
                                    _mm256_broadcast_ss(&t[b].s), summs);
        if (sub == 1) {
            /* each lane's convert and fma right after its integer: 8 accumulators and a few
             * temporaries fit the 16 registers (summing all 8 first made Q8_0 pp128 ~30 %
             * slower, likely by spills) */
            UNROLL for (int k = 0; k < 8; k++)
            {
                const __m256i lane = q80v_lane(&s->wb[b], (const uint8_t *)t[b].q, k);
                acc[k] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(lane), acc[k]);
            }
        } else {
            /* IQ4_XS: the super-block's 8 sub-blocks added first (their scales are in the
             * panel's weights), then one convert and fma per lane */
            __m256i sum[8];
            UNROLL for (int k = 0; k < 8; k++) sum[k] = _mm256_setzero_si256();
            for (int j = 0; j < sub; j++) {
                UNROLL for (int k = 0; k < 8; k++)
                {
                    sum[k] = _mm256_add_epi32(
                        sum[k], q80v_lane(&s->wb[b + j], (const uint8_t *)t[b + j].q, k));
                }
            }
            UNROLL for (int k = 0; k < 8; k++)
            {
                acc[k] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sum[k]), acc[k]);
            }
        }
    }
    /* elm_hsum8 of each row's lanes: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)) */
    __m256 out =
        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])),
                      _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7])));
    if (q80v_offset(KIND))
        out = _mm256_add_ps(out, summs);
    q80v_store(out, y, nr);
}

/* The elm_tile_fn of the avx2 entries of the six kinds: nt <= Q80V_T; nr <= Q80V_R with several
 * tokens (one token: a whole row chunk, for the shared tile). */
ALWAYS_INLINE void q80v_tile(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                             int nt, float *y, int64_t ys, int stream, const int KIND)
{
    const elm_tile_fn shared = KIND == Q80V_Q8_0     ? q8_0_tile
                               : KIND == Q80V_Q5_0   ? q5_0_tile
                               : KIND == Q80V_Q4_1   ? q4_1_tile
                               : KIND == Q80V_Q5_1   ? q5_1_tile
                               : KIND == Q80V_IQ4_NL ? iq4_nl_tile
                                                     : iq4_xs_tile;
    struct q80v_scratch *s =
        q80v_scratch_p ? q80v_scratch_p : (q80v_scratch_p = elm_scratch_thread(sizeof *s));
    struct q80v_acts *c = q80v_acts_p;
    const int64_t nb = n / ELM_QK;
    if (stream & ELM_TILE_FRESH) { /* a new matmul: what the pointers kept may have changed */
        if (s)
            elm_panel_forget(&s->key);
        if (c)
            c->base = NULL;
    }
    const struct q80v_ablock *t0 = NULL;
    if (s && nt >= Q80V_MIN_T && nr <= Q80V_R && nb >= 1 && nb <= Q80V_MAX_BLOCKS) {
        /* made on the first call with several tokens: a decode-only thread never pays for it */
        if (!c)
            c = q80v_acts_p = elm_scratch_thread(Q80V_ACT_BYTES);
        if (c)
            t0 = q80v_acts_get(c, nb, (const uint8_t *)a, as, nt, KIND);
    }
    if (!t0) {
        elm_tile_in_panels(shared, LEG_R, LEG_T, n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    if (!elm_panel_is(&s->key, w, ws, nb, nr, KIND)) {
        q80v_unpack_kind(s, w, ws, nr, nb,
                         stream & ELM_TILE_STREAM ? (const uint8_t *)w + Q80V_R * ws : NULL, KIND);
        elm_panel_set(&s->key, w, ws, nb, nr, KIND);
    }
    int t = 0;
    for (; t + 2 <= nt; t += 2)
        q80v_run2(s, nb, t0 + t * nb, t0 + (t + 1) * nb, y + t * ys, y + (t + 1) * ys, nr, KIND);
    for (; t < nt; t++)
        q80v_run(s, nb, t0 + t * nb, y + t * ys, nr, KIND);
}

/* name(): the tile of KIND */
#define Q80V_TILE(name, KIND)                                                                      \
    static void name(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,        \
                     int nt, float *y, int64_t ys, int stream)                                     \
    {                                                                                              \
        q80v_tile(n, w, ws, nr, a, as, nt, y, ys, stream, KIND);                                   \
    }
Q80V_TILE(q8_0_tile_wide, Q80V_Q8_0)
Q80V_TILE(q5_0_tile_wide, Q80V_Q5_0)
Q80V_TILE(q4_1_tile_wide, Q80V_Q4_1)
Q80V_TILE(q5_1_tile_wide, Q80V_Q5_1)
Q80V_TILE(iq4_nl_tile_wide, Q80V_IQ4_NL)
Q80V_TILE(iq4_xs_tile_wide, Q80V_IQ4_XS)

#endif
