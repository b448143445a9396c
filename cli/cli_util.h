/* cli_util.h — what every elmctl subcommand shares (cli_util.c). */
#ifndef ELM_CLI_UTIL_H
#define ELM_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Global options, given before the subcommand (elmctl --runtime-dir DIR --json status); the
 * daemon subcommands also accept them after their name. NULL runtime dir: the library's
 * default ($ELM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/elm...). */
extern const char *cli_runtime_dir;
extern bool cli_json;

/* Prints "elmctl: <msg>" to stderr; returns 1 (the usual exit code for a failure). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parsing helpers: return false (after printing an error naming opt) on bad input. */
bool cli_int(const char *opt, const char *s, long min, long max, long *out);
bool cli_float(const char *opt, const char *s, double min, double max, double *out);

/* Reads all of stdin into a malloc'ed buffer; NULL on failure. */
char *cli_read_stdin(size_t *len);

#endif
