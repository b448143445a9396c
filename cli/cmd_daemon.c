/* cmd_daemon.c — elmctl's subcommands that ask elmd something or tell it to do something:
 * status, load, unload, sessions, stats.
 *
 * Each prints human-readable text by default and one JSON document with --json (cli_print.c).
 * Errors go to stderr as "elmctl: ..." (and under --json to stdout as a JSON object) with exit
 * code 1; a daemon that is not running is said so plainly, with the command that starts one.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_client.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "ipc/fields.h"

#define COMMON_OPTS                                                                                \
    "  --runtime-dir DIR  elmd's directory (default $ELM_RUNTIME_DIR, else "                       \
    "$XDG_RUNTIME_DIR/elm)\n"                                                                      \
    "  --json             print JSON (an error: {\"error\":S,\"exit_code\":N})\n"                  \
    "Exit status: 0 ok, 1 failure (elmd not running, the call failed), 2 usage error.\n"

/* The shape of every query subcommand: its options, a connection, one call (act: the call and
 * the printing, returning the call's result), and "elmctl: what: why" when the call fails. */
static int query(int argc, char **argv, const char *usage, const char *what,
                 int (*act)(elm_client *c))
{
    int rc = cli_parse_daemon_opts(argc, argv, usage, 0, 0);
    if (rc)
        return rc < 0 ? 0 : rc;
    elm_client *c;
    if ((rc = cli_connect(cli_runtime_dir, &c)))
        return rc;
    rc = act(c);
    int exit_code = rc ? cli_client_fail(c, rc, what) : 0;
    elm_client_close(&c);
    return exit_code;
}

/* ---------------------------------------------------------------------------------------------
 * status
 */

static int show_status(elm_client *c)
{
    struct elm_daemon_status st;
    int rc = elm_client_status(c, &st);
    if (rc == 0)
        cli_print_status(c, &st);
    return rc;
}

int cli_cmd_status(int argc, char **argv)
{
    return query(
        argc, argv,
        "usage: elmctl status [--runtime-dir DIR] [--json]\n"
        "Shows elmd's version, uptime, model, where its weights live, and sessions.\n" COMMON_OPTS,
        "status", show_status);
}

/* ---------------------------------------------------------------------------------------------
 * load: the call blocks until the model is in memory; meanwhile a second connection polls
 * status to draw a progress line on stderr (only when stderr is a terminal).
 */

struct progress {
    const char *runtime_dir;
    const char *path;
    atomic_bool done;
};

/* "[#####.....]  45%" for done of total bytes, or a turning bar while the total is unknown. */
static void draw_progress(const char *path, uint64_t done, uint64_t total, unsigned tick,
                          double elapsed)
{
    char bar[33];
    int fill = total ? (int)(done * 30 / total) : -1;
    for (int i = 0; i < 30; i++)
        bar[i] = fill < 0 ? (i == (int)(tick % 30) ? '#' : '.') : (i < fill ? '#' : '.');
    bar[30] = 0;
    if (total)
        fprintf(stderr, "\rloading %s [%s] %3d%%  %.1f s ", path, bar, (int)(done * 100 / total),
                elapsed);
    else
        fprintf(stderr, "\rloading %s [%s]  %.1f s ", path, bar, elapsed);
}

static void *progress_thread(void *arg)
{
    struct progress *p = arg;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    elm_client *c = NULL;
    elm_client_connect(p->runtime_dir, &c); /* NULL on failure: the bar still turns */
    struct elm_daemon_status *st = malloc(sizeof *st);
    for (unsigned tick = 0; !atomic_load(&p->done); tick++) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        double el = (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9;
        bool known = c && st && elm_client_status(c, st) == 0 && st->loading;
        draw_progress(p->path, known ? st->load_done : 0, known ? st->load_total : 0, tick, el);
        usleep(100 * 1000);
    }
    fputs("\r\033[K", stderr); /* clear the line: the result follows on stdout */
    free(st);
    elm_client_close(&c);
    return NULL;
}

/* The largest value LOAD's request table accepts for tag (ipc/fields.c). */
static long load_max(uint16_t tag)
{
    uint64_t min, max = 0;
    elm_field_bounds(&elm_fields_load_req, tag, &min, &max);
    return (long)max;
}

int cli_cmd_load(int argc, char **argv)
{
    static const struct option lo[] = {
        {"ctx", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 'T'},
        {"as", required_argument, 0, 'a'},
        {"keep-alive", required_argument, 0, 'A'},
        CLI_OPTS_DAEMON,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    static const char usage[] =
        "usage: elmctl load [--as NAME] [--keep-alive D] [--ctx N] [--threads N]\n"
        "                   [--runtime-dir DIR] [--json] MODEL\n"
        "Loads MODEL (a GGUF file) into elmd beside the resident models; requests choose one\n"
        "with --model NAME. A resident model of the same name is replaced once the new one is\n"
        "ready. When max_resident_bytes is full, idle models are unloaded first (least\n"
        "recently used); if models in use fill it, the load waits for them.\n"
        "  --as NAME          what requests call it (default: the file name without .gguf)\n"
        "  --keep-alive D     unload it after D idle (5m, 30s, 0; -1 = never; default elmd's)\n"
        "  --ctx N            context tokens per session (default: elmd's setting)\n"
        "  --threads N        compute threads (default: elmd's setting)\n" COMMON_OPTS;
    long ctx = 0, threads = 0;
    const char *name = NULL, *keep_alive = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (cli_daemon_opt(c))
            continue;
        switch (c) { /* from 1: the wire's 0 is "elmd's setting"; up to the request's bound */
        case 'c':
            if (!cli_int("--ctx", optarg, 1, load_max(ELM_TAG_N_CTX), &ctx))
                return CLI_USAGE;
            break;
        case 'T':
            if (!cli_int("--threads", optarg, 1, load_max(ELM_TAG_N_THREADS), &threads))
                return CLI_USAGE;
            break;
        case 'a':
            name = optarg;
            break;
        case 'A':
            keep_alive = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return cli_bad_option(argv);
        }
    }
    if (optind + 1 != argc)
        return cli_usage("load takes one MODEL argument (see --help)");
    const char *path = argv[optind];
    elm_client *cl;
    int rc = cli_connect(cli_runtime_dir, &cl);
    if (rc)
        return rc;
    struct progress pr = {.runtime_dir = cli_runtime_dir, .path = path};
    pthread_t th;
    bool drawing = isatty(2) && pthread_create(&th, NULL, progress_thread, &pr) == 0;
    struct elm_load_result r;
    rc = elm_client_load_as(cl, path, name, keep_alive, (uint32_t)ctx, (uint32_t)threads, &r);
    if (drawing) {
        atomic_store(&pr.done, true);
        pthread_join(th, NULL);
    }
    int exit_code = 0;
    char what[4200];
    snprintf(what, sizeof what, "cannot load %s", path);
    if (rc && cli_names_file(elm_client_last_message(cl), path))
        snprintf(what, sizeof what, "cannot load"); /* the message names the file */
    if (rc) {
        exit_code = cli_client_fail(cl, rc, what);
    } else {
        cli_print_load(path, &r);
    }
    elm_client_close(&cl);
    return exit_code;
}

/* ---------------------------------------------------------------------------------------------
 * unload
 */

int cli_cmd_unload(int argc, char **argv)
{
    static const struct option lo[] = {
        {"model", required_argument, 0, 'M'},
        CLI_OPTS_DAEMON,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    static const char usage[] = "usage: elmctl unload [--model NAME] [--runtime-dir DIR] [--json]\n"
                                "Drops every resident model, or the one called NAME; their "
                                "sessions are closed.\n"
                                "  --model NAME       only this model\n" COMMON_OPTS;
    const char *name = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (cli_daemon_opt(c))
            continue;
        if (c == 'M') {
            name = optarg;
        } else if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        } else {
            return cli_bad_option(argv);
        }
    }
    if (optind != argc)
        return cli_usage("unload takes no argument: name a model with --model (see --help)");
    elm_client *cl;
    int rc = cli_connect(cli_runtime_dir, &cl);
    if (rc)
        return rc;
    rc = name ? elm_client_unload_model(cl, name) : elm_client_unload(cl);
    int exit_code = rc ? cli_client_fail(cl, rc, "unload") : 0;
    if (rc == 0 && cli_json)
        cli_json_print(json_pack("{sb}", "unloaded", 1));
    else if (rc == 0)
        printf("%s unloaded\n", name ? name : "model");
    elm_client_close(&cl);
    return exit_code;
}

/* ---------------------------------------------------------------------------------------------
 * sessions
 */

static int show_sessions(elm_client *c)
{
    struct elm_session_info *list;
    size_t n;
    int rc = elm_client_sessions(c, &list, &n);
    if (rc == 0) {
        cli_print_sessions(list, n);
        free(list);
    }
    return rc;
}

int cli_cmd_sessions(int argc, char **argv)
{
    return query(argc, argv,
                 "usage: elmctl sessions [--runtime-dir DIR] [--json]\n"
                 "Lists elmd's open sessions, of every client.\n" COMMON_OPTS,
                 "sessions", show_sessions);
}

/* ---------------------------------------------------------------------------------------------
 * stats
 */

static int show_stats(elm_client *c)
{
    struct elm_daemon_stats st;
    int rc = elm_client_stats(c, &st);
    if (rc == 0)
        cli_print_stats(&st);
    return rc;
}

int cli_cmd_stats(int argc, char **argv)
{
    return query(argc, argv,
                 "usage: elmctl stats [--runtime-dir DIR] [--json]\n"
                 "Shows elmd's counters since it started.\n" COMMON_OPTS,
                 "stats", show_stats);
}
