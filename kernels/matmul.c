/* matmul.c — weight rows against quantized activation rows, the engine's one matrix multiply.
 *
 * Every output element y[t][r] is computed exactly as vec_dot(weight row r, activation row t)
 * computes it, whatever ntok is or how the work is split among threads: either by that
 * vec_dot itself, or by a tile kernel of the same variant that reproduces it bit for bit
 * (tiles.h). That is what makes batched (prompt) and token-by-token (generation) evaluation
 * bit-identical, and results independent of the thread count.
 *
 * How the work is laid out:
 *  - One parallel call of the pool (common/pool.h) per product: its threads live between
 *    calls, so a call costs a wake-up at most, not a thread creation. Small products run on
 *    the calling thread alone: waking the team would cost more than it saves.
 *  - Rows are split statically: thread i owns the i-th contiguous share (in whole runs of 16
 *    rows, a 64-byte line of float outputs, so no two threads write one line) and walks it in
 *    chunks from the front. A thread that finishes early then takes chunks from the front of
 *    the others' shares. On a quiet machine nobody steals and each thread streams its own part
 *    of the weights; when a thread loses its core to another process (two cores, other
 *    programs), the region does not wait a whole scheduler slice for it. Who computes an
 *    element never changes its value.
 *  - Decode (one token): the tile walks a chunk several rows at a time, so that their
 *    independent accumulations overlap, and prefetches the next group of rows while it works.
 *  - Prefill (several tokens): within a chunk of rows (kept in L2), tokens are taken in chunks
 *    whose activations stay in L2 too; each panel of `rows` weight rows (in L1) is multiplied
 *    with every tile of `toks` tokens of the token chunk, so each weight block is unpacked once
 *    per tile of tokens and each activation block loaded once per panel of rows.
 * Nothing here allocates.
 */
#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/pool.h"
#include "kernels/kernels.h"
#include "kernels/tiles.h"

#define ROW_UNIT      16          /* rows per share: one cache line of float outputs */
#define CHUNK_GEMV    32          /* rows per claim, one token */
#define CHUNK_GEMM    64          /* rows per claim, several tokens (their weights stay in L2) */
#define MAX_SHARES    64          /* threads that get a share; more would take from others */
#define L2_ACT_BYTES  (192 << 10) /* activations of one token chunk, well inside a 512K+ L2 */
#define PARALLEL_MACS (1 << 18)   /* below this many multiply-adds, one thread */
_Static_assert(ROW_UNIT % 8 == 0 && CHUNK_GEMV % 8 == 0 && CHUNK_GEMM % 8 == 0,
               "a tile_x8 call must start at a panel of ELM_LAYOUT_X8 (a multiple of 8 rows)");

/* The variants that have tiles, best first (each architecture builds only its own). */
#if defined(__x86_64__) || defined(__i386__)
static const struct elm_tiles *const tile_tables[] = {&elm_tiles_avx512, &elm_tiles_avx2};
#elif defined(__aarch64__)
static const struct elm_tiles *const tile_tables[] = {&elm_tiles_i8mm, &elm_tiles_dotprod,
                                                      &elm_tiles_neon};
#else
static const struct elm_tiles *const tile_tables[] = {NULL};
#endif

const struct elm_tile_kernel *
elm_tile_find(enum elm_type type, void (*vec_dot)(int64_t, float *, const void *, const void *))
{
    if ((unsigned)type >= ELM_TYPE_COUNT || vec_dot == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof tile_tables / sizeof *tile_tables && tile_tables[i]; i++) {
        const struct elm_tile_kernel *tk = &tile_tables[i]->k[type];
        if (tk->tile != NULL && tk->vec_dot == vec_dot)
            return tk;
    }
    return NULL;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Rows [r0, r1) of the product, by tiles. fresh: ELM_TILE_FRESH when this is the thread's
 * first chunk in this matmul (its first tile call carries it), else 0. */
static void tiled_rows(const struct elm_tile_kernel *tk, elm_tile_fn tile, const uint8_t *w,
                       size_t rb, int64_t ncols, int64_t r0, int64_t r1, const uint8_t *x,
                       size_t xs, int64_t ntok, float *y, int64_t ys, int fresh)
{
    if (ntok == 1) {
        tile(ncols, w + (size_t)r0 * rb, rb, (int)(r1 - r0), x, xs, 1, y + r0, ys,
             ELM_TILE_STREAM | fresh);
        return;
    }
    const int R = tk->rows, T = tk->toks;
    int64_t chunk = (int64_t)(L2_ACT_BYTES / (xs ? xs : 1));
    chunk = chunk < T ? T : chunk - chunk % T;
    for (int64_t tc = 0; tc < ntok; tc += chunk) {
        const int64_t te = min64(ntok, tc + chunk);
        for (int64_t r = r0; r < r1; r += R) {
            const int nr = (int)min64(R, r1 - r);
            /* the first token tile of the first token chunk brings the panel from memory */
            for (int64_t t = tc; t < te; t += T) {
                tile(ncols, w + (size_t)r * rb, rb, nr, x + (size_t)t * xs, xs,
                     (int)min64(T, te - t), y + t * ys + r, ys,
                     (t == 0 ? ELM_TILE_STREAM | fresh : 0) | (t + T < te ? ELM_TILE_MORE : 0));
                fresh = 0;
            }
        }
    }
}

/* Rows [r0, r1) of the product, one vec_dot per element (types without a tile). */
static void plain_rows(void (*dot)(int64_t, float *, const void *, const void *), const uint8_t *w,
                       size_t rb, int64_t ncols, int64_t r0, int64_t r1, const uint8_t *x,
                       size_t xs, int64_t ntok, float *y, int64_t ys)
{
    for (int64_t r = r0; r < r1; r++)
        for (int64_t t = 0; t < ntok; t++)
            dot(ncols, &y[t * ys + r], w + (size_t)r * rb, x + (size_t)t * xs);
}

/* One thread's share of the rows: [next, end), claimed a chunk at a time. Padded to a cache
 * line so that claims on different shares do not contend. */
struct share {
    _Atomic int64_t next;
    int64_t end;
    char pad[64 - sizeof(_Atomic int64_t) - sizeof(int64_t)];
};

/* One product, as the pool's threads see it. */
struct product {
    void (*dot)(int64_t, float *, const void *, const void *);
    const struct elm_tile_kernel *tk;
    elm_tile_fn tile; /* tk's, for the weights' layout */
    const uint8_t *wb, *xb;
    size_t rb, xq_stride;
    int64_t ncols, ntok, chunk, y_stride, units;
    float *y;
    int nth; /* shares laid out */
    struct share shares[MAX_SHARES];
};

/* Thread me of nth: its own share first, then what is left of the others'. A team smaller than
 * the shares laid out (the pool gave fewer threads) is fine: its shares are taken by the rest. */
static void product_part(void *ctx, int me, int nth)
{
    struct product *p = ctx;
    (void)nth;
    int fresh = ELM_TILE_FRESH;
    for (int s = 0; s < p->nth; s++) {
        struct share *sh = &p->shares[(me + s) % p->nth];
        int64_t r;
        while ((r = atomic_fetch_add_explicit(&sh->next, p->chunk, memory_order_relaxed)) <
               sh->end) {
            const int64_t re = min64(sh->end, r + p->chunk);
            if (p->tk != NULL)
                tiled_rows(p->tk, p->tile, p->wb, p->rb, p->ncols, r, re, p->xb, p->xq_stride,
                           p->ntok, p->y, p->y_stride, fresh);
            else
                plain_rows(p->dot, p->wb, p->rb, p->ncols, r, re, p->xb, p->xq_stride, p->ntok,
                           p->y, p->y_stride);
            fresh = 0;
        }
    }
}

/* The variant's vec_dot for type: tables from elm_kernels_get() have no holes, a raw variant
 * table might. */
static void (*table_dot(const struct elm_kernels *k,
                        enum elm_type type))(int64_t, float *, const void *, const void *)
{
    return k->vec_dot[type] ? k->vec_dot[type] : elm_kernels_ref.vec_dot[type];
}

enum elm_layout elm_matmul_layout(const struct elm_kernels *k, enum elm_type type)
{
    if ((unsigned)type >= ELM_TYPE_COUNT)
        return ELM_LAYOUT_ROWS;
    const struct elm_tile_kernel *tk = elm_tile_find(type, table_dot(k, type));
    return tk && tk->tile_x8 ? ELM_LAYOUT_X8 : ELM_LAYOUT_ROWS;
}

void elm_matmul(const struct elm_kernels *k, enum elm_type type, enum elm_layout layout,
                const void *w, int64_t ncols, int64_t nrows, const void *xq, size_t xq_stride,
                int64_t ntok, float *y, int64_t y_stride)
{
    void (*dot)(int64_t, float *, const void *, const void *) = table_dot(k, type);
    const struct elm_tile_kernel *tk = elm_tile_find(type, dot);
    /* packed weights have no row a vec_dot could read: only their tile computes them */
    assert(layout == ELM_LAYOUT_ROWS || (tk && tk->tile_x8));
    elm_tile_fn tile = NULL;
    if (tk)
        tile = layout == ELM_LAYOUT_X8 ? tk->tile_x8 : tk->tile;
    struct product p = {.dot = dot,
                        .tk = tk,
                        .tile = tile,
                        .wb = w,
                        .xb = xq,
                        .rb = elm_row_bytes(type, ncols),
                        .xq_stride = xq_stride,
                        .ncols = ncols,
                        .ntok = ntok,
                        .chunk = ntok == 1 ? CHUNK_GEMV : CHUNK_GEMM,
                        .y_stride = y_stride,
                        .units = (nrows + ROW_UNIT - 1) / ROW_UNIT,
                        .y = y};
    int nth = elm_pool_threads();
    if (nth > MAX_SHARES)
        nth = MAX_SHARES;
    if (nrows * ncols * ntok < PARALLEL_MACS || p.units < 2)
        nth = 1;
    p.nth = nth;
    for (int i = 0; i < nth; i++) {
        atomic_init(&p.shares[i].next, min64(nrows, p.units * i / nth * ROW_UNIT));
        p.shares[i].end = min64(nrows, p.units * (i + 1) / nth * ROW_UNIT);
    }
    elm_pool_run(nth, product_part, &p);
}
