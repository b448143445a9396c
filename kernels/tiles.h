/* tiles.h — multi-row, multi-token matmul kernels ("tiles") of the SIMD variants, for matmul.c.
 *
 * A tile computes y[t * y_stride + r] = vec_dot(weight row r, activation row t) for nr rows and
 * nt tokens at once: each weight block is unpacked once for all nt tokens and each activation
 * block loaded once for all nr rows, and the nr * nt independent accumulations keep the
 * floating-point units busy. Each output element goes through exactly the operations of the
 * variant's vec_dot, in the same order (same lanes, same fused multiply-adds, same folds), so
 * a tile's result is bit-identical to vec_dot whatever nr and nt: that is what keeps matmul
 * batch-invariant. tests/kernel/test_simd.c holds every tile to vec_dot and vec_dot to ref.
 *
 * A tile is tied to the vec_dot it reproduces: matmul.c uses a tile only when the kernel table
 * it was given has that very vec_dot, so a table that mixes variants (or a test's hand-made
 * table) never gets a tile whose bits differ from its own vec_dot.
 *
 * This is an internal interface of kernels/: the tables are defined by the variants
 * (kernels/avx2/avx2.c, kernels/avx512/avx512.c; kernels/arm/neon.c, dotprod.c, i8mm.c) and
 * used by kernels/matmul.c only. Each architecture builds only its own tables.
 */
#ifndef ELM_KERNELS_TILES_H
#define ELM_KERNELS_TILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* nr in 1..rows, nt in 1..toks; w rows are w_stride bytes apart, activation rows a_stride;
 * n is the row length in elements (a multiple of the type's block). stream: a set of the flags
 * below, 0 for none; ELM_TILE_FRESH comes only with ELM_TILE_STREAM, so a tile that only
 * prefetches may test `stream & ELM_TILE_STREAM`. */
typedef void (*elm_tile_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                            size_t a_stride, int nt, float *y, int64_t y_stride, int stream);

/* The weights come from memory, not from a cache (their first use in this matmul): several
 * tokens then prefetch the rows after their group as one token always does, because a few
 * tokens' arithmetic is too little to hide the misses. */
#define ELM_TILE_STREAM 1
/* The calling thread's first call in this matmul: what a tile keeps between calls (unpacked
 * panels, prepared token tiles), keyed by pointers, is stale, since the data behind the same
 * pointers may have changed since the last matmul. Within one matmul neither the weights nor
 * the activations change, so a tile may reuse what it made since its last FRESH call. */
#define ELM_TILE_FRESH 2
/* More token tiles of this call's token chunk follow on the same panel (the next calls, with no
 * other panel between): a tile that can unpack its panel once for several calls knows that it
 * will be reused before it is replaced. Without it a stream call's panel serves that call alone,
 * and a tile may unpack it for one use (the AVX-512 Q4_K tile keeps nibble pairs then). */
#define ELM_TILE_MORE 4

/* What a tile's unpacked panel was made from (w NULL: none): the rows at w, ws bytes apart, nb
 * blocks long, nr of them, and the tile's kind of weights (for a tile serving several; 0
 * otherwise). A call reuses the panel when it brings the same key; an ELM_TILE_FRESH call forgets
 * it (elm_panel_forget), as the weights behind w may have changed. */
struct elm_panel_key {
    const void *w;
    size_t ws;
    int64_t nb;
    int nr;
    int kind;
};

static inline bool elm_panel_is(const struct elm_panel_key *k, const void *w, size_t ws, int64_t nb,
                                int nr, int kind)
{
    return k->w == w && k->ws == ws && k->nb == nb && k->nr == nr && k->kind == kind;
}

static inline void elm_panel_set(struct elm_panel_key *k, const void *w, size_t ws, int64_t nb,
                                 int nr, int kind)
{
    *k = (struct elm_panel_key){.w = w, .ws = ws, .nb = nb, .nr = nr, .kind = kind};
}

static inline void elm_panel_forget(struct elm_panel_key *k)
{
    k->w = NULL;
}

/* Runs RUN(T) with T the constant 2..8 equal to nt (8 for more), so each token count compiles to
 * its own fully unrolled loop; the wide tiles dispatch their runs this way (a tile whose
 * smallest count is above 2 never meets the lower cases: it checks nt first). */
#define ELM_TILE_FOR_T(nt, RUN)                                                                    \
    do {                                                                                           \
        switch (nt) {                                                                              \
        case 2:                                                                                    \
            RUN(2);                                                                                \
            break;                                                                                 \
        case 3:                                                                                    \
            RUN(3);                                                                                \
            break;                                                                                 \
        case 4:                                                                                    \
            RUN(4);                                                                                \
            break;                                                                                 \
        case 5:                                                                                    \
            RUN(5);                                                                                \
            break;                                                                                 \
        case 6:                                                                                    \
            RUN(6);                                                                                \
            break;                                                                                 \
        case 7:                                                                                    \
            RUN(7);                                                                                \
            break;                                                                                 \
        default:                                                                                   \
            RUN(8);                                                                                \
            break;                                                                                 \
        }                                                                                          \
    } while (0)

/* Of the panel ahead that a stream call prefetches, the bytes per block of its rows that its
 * unpack asks for (the run asks for the rest): about the unpack's share of the call's time at 8
 * tokens, so that the prefetches go out at an even pace through both; with all of them in the
 * run, memory idled through the unpack (docs/kernels-perf.md, pf14). */
#define ELM_TILE_PF_UNPACK(block_bytes) ((block_bytes)*3 / 8)

/* tile over a call of nr rows and nt tokens in its own R x T panels, so that each of its panels
 * stays in L1 for all its tokens (one token: the whole row chunk, for the tile's own row groups
 * and prefetch). What a wide tile does with a call it does not take. */
static inline void elm_tile_in_panels(elm_tile_fn tile, int R, int T, int64_t n, const void *w,
                                      size_t ws, int nr, const void *a, size_t as, int nt, float *y,
                                      int64_t ys, int stream)
{
    if (nt == 1) {
        tile(n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    for (int r = 0; r < nr; r += R)
        for (int t = 0; t < nt; t += T)
            tile(n, (const uint8_t *)w + (size_t)r * ws, ws, nr - r < R ? nr - r : R,
                 (const uint8_t *)a + (size_t)t * as, as, nt - t < T ? nt - t : T, y + t * ys + r,
                 ys, t == 0 ? stream & ELM_TILE_STREAM : 0);
}

struct elm_tile_kernel {
    /* the vec_dot whose results this tile reproduces bit for bit */
    void (*vec_dot)(int64_t n, float *s, const void *w, const void *a);
    elm_tile_fn tile;
    int rows;      /* the largest nr for prefill (several tokens) */
    int toks;      /* the largest nt */
    int rows_gemv; /* the largest nr for a single token (decode) */
    /* The same products, same bits and panel shape, on weights in ELM_LAYOUT_X8 (kernels.h):
     * w is a row that starts a panel (matmul.c's calls start at multiples of 8 rows), so every
     * whole group of 8 of the call's rows is a panel, and a last group of fewer is the matrix's
     * unpacked tail. NULL: the variant reads rows only. */
    elm_tile_fn tile_x8;
};

struct elm_tiles {
    const char *name; /* the variant, for reports */
    struct elm_tile_kernel k[ELM_TYPE_COUNT];
};

extern const struct elm_tiles elm_tiles_avx2;
extern const struct elm_tiles elm_tiles_avx512;
extern const struct elm_tiles elm_tiles_i8mm;
extern const struct elm_tiles elm_tiles_dotprod;
extern const struct elm_tiles elm_tiles_neon;

/* The tile that reproduces the given vec_dot for this type, or NULL. */
const struct elm_tile_kernel *
elm_tile_find(enum elm_type type, void (*vec_dot)(int64_t, float *, const void *, const void *));

#endif
