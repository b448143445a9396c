/* cli.h — shared pieces of elmctl's subcommands. */
#ifndef ELM_CLI_H
#define ELM_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "engine/seq.h"

/* Each subcommand: argc/argv start at the subcommand name; returns the process exit code. */
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

/* Global options, given before the subcommand (elmctl --runtime-dir DIR --json status); the
 * daemon subcommands also accept them after their name. NULL runtime dir: the library's
 * default ($ELM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/elm...). */
extern const char *cli_runtime_dir;
extern bool cli_json;

#ifdef ELM_HAVE_CLIENT
#include "elm/client.h"

/* Subcommands that talk to elmd (control.c, start.c). */
int cmd_start(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_unload(int argc, char **argv);
int cmd_sessions(int argc, char **argv);
int cmd_stats(int argc, char **argv);

/* Connects to elmd; on failure prints why ("elmd is not running (start it with ...)") and
 * returns the exit code, else 0. */
int cli_connect(const char *runtime_dir, elm_client **out);
/* The message of cli_connect for an elm_client_connect() error rc; returns the exit code. */
int cli_connect_fail(const char *runtime_dir, int rc);
/* Parses what every daemon subcommand takes: --runtime-dir, --json, --help (prints usage).
 * Returns 0 with the positional arguments from argv[optind] (between min_pos and max_pos of
 * them), -1 after --help (exit 0), or 2 (usage error, printed). */
int cli_parse_daemon_opts(int argc, char **argv, const char *usage, int min_pos, int max_pos);
/* What elmd reports, as text or (cli_json) JSON on stdout (report.c). */
void cli_print_status(const elm_client *c, const struct elm_daemon_status *st);
void cli_print_load(const char *path, const struct elm_load_result *r);
void cli_print_sessions(const struct elm_session_info *s, size_t n);
void cli_print_stats(const struct elm_daemon_stats *s);
/* Prints "elmctl: what: <the daemon's message or elm_strerror(rc)>"; returns 1. c may be
 * NULL. */
int cli_client_fail(const elm_client *c, int rc, const char *what);
#endif

/* Prints "elmctl: <msg>" to stderr; returns 1 (the usual exit code for a failure). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parsing helpers: return false (after printing an error naming opt) on bad input. */
bool cli_int(const char *opt, const char *s, long min, long max, long *out);
bool cli_float(const char *opt, const char *s, double min, double max, double *out);

/* Reads all of stdin into a malloc'ed buffer; NULL on failure. */
char *cli_read_stdin(size_t *len);

#endif
