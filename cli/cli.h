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

/* Prints "elmctl: <msg>" to stderr; returns 1 (the usual exit code for a failure). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parsing helpers: return false (after printing an error naming opt) on bad input. */
bool cli_int(const char *opt, const char *s, long min, long max, long *out);
bool cli_float(const char *opt, const char *s, double min, double max, double *out);

/* Reads all of stdin into a malloc'ed buffer; NULL on failure. */
char *cli_read_stdin(size_t *len);

#endif
