/* fuzz_util.c — shared data loading and the tokenizer round trip of the fuzz targets
 * (fuzz_util.h). */
#include "fuzz/fuzz_util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/vocab.h"

const char *elm_fuzz_models_dir(void)
{
    const char *d = getenv("ELM_MODELS_DIR");
    return d && *d ? d : ELM_FUZZ_DEFAULT_MODELS_DIR;
}

static void die(const char *what, const char *path, const char *err)
{
    fprintf(stderr, "fuzz: %s %s: %s\n", what, path, err);
    exit(2);
}

/* Copies every key of g but tokenizer.ggml.pre into a new file with pre set instead; tensors
 * are not needed by a vocabulary. Returns the parsed copy (mapped; the file is unlinked). */
static struct elm_gguf *with_pre(const struct elm_gguf *g, const char *pre, const char *path)
{
    char err[256], tmp[] = "/tmp/elm-fuzz-vocab-XXXXXX";
    struct elm_gguf_writer *w = elm_gguf_writer_create(0);
    struct elm_gguf *out = NULL;
    int fd = mkstemp(tmp);

    if (!w || fd < 0)
        die("cannot rewrite", path, "out of memory or /tmp");
    close(fd);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!elm_gguf_str_eq(g->kv[i].key, "tokenizer.ggml.pre") &&
            elm_gguf_writer_copy_kv(w, &g->kv[i]) < 0)
            die("cannot copy a key of", path, elm_gguf_writer_error(w));
    if (elm_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre) < 0 ||
        elm_gguf_writer_write(w, tmp, err, sizeof err) < 0)
        die("cannot rewrite", path, elm_gguf_writer_error(w));
    elm_gguf_writer_destroy(&w);
    if (elm_gguf_open(tmp, &out, err, sizeof err) < 0)
        die("cannot reopen the rewrite of", path, err);
    unlink(tmp); /* the mapping keeps it alive */
    return out;
}

struct elm_vocab *elm_fuzz_vocab_load(const char *rel, const char *pre)
{
    char path[4096], err[256];
    struct elm_gguf *g = NULL;
    struct elm_vocab *v = NULL;

    snprintf(path, sizeof path, "%s/%s", elm_fuzz_models_dir(), rel);
    if (elm_gguf_open(path, &g, err, sizeof err) < 0)
        die("cannot open", path, err);
    if (pre) {
        struct elm_gguf *r = with_pre(g, pre, path);
        elm_gguf_destroy(&g);
        g = r;
    }
    if (elm_vocab_load(g, &v, err, sizeof err) < 0)
        die("cannot load the vocabulary of", path, err);
    elm_gguf_destroy(&g);
    return v;
}

void elm_fuzz_tokenize(const struct elm_vocab *v, const uint8_t *text, size_t len, uint8_t flags)
{
    int32_t *ids = NULL, n = 0;
    const bool special = flags & 1, add = flags & 2;

    if (elm_tokenize_alloc(v, (const char *)text, len, add, special, &ids, &n) < 0)
        return;
    /* every id the tokenizer produced must be one the vocabulary can render */
    char piece[256];
    for (int32_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= elm_vocab_size(v))
            abort();
        if (elm_token_to_piece(v, ids[i], special, piece, sizeof piece) < 0)
            abort();
    }
    /* the whole text back: once to size, once into a buffer of that size */
    int need = elm_detokenize(v, ids, n, special, true, NULL, 0);
    if (need > 0) {
        char *buf = malloc((size_t)need);
        if (buf && elm_detokenize(v, ids, n, special, true, buf, need) != need)
            abort();
        free(buf);
    }
    free(ids);
}
