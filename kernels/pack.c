/* pack.c — weights rewritten at load time into the layout a variant's matmul reads fastest
 * (kernels.h, enum elm_layout): the one definition of ELM_LAYOUT_X8's bytes.
 *
 * Why a load-time layout: the avx2 and avx512 Q4_0 tiles want, per block of 8 rows, four
 * registers each holding 4 quant bytes of every row (kernels/avx2/q4_0_x8.h; the avx512 tile
 * joins two panels into one zmm, kernels/avx512/q4_0_tile.h). Made from the file's rows at run
 * time, that is a transpose per panel and per call (a sixth of an 8-token product, the whole
 * unpack of a decode step); made once here, the kernels only mask and shift. The panel takes
 * exactly the bytes of its rows, so memory and the bytes a decode step streams do not change,
 * and the rewrite can be done in place.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/kernels.h"

/* One panel: rows [0, 8) of src, rb bytes apart and nb blocks long, into p (8 * rb bytes). */
static void q4_0_x8_panel(uint8_t *p, const uint8_t *src, size_t rb, int64_t nb)
{
    enum { R = 8, QS = sizeof(((struct elm_block_q4_0 *)0)->qs) };
    uint8_t *d = p + (size_t)nb * R * QS;
    for (int64_t b = 0; b < nb; b++)
        for (int r = 0; r < R; r++) {
            const struct elm_block_q4_0 *x = (const struct elm_block_q4_0 *)(src + r * rb) + b;
            for (int g = 0; g < QS / 4; g++)
                memcpy(p + (size_t)b * R * QS + (size_t)g * R * 4 + (size_t)r * 4, x->qs + 4 * g,
                       4);
            memcpy(d + ((size_t)b * R + (size_t)r) * sizeof x->d, &x->d, sizeof x->d);
        }
}

int elm_pack_weights(enum elm_layout layout, enum elm_type type, void *dst, const void *src,
                     int64_t ncols, int64_t nrows)
{
    const struct elm_type_info *ti = elm_type_get(type);
    if (!ti || !ti->is_weight || ncols < 0 || nrows < 0 || ncols % ti->block)
        return -EINVAL;
    const size_t rb = elm_row_bytes(type, ncols);
    if (layout == ELM_LAYOUT_ROWS) {
        memmove(dst, src, rb * (size_t)nrows);
        return 0;
    }
    if (layout != ELM_LAYOUT_X8 || type != ELM_TYPE_Q4_0)
        return -EINVAL;
    const int64_t full = nrows - nrows % 8;
    uint8_t *panel = full ? malloc(8 * rb) : NULL;
    if (full && !panel)
        return -ENOMEM;
    /* each panel reads only its own rows: made aside, then written over them */
    for (int64_t r = 0; r < full; r += 8) {
        q4_0_x8_panel(panel, (const uint8_t *)src + (size_t)r * rb, rb, ncols / ELM_QK);
        memcpy((uint8_t *)dst + (size_t)r * rb, panel, 8 * rb);
    }
    free(panel);
    memmove((uint8_t *)dst + (size_t)full * rb, (const uint8_t *)src + (size_t)full * rb,
            (size_t)(nrows - full) * rb);
    return 0;
}
