/* test_bench.c — elm-bench as a script uses it: every subcommand in --quick --json mode on
 * stories260K, each line parsed, the expected fields present, the figures positive, min <=
 * median <= max, and every ratio equal to the quotient of its parts from the same run; the SVG
 * of --plot; compress's variants; and argument errors (exit code 2, a message naming the option).
 *
 * Nothing here asserts a speed: the machine is shared. Runs the real binary from the build tree
 * (ELM_BUILD_DIR/bench/elm-bench); each test runs under an alarm.
 */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/elm_test.h"
#include "tests/common/elmd_fixture.h"
#include "tests/common/json.h"

#define TEST_ALARM_S 240
#define MAX_LINES    256

static char bench[4096];
static char tmpdir[64];
static char errfile[96];

static int sh(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = elm_test_vsh(out, cap, errfile, fmt, ap);
    va_end(ap);
    return rc;
}

/* Runs `elm-bench ARGS` with stdout into out and stderr into errfile; returns the exit code. */
static int run(char *out, size_t cap, const char *fmt, ...)
{
    char args[6144];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return sh(out, cap, "OMP_WAIT_POLICY=passive ELM_BENCH_CACHE=%s/cache '%s' %s", tmpdir, bench,
              args);
}

static const char *err_text(void)
{
    return elm_test_file_text(errfile);
}

/* ---- JSON lines ------------------------------------------------------------------------------ */

struct lines {
    json_t *v[MAX_LINES];
    int n;
};

static void lines_free(struct lines *l)
{
    for (int i = 0; i < l->n; i++)
        json_decref(l->v[i]);
    l->n = 0;
}

/* Parses every line of out; the first must be the machine header of subcommand sub. */
static void parse_lines(char *out, const char *sub, struct lines *l)
{
    l->n = 0;
    for (char *save, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        assert_true(l->n < MAX_LINES);
        json_t *j = elm_test_json(line);
        if (!j)
            fail_msg("not JSON: %s", line);
        assert_true(json_is_object(j));
        assert_non_null(json_object_get(j, "type"));
        l->v[l->n++] = j;
    }
    assert_true(l->n >= 2);
    const json_t *h = l->v[0];
    assert_string_equal(elm_test_jstr(h, "type"), "machine");
    assert_string_equal(elm_test_jstr(h, "subcommand"), sub);
    assert_true(elm_test_jnum(h, "cores") >= 1);
    assert_true(elm_test_jnum(h, "threads") >= 1);
    assert_true(elm_test_jnum(h, "reps") >= 1);
    assert_true(strlen(elm_test_jstr(h, "kernel")) > 0);
    assert_non_null(json_object_get(h, "cpu"));
    /* why timings would mean nothing: "" for a native binary (this test is not in the emulated
     * pass), unless forced with ELM_EMULATED */
    assert_non_null(elm_test_jstr(h, "emulated"));
    if (!getenv("ELM_EMULATED"))
        assert_string_equal(elm_test_jstr(h, "emulated"), "");
    /* the exact command, so a table can be reproduced */
    assert_non_null(strstr(elm_test_jstr(h, "command"), bench));
    assert_non_null(strstr(elm_test_jstr(h, "command"), sub));
}

/* The rows of one table, in order. */
static int rows(const struct lines *l, const char *type, const json_t **out, int max)
{
    int n = 0;
    for (int i = 0; i < l->n; i++)
        if (!strcmp(elm_test_jstr(l->v[i], "type"), type) && n < max)
            out[n++] = l->v[i];
    return n;
}

static double num(const json_t *row, const char *key)
{
    const json_t *v = json_object_get(row, key);
    if (!json_is_number(v))
        fail_msg("row has no number '%s'", key);
    return json_number_value(v);
}

static const char *str(const json_t *row, const char *key)
{
    const json_t *v = json_object_get(row, key);
    if (!json_is_string(v))
        fail_msg("row has no string '%s'", key);
    return json_string_value(v);
}

/* a == b to the 6 significant digits the JSON carries (a quotient of two rounded figures). */
static void assert_close(double a, double b, const char *what)
{
    if (!(fabs(a - b) <= 2e-5 * fabs(b) + 1e-9))
        fail_msg("%s: %.9g vs %.9g", what, a, b);
}

static void assert_ordered_from(double zero, const json_t *row, const char *lo, const char *mid,
                                const char *hi)
{
    const double a = num(row, lo), b = num(row, mid), c = num(row, hi);
    if (!(a > zero && a <= b && b <= c))
        fail_msg("expected %g < %s <= %s <= %s, got %g %g %g", zero, lo, mid, hi, a, b, c);
}

/* 0 < lo <= mid <= hi */
static void assert_ordered(const json_t *row, const char *lo, const char *mid, const char *hi)
{
    assert_ordered_from(0, row, lo, mid, hi);
}

/* ---- fixtures -------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    snprintf(bench, sizeof bench, "%s/bench/elm-bench", elm_test_build_dir());
    snprintf(tmpdir, sizeof tmpdir, "/tmp/elm-bench-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(errfile, sizeof errfile, "%s/stderr", tmpdir);
    alarm(TEST_ALARM_S);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    alarm(0);
    return system(cmd) == 0 ? 0 : -1;
}

static void require_bench(void)
{
    if (access(bench, X_OK) != 0) {
        print_message("SKIP: %s is not built\n", bench);
        skip();
    }
}

/* ---- argument errors ------------------------------------------------------------------------- */

static void expect_usage_error(const char *args, const char *needle)
{
    static char out[65536];
    const int rc = run(out, sizeof out, "%s", args);
    if (rc != 2)
        fail_msg("'elm-bench %s' exited %d, expected 2 (stderr: %s)", args, rc, err_text());
    if (!strstr(err_text(), needle))
        fail_msg("'elm-bench %s': stderr does not name '%s':\n%s", args, needle, err_text());
    assert_string_equal(out, ""); /* no header for a command that never ran */
}

static void test_argument_errors(void **state)
{
    (void)state;
    require_bench();
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    char a[4608];
    expect_usage_error("", "usage: elm-bench");
    expect_usage_error("nosuch", "unknown subcommand 'nosuch'");
    expect_usage_error("--reps 0 ipc", "--reps expects 1..1000, got '0'");
    expect_usage_error("--threads x ipc", "--threads expects");
    expect_usage_error("--bogus ipc", "--bogus");
    const char *bad_waits[] = {"bogus", "auto,auto", "auto,,passive", "passive,active,auto,auto",
                               ""};
    for (size_t i = 0; i < sizeof bad_waits / sizeof *bad_waits; i++) {
        snprintf(a, sizeof a, "model --model '%s' --wait '%s'", model, bad_waits[i]);
        expect_usage_error(a, "--wait expects a list of passive, active and auto");
    }
    expect_usage_error("serve", "give --model FILE");
    expect_usage_error("serve --bogus", "--bogus");
    expect_usage_error("serve --model /nonexistent.gguf", "--model /nonexistent.gguf");
    expect_usage_error("serve --synth bogus:q4_0", "unknown shape 'bogus'");
    expect_usage_error("serve --synth tiny-5m", "is not SHAPE:TYPE");
    snprintf(a, sizeof a, "serve --model '%s' --clients 0,2", model);
    expect_usage_error(a, "--clients expects a list of 1..60");
    snprintf(a, sizeof a, "serve --model '%s' --clients 1,,2", model);
    expect_usage_error(a, "--clients");
    snprintf(a, sizeof a, "serve --model '%s' --clients 61", model);
    expect_usage_error(a, "--clients");
    snprintf(a, sizeof a, "serve --model '%s' --n-predict 1", model);
    expect_usage_error(a, "--n-predict expects 2..4096, got '1'");
    snprintf(a, sizeof a, "serve --model '%s' --elmd-conf novalue", model);
    expect_usage_error(a, "--elmd-conf expects KEY=VALUE, got 'novalue'");
    snprintf(a, sizeof a, "serve --model '%s' extra", model);
    expect_usage_error(a, "unexpected argument 'extra'");
    snprintf(a, sizeof a, "serve --model '%s' --vs-llama-server localhost:8080", model);
    expect_usage_error(a, "--vs-llama-server expects http://HOST:PORT");
    expect_usage_error("profile", "give --model FILE");
    snprintf(a, sizeof a, "profile --model '%s' --pos -1", model);
    expect_usage_error(a, "--pos expects 0..65536, got '-1'");
    snprintf(a, sizeof a, "profile --model '%s' --chunk 0", model);
    expect_usage_error(a, "--chunk expects 1..4096, got '0'");
    snprintf(a, sizeof a, "profile --model '%s' --steps 2x", model);
    expect_usage_error(a, "--steps expects");
    expect_usage_error("kernels --types q9_9", "'q9_9' is not a weight type");
    expect_usage_error("ipc --count 5", "--count expects 10..10000000, got '5'");
    expect_usage_error("load", "give --model FILE");
    expect_usage_error("compress", "usage: elm-bench compress");
    snprintf(a, sizeof a, "compress '%s' x.txt --variants q8_0,bogus", model);
    expect_usage_error(a, "unknown variant 'bogus'");
    snprintf(a, sizeof a, "compress '%s' x.txt --ctx 1", model);
    expect_usage_error(a, "--ctx expects 2..65536, got '1'");

    static char out[16384];
    const char *subs[] = {"model", "kernels", "ipc", "load", "serve", "profile", "compress"};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        assert_int_equal(run(out, sizeof out, "%s --help", subs[i]), 0);
        assert_non_null(strstr(out, "usage: elm-bench"));
    }
    assert_int_equal(run(out, sizeof out, "--help"), 0);
    assert_non_null(strstr(out, "serve"));
    assert_non_null(strstr(out, "profile"));
}

/* ---- each subcommand ------------------------------------------------------------------------- */

static void test_model(void **state)
{
    (void)state;
    require_bench();
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    static char out[65536];
    struct lines l;
    assert_int_equal(
        run(out, sizeof out, "--quick --json --threads 1 model --model '%s' --pp 16 --tg 8", model),
        0);
    parse_lines(out, "model", &l);
    const json_t *r[4];
    assert_int_equal(rows(&l, "model", r, 4), 1);
    assert_string_equal(str(r[0], "model"), "stories260K.gguf");
    assert_int_equal((int)num(r[0], "threads"), 1);
    assert_true(num(r[0], "weights MB") > 0);
    assert_int_equal((int)num(r[0], "pp tokens"), 16);
    assert_int_equal((int)num(r[0], "tg tokens"), 8);
    assert_ordered(r[0], "pp min", "pp t/s", "pp max");
    assert_ordered(r[0], "tg min", "tg t/s", "tg max");
    /* the roofline side: a step's bytes x tg against the probe (this file fits in the caches,
     * so its share may pass 100 %) */
    assert_true(num(r[0], "tg GB/s") > 0 && num(r[0], "stream GB/s") > 0);
    assert_true(num(r[0], "tg % of stream") > 0);
    lines_free(&l);
}

/* The "N sleeps (P after a spin)" of a threads' waiting cell (elm_pool_stats_describe). */
static void sleeps_of(const char *cell, long *n, long *after)
{
    *n = *after = -1;
    for (const char *p = cell; p; p = strstr(p, "; ")) {
        if (*p == ';')
            p += 2;
        if (sscanf(p, "%ld sleeps (%ld after a spin)", n, after) == 2)
            return;
    }
}

/* --wait: the policies take turns in one process, a row each, in the order given, with tg
 * against the first's. */
static void test_model_wait(void **state)
{
    (void)state;
    require_bench();
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    static char out[65536];
    struct lines l;
    assert_int_equal(run(out, sizeof out,
                         "--quick --json --reps 2 --threads 2 model --model '%s' --pp 16 --tg 8 "
                         "--wait passive,auto,active",
                         model),
                     0);
    parse_lines(out, "model", &l);
    const json_t *r[4];
    assert_int_equal(rows(&l, "model", r, 4), 3);
    const char *want[] = {"passive", "auto", "active"};
    for (int i = 0; i < 3; i++) {
        assert_string_equal(str(r[i], "wait"), want[i]);
        assert_int_equal((int)num(r[i], "tg tokens"), 8);
        assert_ordered(r[i], "tg min", "tg t/s", "tg max");
        assert_true(num(r[i], "tg / first wait's") > 0);
    }
    assert_true(num(r[0], "tg / first wait's") == 1.0); /* each repetition's own ratio is 1 */
    /* each row ran under its own policy: passive's threads sleep at every wait, never after a
     * spin; active's sleep only after spinning 0.2 s in vain */
    long passive, passive_spun, active, active_spun;
    sleeps_of(str(r[0], "threads' waiting in tg"), &passive, &passive_spun);
    sleeps_of(str(r[2], "threads' waiting in tg"), &active, &active_spun);
    assert_true(passive > 0);
    assert_int_equal(passive_spun, 0);
    assert_true(active >= 0 && active < passive);
    assert_int_equal(active_spun, active);
    lines_free(&l);
    /* without --wait: one row, under the pool's policy (ELM_WAIT, else auto) */
    assert_int_equal(
        run(out, sizeof out, "--quick --json --threads 1 model --model '%s' --pp 16 --tg 8", model),
        0);
    parse_lines(out, "model", &l);
    assert_int_equal(rows(&l, "model", r, 4), 1);
    const char *env = getenv("ELM_WAIT");
    assert_string_equal(str(r[0], "wait"), env && *env ? env : "auto");
    assert_true(num(r[0], "tg / first wait's") == 1.0);
    lines_free(&l);
}

/* An embedding model: pp times one elm_model_embed pass, no tg. */
static void test_model_embed(void **state)
{
    (void)state;
    require_bench();
    ELM_REQUIRE_MODEL(model, "zoo2/zoo-bert.gguf");
    static char out[65536];
    struct lines l;
    assert_int_equal(
        run(out, sizeof out, "--quick --json --threads 1 model --model '%s' --pp 200", model), 0);
    parse_lines(out, "model", &l);
    const json_t *r[4];
    assert_int_equal(rows(&l, "model", r, 4), 1);
    assert_string_equal(str(r[0], "model"), "zoo-bert.gguf");
    assert_int_equal((int)num(r[0], "pp tokens"), 200);
    assert_true(num(r[0], "pp t/s") > 0);
    assert_ordered(r[0], "pp min", "pp t/s", "pp max");
    assert_int_equal((int)num(r[0], "tg tokens"), 0);
    assert_true(num(r[0], "tg % of stream") == 0); /* no decode, no probe */
    lines_free(&l);
}

static void test_kernels(void **state)
{
    (void)state;
    require_bench();
    static char out[65536];
    char svg[128];
    snprintf(svg, sizeof svg, "%s/kernels.svg", tmpdir);
    struct lines l;
    assert_int_equal(
        run(out, sizeof out, "--quick --json --reps 2 --plot %s kernels --types q4_0,q8_0", svg),
        0);
    parse_lines(out, "kernels", &l);
    const json_t *r[16];
    const int ns = rows(&l, "stream", r, 16);
    assert_true(ns >= 1);
    for (int i = 0; i < ns; i++)
        assert_ordered(r[i], "min", "stream read GB/s", "max");
    assert_int_equal(rows(&l, "peak", r, 16), 1);
    assert_true(num(r[0], "int8 peak GFLOP/s") > 0);
    /* measured for avx2 and avx512 (half a 256-bit dot product a cycle at least, eight 512-bit
     * ones at most: wide bounds, as the clock and the loop are timed apart), assumed (64)
     * elsewhere */
    const double macs = num(r[0], "int8 MAC/cycle/core");
    assert_true(macs >= 16 && macs <= 512);
    /* every variant this CPU runs, for both types; the roofline fraction is positive */
    const int nk = rows(&l, "kernels", r, 16);
    assert_true(nk >= 2 && nk % 2 == 0);
    for (int i = 0; i < nk; i++) {
        assert_string_equal(str(r[i], "weight type"), i < nk / 2 ? "q4_0" : "q8_0");
        assert_ordered(r[i], "min", "mat×vec GB/s", "max");
        assert_true(num(r[i], "% of stream") > 0);
        /* a figure beyond the machine's limits is flagged, never reported plainly */
        const char *check = str(r[i], "check");
        assert_true(strcmp(check, "ok") == 0 || strcmp(check, "above stream: from cache") == 0 ||
                    strcmp(check, "above int8 peak") == 0 ||
                    strcmp(check, "below timer resolution") == 0);
        if (strcmp(check, "ok") == 0)
            assert_true(num(r[i], "% of stream") <= 100 && num(r[i], "% of int8 peak") <= 100);
        assert_true(num(r[i], "% of int8 peak") > 0);
    }
    /* the plot: one bar per (type, variant) in each of its two panels */
    char *s = elm_test_read_file(svg, NULL);
    assert_non_null(s);
    assert_true(!strncmp(s, "<?xml", 5));
    assert_non_null(strstr(s, "</svg>\n"));
    int bars = 0;
    for (const char *p = s; (p = strstr(p, "<rect x=")); p++)
        bars++;
    /* bars plus one legend square per variant per panel */
    assert_int_equal(bars, 2 * (nk + nk / 2));
    assert_non_null(strstr(s, ">q4_0<"));
    assert_non_null(strstr(s, ">q8_0<"));
    assert_non_null(strstr(s, ">ref<"));
    free(s);
    lines_free(&l);
}

static void test_ipc(void **state)
{
    (void)state;
    require_bench();
    static char out[65536];
    struct lines l;
    assert_int_equal(run(out, sizeof out, "--quick --json ipc --count 200"), 0);
    parse_lines(out, "ipc", &l);
    const json_t *r[4];
    assert_int_equal(rows(&l, "ipc", r, 4), 2);
    assert_string_equal(str(r[0], "path"), "shm ring");
    assert_string_equal(str(r[1], "path"), "zeromq ipc");
    for (int i = 0; i < 2; i++) {
        assert_int_equal((int)num(r[i], "round trips"), 200 * 5);
        assert_ordered(r[i], "min us", "p50 us", "p99 us");
        assert_true(num(r[i], "p99 us") <= num(r[i], "max us"));
    }
    assert_close(num(r[0], "p50 vs ring"), 1, "ring vs itself");
    assert_close(num(r[1], "p50 vs ring"), num(r[1], "p50 us") / num(r[0], "p50 us"),
                 "zeromq p50 / ring p50");
    lines_free(&l);
}

static void test_load(void **state)
{
    (void)state;
    require_bench();
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    static char out[65536];
    struct lines l;
    assert_int_equal(run(out, sizeof out, "--quick --json load --model '%s'", model), 0);
    parse_lines(out, "load", &l);
    const json_t *r[4];
    assert_int_equal(rows(&l, "load", r, 4), 1);
    assert_true(num(r[0], "elm load s") > 0 && num(r[0], "cat s") > 0 &&
                num(r[0], "O_DIRECT s") > 0);
    const double vs_cat = num(r[0], "cat s") / num(r[0], "elm load s");
    assert_close(num(r[0], "elm/cat rate"), vs_cat, "elm/cat rate");
    assert_close(num(r[0], "elm/O_DIRECT rate"), num(r[0], "O_DIRECT s") / num(r[0], "elm load s"),
                 "elm/O_DIRECT rate");
    /* a warm run is held to 0.80 of cat's rate, and says whether it met it (the printed times
     * are rounded: next to the line either word may be right) */
    const char *tg = str(r[0], "target");
    assert_true(strcmp(tg, "warm 0.80 of cat: met") == 0 ||
                strcmp(tg, "warm 0.80 of cat: missed") == 0);
    if (fabs(vs_cat - 0.80) > 0.02)
        assert_string_equal(tg,
                            vs_cat > 0.80 ? "warm 0.80 of cat: met" : "warm 0.80 of cat: missed");
    assert_int_equal(rows(&l, "first-token", r, 4), 1);
    assert_ordered(r[0], "min", "via elmd ms", "max");
    assert_close(num(r[0], "in-process/elmd"),
                 num(r[0], "in-process ms") / num(r[0], "via elmd ms"), "in-process/elmd");
    lines_free(&l);
}

static void check_serve_row(const json_t *r, int clients, int n_predict)
{
    assert_string_equal(str(r, "model"), "stories260K.gguf");
    assert_int_equal((int)num(r, "clients"), clients);
    assert_true(num(r, "prompt tokens") >= 2); /* BOS and the prompt's first token at least */
    /* greedy continuations of the fixed prompt never end before n_predict on stories260K */
    assert_int_equal((int)num(r, "tokens"), clients * n_predict);
    /* repetitions whose tokens arrived faster than any decode step (a backlog read at once) are
     * excluded from the aggregate and named; with none left the figures are 0, not a rate */
    const char *check = str(r, "check");
    int excluded = 0, reps = 0;
    if (strcmp(check, "ok") != 0) {
        assert_int_equal(sscanf(check, "aggregate of %d of %d reps excluded", &excluded, &reps), 2);
        assert_true(excluded >= 1 && excluded <= reps);
    }
    if (excluded > 0 && excluded == reps)
        assert_true(num(r, "agg min") == 0 && num(r, "agg t/s") == 0 && num(r, "agg max") == 0);
    else
        assert_ordered(r, "agg min", "agg t/s", "agg max");
    assert_close(num(r, "t/s per client"), num(r, "agg t/s") / clients, "t/s per client");
    assert_true(num(r, "TTFT p50 ms") > 0 && num(r, "TTFT p50 ms") <= num(r, "TTFT p99 ms"));
    /* a model this small can finish tokens faster than the client is scheduled: it then reads
     * several at once, and gaps near 0 are real */
    assert_true(num(r, "ITL p50 ms") >= 0 && num(r, "ITL p50 ms") <= num(r, "ITL p99 ms"));
    assert_ordered_from(-1e-9, r, "ITL p99 min", "ITL p99 ms", "ITL p99 max");
}

/* serve --http: every round a second time through elm-httpd, the same greedy tokens, and the
 * closing table of the pairs. */
static void test_serve_http(void **state)
{
    (void)state;
    require_bench();
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    char gw[4200];
    snprintf(gw, sizeof gw, "%s/httpd/elm-httpd", elm_test_build_dir());
    if (access(gw, X_OK) != 0) {
        print_message("SKIP: %s is not built\n", gw);
        skip();
    }
    static char out[65536];
    struct lines l;
    const json_t *r[8];
    assert_int_equal(run(out, sizeof out,
                         "--quick --json --reps 1 serve --model '%s' --clients 1,2 --n-predict 6 "
                         "--http",
                         model),
                     0);
    parse_lines(out, "serve", &l);
    assert_int_equal(rows(&l, "serve", r, 8), 4);
    for (int i = 0; i < 4; i++) {
        const json_t *elm = r[i & ~1];
        assert_string_equal(str(r[i], "via"), i & 1 ? "elm-httpd" : "libelmclient");
        /* stories260K's tokens are whole characters: one event each, as many as elmd sent */
        check_serve_row(r[i], i / 2 + 1, 6);
        assert_true(num(r[i], "prompt tokens") == num(elm, "prompt tokens"));
        if (num(elm, "agg t/s") > 0 && num(r[i], "agg t/s") > 0)
            assert_close(num(r[i], "agg/libelmclient"), num(r[i], "agg t/s") / num(elm, "agg t/s"),
                         "HTTP vs libelmclient");
        if (!(i & 1))
            assert_true(num(r[i], "TTFT p50 - libelmclient ms") == 0);
    }
    /* the closing table: elm-httpd's pairs per client count; one repetition, one pair, so its
     * median and range are that pair's figures */
    const json_t *ov[4];
    assert_int_equal(rows(&l, "serve-overhead", ov, 4), 2);
    for (int i = 0; i < 2; i++) {
        const json_t *h = r[2 * i + 1];
        assert_string_equal(str(ov[i], "via"), "elm-httpd");
        assert_true(num(ov[i], "clients") == i + 1 && num(ov[i], "reps") == 1);
        assert_true(num(ov[i], "TTFT p50 - libelmclient ms") ==
                    num(h, "TTFT p50 - libelmclient ms"));
        assert_true(num(ov[i], "min ms") == num(ov[i], "max ms"));
        if (num(h, "agg t/s") > 0 && num(r[2 * i], "agg t/s") > 0)
            assert_true(num(ov[i], "agg/libelmclient") == num(h, "agg/libelmclient"));
        const char *goal = str(ov[i], "goal (>= 0.97, < 1 ms)");
        assert_true(!strcmp(goal, "met") || !strcmp(goal, "not met"));
        assert_non_null(json_object_get(ov[i], "path CPU us/token"));
    }
    /* what each round cost per token: the gateway's round used its CPU and woke it, every
     * round's clients and elmd used theirs */
    const json_t *co[4];
    assert_int_equal(rows(&l, "serve-cost", co, 4), 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(str(co[i], "via"), i & 1 ? "elm-httpd" : "libelmclient");
        if (i & 1)
            assert_true(num(co[i], "gateway CPU us/token") > 0 &&
                        num(co[i], "gateway switches/token") > 0);
        assert_true(num(co[i], "clients CPU us/token") > 0);
        assert_true(num(co[i], "elmd CPU us/token") > 0);
    }
    lines_free(&l);
}

static void test_serve(void **state)
{
    (void)state;
    require_bench();
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    if (access(elm_test_build_dir(), R_OK) != 0) {
        print_message("SKIP: no build directory\n");
        skip();
    }
    static char out[65536];
    struct lines l;
    const json_t *r[8];
    /* one repetition: each ratio is exactly the quotient of the figures in its own run */
    assert_int_equal(run(out, sizeof out,
                         "--quick --json --reps 1 serve --model '%s' --clients 1,2,3 --n-predict 6",
                         model),
                     0);
    parse_lines(out, "serve", &l);
    assert_int_equal(rows(&l, "serve", r, 8), 3);
    for (int i = 0; i < 3; i++) {
        check_serve_row(r[i], i + 1, 6);
        if (num(r[0], "agg t/s") > 0 && num(r[i], "agg t/s") > 0)
            assert_close(num(r[i], "agg/agg(1)"), num(r[i], "agg t/s") / num(r[0], "agg t/s"),
                         "aggregate ratio");
        else /* an excluded repetition has no ratio either */
            assert_true(num(r[i], "agg/agg(1)") == 0);
        if (num(r[0], "ITL p99 ms") > 0) /* else the ratio is reported as 0 */
            assert_close(num(r[i], "ITL p99/ITL p99(1)"),
                         num(r[i], "ITL p99 ms") / num(r[0], "ITL p99 ms"), "ITL p99 ratio");
        /* a single client's TTFT percentiles are the same one value */
        if (i == 0)
            assert_close(num(r[i], "TTFT p99 ms"), num(r[i], "TTFT p50 ms"), "one client");
    }
    lines_free(&l);

    /* several repetitions: the ratios are medians of per-repetition ratios, so they lie between
     * the extreme quotients; the plot has a point per client count in each panel */
    char svg[128];
    snprintf(svg, sizeof svg, "%s/serve.svg", tmpdir);
    if (run(out, sizeof out, "--quick --json --reps 3 --plot %s serve --model '%s'", svg, model))
        fail_msg("elm-bench serve --reps 3 --plot failed: %s", err_text());
    parse_lines(out, "serve", &l);
    assert_int_equal(rows(&l, "serve", r, 8), 2); /* --quick: 1 and 2 clients */
    check_serve_row(r[0], 1, 8);
    check_serve_row(r[1], 2, 8);
    if (strcmp(str(r[0], "check"), "ok") == 0 && strcmp(str(r[1], "check"), "ok") == 0) {
        assert_close(num(r[0], "agg/agg(1)"), 1, "first count vs itself");
        const double ra = num(r[1], "agg/agg(1)");
        assert_true(ra >= num(r[1], "agg min") / num(r[0], "agg max") * (1 - 1e-5));
        assert_true(ra <= num(r[1], "agg max") / num(r[0], "agg min") * (1 + 1e-5));
    }
    char *s = elm_test_read_file(svg, NULL);
    assert_non_null(s);
    int points = 0;
    for (const char *p = s; (p = strstr(p, "<circle")); p++)
        points++;
    assert_int_equal(points, 2 * 2);
    assert_non_null(strstr(s, "aggregate decode"));
    assert_non_null(strstr(s, "inter-token latency p99"));
    assert_non_null(strstr(s, ">stories260K.gguf<"));
    assert_non_null(strstr(s, "</svg>\n"));
    free(s);
    lines_free(&l);
}

/* A client that finds every session taken (the last round's may still be closing) waits for
 * one, up to 30 s, instead of failing the round. Here this test holds a daemon's only session
 * while elm-bench serve starts against it, and lets it go a second later: serve must succeed,
 * its one client having waited. */
static void test_serve_waits_for_session(void **state)
{
    (void)state;
    require_bench();
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    struct td t = {0};
    struct tc c;
    struct ts held;
    assert_int_equal(td_start(&t, model, (const char *const[]){"--max-sessions", "1", NULL}), 0);
    assert_int_equal(tc_open_path(&c, t.dir), 0);
    assert_int_equal(ts_open(&c, &held, (long)getpid(), 0), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static char out[16384];
        _exit(run(out, sizeof out, "--quick --json --reps 1 serve --runtime-dir '%s' --clients 1",
                  t.dir));
    }
    int st = td_wait(pid, 1000);
    assert_int_equal(st, -1); /* still waiting for the session this test holds */
    assert_int_equal(ts_close(&c, &held), 0);
    st = td_wait(pid, 120000);
    if (st == -1)
        kill(pid, SIGKILL);
    assert_true(st != -1 && WIFEXITED(st));
    if (WEXITSTATUS(st))
        fail_msg("elm-bench serve exited %d: %s", WEXITSTATUS(st), err_text());
    tc_close(&c);
    assert_int_equal(td_cleanup(&t), 0);
}

static void test_profile(void **state)
{
    (void)state;
    require_bench();
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    static char out[65536];
    struct lines l;
    const int rc = run(out, sizeof out, "--quick --json --reps 1 profile --model '%s'", model);
    if (rc)
        fail_msg("profile exited %d: %s", rc, err_text());
    parse_lines(out, "profile", &l);
    const json_t *ops[32], *ph[4], *lay[64];
    const int n_ops = rows(&l, "profile-ops", ops, 32);
    assert_int_equal(n_ops, 11); /* ELM_PROF_OP_COUNT */
    double dec_pct = 0, pre_pct = 0, mm_pct = 0, dec_ns = 0, pre_ns = 0;
    for (int i = 0; i < n_ops; i++) {
        for (int j = 0; j < i; j++)
            assert_string_not_equal(str(ops[i], "op"), str(ops[j], "op"));
        if (i > 0) /* hottest decode operation first */
            assert_true(num(ops[i], "decode ns/token") <= num(ops[i - 1], "decode ns/token"));
        dec_pct += num(ops[i], "decode %");
        pre_pct += num(ops[i], "prefill %");
        dec_ns += num(ops[i], "decode ns/token");
        pre_ns += num(ops[i], "prefill ns/token");
        if (!strcmp(str(ops[i], "matmul"), "yes"))
            mm_pct += num(ops[i], "decode %");
    }
    assert_close(dec_pct, 100, "decode shares");
    assert_close(pre_pct, 100, "prefill shares");
    assert_int_equal(rows(&l, "profile", ph, 4), 2);
    assert_string_equal(str(ph[0], "phase"), "decode");
    assert_string_equal(str(ph[1], "phase"), "prefill");
    assert_int_equal((int)num(ph[0], "position"), 16);
    assert_int_equal((int)num(ph[1], "tokens per pass"), 8);
    assert_close(num(ph[0], "matmul %"), mm_pct, "matmul share = its operations' shares");
    assert_close(num(ph[0], "profiled ms/token"), dec_ns / 1e6, "decode total");
    assert_close(num(ph[1], "profiled ms/token"), pre_ns / 1e6, "prefill total");
    for (int i = 0; i < 2; i++) {
        assert_true(num(ph[i], "matmul %") > 0 && num(ph[i], "matmul %") < 100);
        assert_ordered(ph[i], "GB/s min", "matmul GB/s", "GB/s max");
        /* the profiled operations happen inside the timed passes */
        assert_true(num(ph[i], "profiled ms/token") <= num(ph[i], "ms/token") * 1.001);
    }
    /* stories260K: 5 layers, a row per layer and phase, summing to less than the pass */
    const int nl = rows(&l, "profile-layers", lay, 64);
    assert_int_equal(nl, 2 * 5);
    for (int p = 0; p < 2; p++) {
        double sum = 0;
        for (int i = 0; i < 5; i++) {
            const json_t *x = lay[p * 5 + i];
            assert_string_equal(str(x, "phase"), p ? "prefill" : "decode");
            assert_int_equal((int)num(x, "layer"), i);
            assert_true(num(x, "layer us") > 0);
            sum += num(x, "layer us");
        }
        assert_true(sum <= num(ph[p], "profiled ms/token") * 1e3 * 1.001);
    }
    lines_free(&l);
}

/* compress: the variants' files are made and scored; sizes are exact bytes, the KLD ordering
 * and the Pareto marks follow from them. */
static void test_compress(void **state)
{
    (void)state;
    require_bench();
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    ELM_REQUIRE_MODEL(text, "corpus/tinystories-sample-30k.txt");
    static char out[65536];
    char svg[128];
    struct lines l;
    snprintf(svg, sizeof svg, "%s/c.svg", tmpdir);
    assert_int_equal(run(out, sizeof out,
                         "--quick --json --threads 1 --reps 1 --plot %s compress '%s' '%s' "
                         "--ctx 64 --chunks 3 --variants q8_0,q4_0,prune1 --dir %s",
                         svg, model, text, tmpdir),
                     0);
    parse_lines(out, "compress", &l);
    const json_t *r[8];
    assert_int_equal(rows(&l, "compress", r, 8), 4);
    const char *names[] = {"base", "q8_0", "q4_0", "prune1"};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(str(r[i], "variant"), names[i]);
        assert_true(num(r[i], "PPL") > 1);
        assert_true(num(r[i], "tg t/s") > 0);
    }
    assert_close(num(r[0], "file MB"), 1.185376, "the base file");
    assert_close(num(r[3], "file MB"), 1.003072, "stories260K without one block");
    assert_true(num(r[2], "file MB") < num(r[1], "file MB"));
    assert_true(num(r[0], "KLD") == 0 && num(r[0], "same top %") == 100);
    assert_true(num(r[1], "KLD") > 0 && num(r[1], "KLD") < num(r[2], "KLD"));
    assert_true(num(r[2], "KLD") < num(r[3], "KLD"));
    /* prune1 is bigger and further than q8_0: the only one off the front */
    assert_string_equal(str(r[0], "Pareto"), "yes");
    assert_string_equal(str(r[1], "Pareto"), "yes");
    assert_string_equal(str(r[2], "Pareto"), "yes");
    assert_string_equal(str(r[3], "Pareto"), "");
    const char *s = elm_test_file_text(svg);
    int circles = 0;
    for (const char *p = s; (p = strstr(p, "<circle")); p++)
        circles++;
    assert_int_equal(circles, 3); /* the base (KLD 0) has no place on a log axis */
    assert_non_null(strstr(s, "prune1 "));
    /* the variants' files are gone; the plot stays */
    assert_int_equal(sh(out, sizeof out, "ls %s | grep -c gguf || true", tmpdir), 0);
    assert_int_equal(atoi(out), 0);
    lines_free(&l);
}

int main(void)
{
    setenv("OMP_WAIT_POLICY", "passive", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_argument_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_embed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kernels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_waits_for_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compress, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
