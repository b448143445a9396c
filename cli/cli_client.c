/* cli_client.c — how elmctl's daemon subcommands connect to elmd, parse the options they all
 * take, and say why a call failed (a daemon that is not running is said so plainly, with the
 * command that starts one). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "cli/cli_client.h"
#include "cli/cli_util.h"
#include "elm/version.h"

int cli_client_fail(const elm_client *c, int rc, const char *what)
{
    const char *msg = c ? elm_client_last_message(c) : "";
    long pid = c ? elm_client_daemon_pid(c) : 0;
    /* Alive but silent: a session's stall timeout (elm_client_set_stall_timeout) ran out. */
    if (rc == ELM_EDAEMON && pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
        return cli_fail("%s: elmd (pid %ld) is running but made no progress (stopped or stalled?"
                        "; ELM_STALL_TIMEOUT_MS sets how long to wait)",
                        what, pid);
    if (rc == ELM_EDAEMON)
        return cli_fail("%s: elmd stopped answering (is it still running?)", what);
    return cli_fail("%s: %s", what, msg[0] ? msg : elm_strerror(rc));
}

bool cli_model_opt(int c, struct elm_session_params *p)
{
    if (c == 'M')
        p->model = optarg;
    else if (c == 'A')
        p->keep_alive = optarg;
    return c == 'M' || c == 'A';
}

int cli_session_open(elm_client *c, const struct elm_session_params *p, elm_session **out)
{
    int rc = elm_session_open_params(c, p, out);
    if (rc == ELM_ENOMODEL && !(p->model && p->model[0]))
        return cli_fail("elmd has no model loaded (load one with 'elmctl load MODEL')");
    return rc ? cli_client_fail(c, rc, "cannot open a session") : 0;
}

int cli_connect(const char *runtime_dir, elm_client **out)
{
    int rc = elm_client_connect(runtime_dir, out);
    return rc ? cli_connect_fail(runtime_dir, rc) : 0;
}

int cli_connect_fail(const char *runtime_dir, int rc)
{
    char dir[4096];
    if (runtime_dir)
        snprintf(dir, sizeof dir, "%s", runtime_dir);
    else if (elm_client_default_runtime_dir(dir, sizeof dir))
        dir[0] = 0;
    switch (rc) {
    case ELM_EDAEMON:
        return cli_fail("elmd is not running (start it with 'elmctl start --model FILE')");
    case ELM_EBUSY:
        return cli_fail("the elmd in %s has as many connections open as it accepts "
                        "(max_connections); try again once some close",
                        dir);
    case -EACCES:
        return cli_fail("permission denied: the elmd in %s belongs to another user", dir);
    case ELM_EPROTO:
        return cli_fail("the elmd in %s speaks another protocol version than this elmctl "
                        "(%s): use matching versions",
                        dir, ELM_VERSION_STRING);
    default:
        return cli_fail("cannot connect to elmd in %s: %s", dir, elm_strerror(rc));
    }
}

bool cli_daemon_opt(int c)
{
    if (c == 'D')
        cli_runtime_dir = optarg;
    else if (c == 'j')
        cli_json = true;
    return c == 'D' || c == 'j';
}

int cli_parse_daemon_opts(int argc, char **argv, const char *usage, int min_pos, int max_pos)
{
    static const struct option lo[] = {
        CLI_OPTS_DAEMON,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (cli_daemon_opt(c))
            continue;
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return -1;
        default:
            return cli_bad_option(argv);
        }
    }
    int n = argc - optind;
    if (n < min_pos || n > max_pos)
        return cli_usage("%s: wrong number of arguments (see --help)", argv[0]);
    return 0;
}
