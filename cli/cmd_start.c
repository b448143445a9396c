/* cmd_start.c — `elmctl start` and `elmctl stop`: running elmd and ending it.
 *
 * start spawns elmd with the options given after "start" and returns once the daemon answers
 * HELLO on its socket, so a script can use it on the next line. elmd normally puts itself in
 * the background (its first process exits 0), so the child's exit is not the signal: the
 * socket answering is. A child that exits non-zero has already said why on stderr (which it
 * shares with us). stop asks for a shutdown and waits for the process to be gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_client.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "cli/start_httpd.h"

#define START_TIMEOUT_S 60 /* elmd may load a large model before it answers */
#define STOP_TIMEOUT_S  30 /* elmd lets running requests finish first */

/* The --runtime-dir among elmd's options, if any. */
static const char *arg_runtime_dir(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runtime-dir") && i + 1 < argc)
            return argv[i + 1];
        if (!strncmp(argv[i], "--runtime-dir=", 14))
            return argv[i] + 14;
    }
    return NULL;
}

/* The daemon runs; with --http, the gateway is started now (url: where it listens). */
static int report_running(elm_client *c, const char *what, const char *dir, const char *http)
{
    char url[600] = "";
    if (http && !cli_httpd_start(dir, http, url, sizeof url))
        return CLI_FAIL;
    if (cli_json) {
        json_t *j = json_pack("{sbsI}", "running", 1, "pid", (json_int_t)elm_client_daemon_pid(c));
        if (http)
            json_object_set_new(j, "http", json_string(url));
        cli_json_print(j);
        return 0;
    }
    printf("elmd %s (pid %ld)\n", what, elm_client_daemon_pid(c));
    if (http)
        printf("elm-httpd listening on %s\n", url);
    return 0;
}

/* The --http ADDR:PORT (or --http=ADDR:PORT) among the options, removed from them: it is
 * elmctl's, not elmd's. NULL when absent; "" when its value is missing. */
static const char *take_http(int *argc, char **argv)
{
    for (int i = 1; i < *argc; i++) {
        const char *v = NULL;
        int k = 0;
        if (!strcmp(argv[i], "--http"))
            v = i + 1 < *argc ? argv[i + 1] : "", k = i + 1 < *argc ? 2 : 1;
        else if (!strncmp(argv[i], "--http=", 7))
            v = argv[i] + 7, k = 1;
        if (!v)
            continue;
        memmove(&argv[i], &argv[i + k], (size_t)(*argc - i - k + 1) * sizeof *argv);
        *argc -= k;
        return v;
    }
    return NULL;
}

/* The --model among elmd's options (-m FILE, --model FILE, --model=FILE), if any. */
static const char *arg_model(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "--model") || !strcmp(argv[i], "-m")) && i + 1 < argc)
            return argv[i + 1];
        if (!strncmp(argv[i], "--model=", 8))
            return argv[i] + 8;
    }
    return NULL;
}

/* Whether paths a and b name the same file (the daemon holds its model's path made absolute;
 * the user may give it relative, or through a symlink). */
static bool same_file(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    if (realpath(a, ra) && realpath(b, rb))
        return !strcmp(ra, rb);
    return !strcmp(a, b);
}

/* elmd is already running: fine when it serves the model asked for (or none was named);
 * otherwise say so, naming both, rather than report a daemon that serves something else. */
static int already_running(elm_client *c, const char *model, const char *dir, const char *http)
{
    struct elm_daemon_status *st = malloc(sizeof *st);
    int rc = st ? 0 : -ENOMEM;
    while (model && rc == 0 && (rc = elm_client_status(c, st)) == 0 && st->loading)
        usleep(50 * 1000); /* a load under way may be this very model */
    int exit_code = 0;
    if (rc)
        exit_code = cli_client_fail(c, rc, "elmd is running but");
    else if (model && !st->model_loaded)
        exit_code = cli_fail("elmd is already running (pid %ld) with no model loaded, not %s; "
                             "load it with 'elmctl load %s'",
                             elm_client_daemon_pid(c), model, model);
    else if (model && !same_file(model, st->model_path))
        exit_code = cli_fail("elmd is already running (pid %ld) with another model: it serves "
                             "%s, not %s; 'elmctl load %s' replaces it",
                             elm_client_daemon_pid(c), st->model_path, model, model);
    else
        exit_code = report_running(c, "is already running", dir, http);
    free(st);
    return exit_code;
}

static pid_t spawn(const char *elmd, char **args)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* No stdin; and stdout goes to stderr, so that a daemon left in the foreground does not
     * hold a pipe that elmctl's caller reads to its end (`x=$(elmctl start -f ...)`). */
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0)
        dup2(null, 0);
    dup2(2, 1);
    execvp(elmd, args);
    fprintf(stderr, "elmctl: cannot run %s: %s\n", elmd, strerror(errno));
    _exit(127);
}

int cli_cmd_start(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: elmctl start [--json] [--http ADDR:PORT] [ELMD OPTIONS]\n"
               "Starts elmd with ELMD OPTIONS (see 'elmd --help'; e.g. --model FILE) and waits\n"
               "until it answers, at most %d s. The runtime directory is elmctl's\n"
               "(--runtime-dir, $ELM_RUNTIME_DIR) unless ELMD OPTIONS name one. $ELMD\n"
               "overrides which elmd binary runs.\n\n"
               "  --http ADDR:PORT   also start elm-httpd, the HTTP gateway (OpenAI and Ollama\n"
               "                     APIs), listening there (e.g. 127.0.0.1:8080); its log and\n"
               "                     pid go to the runtime directory, 'elmctl stop' ends it.\n"
               "                     $ELM_HTTPD overrides which elm-httpd runs\n"
               "  --json   print {\"running\":true,\"pid\":N[,\"http\":URL]}; an error is\n"
               "           {\"error\":S,\"exit_code\":N}\n"
               "Exit status: 0 running (started, or already running with the --model asked\n"
               "for), 1 failure (including a daemon already running another model, or none:\n"
               "the message names both), 2 usage error (elmd's own, e.g. an unknown option,\n"
               "is reported as a failure to start).\n",
               START_TIMEOUT_S);
        return 0;
    }
    for (int i = 1; i < argc; i++)
        cli_json |= !strcmp(argv[i], "--json");
    const char *http = take_http(&argc, argv);
    if (http && !*http)
        return cli_usage("--http expects ADDR:PORT (e.g. 127.0.0.1:8080)");
    const char *dir = arg_runtime_dir(argc, argv);
    if (!dir)
        dir = cli_runtime_dir ? cli_runtime_dir : getenv("ELM_RUNTIME_DIR");
    if (dir && !*dir)
        dir = NULL;
    elm_client *c = NULL;
    if (elm_client_connect(dir, &c) == 0) {
        int exit_code = already_running(c, arg_model(argc, argv), dir, http);
        elm_client_close(&c);
        return exit_code;
    }

    /* elmd's argv: its path, --runtime-dir when elmctl has one it would not know, the rest. */
    char path[PATH_MAX + 32];
    const char *elmd = cli_find_program("ELMD", "elmd", "../daemon/elmd", path, sizeof path);
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (!args)
        return cli_fail("out of memory");
    int n = 0;
    args[n++] = (char *)elmd;
    if (dir && !arg_runtime_dir(argc, argv)) {
        args[n++] = "--runtime-dir";
        args[n++] = (char *)dir;
    }
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--json")) /* elmctl's, consumed above */
            args[n++] = argv[i];
    pid_t pid = spawn(elmd, args);
    free(args);
    if (pid < 0)
        return cli_fail("cannot fork: %s", strerror(errno));

    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool child_done = false;
    for (;;) {
        int st, rc;
        if (!child_done && waitpid(pid, &st, WNOHANG) == pid) {
            child_done = true;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return cli_fail("elmd failed to start (%s %d)",
                                WIFEXITED(st) ? "exit status" : "signal",
                                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        }
        if ((rc = elm_client_connect(dir, &c)) == 0)
            break;
        if (rc != ELM_EDAEMON)
            return cli_connect_fail(dir, rc);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec >= START_TIMEOUT_S)
            return cli_fail("elmd did not answer within %d s (see its log)", START_TIMEOUT_S);
        usleep(50 * 1000);
    }
    /* In the foreground elmd answers while its start-up model still loads; "running" means
     * ready to serve, so wait for the load to end (in the background elmd waits itself). */
    struct elm_daemon_status *st = malloc(sizeof *st);
    int rc = st ? 0 : -ENOMEM;
    while (rc == 0 && (rc = elm_client_status(c, st)) == 0 && st->loading)
        usleep(50 * 1000);
    int exit_code = 0;
    if (rc)
        exit_code = cli_client_fail(c, rc, "elmd started but");
    else if (!st->model_loaded && st->load_error[0])
        exit_code = cli_fail("elmd is running (pid %ld) without a model: %s",
                             elm_client_daemon_pid(c), st->load_error);
    else
        exit_code = report_running(c, "is running", dir, http);
    free(st);
    elm_client_close(&c);
    return exit_code;
}

int cli_cmd_stop(int argc, char **argv)
{
    char usage[1024];
    snprintf(usage, sizeof usage,
             "usage: elmctl stop [--runtime-dir DIR] [--json]\n"
             "Asks elmd to stop (running requests get a moment to finish) and waits until\n"
             "its process is gone, at most %d s.\n\n"
             "  --runtime-dir DIR  elmd's directory (default $ELM_RUNTIME_DIR, else\n"
             "                     $XDG_RUNTIME_DIR/elm)\n"
             "  --json             print {\"running\":false,\"pid\":N}; an error is\n"
             "                     {\"error\":S,\"exit_code\":N}\n"
             "Exit status: 0 stopped (or was not running), 1 failure, 2 usage error.\n",
             STOP_TIMEOUT_S);
    int prc = cli_parse_daemon_opts(argc, argv, usage, 0, 0);
    if (prc)
        return prc < 0 ? 0 : prc;
    cli_httpd_stop(cli_runtime_dir); /* the gateway first: it would only answer 503 */
    elm_client *c;
    int rc = elm_client_connect(cli_runtime_dir, &c);
    if (rc == ELM_EDAEMON) {
        if (cli_json)
            cli_json_print(json_pack("{sb}", "running", 0));
        else
            fprintf(stderr, "elmctl: elmd is not running\n");
        return 0;
    }
    if (rc)
        return cli_connect_fail(cli_runtime_dir, rc);
    long pid = elm_client_daemon_pid(c);
    rc = elm_client_shutdown(c, STOP_TIMEOUT_S * 1000);
    int exit_code = 0;
    if (rc == -ETIMEDOUT)
        exit_code = cli_fail("elmd (pid %ld) is still running after %d s", pid, STOP_TIMEOUT_S);
    else if (rc)
        exit_code = cli_client_fail(c, rc, "stop");
    else if (cli_json)
        cli_json_print(json_pack("{sbsI}", "running", 0, "pid", (json_int_t)pid));
    else
        printf("elmd stopped (pid %ld)\n", pid);
    elm_client_close(&c);
    return exit_code;
}
