/* elmctl.c — the command line that drives elm: subcommand dispatch and shared helpers.
 * Local subcommands (generate --local, tokenize, inspect, quantize) run the engine in-process;
 * the others talk to elmd. */
#include <getopt.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "common/trace.h"
#include "elm/version.h"

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct cmd cmds[] = {
    {"generate", cli_cmd_generate, "stream a completion (from elmd, or --local MODEL in-process)"},
    {"chat", cli_cmd_chat, "chat with a chat model (elmd's, or --local MODEL in-process)"},
    {"tokenize", cli_cmd_tokenize, "print the token ids of a text"},
    {"embed", cli_cmd_embed, "print the embedding vectors of texts (an embedding model)"},
    {"inspect", cli_cmd_inspect, "show a model's architecture, tensors and metadata"},
    {"quantize", cli_cmd_quantize, "write a quantized copy of a GGUF model"},
    {"perplexity", cli_cmd_perplexity, "score a model on a text file (llama.cpp-compatible PPL, KLD)"},
    {"kld", cli_cmd_kld, "KL-divergence of a student model from a teacher on a text file"},
    {"imatrix", cli_cmd_imatrix, "collect an importance matrix over calibration text"},
    {"distill-data", cli_cmd_distill_data, "write a teacher's top-k log-probs per position"},
    {"prune", cli_cmd_prune, "drop a model's least influential blocks into a smaller GGUF"},
    {"start", cli_cmd_start, "start elmd and wait until it answers"},
    {"stop", cli_cmd_stop, "stop elmd and wait until it is gone"},
    {"status", cli_cmd_status, "show elmd's state and model"},
    {"load", cli_cmd_load, "load a model into elmd"},
    {"unload", cli_cmd_unload, "drop elmd's model"},
    {"sessions", cli_cmd_sessions, "list elmd's sessions"},
    {"stats", cli_cmd_stats, "show elmd's counters"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: elmctl [--runtime-dir DIR] [--json] COMMAND [OPTIONS] [ARGS]\n"
               "       elmctl --version\n\n"
               "  --runtime-dir DIR  where elmd's socket is (default $ELM_RUNTIME_DIR, else\n"
               "                     $XDG_RUNTIME_DIR/elm)\n"
               "  --json             JSON on stdout, errors included (every command takes it\n"
               "                     after its name too)\n"
               "\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        fprintf(f, "  %-12s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\n'elmctl COMMAND --help' describes each command. Texts (generate's prompt,\n"
               "tokenize's text) come from the argument, -f FILE, or stdin ('-', or no\n"
               "argument when stdin is not a terminal).\n"
               "Exit status: 0 ok, 1 failure, 2 usage error, 130 interrupted.\n");
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
                return cli_usage("--runtime-dir needs a directory"), -1;
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
    elm_trace("c_main");
    opterr = 0; /* the commands report bad options themselves (cli_bad_option), in JSON too */
    int skip = global_options(argc, argv);
    if (skip < 0)
        return CLI_USAGE;
    argc -= skip;
    argv += skip;
    if (argc < 2) {
        usage(stderr);
        return cli_usage("no command given");
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        if (cli_json)
            cli_json_print(json_pack("{ss}", "version", ELM_VERSION_STRING));
        else
            printf("elmctl %s\n", ELM_VERSION_STRING);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    return cli_usage("unknown command '%s' (see elmctl --help)", argv[1]);
}
