/* elm_bench.c — elm-bench: subcommand dispatch and the options every subcommand shares. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/log.h"
#include "elm/version.h"

struct sub {
    const char *name;
    int (*fn)(const struct bench_opts *o, int argc, char **argv);
    const char *help;
};

static const struct sub subs[] = {
    {"model", bench_model, "prompt (pp) and decode (tg) tokens/s per model and thread count"},
    {"kernels", bench_kernels, "matmul kernels per type and variant vs memory bandwidth and int8 peak"},
    {"ipc", bench_ipc, "shared-memory ring vs ZeroMQ round trips between two processes"},
    {"load", bench_load, "io_uring hugepage load vs cat, and first-token time via elmd"},
    {"serve", bench_serve, "N concurrent client processes through elmd: tokens/s, TTFT, ITL"},
    {"profile", bench_profile, "time per op and per layer of a decode step and a prefill chunk"},
    {"compress", bench_compress, "size, KL-divergence and speed of quantized and pruned variants"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: elm-bench [--json|--csv] [--reps N] [--threads N] [--quick] "
               "[--plot FILE.svg] SUBCOMMAND [ARGS]\n       elm-bench --version\n\n"
               "subcommands:\n");
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        fprintf(f, "  %-8s %s\n", subs[i].name, subs[i].help);
    fprintf(f, "\n'elm-bench SUBCOMMAND --help' describes each one.\n");
}

/* The exact command line, shell-quoted where needed, for the report. */
static char *join_cmdline(int argc, char **argv)
{
    size_t len = 1;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) * 4 + 3;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    for (int i = 0; i < argc; i++) {
        bool quote = strpbrk(argv[i], " \t'\"$\\") != NULL || !*argv[i];
        p += sprintf(p, i ? " " : "");
        if (!quote) {
            p += sprintf(p, "%s", argv[i]);
            continue;
        }
        *p++ = '\'';
        for (const char *c = argv[i]; *c; c++)
            p += *c == '\'' ? sprintf(p, "'\\''") : sprintf(p, "%c", *c);
        *p++ = '\'';
        *p = 0;
    }
    return s;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"json", no_argument, 0, 'j'},         {"csv", no_argument, 0, 'c'},
        {"reps", required_argument, 0, 'r'},   {"threads", required_argument, 0, 't'},
        {"quick", no_argument, 0, 'q'},        {"plot", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0},
    };
    if (argc == 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
        printf("elm-bench %s\n", ELM_VERSION_STRING);
        return 0;
    }
    char *cmdline = join_cmdline(argc, argv);
    elm_log_setup(ELM_LOG_ERROR, false, "elm-bench"); /* results on stdout, not loader chatter */
    struct bench_opts o = {.format = BENCH_MD, .reps = 5, .cmdline = cmdline ? cmdline : ""};
    int c;
    /* '+': stop at the subcommand, whose own options follow it */
    while ((c = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'j': o.format = BENCH_JSON; break;
        case 'c': o.format = BENCH_CSV; break;
        case 'q': o.quick = true; break;
        case 'P': o.plot = optarg; break;
        case 'r':
            o.reps = (int)strtol(optarg, &end, 10);
            if (*end || o.reps < 1 || o.reps > 1000) {
                fprintf(stderr, "elm-bench: --reps expects 1..1000, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 't':
            o.threads = (int)strtol(optarg, &end, 10);
            if (*end || o.threads < 1 || o.threads > 1024) {
                fprintf(stderr, "elm-bench: --threads expects 1..1024, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!o.threads)
        o.threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        if (!strcmp(argv[optind], subs[i].name)) {
            int rc = subs[i].fn(&o, argc - optind, argv + optind);
            free(cmdline);
            return rc;
        }
    fprintf(stderr, "elm-bench: unknown subcommand '%s' (see elm-bench --help)\n", argv[optind]);
    free(cmdline);
    return 2;
}
