/* cli_util.h — what every elmctl subcommand shares (cli_util.c): the global options, the exit
 * codes and error reports, checked number parsing, and where a prompt comes from. */
#ifndef ELM_CLI_UTIL_H
#define ELM_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Global options, given before the subcommand (elmctl --runtime-dir DIR --json status); every
 * subcommand also accepts --json after its name (CLI_OPT_JSON). NULL runtime dir: the
 * library's default ($ELM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/elm...). */
extern const char *cli_runtime_dir;
extern bool cli_json;

/* The exit codes of every elmctl command (README.md "Exit codes"). 130 after Ctrl-C. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* The getopt_long line of --json, which every subcommand takes; its case sets cli_json. */
#define CLI_OPT_JSON                                                                               \
    {                                                                                              \
        "json", no_argument, 0, 'j'                                                                \
    }

/* Reports an error and returns its exit code: cli_fail CLI_FAIL (something did not work),
 * cli_usage CLI_USAGE (the command line is wrong). The message goes to stderr as
 * "elmctl: <msg>", and under --json also to stdout as {"error":"<msg>","exit_code":N}, so a
 * script reading stdout always gets a JSON answer. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether msg already names path ("PATH: ..."), as the engine's and elmd's messages about a
 * file do: then the caller does not name it again. */
bool cli_names_file(const char *msg, const char *path);
/* The error about file path (cli_fail): err (an engine message, "" for none) or else
 * elm_strerror(rc), prefixed with path unless err already starts with it — a path once. */
int cli_fail_file(const char *path, int rc, const char *err);
/* The usage error for getopt_long's '?' (an unknown option, or one missing its value):
 * names the option as argv has it. Call with getopt's opterr 0 (main sets it). */
int cli_bad_option(char **argv);

/* Parsing helpers: return false (after a cli_usage() naming opt) on bad input. */
bool cli_int(const char *opt, const char *s, long min, long max, long *out);
bool cli_float(const char *opt, const char *s, double min, double max, double *out);

/* The text a command works on — the prompt of generate, the text of tokenize — from, in this
 * order: -f FILE (file non-NULL; "-" is stdin), the positional argument ("-" is stdin), stdin
 * when there is no argument and stdin is not a terminal, else "" (*given false). argv[0..argc)
 * are the positional arguments (at most one). Bytes are kept as they are (no newline is
 * stripped). Returns 0 with a malloc'ed NUL-terminated *text and its length, or the exit code
 * after reporting why (CLI_USAGE: two sources; CLI_FAIL: the file cannot be read). */
int cli_read_text(const char *file, int argc, char **argv, char **text, size_t *len, bool *given);

/* The program to run: $env when set, else name beside elmctl (installed together), else
 * build_rel beside it (the build tree's "../daemon/elmd"), else name itself (from PATH). The
 * path is written to buf when found there; the result is borrowed. */
const char *cli_find_program(const char *env, const char *name, const char *build_rel, char *buf,
                             size_t cap);

#endif
