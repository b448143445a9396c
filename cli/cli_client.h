/* cli_client.h — the daemon subcommands' connection, options and errors (cli_client.c), and
 * how they print what elmd reports (cli_print.c). */
#ifndef ELM_CLI_CLIENT_H
#define ELM_CLI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "elm/client.h"

/* Connects to elmd; on failure prints why ("elmd is not running (start it with ...)") and
 * returns the exit code, else 0. */
int cli_connect(const char *runtime_dir, elm_client **out);
/* The message of cli_connect for an elm_client_connect() error rc; returns the exit code. */
int cli_connect_fail(const char *runtime_dir, int rc);
/* Parses what every daemon subcommand takes: --runtime-dir, --json, --help (prints usage).
 * Returns 0 with the positional arguments from argv[optind] (between min_pos and max_pos of
 * them), -1 after --help (exit 0), or 2 (usage error, printed). */
int cli_parse_daemon_opts(int argc, char **argv, const char *usage, int min_pos, int max_pos);
/* The long options every daemon subcommand takes (before its own help row), and the getopt
 * cases they set: cli_daemon_opt(c) applies 'D' (--runtime-dir) and 'j' (--json) and says
 * whether c was one of them. */
#define CLI_OPTS_DAEMON {"runtime-dir", required_argument, 0, 'D'}, CLI_OPT_JSON
bool cli_daemon_opt(int c);
/* Prints "elmctl: what: <the daemon's message or elm_strerror(rc)>"; returns 1. c may be
 * NULL. */
int cli_client_fail(const elm_client *c, int rc, const char *what);

/* The options that choose the daemon's model for a session (generate, chat, embed): --model
 * NAME and --keep-alive D, long options {"model", .., 'M'} and {"keep-alive", .., 'A'} that
 * cli_model_opt takes. */
#define CLI_MODEL_USAGE                                                                            \
    "  --model NAME          the resident model to use (default: elmd's first loaded)\n"           \
    "  --keep-alive D        keep that model this long once idle (5m, 0, -1 = forever)\n"
/* Takes option c into p (its model or keep_alive); true when c was one of them. */
bool cli_model_opt(int c, struct elm_session_params *p);

/* Opens a session with p; returns 0, or prints why not (naming the missing model or saying
 * none is loaded) and returns the exit code. */
int cli_session_open(elm_client *c, const struct elm_session_params *p, elm_session **out);

/* What elmd reports, as text or (cli_json) JSON on stdout (cli_print.c). */
void cli_print_status(const elm_client *c, const struct elm_daemon_status *st);
void cli_print_load(const char *path, const struct elm_load_result *r);
void cli_print_sessions(const struct elm_session_info *s, size_t n);
void cli_print_stats(const struct elm_daemon_stats *s);

#endif
