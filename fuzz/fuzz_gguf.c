/* fuzz_gguf.c — the GGUF reader (engine/gguf.c) on arbitrary bytes: parse, then read back every
 * key through every typed getter, every tensor through its lookup, and hand the result to the
 * checks a loader runs first (elm_model_check) and to the vocabulary builder. Whatever parse
 * accepts, nothing after it may read outside the input.
 */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/vocab.h"

/* Every getter on one key: each either succeeds or names a type mismatch, never faults. */
static void read_kv(const struct elm_gguf *g, const struct elm_gguf_kv *kv)
{
    char key[512], shown[4 * 64 + 4];
    uint32_t u;
    int32_t i;
    float f;
    bool b;
    struct elm_gguf_str s;
    uint64_t n;
    const void *data;

    elm_gguf_str_format(kv->key, shown, sizeof shown);
    if (kv->key.len >= sizeof key)
        return; /* a lookup by name needs the NUL-terminated key */
    memcpy(key, kv->key.ptr, kv->key.len);
    key[kv->key.len] = 0;
    elm_gguf_get_u32(g, key, &u);
    elm_gguf_get_i32(g, key, &i);
    elm_gguf_get_f32(g, key, &f);
    elm_gguf_get_bool(g, key, &b);
    if (elm_gguf_get_str(g, key, &s) == 0)
        elm_gguf_str_format(s, shown, sizeof shown);
    if (kv->type != ELM_GGUF_ARRAY || elm_gguf_get_arr(g, key, kv->arr_type, &n, &data) < 0)
        return;
    if (kv->arr_type == ELM_GGUF_STRING && n > 0) {
        struct elm_gguf_str *all = malloc(n * sizeof *all); /* n <= size / 8: bounded */
        if (all && elm_gguf_get_str_arr(g, key, all, n) == 0)
            elm_gguf_str_format(all[n - 1], shown, sizeof shown);
        free(all);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    elm_log_setup(ELM_LOG_ERROR, false, "fuzz_gguf"); /* the vocabulary warns of missing keys */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct elm_gguf *g = NULL;
    struct elm_vocab *v = NULL;
    char err[512];

    if (elm_gguf_parse(data, size, &g, err, sizeof err) < 0)
        return 0;
    for (uint64_t k = 0; k < g->n_kv; k++)
        read_kv(g, &g->kv[k]);
    for (uint64_t t = 0; t < g->n_tensors; t++) {
        const struct elm_gguf_tensor *ti = &g->tensors[t];
        char name[256];
        /* (a name with a NUL byte cannot be asked for by a C string) */
        if (ti->name.len < sizeof name && !memchr(ti->name.ptr, 0, ti->name.len)) {
            memcpy(name, ti->name.ptr, ti->name.len);
            name[ti->name.len] = 0;
            if (elm_gguf_find_tensor(g, name) == NULL)
                abort(); /* a parsed tensor must be found by its own name */
        }
        const uint8_t *p = elm_gguf_tensor_data(g, ti);
        if (ti->n_bytes > 0 && (p < g->base || p + ti->n_bytes > g->base + g->size))
            abort(); /* parse promised every tensor lies inside the buffer */
    }
    elm_model_check(g, err, sizeof err);
    if (elm_vocab_load(g, &v, err, sizeof err) == 0) {
        static const char text[] = "Hello world! 123 <s> [CLS] \xe2\x96\x81x";
        int32_t ids[64];
        elm_tokenize(v, text, sizeof text - 1, true, true, ids, 64);
        elm_vocab_destroy(&v);
    }
    elm_gguf_destroy(&g);
    return 0;
}
