/* gguf_check.c — see gguf_check.h. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/kernels.h"
#include "tests/common/gguf_check.h"

static char g_tmpdir[64];

void elm_test_gguf_check_invariants(const struct elm_gguf *g)
{
    const uint8_t *end = g->base + g->size;

    assert_true(g->version == 2 || g->version == 3);
    assert_true(g->alignment && (g->alignment & (g->alignment - 1)) == 0);
    assert_true(g->data_offset <= g->size);
    assert_true(g->data_size <= g->size - g->data_offset);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct elm_gguf_kv *kv = &g->kv[i];
        assert_true(kv->key.ptr >= (const char *)g->base && kv->key.len <= g->size);
        assert_true((const uint8_t *)kv->key.ptr + kv->key.len <= end);
        assert_true(kv->raw >= g->base && kv->raw_len <= (uint64_t)(end - kv->raw));
        assert_true(kv->type < ELM_GGUF_VTYPE_COUNT && kv->arr_type != ELM_GGUF_ARRAY);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        const struct elm_type_info *ti = elm_type_get(t->type);
        assert_non_null(ti);
        assert_true(t->n_dims >= 1 && t->n_dims <= ELM_GGUF_MAX_DIMS);
        assert_int_equal(t->ne[0] % ti->block, 0);
        assert_int_equal(t->offset % g->alignment, 0);
        assert_true(t->offset + t->n_bytes <= g->data_size);
        assert_ptr_equal(elm_gguf_tensor_data(g, t), g->base + g->data_offset + t->offset);
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int elm_test_gguf_group_setup(void **state)
{
    strcpy(g_tmpdir, "/tmp/elm-test-gguf-XXXXXX");
    return mkdtemp(g_tmpdir) ? 0 : -1;
}

int elm_test_gguf_group_teardown(void **state)
{
    return nftw(g_tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

const char *elm_test_gguf_tmpdir(void)
{
    return g_tmpdir;
}
