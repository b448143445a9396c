/* test_loader.c — the engine's resident loader (engine/loader.c) against the plain file mapping:
 * the copy holds the file's data section byte for byte, the model built on it computes the same
 * logits bit for bit, and the pread fallback (what runs when io_uring_queue_init fails: old
 * kernels, seccomp, qemu-user) fills the memory the same way and says so. A file that fails
 * validation fails before a byte of its weights is read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/residency.h"
#include "elm/status.h"
#include "engine/kv.h"
#include "engine/loader.h"
#include "engine/model.h"
#include "tests/common/elm_test.h"
#include "tests/common/sparse_model.h"

#define N_TOK 4

/* Logits of the last of a few tokens, in a new buffer. */
static float *logits_of(const struct elm_model *m)
{
    static const int32_t toks[N_TOK] = {1, 403, 407, 261};
    struct elm_kv *kv;
    struct elm_work *w;
    assert_int_equal(elm_kv_create(m, 16, ELM_TYPE_F32, &kv), 0);
    assert_int_equal(elm_work_create(m, N_TOK, 16, &w), 0);
    float *out = malloc((size_t)m->hp.n_vocab * sizeof *out);
    assert_non_null(out);
    struct elm_batch_item items[N_TOK];
    for (int i = 0; i < N_TOK; i++)
        items[i] = (struct elm_batch_item){
            .token = toks[i], .pos = i, .kv = kv, .logits = i == N_TOK - 1 ? out : NULL};
    assert_int_equal(elm_model_forward(m, w, items, N_TOK), 0);
    elm_work_destroy(&w);
    elm_kv_destroy(&kv);
    return out;
}

/* chunk: bytes per read (0: the default, one read for this small file; smaller: several reads,
 * split between the loader's two reader threads). */
static void check_load(const char *path, bool no_uring, size_t chunk)
{
    char err[512];
    struct elm_model_params mp = {.n_threads = 1};
    struct elm_model *ref;
    assert_int_equal(elm_model_load(path, &mp, &ref, err, sizeof err), 0);

    struct elm_load_params lp = {.threads = 1,
                                 .hugepages = ELM_HUGE_AUTO,
                                 .mlock = false,
                                 .direct_io = true,
                                 .no_uring = no_uring,
                                 .io_chunk = chunk,
                                 .readers = 2};
    struct elm_load_progress pr = {0};
    struct elm_model *m = NULL;
    struct elm_residency r;
    int rc = elm_loader_load(path, &lp, &pr, &m, &r, err, sizeof err);
    if (rc)
        fail_msg("%s: %s", path, err);
    print_message("%s: %s, %s, %s, %d readers, notes '%s'\n", no_uring ? "pread" : "default",
                  r.uring ? "io_uring" : "pread", r.direct ? "O_DIRECT" : "buffered",
                  elm_backing_name(r.mem.backing), r.readers, r.notes);
    assert_int_equal(r.readers, chunk ? 2 : 1);
    if (no_uring)
        assert_false(r.uring);
    else if (!r.uring) /* io_uring refused here: the fallback ran and said why */
        assert_non_null(strstr(r.notes, "io_uring unavailable"));

    /* The model uses every tensor of this file, so the copy is one run: the data section's
     * aligned superset, the section at its offset modulo 4096. The model reads its weights
     * from the copy. */
    const struct elm_gguf *g = ref->gguf;
    uint64_t lead = g->data_offset % 4096;
    assert_int_equal(r.data_size, (lead + g->data_size + 4095) / 4096 * 4096);
    assert_int_equal(atomic_load(&pr.done), atomic_load(&pr.total));
    assert_true(atomic_load(&pr.total) >= g->data_size);
    assert_memory_equal((const unsigned char *)r.data + lead, g->base + g->data_offset,
                        g->data_size);
    assert_true(strstr(r.notes, "not read") == NULL);
    const unsigned char *lo = r.data, *hi = lo + r.data_size;
    assert_true((const unsigned char *)m->tok_embd.data >= lo &&
                (const unsigned char *)m->tok_embd.data < hi);
    assert_true((const unsigned char *)m->layers[0].w_down.data >= lo &&
                (const unsigned char *)m->layers[0].w_down.data < hi);

    float *a = logits_of(ref), *b = logits_of(m);
    assert_memory_equal(a, b, (size_t)ref->hp.n_vocab * sizeof *a);
    free(a);
    free(b);
    elm_loader_unload(&m, &r);
    assert_null(m);
    assert_null(r.mem.base);
    elm_model_destroy(&ref);
}

static void test_uring(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    check_load(path, false, 0);
}

static void test_uring_two_readers(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    check_load(path, false, 64 << 10);
}

static void test_pread_fallback(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    check_load(path, true, 0);
}

static void test_pread_two_readers(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    check_load(path, true, 64 << 10);
}

/* Every variant that multiplies Q4_0 packed (kernels.h, ELM_LAYOUT_X8) packs the loader's copy
 * in place: the matrices stay where the copy holds them, and the logits are those of the same
 * variant's model over the file's mapping (which packs a copy of its own) and of ref's (rows). */
static void test_packed_in_place(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(path, "zoo/zoo-llama-q4_0.gguf");
    char err[512];
    struct elm_model_params rp = {.n_threads = 1, .kernel = "ref"};
    struct elm_model *ref;
    assert_int_equal(elm_model_load(path, &rp, &ref, err, sizeof err), 0);
    float *want = logits_of(ref);
    int packing = 0;
    const char *v;
    for (size_t i = 0; (v = elm_kernels_variant(i)) != NULL; i++) {
        const struct elm_kernels *k = elm_kernels_get(v);
        if (!k || elm_matmul_layout(k, ELM_TYPE_Q4_0) == ELM_LAYOUT_ROWS)
            continue;
        struct elm_model_params mp = {.n_threads = 1, .kernel = v};
        struct elm_model *mapped;
        assert_int_equal(elm_model_load(path, &mp, &mapped, err, sizeof err), 0);
        struct elm_load_params lp = {.threads = 1, .kernel = v, .hugepages = ELM_HUGE_AUTO};
        struct elm_model *m = NULL;
        struct elm_residency r;
        if (elm_loader_load(path, &lp, NULL, &m, &r, err, sizeof err))
            fail_msg("%s: %s", path, err);
        const unsigned char *lo = r.data, *hi = lo + r.data_size;
        const struct elm_tensor *wq = &m->layers[0].wq;
        assert_int_equal(wq->layout, elm_matmul_layout(k, ELM_TYPE_Q4_0));
        assert_true((const unsigned char *)wq->data >= lo && (const unsigned char *)wq->data < hi);
        assert_int_equal(mapped->layers[0].wq.layout, wq->layout);
        float *a = logits_of(mapped), *b = logits_of(m);
        assert_memory_equal(want, a, (size_t)ref->hp.n_vocab * sizeof *a);
        assert_memory_equal(want, b, (size_t)ref->hp.n_vocab * sizeof *b);
        free(a);
        free(b);
        elm_loader_unload(&m, &r);
        elm_model_destroy(&mapped);
        packing++;
    }
    free(want);
    elm_model_destroy(&ref);
    if (!packing) {
        print_message("SKIP: no kernel variant of this machine packs Q4_0\n");
        skip();
    }
    print_message("%d variant(s) here pack Q4_0; their logits are ref's\n", packing);
}

/* A tensor that does not fit its type is found from the header: nothing is read, nothing is
 * returned. */
static void test_bad_file_reads_nothing(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(path, "tinyllamas-stories-260k-q8_0.gguf");
    struct elm_load_params lp = {.hugepages = ELM_HUGE_OFF};
    struct elm_load_progress pr = {0};
    struct elm_model *m = NULL;
    struct elm_residency r = {.data_size = 12345};
    char err[512];
    assert_int_equal(elm_loader_load(path, &lp, &pr, &m, &r, err, sizeof err), ELM_EFORMAT);
    assert_non_null(strstr(err, "'blk.0.ffn_down.weight'"));
    assert_int_equal(atomic_load(&pr.total), 0);
    assert_null(m);
    assert_int_equal(r.data_size, 12345); /* written only on success */

    assert_int_equal(elm_loader_load("/nonexistent/x.gguf", &lp, &pr, &m, &r, err, sizeof err),
                     -ENOENT);
}

/* Issue 17 item 8: a file that declares 3 GiB of a tensor no architecture uses, stored as a
 * hole. Only the used tensors are read and held (the copy is the model's size, not the file's),
 * the unused one is named in the notes, and the model computes what the original does. */
static void test_unused_tensor_not_read(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    char sparse[] = "/tmp/elm-test-sparse-XXXXXX", err[512];
    int fd = mkstemp(sparse);
    assert_true(fd >= 0);
    close(fd);
    const uint64_t unused = (uint64_t)3 << 30;
    if (elm_test_write_sparse(path, sparse, unused, err, sizeof err))
        fail_msg("%s", err);
    struct elm_model_params mp = {.n_threads = 1};
    struct elm_model *ref, *m = NULL;
    assert_int_equal(elm_model_load(path, &mp, &ref, err, sizeof err), 0);
    struct elm_load_params lp = {.threads = 1, .hugepages = ELM_HUGE_AUTO, .direct_io = true};
    struct elm_load_progress pr = {0};
    struct elm_residency r;
    int rc = elm_loader_load(sparse, &lp, &pr, &m, &r, err, sizeof err);
    unlink(sparse);
    if (rc)
        fail_msg("%s", err);
    print_message("read %llu bytes, copy %zu bytes, notes '%s'\n",
                  (unsigned long long)r.read_bytes, r.mem.len, r.notes);
    uint64_t section = ref->gguf->data_size + 2 * 4096; /* the used tensors, aligned */
    assert_true(r.read_bytes <= section);
    assert_true(atomic_load(&pr.total) <= section);
    assert_true(r.mem.len <= section + ELM_HUGE_PAGE); /* rounded up to a huge page at most */
    assert_non_null(strstr(r.notes, "1 tensors (3072.0 MiB) the model does not use: not read"));
    float *a = logits_of(ref), *b = logits_of(m);
    assert_memory_equal(a, b, (size_t)ref->hp.n_vocab * sizeof *a);
    free(a);
    free(b);
    elm_loader_unload(&m, &r);
    elm_model_destroy(&ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uring),
        cmocka_unit_test(test_uring_two_readers),
        cmocka_unit_test(test_pread_two_readers),
        cmocka_unit_test(test_pread_fallback),
        cmocka_unit_test(test_packed_in_place),
        cmocka_unit_test(test_bad_file_reads_nothing),
        cmocka_unit_test(test_unused_tensor_not_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
