/* test_elmd_models.c — several resident models in one elmd (issue 15 item 2), through
 * libelmclient against a real daemon:
 *   - two models resident, four clients alternating between them at once: every stream's token
 *     ids equal the same request run with that model alone (passes alternate between the models,
 *     each pass batch-invariant);
 *   - a session's keep_alive of 1 s unloads its model once idle: status shows it gone and the
 *     resident bytes drop by its size;
 *   - loading over max_resident_bytes unloads the least recently used idle model, never one
 *     with a session; when only models with sessions are left, the load waits (status says so)
 *     and goes on once one of them closes.
 *   - `threads` governs the whole pass: a daemon started with --threads 1 runs a long prompt's
 *     products (large enough to be split) without a single compute-pool worker, and a model
 *     loaded with 2 threads gets a team of 2 (one worker beside the engine thread).
 * Models: stories260K and zoo-llama-q8_0 (small: the whole test takes seconds).
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "elm/client.h"
#include "elm/status.h"
#include "tests/common/elm_test.h"
#include "tests/common/elmd_fixture.h"

#define ZOO     "zoo/zoo-llama-q8_0.gguf"
#define N_GEN   24
#define MAX_TOK 64

static struct td g_td;

static int teardown(void **state)
{
    (void)state;
    return td_cleanup(&g_td) ? -1 : 0;
}

struct run {
    int n;
    int32_t ids[MAX_TOK];
};

/* Greedy N_GEN tokens of prompt on an open session; the token ids in *out. */
static void generate(elm_session *s, const char *prompt, struct run *out)
{
    struct elm_request r;
    elm_request_init(&r);
    r.prompt = prompt;
    r.n_predict = N_GEN;
    r.temp = 0;
    out->n = 0;
    assert_int_equal(elm_session_submit(s, &r), 0);
    for (;;) {
        struct elm_event ev;
        assert_int_equal(elm_session_next(s, &ev, 60000), 0);
        if (ev.type == ELM_EVENT_TOKEN && out->n < MAX_TOK)
            out->ids[out->n++] = ev.token;
        if (ev.type == ELM_EVENT_ERROR)
            fail_msg("request failed: %d", ev.error);
        if (ev.type == ELM_EVENT_DONE)
            return;
    }
}

/* One request on a new session of model (NULL: the default), closed afterwards. */
static void generate_on(elm_client *c, const char *model, const char *keep_alive,
                        const char *prompt, struct run *out)
{
    struct elm_session_params p = {.model = model, .keep_alive = keep_alive};
    elm_session *s;
    assert_int_equal(elm_session_open_params(c, &p, &s), 0);
    generate(s, prompt, out);
    elm_session_close(&s);
}

static void assert_same_run(const struct run *got, const struct run *want)
{
    assert_int_equal(got->n, want->n);
    assert_memory_equal(got->ids, want->ids, (size_t)want->n * sizeof *want->ids);
}

static struct elm_daemon_status *status(elm_client *c)
{
    static struct elm_daemon_status st;
    assert_int_equal(elm_client_status(c, &st), 0);
    return &st;
}

/* Whether status's model list names model ("NAME (" starts each entry). */
static bool lists(const struct elm_daemon_status *st, const char *name)
{
    char key[80];
    snprintf(key, sizeof key, "%s (", name);
    for (const char *p = strstr(st->models, key); p; p = strstr(p + 1, key))
        if (p == st->models || p[-1] == ' ')
            return true;
    return false;
}

/* Polls status until pred holds or a generous deadline passes (no timing is asserted: the
 * deadline only keeps a broken daemon from hanging the test). */
static bool wait_until(elm_client *c, bool (*pred)(const struct elm_daemon_status *, const void *),
                       const void *arg)
{
    int64_t end = td_deadline(30000);
    while (td_now_ms() < end) {
        if (pred(status(c), arg))
            return true;
        td_sleep_ms(50);
    }
    return false;
}

static bool is_gone(const struct elm_daemon_status *st, const void *name)
{
    return !lists(st, name);
}

static bool load_waits(const struct elm_daemon_status *st, const void *arg)
{
    (void)arg;
    return strstr(st->load_wait, "waiting for room") != NULL;
}

/* Starts elmd on the default model in a fresh directory; returns the zoo file's path, or NULL
 * (a skip) when a file is missing or elmd cannot start. */
static const char *start_two(const char *const *extra)
{
    memset(&g_td, 0, sizeof g_td); /* td_cleanup leaves the removed directory's name */
    const char *zoo = elm_test_model_path(ZOO);
    const char *a = elm_test_model_path(TD_MODEL);
    if (!zoo || !a) {
        print_message("SKIP: %s or %s not found in %s\n", TD_MODEL, ZOO, elm_test_models_dir());
        return NULL;
    }
    if (td_start(&g_td, a, extra)) {
        print_message("SKIP: elmd could not be started (%s)\n", td_elmd_path());
        return NULL;
    }
    return zoo;
}

/* ---- two models, four clients --------------------------------------------------------------- */

struct client {
    const char *dir;
    int idx;
    struct run got[2];
};

static const char *const names[2] = {"stories260K", "zoo"};
static const char *const prompts[2] = {"Once upon a time", "The little dog"};

/* Client idx runs two requests, alternating models: idx%2 first, then the other. */
static void *client_main(void *arg)
{
    struct client *cl = arg;
    elm_client *c;
    if (elm_client_connect(cl->dir, &c))
        return NULL;
    for (int j = 0; j < 2; j++) {
        int m = (cl->idx + j) % 2;
        generate_on(c, names[m], NULL, prompts[cl->idx / 2], &cl->got[j]);
    }
    elm_client_close(&c);
    return cl;
}

static void test_two_models(void **state)
{
    (void)state;
    const char *extra[] = {"--threads", "1", NULL};
    const char *zoo = start_two(extra);
    if (!zoo)
        skip();
    elm_client *c;
    assert_int_equal(elm_client_connect(g_td.dir, &c), 0);
    struct elm_load_result lr;
    assert_int_equal(elm_client_load_as(c, zoo, "zoo", NULL, 0, 0, &lr), 0);
    assert_string_equal(lr.model_name, "zoo");
    assert_int_equal(status(c)->n_models, 2);
    assert_true(lists(status(c), "stories260K") && lists(status(c), "zoo"));

    /* Each model alone (nothing else running), each prompt. */
    struct run alone[2][2];
    for (int m = 0; m < 2; m++)
        for (int p = 0; p < 2; p++)
            generate_on(c, names[m], NULL, prompts[p], &alone[m][p]);
    /* The default is the first loaded. */
    struct run def;
    generate_on(c, NULL, NULL, prompts[0], &def);
    assert_same_run(&def, &alone[0][0]);
    /* The two models do differ, or the comparison below would prove nothing. */
    assert_true(alone[0][0].n != alone[1][0].n ||
                memcmp(alone[0][0].ids, alone[1][0].ids, sizeof alone[0][0].ids) != 0);

    /* Four clients at once, alternating between the models. */
    struct client cl[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        cl[i] = (struct client){.dir = g_td.dir, .idx = i};
        assert_int_equal(pthread_create(&th[i], NULL, client_main, &cl[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(th[i], &ok);
        assert_non_null(ok);
        for (int j = 0; j < 2; j++)
            assert_same_run(&cl[i].got[j], &alone[(i + j) % 2][i / 2]);
    }
    struct elm_daemon_stats sx;
    assert_int_equal(elm_client_stats(c, &sx), 0);
    assert_int_equal(sx.n_models, 2);
    assert_int_equal(sx.n_errors, 0);
    /* stats' line per model: stories260K ran alone[0][*], def and the clients' four requests on
     * it; zoo alone[1][*] and the other four. */
    long want_req[2] = {3, 2}, want_gen[2] = {def.n, 0};
    for (int m = 0; m < 2; m++)
        for (int p = 0; p < 2; p++)
            want_gen[m] += alone[m][p].n;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) {
            want_req[(i + j) % 2]++;
            want_gen[(i + j) % 2] += cl[i].got[j].n;
        }
    for (int m = 0; m < 2; m++) {
        char key[80];
        snprintf(key, sizeof key, "%s: ", names[m]);
        const char *line = strstr(sx.models, key);
        assert_non_null(line);
        unsigned long long req, prompt, gen;
        assert_int_equal(sscanf(line + strlen(key), "%llu requests, %llu prompt + %llu generated",
                                &req, &prompt, &gen),
                         3);
        assert_int_equal(req, want_req[m]);
        assert_int_equal(gen, want_gen[m]);
        assert_true(prompt > 0);
    }

    /* A name nobody loaded: ENOMODEL with the name in the message. */
    struct elm_session_params p = {.model = "nope"};
    elm_session *s;
    assert_int_equal(elm_session_open_params(c, &p, &s), ELM_ENOMODEL);
    assert_non_null(strstr(elm_client_last_message(c), "nope"));

    /* keep_alive 1 s from a request: once its session closes the model goes, and its memory
     * with it. */
    uint64_t before = status(c)->resident_bytes;
    struct run r;
    generate_on(c, "zoo", "1s", prompts[0], &r);
    assert_same_run(&r, &alone[1][0]);
    assert_true(wait_until(c, is_gone, "zoo"));
    const struct elm_daemon_status *st = status(c);
    assert_int_equal(st->n_models, 1);
    assert_true(st->resident_bytes < before);
    assert_true(lists(st, "stories260K"));
    assert_int_equal(elm_client_stats(c, &sx), 0);
    assert_int_equal(sx.n_unloads, 1);
    /* The one left still serves as before. */
    generate_on(c, NULL, NULL, prompts[0], &r);
    assert_same_run(&r, &alone[0][0]);
    elm_client_close(&c);
}

/* ---- the budget ---------------------------------------------------------------------------- */

struct bg_load {
    elm_client *c;
    const char *path;
    int rc;
};

static void *load_main(void *arg)
{
    struct bg_load *l = arg;
    l->rc = elm_client_load_as(l->c, l->path, "d", NULL, 0, 0, NULL);
    return NULL;
}

static void test_budget(void **state)
{
    (void)state;
    /* First the sizes the budget counts, measured by a daemon without one. */
    const char *zoo = start_two((const char *[]){"--threads", "1", NULL});
    if (!zoo)
        skip();
    elm_client *c;
    assert_int_equal(elm_client_connect(g_td.dir, &c), 0);
    uint64_t a = status(c)->resident_bytes;
    assert_int_equal(elm_client_load_as(c, zoo, "b", NULL, 0, 0, NULL), 0);
    uint64_t b = status(c)->resident_bytes - a;
    elm_client_close(&c);
    assert_int_equal(td_cleanup(&g_td), 0);
    struct stat fs;
    assert_int_equal(stat(zoo, &fs), 0);
    assert_true((uint64_t)fs.st_size < b); /* the KV pool comes on top of the file */

    /* Room for the default model and one zoo model: a third needs one of them gone. */
    char budget[32];
    snprintf(budget, sizeof budget, "%llu", (unsigned long long)(a + b));
    const char *extra[] = {"--threads", "1", "--max-resident-bytes", budget, NULL};
    assert_non_null(start_two(extra));
    assert_int_equal(elm_client_connect(g_td.dir, &c), 0);
    assert_int_equal(status(c)->max_resident_bytes, a + b);
    elm_session *sa, *sc;
    assert_int_equal(elm_session_open(c, &sa), 0); /* holds the default model */
    assert_int_equal(elm_client_load_as(c, zoo, "b", NULL, 0, 0, NULL), 0);
    /* c does not fit beside both: b, idle, goes; the default model, with a session, stays. */
    assert_int_equal(elm_client_load_as(c, zoo, "c", NULL, 0, 0, NULL), 0);
    const struct elm_daemon_status *st = status(c);
    assert_int_equal(st->n_models, 2);
    assert_true(lists(st, "stories260K") && lists(st, "c") && !lists(st, "b"));
    assert_true(st->resident_bytes <= a + b);
    struct run r;
    generate(sa, prompts[0], &r);
    assert_int_equal(r.n, N_GEN);

    /* Both resident models have sessions: a load waits, says why, and unloads nothing. */
    struct elm_session_params p = {.model = "c"};
    assert_int_equal(elm_session_open_params(c, &p, &sc), 0);
    elm_client *c2;
    assert_int_equal(elm_client_connect(g_td.dir, &c2), 0);
    struct bg_load l = {.c = c2, .path = zoo};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, load_main, &l), 0);
    assert_true(wait_until(c, load_waits, NULL));
    st = status(c);
    assert_true(lists(st, "stories260K") && lists(st, "c") && !lists(st, "d"));
    /* c's session closes: c is the idle one now, and d takes its place. */
    elm_session_close(&sc);
    pthread_join(th, NULL);
    assert_int_equal(l.rc, 0);
    st = status(c);
    assert_true(lists(st, "stories260K") && lists(st, "d") && !lists(st, "c"));
    assert_string_equal(st->load_wait, "");
    generate(sa, prompts[0], &r); /* the session that pinned its model never noticed */
    assert_int_equal(r.n, N_GEN);
    elm_session_close(&sa);
    elm_client_close(&c2);
    elm_client_close(&c);
}

/* ---- threads ------------------------------------------------------------------------------- */

/* elmd's compute-pool workers: its threads named "elm-pool" (common/pool.h). */
static int pool_workers(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char comm[512], name[32] = "";
        snprintf(comm, sizeof comm, "%s/%s/comm", path, e->d_name);
        FILE *f = fopen(comm, "r");
        if (f && !fgets(name, sizeof name, f))
            name[0] = 0;
        if (f)
            fclose(f);
        n += strncmp(name, "elm-pool", 8) == 0;
    }
    closedir(d);
    return n;
}

static void test_threads(void **state)
{
    (void)state;
    const char *extra[] = {"--threads", "1", NULL};
    const char *zoo = start_two(extra);
    if (!zoo)
        skip();
    elm_client *c;
    assert_int_equal(elm_client_connect(g_td.dir, &c), 0);
    /* about 100 prompt tokens: stories260K's 64x64 products over them pass the size from which
     * kernels/matmul.c splits a product across the pool's team */
    char prompt[1024] = "";
    for (int i = 0; i < 10; i++)
        strcat(prompt, "Once upon a time there was a little dog. ");
    struct run r;
    generate_on(c, NULL, NULL, prompt, &r);
    assert_true(r.n > 0);
    assert_int_equal(pool_workers(g_td.pid), 0);

    struct elm_load_result lr;
    int rc = elm_client_load_as(c, zoo, "zoo", NULL, 0, 2, &lr);
    if (rc) { /* a machine of one CPU allows no second thread */
        print_message("SKIP part: 2 threads refused: %s\n", elm_client_last_message(c));
        elm_client_close(&c);
        return;
    }
    generate_on(c, "zoo", NULL, prompt, &r);
    assert_true(r.n > 0);
    assert_int_equal(pool_workers(g_td.pid), 1);
    elm_client_close(&c);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_two_models, teardown),
        cmocka_unit_test_teardown(test_budget, teardown),
        cmocka_unit_test_teardown(test_threads, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
