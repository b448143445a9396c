/* test_elmd_residency.c — how elmd holds the weights, and loading at run time: explicit 2 MiB
 * huge pages when some are reserved (as root: vm.nr_hugepages is raised for the test and put
 * back afterwards, even when the test is killed: tests/common/guard.h), the THP/plain fallback
 * when none are, O_DIRECT on a disk file system and the buffered fallback on one without it
 * (ramfs); LOAD of a larger synthetic model (its read throughput is printed), a second LOAD while
 * one runs (busy), progress in STATUS, a bad file that leaves the old model serving, and UNLOAD
 * ending the sessions.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/gguf_writer.h"
#include "ipc/schema.h"
#include "tests/common/elmd_fixture.h"
#include "tests/common/guard.h"
#include "tests/common/sparse_model.h"

#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"

static long g_old_nr = -1; /* nr_hugepages to restore, -1 when untouched */
static char g_ramfs[200];  /* a ramfs mounted by the test, unmounted by teardown */

static long read_long(const char *path)
{
    char *s = elm_test_read_file(path, NULL);
    long v = s ? atol(s) : -1;
    free(s);
    return v;
}

static int write_long(const char *path, long v)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    int rc = fprintf(f, "%ld\n", v) > 0 ? 0 : -EIO;
    return fclose(f) == 0 ? rc : -errno;
}

static void restore_hugepages(void)
{
    if (g_old_nr >= 0) {
        if (write_long(NR_HUGEPAGES, g_old_nr) < 0)
            print_message("WARNING: could not restore %s to %ld\n", NR_HUGEPAGES, g_old_nr);
        elm_test_guard_sysctl_done(NR_HUGEPAGES);
        g_old_nr = -1;
    }
}

/* Sets nr_hugepages so that exactly `free` 2 MiB pages are free, or skips with the reason. */
static void set_free_hugepages(long want_free)
{
    if (geteuid() != 0) {
        print_message("SKIP: reserving huge pages needs root\n");
        skip();
    }
    const char *d = "/sys/kernel/mm/hugepages/hugepages-2048kB";
    char p[128];
    snprintf(p, sizeof p, "%s/free_hugepages", d);
    long nr = read_long(NR_HUGEPAGES), free_now = read_long(p);
    if (nr < 0 || free_now < 0) {
        print_message("SKIP: this kernel has no 2 MiB huge page pool\n");
        skip();
    }
    long target = nr - free_now + want_free; /* pages in use by others stay */
    /* teardown puts it back; the guardian does if this process is killed (timeout, ^C) */
    if (elm_test_guard_start() < 0) {
        print_message("SKIP: cannot start the process that would restore %s\n", NR_HUGEPAGES);
        skip();
    }
    g_old_nr = nr;
    elm_test_guard_sysctl(NR_HUGEPAGES, nr);
    if (write_long(NR_HUGEPAGES, target) < 0 || read_long(p) != want_free) {
        print_message("SKIP: could not make %ld huge pages free (%ld are; in use elsewhere, or "
                      "memory too fragmented)\n",
                      want_free, read_long(p));
        restore_hugepages();
        skip();
    }
}

static int teardown(void **state)
{
    struct td *t = *state;
    restore_hugepages();
    if (t) {
        if (getenv("ELMD_TEST_LOG"))
            td_dump_log(t);
        if (g_ramfs[0]) { /* the daemon maps the model: it must be gone before the umount */
            td_stop(t, SIGKILL, 5000);
            char cmd[300];
            snprintf(cmd, sizeof cmd, "umount '%s'", g_ramfs);
            if (system(cmd) != 0)
                print_message("WARNING: cannot unmount %s\n", g_ramfs);
            else
                elm_test_guard_mount_done(g_ramfs);
            g_ramfs[0] = 0;
        }
        int rc = td_cleanup(t);
        free(t);
        return rc;
    }
    return 0;
}

static struct td *start(void **state, const char *model, const char *const *extra)
{
    struct td *t = *state ? *state : calloc(1, sizeof *t);
    *state = t;
    if (td_start(t, model, extra)) {
        td_dump_log(t);
        fail_msg("elmd did not start");
    }
    return t;
}

/* ---- a synthetic model: stories260K's tokenizer, F16 weights of a larger shape ----------------
 */

static void fill_f16(void *ctx, void *dst, uint64_t n)
{
    uint16_t *h = dst;
    uint64_t seed = (uintptr_t)ctx;
    for (uint64_t i = 0; i < n / 2; i++) /* small finite halves: |x| < 2^-6 */
        h[i] = (uint16_t)(0x1000 + (((i + seed) * 2654435761u) >> 20) % 0x1000) |
               (uint16_t)((i & 1) << 15);
}

static int write_synth(const char *path, int n_layer, char *err, size_t errlen)
{
    const char *src = elm_test_model_path(TD_MODEL);
    struct elm_gguf *g;
    int rc = elm_gguf_open(src, &g, err, errlen);
    if (rc)
        return rc;
    struct elm_gguf_writer *w = elm_gguf_writer_create(0);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len < 6 || memcmp(g->kv[i].key.ptr, "llama.", 6))
            elm_gguf_writer_copy_kv(w, &g->kv[i]);
    const int64_t E = 1024, F = 2816, V = 512;
    elm_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)E);
    elm_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)F);
    elm_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)n_layer);
    elm_gguf_writer_set_u32(w, "llama.attention.head_count", 16);
    elm_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 16);
    elm_gguf_writer_set_u32(w, "llama.context_length", 512);
    elm_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    elm_gguf_writer_set_str(w, "general.name", "synthetic");
    struct {
        const char *name;
        int64_t ne0, ne1;
    } t[] = {{"attn_norm.weight", E, 1}, {"attn_q.weight", E, E},      {"attn_k.weight", E, E},
             {"attn_v.weight", E, E},    {"attn_output.weight", E, E}, {"ffn_norm.weight", E, 1},
             {"ffn_gate.weight", E, F},  {"ffn_up.weight", E, F},      {"ffn_down.weight", F, E}};
    int64_t ne[2] = {E, V};
    elm_gguf_writer_add_tensor_fill(w, "token_embd.weight", ELM_TYPE_F16, 2, ne, fill_f16,
                                    (void *)1);
    ne[1] = 1;
    elm_gguf_writer_add_tensor_fill(w, "output_norm.weight", ELM_TYPE_F16, 1, ne, fill_f16,
                                    (void *)2);
    for (int l = 0; l < n_layer; l++)
        for (size_t k = 0; k < sizeof t / sizeof *t; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", l, t[k].name);
            int64_t e2[2] = {t[k].ne0, t[k].ne1};
            elm_gguf_writer_add_tensor_fill(w, name, ELM_TYPE_F16, t[k].ne1 > 1 ? 2 : 1, e2,
                                            fill_f16, (void *)(uintptr_t)(l * 16 + k));
        }
    rc = elm_gguf_writer_write(w, path, err, errlen);
    elm_gguf_writer_destroy(&w);
    elm_gguf_destroy(&g);
    return rc;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_hugetlb_backing(void **state)
{
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    set_free_hugepages(4); /* the 1.1 MiB of stories260K needs one */
    struct td *t = start(state, model, NULL);
    struct tc c;
    tc_open_path(&c, t->dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    print_message("backing %s, %.0f%% on huge pages, %llu bytes pinned, notes '%s'\n",
                  tc_str(&c, ELM_TAG_BACKING), 100 * tc_f64(&c, ELM_TAG_HUGE_SHARE),
                  (unsigned long long)tc_u64(&c, ELM_TAG_PINNED_BYTES),
                  tc_str(&c, ELM_TAG_LOAD_NOTES));
    assert_string_equal(tc_str(&c, ELM_TAG_BACKING), "hugetlb");
    assert_true(tc_f64(&c, ELM_TAG_HUGE_SHARE) > 0.999);
    assert_true(tc_u64(&c, ELM_TAG_HUGE_BYTES) >= tc_u64(&c, ELM_TAG_WEIGHT_BYTES));
    assert_true(tc_u64(&c, ELM_TAG_PINNED_BYTES) >= tc_u64(&c, ELM_TAG_WEIGHT_BYTES));
    /* and it generates from there */
    struct ts s;
    static struct ts_result want, got;
    local_greedy(model, "Once upon a time", 50, &want);
    assert_int_equal(ts_open(&c, &s, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&s, 1, "Once upon a time", 50, 0, 1), 0);
    assert_int_equal(ts_collect(&s, &got, 20000), 0);
    assert_same(&got, &want);
    ts_close(&c, &s);
    tc_close(&c);
}

static void test_fallback_without_hugepages(void **state)
{
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    char p[128];
    snprintf(p, sizeof p, "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
    if (read_long(p) > 0)
        set_free_hugepages(0);
    struct td *t = start(state, model, NULL);
    struct tc c;
    tc_open_path(&c, t->dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    const char *backing = tc_str(&c, ELM_TAG_BACKING);
    print_message("backing %s, %.0f%% on huge pages, notes '%s'\n", backing,
                  100 * tc_f64(&c, ELM_TAG_HUGE_SHARE), tc_str(&c, ELM_TAG_LOAD_NOTES));
    assert_true(!strcmp(backing, "thp") || !strcmp(backing, "plain"));
    assert_non_null(strstr(tc_str(&c, ELM_TAG_LOAD_NOTES), "not using hugetlb"));
    char *thp = elm_test_read_file("/sys/kernel/mm/transparent_hugepage/enabled", NULL);
    if (thp && !strstr(thp, "[never]"))
        assert_string_equal(backing, "thp");
    free(thp);
    tc_close(&c);
}

/* A file system without O_DIRECT: ramfs (mounted for the test, as root), else tmpfs, which
 * lacked it before Linux 6.6. Writes its directory to dir; returns false when there is none. */
static bool no_direct_fs(const struct td *t, char *dir, size_t cap, bool *mounted)
{
    *mounted = false;
    snprintf(dir, cap, "%s/ramfs", t->base);
    /* teardown unmounts it; the guardian does if this process is killed */
    if (geteuid() == 0 && elm_test_guard_start() == 0 && mkdir(dir, 0700) == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "mount -t ramfs none '%s' 2>/dev/null", dir);
        elm_test_guard_mount(dir);
        if (system(cmd) == 0) {
            *mounted = true;
            snprintf(g_ramfs, sizeof g_ramfs, "%s", dir);
            return true;
        }
        elm_test_guard_mount_done(dir);
        rmdir(dir);
    }
    snprintf(dir, cap, "/dev/shm");
    char probe[128];
    snprintf(probe, sizeof probe, "/dev/shm/elmd-test-probe-%d", (int)getpid());
    int fd = open(probe, O_RDWR | O_CREAT | O_DIRECT, 0600);
    if (fd >= 0)
        close(fd);
    unlink(probe);
    return fd < 0 && errno == EINVAL;
}

static void test_direct_io_and_fallback(void **state)
{
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    struct td *t = calloc(1, sizeof *t);
    *state = t;
    assert_int_equal(td_mkbase(t), 0);
    /* A model on the disk file system that is not in the page cache is read with O_DIRECT
     * (ext4, xfs, btrfs...): a private file, so no other process keeps its pages cached, and
     * tens of MB, so the readahead of the header's parse does not bring in most of it (which
     * would make it cached, rightly: stories260K's 1.1 MB are). */
    char cold[160], cmd0[400], err[256];
    snprintf(cold, sizeof cold, "%s/cold.gguf", t->base);
    if (write_synth(cold, 2, err, sizeof err))
        fail_msg("cannot write %s: %s", cold, err);
    int cfd = open(cold, O_RDONLY);
    assert_true(cfd >= 0);
    posix_fadvise(cfd, 0, 0, POSIX_FADV_DONTNEED);
    close(cfd);
    start(state, cold, NULL);
    struct tc c;
    tc_open_path(&c, t->dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    print_message("%s: O_DIRECT %llu, io_uring %llu, %.2f GB/s, notes '%s'\n", cold,
                  (unsigned long long)tc_u64(&c, ELM_TAG_O_DIRECT),
                  (unsigned long long)tc_u64(&c, ELM_TAG_IO_URING), tc_f64(&c, ELM_TAG_LOAD_GBPS),
                  tc_str(&c, ELM_TAG_LOAD_NOTES));
    assert_int_equal(tc_u64(&c, ELM_TAG_IO_URING), 1);
    assert_int_equal(tc_u64(&c, ELM_TAG_O_DIRECT), 1);
    /* Now cached (it was just read... with O_DIRECT, so not by that read: cat it), the same
     * file is read through the page cache, and status says so. */
    snprintf(cmd0, sizeof cmd0, "cat '%s' > /dev/null", cold);
    assert_int_equal(system(cmd0), 0);
    elm_proto_put_str(tc_begin(&c, ELM_CMD_LOAD), ELM_TAG_PATH, cold);
    assert_int_equal(tc_call(&c, 30000), 0);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    print_message("%s again: O_DIRECT %llu, notes '%s'\n", cold,
                  (unsigned long long)tc_u64(&c, ELM_TAG_O_DIRECT), tc_str(&c, ELM_TAG_LOAD_NOTES));
    assert_int_equal(tc_u64(&c, ELM_TAG_O_DIRECT), 0);
    assert_non_null(strstr(tc_str(&c, ELM_TAG_LOAD_NOTES), "read through the page cache"));

    char dir[200], copy[300], cmd[700];
    bool mounted;
    if (!no_direct_fs(t, dir, sizeof dir, &mounted)) {
        tc_close(&c);
        print_message("SKIP: no file system without O_DIRECT here (not root, tmpfs has it)\n");
        skip();
    }
    snprintf(copy, sizeof copy, "%s/elmd-test-%d.gguf", dir, (int)getpid());
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", model, copy);
    assert_int_equal(system(cmd), 0);
    /* under the served model's name: it replaces that one, so STATUS describes the copy */
    struct elm_proto_buf *b = tc_begin(&c, ELM_CMD_LOAD);
    elm_proto_put_str(b, ELM_TAG_PATH, copy);
    elm_proto_put_str(b, ELM_TAG_MODEL_NAME, "stories260K");
    int rc = tc_call(&c, 30000);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    print_message("%s: O_DIRECT %llu, notes '%s'\n", copy,
                  (unsigned long long)tc_u64(&c, ELM_TAG_O_DIRECT), tc_str(&c, ELM_TAG_LOAD_NOTES));
    /* A ramfs file is all page cache, so it is read through it without trying O_DIRECT (the
     * EINVAL fallback is left for uncached files on file systems without O_DIRECT: FUSE, NFS) */
    bool ok = rc == 0 && tc_u64(&c, ELM_TAG_O_DIRECT) == 0 &&
              strstr(tc_str(&c, ELM_TAG_LOAD_NOTES), "O_DIRECT") != NULL;
    if (!mounted)
        unlink(copy); /* (a ramfs goes away whole in teardown) */
    tc_close(&c);
    assert_true(ok);
}

static void test_load_unload(void **state)
{
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    struct td *t = calloc(1, sizeof *t);
    *state = t;
    assert_int_equal(td_mkbase(t), 0);
    char synth[160], err[256];
    snprintf(synth, sizeof synth, "%s/synth.gguf", t->base);
    const char *mb = getenv("ELMD_TEST_SYNTH_LAYERS"); /* ~25.7 MiB per layer */
    int layers = mb ? atoi(mb) : 5;
    if (write_synth(synth, layers, err, sizeof err))
        fail_msg("cannot write %s: %s", synth, err);
    start(state, NULL, NULL);
    struct tc c, c2;
    tc_open_path(&c, t->dir);
    tc_open_path(&c2, t->dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    assert_string_equal(tc_str(&c, ELM_TAG_PATH), "");
    assert_int_equal(tc_simple(&c, ELM_CMD_OPEN_SESSION), ELM_ENOMODEL);

    /* LOAD is answered when the model serves; meanwhile another LOAD is busy. */
    elm_proto_put_str(tc_begin(&c, ELM_CMD_LOAD), ELM_TAG_PATH, synth);
    const void *f;
    size_t n;
    assert_int_equal(elm_proto_finish(&c.out, &f, &n), 0);
    assert_int_equal(tc_send_raw(&c, f, n), 0);
    /* (Frames on two connections have no order between them: wait until the load shows.) */
    bool busy_seen = false;
    int64_t end = td_now_ms() + 30000;
    while (td_now_ms() < end) {
        assert_int_equal(tc_simple(&c2, ELM_CMD_STATUS), 0);
        if (!strcmp(tc_str(&c2, ELM_TAG_LOADING_PATH), synth)) {
            print_message("loading: %llu of %llu bytes\n",
                          (unsigned long long)tc_u64(&c2, ELM_TAG_LOAD_DONE),
                          (unsigned long long)tc_u64(&c2, ELM_TAG_LOAD_TOTAL));
            elm_proto_put_str(tc_begin(&c2, ELM_CMD_LOAD), ELM_TAG_PATH, model);
            int rc = tc_call(&c2, 10000);
            busy_seen = rc == ELM_EBUSY;
            assert_true(rc == ELM_EBUSY || rc == 0); /* 0: it had finished in between */
            break;
        }
        if (!strcmp(tc_str(&c2, ELM_TAG_PATH), synth))
            break; /* too fast to catch: nothing to race with */
    }
    if (!busy_seen)
        print_message("note: the load finished before a second LOAD could race it\n");
    assert_int_equal(tc_recv_raw(&c, 60000) > 0, 1);
    struct elm_proto_msg rep;
    assert_int_equal(elm_proto_decode(c.in, (size_t)c.in_len, &rep, NULL), 0);
    assert_int_equal(rep.hdr.cmd, ELM_CMD_LOAD);
    assert_int_equal(rep.status, 0);
    uint64_t vocab = 0;
    elm_proto_get_u64(&rep.body, ELM_TAG_N_VOCAB, &vocab);
    assert_int_equal(vocab, 512);
    {
        assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
        assert_string_equal(tc_str(&c, ELM_TAG_PATH), synth);
        print_message("synthetic model, %d layers: %.1f MiB, load %.3f s, read at %.2f GB/s "
                      "(O_DIRECT %llu, %s, %.0f%% huge pages)\n",
                      layers, (double)tc_u64(&c, ELM_TAG_WEIGHT_BYTES) / (1 << 20),
                      (double)tc_u64(&c, ELM_TAG_LOAD_NS) / 1e9, tc_f64(&c, ELM_TAG_LOAD_GBPS),
                      (unsigned long long)tc_u64(&c, ELM_TAG_O_DIRECT), tc_str(&c, ELM_TAG_BACKING),
                      100 * tc_f64(&c, ELM_TAG_HUGE_SHARE));
    }

    /* Replace it with stories260K (a LOAD under its name; the racing LOAD above may have added
     * stories260K beside it, which is then the default); then a bad file leaves that one
     * serving. */
    struct elm_proto_buf *b = tc_begin(&c, ELM_CMD_LOAD);
    elm_proto_put_str(b, ELM_TAG_PATH, model);
    elm_proto_put_str(b, ELM_TAG_MODEL_NAME, "synth");
    assert_int_equal(tc_call(&c, 60000), 0);
    elm_proto_put_str(tc_begin(&c, ELM_CMD_LOAD), ELM_TAG_PATH, "/etc/hostname");
    assert_int_equal(tc_call(&c, 60000), ELM_EFORMAT);
    print_message("bad load: %s\n", tc_str(&c, ELM_TAG_MESSAGE));
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    assert_string_equal(tc_str(&c, ELM_TAG_PATH), model);
    assert_non_null(strstr(tc_str(&c, ELM_TAG_LOAD_ERROR), "/etc/hostname"));

    /* UNLOAD ends a running request with ERROR(ENOMODEL) and closes the session. */
    struct ts s;
    static struct ts_result r;
    assert_int_equal(ts_open(&c, &s, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&s, 1, "Once upon a time", 0, 0.8f, 9), 0);
    assert_int_equal(tc_simple(&c2, ELM_CMD_UNLOAD), 0);
    assert_int_equal(ts_collect(&s, &r, 10000), 0);
    assert_true(r.error || r.done); /* (the request may have ended on its own first) */
    if (r.error)
        assert_int_equal(r.err_code, ELM_ENOMODEL);
    assert_int_equal(ts_collect(&s, &r, 5000), -EPIPE);
    ts_close(NULL, &s);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    assert_string_equal(tc_str(&c, ELM_TAG_PATH), "");
    assert_int_equal(tc_u64(&c, ELM_TAG_N_SESSIONS), 0);
    assert_int_equal(tc_simple(&c, ELM_CMD_UNLOAD), 0);
    tc_close(&c);
    tc_close(&c2);
}

/* Issue 17 item 8: a model file that declares 3 GiB of a tensor no architecture uses, held as
 * a hole (the attack: an 80 KB file that became 3.15 GB of pinned memory). elmd reads and pins
 * only what the model uses, says what it left out, and generates exactly what the original file
 * does. */
static void test_sparse_unused_tensor(void **state)
{
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    struct td *t = calloc(1, sizeof *t);
    *state = t;
    assert_int_equal(td_mkbase(t), 0);
    char sparse[200], err[256];
    snprintf(sparse, sizeof sparse, "%s/sparse.gguf", t->base);
    if (elm_test_write_sparse(model, sparse, (uint64_t)3 << 30, err, sizeof err))
        fail_msg("cannot write %s: %s", sparse, err);
    start(state, sparse, NULL);
    struct tc c;
    tc_open_path(&c, t->dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    uint64_t weights = tc_u64(&c, ELM_TAG_WEIGHT_BYTES), pinned = tc_u64(&c, ELM_TAG_PINNED_BYTES);
    print_message("sparse file: %llu weight bytes, %llu pinned, notes '%s'\n",
                  (unsigned long long)weights, (unsigned long long)pinned,
                  tc_str(&c, ELM_TAG_LOAD_NOTES));
    assert_true(weights < (4u << 20)); /* stories260K's 1.1 MiB of tensors, aligned */
    assert_true(pinned < (4u << 20));
    assert_non_null(strstr(tc_str(&c, ELM_TAG_LOAD_NOTES), "1 tensors (3072.0 MiB)"));
    struct ts s;
    static struct ts_result want, got;
    local_greedy(model, "Once upon a time", 50, &want);
    assert_int_equal(ts_open(&c, &s, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&s, 1, "Once upon a time", 50, 0, 1), 0);
    assert_int_equal(ts_collect(&s, &got, 20000), 0);
    assert_same(&got, &want);
    ts_close(&c, &s);
    tc_close(&c);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    alarm(400);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_hugetlb_backing, teardown),
        cmocka_unit_test_teardown(test_fallback_without_hugepages, teardown),
        cmocka_unit_test_teardown(test_direct_io_and_fallback, teardown),
        cmocka_unit_test_teardown(test_sparse_unused_tensor, teardown),
        cmocka_unit_test_teardown(test_load_unload, teardown),
    };
    if (getenv("ELMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ELMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
