/* test_gguf.c — tests of the GGUF reader (engine/gguf.c).
 *
 * The reader is the first code to touch an untrusted model file, so this file attacks it: every
 * real model in the models folder must parse (and the two legacy files must be refused with the
 * right error), while truncated files, randomly corrupted headers and hand-made malformed files
 * must all be rejected with a message, never crash and never leak (run it under the ASan build:
 * mutated buffers are heap copies of exactly the file size, so any read past the end is caught).
 * The writer (engine/gguf_writer.c) is checked in test_gguf_writer.c. Temporary files live in a
 * mkdtemp() directory removed by the group teardown.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elm/status.h"
#include "engine/gguf.h"
#include "kernels/kernels.h"
#include "tests/common/elm_test.h"
#include "tests/common/gguf_check.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers: a byte builder for hand-made files, a PRNG
 */

struct bb {
    uint8_t *p;
    size_t n, cap;
};

static void bb_put(struct bb *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void bb_u32(struct bb *b, uint32_t v)
{
    bb_put(b, &v, 4);
}

static void bb_u64(struct bb *b, uint64_t v)
{
    bb_put(b, &v, 8);
}

static void bb_str(struct bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}

static void bb_zeros(struct bb *b, size_t n)
{
    static const uint8_t z[64];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        bb_put(b, z, k);
        n -= k;
    }
}

static void bb_header(struct bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: reproducible across platforms, unlike rand() */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static void expect_fail(const struct bb *b, int code, const char *needle)
{
    /* an exact-size heap copy so ASan sees any read past the end */
    uint8_t *copy = malloc(b->n ? b->n : 1);
    struct elm_gguf *g = NULL;
    char err[512];
    int rc;

    assert_non_null(copy);
    if (b->n)
        memcpy(copy, b->p, b->n);
    rc = elm_gguf_parse(copy, b->n, &g, err, sizeof err);
    if (rc != code)
        fail_msg("expected %d, got %d (%s)", code, rc, rc ? err : "success");
    assert_null(g);
    assert_true(err[0] != 0);
    if (needle)
        assert_contains(err, needle);
    free(copy);
}

static char *read_model(const char *rel, size_t *len)
{
    const char *path = elm_test_model_path(rel);
    char *buf = path ? elm_test_read_file(path, len) : NULL;
    assert_non_null(buf);
    return buf;
}

/* ---------------------------------------------------------------------------------------------
 * Real files
 */

static void test_stories260k(void **state)
{
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    struct elm_gguf *g = NULL;
    struct elm_gguf_str tokens[512], s;
    const struct elm_gguf_tensor *t;
    const void *data;
    uint64_t n;
    uint32_t u;
    int32_t i;
    float f;
    char err[512];
    struct stat st;

    assert_ok(elm_gguf_open(path, &g, err, sizeof err));
    assert_ok(stat(path, &st));
    elm_test_gguf_check_invariants(g);
    assert_int_equal(g->version, 3);
    assert_int_equal(g->n_tensors, 48);
    assert_int_equal(g->n_kv, 19);
    assert_int_equal(g->alignment, 32);
    assert_int_equal(g->data_offset + g->data_size, (uint64_t)st.st_size);

    assert_ok(elm_gguf_get_u32(g, "llama.embedding_length", &u));
    assert_int_equal(u, 64);
    assert_ok(elm_gguf_get_i32(g, "llama.embedding_length", &i));
    assert_int_equal(i, 64);
    assert_ok(elm_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f));
    assert_true(f == 1e-5f); /* stored as an f32: read back bit for bit, no tolerance */
    assert_ok(elm_gguf_get_str(g, "general.architecture", &s));
    assert_true(elm_gguf_str_eq(s, "llama"));
    assert_false(elm_gguf_str_eq(s, "llam"));
    /* "none" is stored as 0xFFFFFFFF: a u32, out of range for i32 */
    assert_ok(elm_gguf_get_u32(g, "tokenizer.ggml.seperator_token_id", &u));
    assert_int_equal(u, UINT32_MAX);
    i = 7;
    assert_int_equal(elm_gguf_get_i32(g, "tokenizer.ggml.seperator_token_id", &i), ELM_EFORMAT);
    assert_int_equal(i, 7); /* untouched on failure */
    assert_int_equal(elm_gguf_get_u32(g, "general.architecture", &u), ELM_EFORMAT);
    assert_int_equal(elm_gguf_get_u32(g, "no.such.key", &u), -ENOENT);
    assert_null(elm_gguf_find(g, "no.such.key"));

    assert_ok(elm_gguf_get_arr(g, "tokenizer.ggml.tokens", ELM_GGUF_STRING, &n, &data));
    assert_int_equal(n, 512);
    assert_int_equal(elm_gguf_get_arr(g, "tokenizer.ggml.tokens", ELM_GGUF_U32, &n, &data),
                     ELM_EFORMAT);
    assert_int_equal(elm_gguf_get_str_arr(g, "tokenizer.ggml.tokens", tokens, 511), ELM_EFORMAT);
    assert_ok(elm_gguf_get_str_arr(g, "tokenizer.ggml.tokens", tokens, 512));
    assert_true(elm_gguf_str_eq(tokens[0], "<unk>"));
    assert_true(elm_gguf_str_eq(tokens[1], "<s>"));
    assert_true(elm_gguf_str_eq(tokens[2], "</s>"));
    assert_true(elm_gguf_str_eq(tokens[3], "<0x00>"));

    t = elm_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->type, ELM_TYPE_F32);
    assert_int_equal(t->n_elements, 64 * 512);
    assert_int_equal(t->n_bytes, 64 * 512 * 4);
    assert_ok((uintptr_t)elm_gguf_tensor_data(g, t) % 32);
    assert_null(elm_gguf_find_tensor(g, "token_embd"));

    elm_gguf_destroy(&g);
    assert_null(g);
    elm_gguf_destroy(&g);   /* NULL-safe */
    elm_gguf_destroy(NULL); /* NULL-safe */
}

/* Opens every .gguf file in the models folder's sub; returns how many, -1 when the folder is
 * missing. */
static int check_model_dir(const char *sub)
{
    char dir[4096];
    struct dirent *de;
    DIR *d;
    int n = 0;
    int *n_files = &n;

    snprintf(dir, sizeof dir, "%s/%s", elm_test_models_dir(), sub);
    d = opendir(dir);
    if (!d)
        return -1;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        struct elm_gguf *g = NULL;
        char path[8192], err[1024];
        int rc;

        if (len < 5 || strcmp(de->d_name + len - 5, ".gguf") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        rc = elm_gguf_open(path, &g, err, sizeof err);
        (*n_files)++;
        if (strcmp(de->d_name, "tinyllamas-stories-260k-f32.gguf") == 0) {
            assert_int_equal(rc, ELM_EUNSUPPORTED);
            assert_contains(err, "v1");
            assert_contains(err, "re-convert");
        } else if (strcmp(de->d_name, "ggml-vocab-dbrx.gguf") == 0) {
            /* it stores general.file_type twice (keys 10 and 14) with the same value (an unmerged
             * llama.cpp branch, models README): one copy is kept, since nothing is ambiguous and
             * its tokenizer vectors need the file (engine/gguf.c, drop_repeated_keys) */
            assert_int_equal(rc, 0);
            assert_int_equal(g->n_kv, 24);
            elm_test_gguf_check_invariants(g);
            elm_gguf_destroy(&g);
        } else if (strcmp(de->d_name, "tinyllamas-stories-260k-q8_0.gguf") == 0) {
            assert_int_equal(rc, ELM_EFORMAT);
            assert_contains(err, "'blk.0.ffn_down.weight'");
            assert_contains(err, "172");
            assert_contains(err, "q8_0 block size 32");
        } else {
            if (rc != 0)
                fail_msg("%s: rc %d: %s", path, rc, err);
            elm_test_gguf_check_invariants(g);
            if (g->n_tensors == 0)
                assert_int_equal(g->data_size, 0);
            else
                assert_int_equal(g->data_offset + g->data_size, g->size);
            elm_gguf_destroy(&g);
        }
        if (rc)
            assert_null(g);
    }
    closedir(d);
    return n;
}

/* Every .gguf file that ships, with the counts the READMEs list: shared/models/README.md's
 * summary (4 model files, and 5 vocab files) and vocabulary table (6 more), and
 * shared/models/zoo/README.md's 24 files. */
static void test_all_models(void **state)
{
    static const struct {
        const char *sub;
        int files;
    } dirs[] = {{".", 4}, {"vocab", 11}, {"zoo", 24}};
    int missing = 0;
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        int n = check_model_dir(dirs[i].sub);
        print_message("%s: %d model files parsed\n", dirs[i].sub, n);
        if (n < 0)
            missing++;
        else
            assert_int_equal(n, dirs[i].files);
    }
    if (missing) {
        print_message("SKIP: test_all_models: %d of 3 folders missing under %s\n", missing,
                      elm_test_models_dir());
        skip();
    }
}

static void test_open_errors(void **state)
{
    struct elm_gguf *g = NULL;
    char err[512], path[128];
    FILE *f;

    assert_int_equal(elm_gguf_open("/nonexistent/model.gguf", &g, err, sizeof err), -ENOENT);
    assert_contains(err, "/nonexistent/model.gguf");
    assert_int_equal(elm_gguf_open(elm_test_gguf_tmpdir(), &g, err, sizeof err), -EISDIR);
    snprintf(path, sizeof path, "%s/empty.gguf", elm_test_gguf_tmpdir());
    f = fopen(path, "wb");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(elm_gguf_open(path, &g, err, sizeof err), ELM_EFORMAT);
    assert_contains(err, path);
    assert_null(g);
    unlink(path);
    /* a NULL err buffer is allowed */
    assert_int_equal(elm_gguf_open("/nonexistent/model.gguf", &g, NULL, 0), -ENOENT);
}

/* ---------------------------------------------------------------------------------------------
 * Malformed inputs
 */

static void test_truncated(void **state)
{
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    struct elm_gguf *g = NULL;
    size_t len, cuts[20];
    char *buf = read_model("stories260K.gguf", &len);
    char err[512];
    int nc = 0;

    assert_ok(elm_gguf_parse(buf, len, &g, err, sizeof err));
    size_t info = (size_t)((const uint8_t *)g->tensors[0].name.ptr - g->base - 8);
    size_t hdr_end = (size_t)((const uint8_t *)g->tensors[47].name.ptr - g->base) + 60;
    size_t data = (size_t)g->data_offset;
    elm_gguf_destroy(&g);
    assert_true(info > 100 && data > info);

    /* header */
    cuts[nc++] = 0, cuts[nc++] = 3, cuts[nc++] = 6, cuts[nc++] = 12, cuts[nc++] = 23;
    /* key/value section */
    cuts[nc++] = 24, cuts[nc++] = 30, cuts[nc++] = 50, cuts[nc++] = info / 2, cuts[nc++] = info - 9;
    /* tensor infos, then the padding before the data */
    cuts[nc++] = info, cuts[nc++] = info + 13, cuts[nc++] = (info + data) / 2;
    cuts[nc++] = hdr_end < data ? hdr_end : data - 1, cuts[nc++] = data - 1;
    /* tensor data */
    cuts[nc++] = data, cuts[nc++] = data + 1, cuts[nc++] = data + (len - data) / 2;
    cuts[nc++] = len - 4, cuts[nc++] = len - 1;
    assert_int_equal(nc, 20);

    for (int i = 0; i < nc; i++) {
        char *copy = malloc(cuts[i] ? cuts[i] : 1);
        assert_non_null(copy);
        memcpy(copy, buf, cuts[i]);
        err[0] = 0;
        int rc = elm_gguf_parse(copy, cuts[i], &g, err, sizeof err);
        if (rc == 0)
            fail_msg("truncation at %zu of %zu parsed", cuts[i], len);
        assert_true(rc < 0);
        assert_true(err[0] != 0);
        assert_null(g);
        free(copy);
    }

    /* Then every cut through the header: the prefix is placed at the END of one exact-size heap
     * block, so that under ASan a read past the cut is a read past the block. */
    char *tail = malloc(data + 1);
    assert_non_null(tail);
    for (size_t cut = 0; cut <= data; cut++) {
        char *p = tail + (data + 1 - cut);
        memcpy(p, buf, cut);
        err[0] = 0;
        assert_true(elm_gguf_parse(p, cut, &g, err, sizeof err) < 0);
        assert_true(err[0] != 0);
    }
    free(tail);
    free(buf);
}

/* Flips 1-4 random bytes of the header region of rel, `variants` times, and parses each. */
static void mutate_file(const char *rel, int variants, uint64_t seed)
{
    struct elm_gguf *g = NULL;
    size_t len;
    char *buf = read_model(rel, &len);
    char err[512];
    int failed = 0;

    assert_ok(elm_gguf_parse(buf, len, &g, err, sizeof err));
    size_t region = (size_t)g->data_offset;
    elm_gguf_destroy(&g);

    for (int v = 0; v < variants; v++) {
        size_t pos[4];
        char old[4];
        int k = 1 + (int)(rng_next(&seed) % 4);
        for (int j = 0; j < k; j++) {
            pos[j] = rng_next(&seed) % region;
            old[j] = buf[pos[j]];
            buf[pos[j]] ^= (char)(1 + rng_next(&seed) % 255);
        }
        err[0] = 0;
        int rc = elm_gguf_parse(buf, len, &g, err, sizeof err);
        if (rc) {
            failed++;
            assert_true(rc < 0);
            if (err[0] == 0)
                fail_msg("variant %d: error %d without a message", v, rc);
            assert_null(g);
        } else {
            /* the flips kept the file valid (say, inside a token's text): it must be sound */
            uint64_t n;
            const void *data;
            elm_test_gguf_check_invariants(g);
            if (elm_gguf_get_arr(g, "tokenizer.ggml.tokens", ELM_GGUF_STRING, &n, &data) == 0) {
                struct elm_gguf_str *s = malloc((n ? n : 1) * sizeof *s);
                assert_ok(elm_gguf_get_str_arr(g, "tokenizer.ggml.tokens", s, n));
                for (uint64_t i = 0; i < n; i++)
                    assert_true((const uint8_t *)s[i].ptr + s[i].len <= g->base + g->size);
                free(s);
            }
            elm_gguf_destroy(&g);
        }
        for (int j = k - 1; j >= 0; j--) /* reverse order: a position may repeat */
            buf[pos[j]] = old[j];
    }
    print_message("%s: %d of %d mutated headers rejected\n", rel, failed, variants);
    /* Most of the region is token text, scores and token types, where a flip stays valid; the
     * rest (lengths, types, counts, dims, offsets) must be caught. */
    assert_true(failed * 2 >= variants);
    free(buf);
}

static void test_mutations(void **state)
{
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    (void)path;
    mutate_file("stories260K.gguf", 10000, 0x5eed1234abcdULL);
    /* a file with general.alignment and K-quant tensors */
    if (elm_test_model_path("zoo/zoo-qwen2-q4_k_m.gguf"))
        mutate_file("zoo/zoo-qwen2-q4_k_m.gguf", 3000, 42);
}

/* A file of one "general.name" KV and the given tensor infos, then data_bytes of data. */
struct tinfo {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[5]; /* one more than GGUF allows, to write n_dims 5 */
    uint32_t type;
    uint64_t offset;
};

static void bb_tensor_file(struct bb *b, const struct tinfo *t, int n, uint64_t data_bytes)
{
    bb_header(b, 3, (uint64_t)n, 1);
    bb_str(b, "general.name");
    bb_u32(b, ELM_GGUF_STRING);
    bb_str(b, "t");
    for (int i = 0; i < n; i++) {
        bb_str(b, t[i].name);
        bb_u32(b, t[i].n_dims);
        for (uint32_t d = 0; d < t[i].n_dims; d++)
            bb_u64(b, t[i].ne[d]);
        bb_u32(b, t[i].type);
        bb_u64(b, t[i].offset);
    }
    bb_zeros(b, (32 - b->n % 32) % 32);
    bb_zeros(b, (size_t)data_bytes);
}

static void test_handmade_header(void **state)
{
    struct bb b = {0};

    expect_fail(&b, ELM_EFORMAT, "bad magic");
    bb_put(&b, "GGUF", 4);
    expect_fail(&b, ELM_EFORMAT, "truncated");
    b.n = 0, bb_header(&b, 1, 0, 0);
    expect_fail(&b, ELM_EUNSUPPORTED, "v1");
    b.n = 0, bb_header(&b, 4, 0, 0);
    expect_fail(&b, ELM_EFORMAT, "version 4");
    b.n = 0, bb_header(&b, 0x03000000, 0, 0); /* big-endian file */
    expect_fail(&b, ELM_EFORMAT, "version");
    b.n = 0, bb_put(&b, "GGUG", 4), bb_u32(&b, 3), bb_u64(&b, 0), bb_u64(&b, 0);
    expect_fail(&b, ELM_EFORMAT, "magic");

    /* huge counts are refused before anything is allocated */
    b.n = 0, bb_header(&b, 3, 0, UINT64_C(1) << 60);
    expect_fail(&b, ELM_EFORMAT, "cannot fit");
    b.n = 0, bb_header(&b, 3, UINT64_MAX / 16, 1);
    expect_fail(&b, ELM_EFORMAT, "cannot fit");
    b.n = 0, bb_header(&b, 3, 0, 2), bb_zeros(&b, 20); /* 2 KVs need >= 28 bytes */
    expect_fail(&b, ELM_EFORMAT, "cannot fit");

    /* minimal valid file: no KVs, no tensors */
    struct elm_gguf *g = NULL;
    b.n = 0, bb_header(&b, 2, 0, 0);
    assert_ok(elm_gguf_parse(b.p, b.n, &g, NULL, 0));
    assert_int_equal(g->data_size, 0);
    assert_int_equal(g->data_offset, 24);
    elm_gguf_destroy(&g);
    free(b.p);
}

static void test_handmade_kv(void **state)
{
    struct bb b = {0};

    /* huge key length and huge string length */
    bb_header(&b, 3, 0, 1), bb_u64(&b, UINT64_MAX - 3), bb_zeros(&b, 16);
    expect_fail(&b, ELM_EFORMAT, "truncated");
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "k.str"), bb_u32(&b, ELM_GGUF_STRING);
    bb_u64(&b, UINT64_MAX), bb_zeros(&b, 8);
    expect_fail(&b, ELM_EFORMAT, "key 'k.str'");
    /* empty key */
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, ""), bb_u32(&b, ELM_GGUF_U8), bb_zeros(&b, 4);
    expect_fail(&b, ELM_EFORMAT, "empty key");
    /* unknown value type */
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "k.t"), bb_u32(&b, 13), bb_zeros(&b, 8);
    expect_fail(&b, ELM_EFORMAT, "unknown value type 13");
    /* array of arrays */
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "k.nest"), bb_u32(&b, ELM_GGUF_ARRAY);
    bb_u32(&b, ELM_GGUF_ARRAY), bb_u64(&b, 1), bb_u32(&b, ELM_GGUF_U8), bb_u64(&b, 0);
    expect_fail(&b, ELM_EFORMAT, "nested");
    /* unknown array element type */
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "k.a"), bb_u32(&b, ELM_GGUF_ARRAY);
    bb_u32(&b, 99), bb_u64(&b, 0);
    expect_fail(&b, ELM_EFORMAT, "element type 99");
    /* array length x element size overflows / exceeds the file */
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "k.big"), bb_u32(&b, ELM_GGUF_ARRAY);
    bb_u32(&b, ELM_GGUF_U64), bb_u64(&b, UINT64_MAX / 4), bb_zeros(&b, 64);
    expect_fail(&b, ELM_EFORMAT, "does not fit");
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "k.strs"), bb_u32(&b, ELM_GGUF_ARRAY);
    bb_u32(&b, ELM_GGUF_STRING), bb_u64(&b, UINT64_C(1) << 40), bb_zeros(&b, 64);
    expect_fail(&b, ELM_EFORMAT, "cannot fit");
    /* bools must be 0 or 1, alone or in arrays */
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "k.b"), bb_u32(&b, ELM_GGUF_BOOL);
    bb_put(&b, "\x02", 1);
    expect_fail(&b, ELM_EFORMAT, "neither 0 nor 1");
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "k.ba"), bb_u32(&b, ELM_GGUF_ARRAY);
    bb_u32(&b, ELM_GGUF_BOOL), bb_u64(&b, 3), bb_put(&b, "\x01\x00\xff", 3);
    expect_fail(&b, ELM_EFORMAT, "key 'k.ba'");
    /* duplicate keys */
    b.n = 0, bb_header(&b, 3, 0, 3);
    bb_str(&b, "a"), bb_u32(&b, ELM_GGUF_U8), bb_zeros(&b, 1);
    bb_str(&b, "b"), bb_u32(&b, ELM_GGUF_U8), bb_zeros(&b, 1);
    bb_str(&b, "a"), bb_u32(&b, ELM_GGUF_U16), bb_zeros(&b, 2);
    expect_fail(&b, ELM_EFORMAT, "key 'a': duplicate");
    /* the same key with the same type and bytes is kept once, in file order (the dbrx vocab
     * repeats general.file_type) */
    b.n = 0, bb_header(&b, 3, 0, 4);
    bb_str(&b, "a"), bb_u32(&b, ELM_GGUF_U8), bb_put(&b, "\x07", 1);
    bb_str(&b, "b"), bb_u32(&b, ELM_GGUF_U8), bb_put(&b, "\x01", 1);
    bb_str(&b, "a"), bb_u32(&b, ELM_GGUF_U8), bb_put(&b, "\x07", 1);
    bb_str(&b, "c"), bb_u32(&b, ELM_GGUF_U8), bb_put(&b, "\x02", 1);
    {
        struct elm_gguf *g = NULL;
        char err[256];
        assert_int_equal(elm_gguf_parse(b.p, b.n, &g, err, sizeof err), 0);
        assert_int_equal(g->n_kv, 3);
        assert_int_equal(g->kv[0].key.ptr[0], 'a');
        assert_int_equal(g->kv[1].key.ptr[0], 'b');
        assert_int_equal(g->kv[2].key.ptr[0], 'c');
        assert_int_equal(elm_gguf_find(g, "a")->v.u64, 7);
        elm_gguf_destroy(&g);
    }
    /* ... but not with other bytes */
    b.n = 0, bb_header(&b, 3, 0, 2);
    bb_str(&b, "a"), bb_u32(&b, ELM_GGUF_U8), bb_put(&b, "\x07", 1);
    bb_str(&b, "a"), bb_u32(&b, ELM_GGUF_U8), bb_put(&b, "\x08", 1);
    expect_fail(&b, ELM_EFORMAT, "key 'a': duplicate key with a different value");
    /* a key with control bytes is printed escaped */
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "bad\x1b[2J"), bb_u32(&b, 77), bb_zeros(&b, 4);
    expect_fail(&b, ELM_EFORMAT, "'bad\\x1b[2J'");

    /* general.alignment: u32, nonzero, power of two */
    static const uint32_t bad_align[] = {0, 33, 96};
    for (int i = 0; i < 3; i++) {
        b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "general.alignment");
        bb_u32(&b, ELM_GGUF_U32), bb_u32(&b, bad_align[i]);
        expect_fail(&b, ELM_EFORMAT, "power of two");
    }
    b.n = 0, bb_header(&b, 3, 0, 1), bb_str(&b, "general.alignment");
    bb_u32(&b, ELM_GGUF_U64), bb_u64(&b, 64);
    expect_fail(&b, ELM_EFORMAT, "expected u32");
    free(b.p);
}

static void test_handmade_tensors(void **state)
{
    struct bb b = {0};
    struct elm_gguf *g = NULL;
    char err[512];

    /* a valid pair first, so the failures below are due to the one field changed */
    struct tinfo ok[2] = {{"a", 2, {32, 2}, ELM_TYPE_F32, 0}, {"b", 1, {64}, ELM_TYPE_Q8_0, 256}};
    bb_tensor_file(&b, ok, 2, 256 + 68);
    assert_ok(elm_gguf_parse(b.p, b.n, &g, err, sizeof err));
    elm_test_gguf_check_invariants(g);
    assert_int_equal(g->tensors[1].n_bytes, 68);
    assert_int_equal(g->data_size, 256 + 68);
    elm_gguf_destroy(&g);

    struct {
        struct tinfo t[2];
        int n;
        uint64_t data;
        int code;
        const char *msg;
    } cases[] = {
        // clang-format off
        /* offset outside the file */
        {{{"a", 1, {32}, ELM_TYPE_F32, 4096}}, 1, 128, ELM_EFORMAT, "tensor 'a': data"},
        {{{"a", 1, {32}, ELM_TYPE_F32, 0}}, 1, 127, ELM_EFORMAT, "outside"},
        /* no data at all */
        {{{"a", 1, {32}, ELM_TYPE_F32, 0}}, 1, 0, ELM_EFORMAT, "outside"},
        /* overlapping tensors */
        {{{"a", 1, {32}, ELM_TYPE_F32, 0}, {"b", 1, {32}, ELM_TYPE_F32, 96}}, 2, 256,
         ELM_EFORMAT, "'a' and 'b' overlap"},
        /* offset not a multiple of the alignment */
        {{{"a", 1, {32}, ELM_TYPE_F32, 16}}, 1, 256, ELM_EFORMAT, "multiple of the alignment"},
        /* ne 0, and a dims product that overflows */
        {{{"a", 2, {0, 4}, ELM_TYPE_F32, 0}}, 1, 256, ELM_EFORMAT, "dimension 0 is 0"},
        {{{"a", 2, {32, 0}, ELM_TYPE_F32, 0}}, 1, 256, ELM_EFORMAT, "dimension 1 is 0"},
        {{{"a", 3, {UINT64_C(1) << 32, UINT64_C(1) << 32, 1 << 30}, ELM_TYPE_F32, 0}}, 1, 256,
         ELM_EFORMAT, "overflows"},
        {{{"a", 1, {UINT64_MAX}, ELM_TYPE_F32, 0}}, 1, 256, ELM_EFORMAT, "must be >= 1"},
        /* n_dims out of range */
        {{{"a", 0, {0}, ELM_TYPE_F32, 0}}, 1, 256, ELM_EFORMAT, "n_dims 0"},
        {{{"a", 5, {1, 1, 1, 1, 1}, ELM_TYPE_F32, 0}}, 1, 256, ELM_EFORMAT, "n_dims 5"},
        /* types: unknown to elm (IQ2_XXS = 16), an activation-only format, garbage */
        {{{"a", 1, {256}, 16, 0}}, 1, 256, ELM_EUNSUPPORTED, "type id 16"},
        {{{"a", 1, {256}, ELM_TYPE_Q8_K, 0}}, 1, 512, ELM_EUNSUPPORTED, "type id 15"},
        {{{"a", 1, {32}, 1000, 0}}, 1, 256, ELM_EFORMAT, "type id 1000"},
        /* row not a multiple of the block size */
        {{{"w", 2, {172, 64}, ELM_TYPE_Q8_0, 0}}, 1, 12000, ELM_EFORMAT,
         "tensor 'w': row of 172 elements is not a multiple of the q8_0 block size 32"},
        /* duplicate and empty names */
        {{{"a", 1, {32}, ELM_TYPE_F32, 0}, {"a", 1, {32}, ELM_TYPE_F32, 128}}, 2, 256,
         ELM_EFORMAT, "tensor 'a': duplicate"},
        {{{"", 1, {32}, ELM_TYPE_F32, 0}}, 1, 256, ELM_EFORMAT, "empty tensor name"},
        // clang-format on
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        b.n = 0;
        bb_tensor_file(&b, cases[i].t, cases[i].n, cases[i].data);
        expect_fail(&b, cases[i].code, cases[i].msg);
    }
    free(b.p);
}

/* ---------------------------------------------------------------------------------------------
 * Main
 */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k), cmocka_unit_test(test_all_models),
        cmocka_unit_test(test_open_errors), cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_mutations),   cmocka_unit_test(test_handmade_header),
        cmocka_unit_test(test_handmade_kv), cmocka_unit_test(test_handmade_tensors),
    };
    return cmocka_run_group_tests(tests, elm_test_gguf_group_setup, elm_test_gguf_group_teardown);
}
