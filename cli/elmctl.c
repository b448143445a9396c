/* elmctl.c — the command line that drives elm: subcommand dispatch and shared helpers.
 * Local subcommands (generate --local, tokenize, inspect, quantize) run the engine in-process;
 * the others talk to elmd. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "elm/version.h"

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("elmctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

bool cli_int(const char *opt, const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        cli_fail("%s expects an integer in [%ld, %ld], got '%s'", opt, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_float(const char *opt, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max) {
        cli_fail("%s expects a number in [%g, %g], got '%s'", opt, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

char *cli_read_stdin(size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        ssize_t r = read(0, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    if (buf) {
        buf[n] = 0;
        *len = n;
    }
    return buf;
}

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

const char *cli_runtime_dir;
bool cli_json;

static const struct cmd cmds[] = {
    {"generate", cmd_generate, "stream a completion (from elmd, or --local MODEL in-process)"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"inspect", cmd_inspect, "show a model's architecture, tensors and metadata"},
    {"quantize", cmd_quantize, "write a quantized copy of a GGUF model"},
#ifdef ELM_HAVE_CLIENT
    {"start", cmd_start, "start elmd and wait until it answers"},
    {"stop", cmd_stop, "stop elmd and wait until it is gone"},
    {"status", cmd_status, "show elmd's state and model"},
    {"load", cmd_load, "load a model into elmd"},
    {"unload", cmd_unload, "drop elmd's model"},
    {"sessions", cmd_sessions, "list elmd's sessions"},
    {"stats", cmd_stats, "show elmd's counters"},
#endif
};

static void usage(FILE *f)
{
    fprintf(f, "usage: elmctl [--runtime-dir DIR] [--json] COMMAND [OPTIONS] [ARGS]\n"
               "       elmctl --version\n\n"
               "  --runtime-dir DIR  where elmd's socket is (default $ELM_RUNTIME_DIR, else\n"
               "                     $XDG_RUNTIME_DIR/elm)\n"
               "  --json             machine-readable output (status, sessions, stats...)\n"
               "\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\n'elmctl COMMAND --help' describes each command.\n");
}

/* Consumes the global options before the command; returns how many argv entries they took, or
 * -1 after printing an error. */
static int global_options(int argc, char **argv)
{
    int i = 1;
    while (i < argc) {
        if (!strcmp(argv[i], "--json")) {
            cli_json = true;
            i++;
        } else if (!strncmp(argv[i], "--runtime-dir=", 14)) {
            cli_runtime_dir = argv[i++] + 14;
        } else if (!strcmp(argv[i], "--runtime-dir")) {
            if (i + 1 >= argc)
                return cli_fail("--runtime-dir needs a directory"), -1;
            cli_runtime_dir = argv[i + 1];
            i += 2;
        } else {
            break;
        }
    }
    return i - 1;
}

int main(int argc, char **argv)
{
    int skip = global_options(argc, argv);
    if (skip < 0)
        return 2;
    argc -= skip;
    argv += skip;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("elmctl %s\n", ELM_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    cli_fail("unknown command '%s' (see elmctl --help)", argv[1]);
    return 2;
}
