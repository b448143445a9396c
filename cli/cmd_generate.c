/* cmd_generate.c — `elmctl generate` and `elmctl tokenize`.
 *
 * generate --local MODEL runs the engine in this process and streams text as it is produced
 * (or, with --ids, the generated token ids on one line; with --json, one JSON line per token and
 * a final one with the reason and timings). Without --local the same request goes to elmd
 * through libelmclient and its tokens are printed as they arrive, in the same format, so a
 * greedy request prints the same bytes either way. The prompt comes from the argument, -f FILE
 * or stdin (cli_read_text) and is tokenized the way every elm front end does it: BOS as the
 * vocabulary asks, control-token text kept as plain text unless --special.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_client.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "common/trace.h"
#include "common/utf8.h"
#include "elm/status.h"
#include "engine/seq.h"

struct gen_opts {
    const char *model;
    const char *file; /* -f: the prompt's file */
    const char *kernel;
    struct elm_gen_params gp;
    long threads;
    long ctx;
    long batch;
    bool ids;
    bool special;
    bool verbose;
    enum elm_type kv_type;
    const char *runtime_dir; /* the daemon's, when not --local */
    struct elm_session_params sp; /* --model, --keep-alive (the daemon's) */
    const char *local_only;  /* the last option given that only --local uses */
};

static void generate_usage(FILE *f)
{
    fprintf(f,
            "usage: elmctl generate [--local MODEL] [OPTIONS] [PROMPT | -f FILE | -]\n"
            "Streams a completion of PROMPT, from elmd's model, or with --local from MODEL run\n"
            "in this process. The prompt is PROMPT, else FILE's bytes (-f), else stdin when it\n"
            "is '-' or not a terminal, else empty (start from BOS alone).\n\n"
            "  --local MODEL         run MODEL (a GGUF file) in this process\n"
            "  -f, --file FILE       read the prompt from FILE ('-': stdin)\n"
            "  --runtime-dir DIR     the daemon's directory (default $ELM_RUNTIME_DIR, else\n"
            "                        $XDG_RUNTIME_DIR/elm)\n" CLI_MODEL_USAGE
            "  -n, --n-predict N     generate at most N tokens (default: until EOS/context)\n"
            "  --temp T              temperature, 0 = greedy (default 0.8)\n"
            "  --top-k K             keep the K most likely tokens (default 40, 0 = off)\n"
            "  --top-p P             nucleus sampling threshold (default 0.95, 1 = off)\n"
            "  --min-p P             drop tokens below P x the best one (default 0.05)\n"
            "  --repeat-penalty R    penalise recent tokens (default 1.0 = off)\n"
            "  --repeat-last-n N     tokens the penalty looks back at (default 64)\n"
            "  --seed S              random seed; same seed, same output (default: clock)\n"
            "  --stop STR            stop before STR (repeatable, up to %d)\n"
            "  --ctx N               context size (default: the model's, at most 4096)\n"
            "  --threads N           compute threads (default: CPU count)           [--local]\n"
            "  --batch N             prompt tokens per forward pass (default 256)   [--local]\n"
            "  --kv-type f16|f32|q8_0  KV cache precision (default f16; q8_0 needs a head\n"
            "                        size that is a multiple of 32)                 [--local]\n"
            "  --special             let control-token text in PROMPT become control tokens\n"
            "  --ids                 print generated token ids instead of text\n"
            "  --kernel NAME         force a kernel variant: ref, avx2, avx512 (x86-64),\n"
            "                        neon, dotprod, i8mm (ARM64)                     [--local]\n"
            "  -v, --verbose         print timings to stderr\n"
            "  --json                one JSON object per line: {\"token\":ID,\"text\":S} per\n"
            "                        token, then {\"done\":true,\"reason\":S,\"n_prompt\":N,\n"
            "                        \"n_gen\":N,\"t_first_ns\":N,\"t_total_ns\":N}; an error is\n"
            "                        {\"error\":S,\"exit_code\":N}\n"
            "Exit status: 0 ok, 1 failure, 2 usage error, 130 interrupted (Ctrl-C).\n",
            ELM_MAX_STOP);
}

/* Returns 0 with the prompt in *prompt (malloc'ed), -1 after --help, or the exit code. */
static int parse_generate(int argc, char **argv, struct gen_opts *o, char **prompt)
{
    static const struct option lo[] = {
        {"local", required_argument, 0, 'L'},   {"n-predict", required_argument, 0, 'n'},
        {"temp", required_argument, 0, 't'},    {"top-k", required_argument, 0, 'k'},
        {"top-p", required_argument, 0, 'p'},   {"min-p", required_argument, 0, 'm'},
        {"repeat-penalty", required_argument, 0, 'r'},
        {"repeat-last-n", required_argument, 0, 'R'},
        {"seed", required_argument, 0, 's'},    {"stop", required_argument, 0, 'S'},
        {"threads", required_argument, 0, 'T'}, {"ctx", required_argument, 0, 'c'},
        {"batch", required_argument, 0, 'b'},   {"kv-type", required_argument, 0, 'K'},
        {"special", no_argument, 0, 'x'},       {"ids", no_argument, 0, 'i'},
        {"kernel", required_argument, 0, 'G'},  {"verbose", no_argument, 0, 'v'},
        {"runtime-dir", required_argument, 0, 'D'},
        {"model", required_argument, 0, 'M'},   {"keep-alive", required_argument, 0, 'A'},
        {"file", required_argument, 0, 'f'},    CLI_OPT_JSON,
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    struct elm_sampling *sp = &o->gp.sampling;
    long l;
    double d;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:f:vh", lo, NULL)) != -1) {
        if (cli_model_opt(c, &o->sp))
            continue;
        switch (c) {
        case 'L': o->model = optarg; break;
        case 'n':
            if (!cli_int("--n-predict", optarg, -1, 1 << 30, &l))
                return CLI_USAGE;
            if (l == 0) /* the wire's 0 means "no limit": keep one meaning everywhere */
                return cli_usage("--n-predict expects -1 (no limit) or a count >= 1");
            o->gp.n_predict = (int32_t)l;
            break;
        case 't':
            if (!cli_float("--temp", optarg, 0, 100, &d))
                return CLI_USAGE;
            sp->temp = (float)d;
            break;
        case 'k':
            if (!cli_int("--top-k", optarg, 0, 1 << 30, &l))
                return CLI_USAGE;
            sp->top_k = (int32_t)l;
            break;
        case 'p':
            if (!cli_float("--top-p", optarg, 0, 1, &d))
                return CLI_USAGE;
            sp->top_p = (float)d;
            break;
        case 'm':
            if (!cli_float("--min-p", optarg, 0, 1, &d))
                return CLI_USAGE;
            sp->min_p = (float)d;
            break;
        case 'r':
            if (!cli_float("--repeat-penalty", optarg, 0.01, 100, &d))
                return CLI_USAGE;
            sp->repeat_penalty = (float)d;
            break;
        case 'R':
            if (!cli_int("--repeat-last-n", optarg, 0, 1 << 20, &l))
                return CLI_USAGE;
            sp->repeat_last_n = (int32_t)l;
            break;
        case 's': {
            char *end;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (end == optarg || *end || *optarg == '-' || v == ELM_SEED_RANDOM)
                return cli_usage("--seed expects a non-negative integer, got '%s'", optarg);
            sp->seed = v;
            break;
        }
        case 'S':
            if (o->gp.n_stop == ELM_MAX_STOP)
                return cli_usage("at most %d --stop strings", ELM_MAX_STOP);
            o->gp.stop[o->gp.n_stop++] = optarg;
            break;
        case 'T':
            o->local_only = "--threads";
            if (!cli_int("--threads", optarg, 1, 1024, &o->threads))
                return CLI_USAGE;
            break;
        case 'c':
            if (!cli_int("--ctx", optarg, 1, 1 << 20, &o->ctx))
                return CLI_USAGE;
            break;
        case 'b':
            o->local_only = "--batch";
            if (!cli_int("--batch", optarg, 1, 1 << 16, &o->batch))
                return CLI_USAGE;
            break;
        case 'K':
            o->local_only = "--kv-type";
            if (!strcmp(optarg, "f16"))
                o->kv_type = ELM_TYPE_F16;
            else if (!strcmp(optarg, "f32"))
                o->kv_type = ELM_TYPE_F32;
            else if (!strcmp(optarg, "q8_0"))
                o->kv_type = ELM_TYPE_Q8_0;
            else
                return cli_usage("--kv-type expects f16, f32 or q8_0, got '%s'", optarg);
            break;
        case 'x': o->special = true; break;
        case 'i': o->ids = true; break;
        case 'G': o->kernel = optarg, o->local_only = "--kernel"; break;
        case 'D': o->runtime_dir = optarg; break;
        case 'v': o->verbose = true; break;
        case 'f': o->file = optarg; break;
        case 'j': cli_json = true; break;
        case 'h': generate_usage(stdout); return -1;
        default: return cli_bad_option(argv);
        }
    }
    size_t len;
    bool given;
    return cli_read_text(o->file, argc - optind, argv + optind, prompt, &len, &given);
}

struct stream {
    bool ids;
    int n_ids;
    double t_first; /* when the first token came (local runs), 0 before */
    /* --json: the start of a character whose other bytes come with the next token (byte-level
     * vocabularies split characters), so every line holds whole characters. */
    char carry[4];
    size_t n_carry;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One --json line: the token (-1: text without a token) and its text, after what the previous
 * line carried over; the end of a cut character waits for the next line (last: no next line). */
static void json_token(struct stream *st, int32_t token, const char *text, size_t len, bool last)
{
    char *buf = malloc(st->n_carry + len + 1);
    if (!buf)
        return;
    memcpy(buf, st->carry, st->n_carry);
    memcpy(buf + st->n_carry, text, len);
    size_t n = st->n_carry + len;
    size_t whole = last ? n : elm_utf8_complete(buf, n);
    st->n_carry = n - whole;
    memcpy(st->carry, buf + whole, st->n_carry);
    json_t *j = json_pack("{sI}", "token", (json_int_t)token);
    cli_json_set_text(j, "text", 4, buf, whole);
    cli_json_print(j);
    free(buf);
}

static int on_token(void *user, const struct elm_seq_out *out)
{
    struct stream *st = user;
    if (!st->t_first) {
        st->t_first = now_s();
        elm_trace("out_first");
    }
    if (cli_json) {
        json_token(st, out->token, out->text, out->text_len, false);
    } else if (st->ids && out->token >= 0) {
        printf(st->n_ids++ ? " %d" : "%d", out->token);
        fflush(stdout);
    } else if (!st->ids && out->text_len) {
        fwrite(out->text, 1, out->text_len, stdout);
        fflush(stdout);
    }
    return 0;
}

/* Where the output ends: the text's newline, or the JSON stream's final record. */
static void print_end(struct stream *st, const char *reason, uint64_t n_prompt, uint64_t n_gen,
                      double t_first_s, double t_total_s)
{
    if (cli_json && st->n_carry) /* a cut character at the very end: its bytes, as they are */
        json_token(st, -1, "", 0, true);
    if (cli_json) {
        cli_json_print(json_pack("{sbsssIsIsIsI}", "done", 1, "reason", reason, "n_prompt",
                                 (json_int_t)n_prompt, "n_gen", (json_int_t)n_gen, "t_first_ns",
                                 (json_int_t)(t_first_s * 1e9), "t_total_ns",
                                 (json_int_t)(t_total_s * 1e9)));
        return;
    }
    putchar('\n');
    fflush(stdout);
}

static int run_local(const struct gen_opts *o, const char *prompt)
{
    char err[512] = "";
    struct elm_model_params mp = {.n_threads = (int)o->threads, .kernel = o->kernel};
    struct elm_model *m = NULL;
    struct elm_work *w = NULL;
    struct elm_seq *s = NULL;
    int32_t *ids = NULL, n_ids = 0;
    int exit_code = 1;
    double t0 = now_s();
    int rc = elm_model_load(o->model, &mp, &m, err, sizeof err);
    if (rc) {
        return cli_fail_file(o->model, rc, err);
    }
    double t_load = now_s() - t0;
    elm_trace("l_loaded");
    int32_t n_ctx = elm_model_ctx_default(m, (int32_t)o->ctx);
    if ((rc = elm_prompt_tokenize(m, prompt, strlen(prompt), o->special, &ids, &n_ids))) {
        cli_fail("cannot tokenize the prompt: %s", elm_strerror(rc));
        goto out;
    }
    if (n_ids == 0) {
        cli_fail("the prompt is empty and this model adds no BOS token: give a prompt");
        goto out;
    }
    if (n_ids > n_ctx) {
        cli_fail("the prompt has %d tokens but the context holds %d (--ctx)", n_ids, n_ctx);
        goto out;
    }
    char kv_err[256];
    if ((rc = elm_kv_type_check(m, o->kv_type, kv_err, sizeof kv_err))) {
        cli_fail("--kv-type: %s", kv_err);
        goto out;
    }
    if ((rc = elm_seq_create(m, n_ctx, o->kv_type, &s)) ||
        (rc = elm_work_create(m, (int32_t)o->batch, n_ctx, &w)) ||
        (rc = elm_seq_start(s, ids, n_ids, &o->gp))) {
        cli_fail("cannot start: %s", elm_strerror(rc));
        goto out;
    }
    struct stream st = {.ids = o->ids};
    double t1 = now_s();
    elm_trace("l_started");
    rc = elm_seq_run(s, w, on_token, &st);
    double t_gen = now_s() - t1;
    if (rc) {
        if (!cli_json)
            print_end(&st, "", 0, 0, 0, 0);
        cli_fail("generation failed: %s", elm_strerror(rc));
        goto out;
    }
    print_end(&st, elm_stop_reason_name(elm_seq_done(s)), (uint64_t)n_ids,
              (uint64_t)elm_seq_n_generated(s), st.t_first ? st.t_first - t1 : 0, t_gen);
    if (o->verbose)
        fprintf(stderr, "elmctl: load %.3f s, %d prompt + %d generated tokens in %.3f s (%s)\n",
                t_load, n_ids, elm_seq_n_generated(s), t_gen,
                elm_stop_reason_name(elm_seq_done(s)));
    exit_code = 0;
out:
    free(ids);
    elm_seq_destroy(&s);
    elm_work_destroy(&w);
    elm_model_destroy(&m);
    return exit_code;
}

/* ---- through the daemon ---------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* The request the local path would run, in the client library's terms. */
static int to_request(const struct gen_opts *o, const char *prompt, struct elm_request *r)
{
    const struct elm_sampling *sp = &o->gp.sampling;
    elm_request_init(r);
    r->prompt = prompt;
    /* The engine stops after the first token when n_predict is 0 (it checks the count after
     * sampling); the wire's 0 means "no limit", so ask for that one token explicitly. */
    r->n_predict = o->gp.n_predict;
    r->temp = sp->temp;
    r->top_k = sp->top_k;
    r->top_p = sp->top_p;
    r->min_p = sp->min_p;
    r->repeat_penalty = sp->repeat_penalty;
    r->repeat_last_n = sp->repeat_last_n;
    r->seed = sp->seed;
    r->flags = o->special ? ELM_REQUEST_SPECIAL : 0;
    for (int i = 0; i < o->gp.n_stop; i++) {
        size_t l = strlen(o->gp.stop[i]);
        if (l == 0)
            continue; /* the engine ignores empty stop strings too */
        if (l > ELM_REQUEST_MAX_STOP_LEN)
            return cli_usage("--stop strings sent to elmd hold at most %d bytes",
                             ELM_REQUEST_MAX_STOP_LEN);
        r->stop[r->n_stop++] = o->gp.stop[i];
    }
    return 0;
}

/* Prints one token as the local path's on_token does. */
static void print_token(struct stream *st, const struct elm_event *ev)
{
    struct elm_seq_out out = {.token = ev->token, .text = ev->text, .text_len = ev->text_len};
    on_token(st, &out);
}

static int run_remote(const struct gen_opts *o, const char *prompt)
{
    struct elm_request req;
    elm_client *c = NULL;
    elm_session *s = NULL;
    int exit_code = to_request(o, prompt, &req);
    if (exit_code)
        return exit_code;
    if (o->local_only)
        fprintf(stderr, "elmctl: %s applies to --local only; elmd uses its own setting\n",
                o->local_only);
    if ((exit_code = cli_connect(o->runtime_dir, &c)))
        return exit_code;
    elm_trace("c_connected");
    struct elm_session_params sp = o->sp;
    sp.n_ctx = (uint32_t)o->ctx;
    size_t plen = strlen(prompt);
    if (plen > (1u << 20))
        sp.max_prompt_bytes = plen > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)plen;
    int rc;
    if ((exit_code = cli_session_open(c, &sp, &s)))
        goto out;
    /* Ctrl-C cancels the request (the daemon ends it at once) instead of killing us mid-line. */
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    sigaction(SIGINT, &sa, &old);
    struct stream st = {.ids = o->ids};
    struct elm_event ev = {0};
    bool cancelled = false;
    int n_tokens = 0;
    rc = elm_session_submit(s, &req);
    elm_trace("c_submitted");
    while (rc == 0) {
        /* A bounded wait, so a signal that lands outside the futex sleep is seen too. */
        rc = elm_session_next(s, &ev, 200);
        if (rc == -EINTR || rc == -ETIMEDOUT) {
            rc = 0;
            if (interrupted && !cancelled) {
                cancelled = true;
                rc = elm_session_cancel(s);
            }
            continue;
        }
        if (rc == 0 && ev.type == ELM_EVENT_TOKEN && n_tokens == 0)
            elm_trace("c_first");
        if (rc == 0 && ev.type == ELM_EVENT_TOKEN)
            print_token(&st, &ev), n_tokens++;
        else if (rc == 0)
            break;
    }
    sigaction(SIGINT, &old, NULL);
    /* As the local path: the line ends once generation ran; a request refused before its first
     * token (prompt too long...) prints nothing, as a local one that fails to start. */
    bool done = rc == 0 && ev.type == ELM_EVENT_DONE;
    if (done)
        print_end(&st, elm_finish_reason_name(ev.reason), ev.n_prompt, ev.n_gen,
                  ev.t_first_ns * 1e-9, ev.t_total_ns * 1e-9);
    else if (n_tokens && !cli_json)
        print_end(&st, "", 0, 0, 0, 0);
    if (rc == 0 && ev.type == ELM_EVENT_ERROR) {
        exit_code = cli_fail("generation failed: %s",
                             ev.message[0] ? ev.message : elm_strerror(ev.error));
    } else if (rc) {
        exit_code = cli_client_fail(c, rc, "generation failed");
    } else {
        if (o->verbose)
            fprintf(stderr,
                    "elmctl: %u prompt + %u generated tokens, first after %.3f s, all in %.3f s "
                    "(%s)\n",
                    ev.n_prompt, ev.n_gen, ev.t_first_ns * 1e-9, ev.t_total_ns * 1e-9,
                    elm_finish_reason_name(ev.reason));
        exit_code = interrupted ? 130 : 0;
    }
out:
    elm_session_close(&s);
    elm_client_close(&c);
    return exit_code;
}

int cli_cmd_generate(int argc, char **argv)
{
    struct gen_opts o = {.batch = 256, .kv_type = ELM_TYPE_F16, .runtime_dir = cli_runtime_dir};
    elm_gen_params_default(&o.gp);
    char *prompt = NULL;
    int rc = parse_generate(argc, argv, &o, &prompt);
    if (rc == 0)
        rc = o.model ? run_local(&o, prompt) : run_remote(&o, prompt);
    free(prompt);
    return rc < 0 ? 0 : rc;
}

/* ---- tokenize ------------------------------------------------------------------------------ */

/* The ids of text, as lines "ID 'piece'", one line of ids (--ids), or one JSON document. */
static void print_tokens(const struct elm_vocab *v, const int32_t *ids, int n, bool ids_only)
{
    json_t *toks = cli_json ? json_array() : NULL;
    for (int i = 0; i < n; i++) {
        size_t tl;
        const char *t = elm_vocab_text(v, ids[i], &tl);
        if (cli_json) {
            json_t *tok = json_pack("{sI}", "id", (json_int_t)ids[i]);
            cli_json_set_text(tok, "piece", 5, t, tl);
            json_array_append_new(toks, tok);
        } else if (ids_only) {
            printf(i ? " %d" : "%d", ids[i]);
        } else {
            printf("%6d '%.*s'\n", ids[i], (int)tl, t);
        }
    }
    if (cli_json)
        cli_json_print(json_pack("{sIso}", "n_tokens", (json_int_t)n, "tokens", toks));
    else if (ids_only)
        putchar('\n');
}

int cli_cmd_tokenize(int argc, char **argv)
{
    static const struct option lo[] = {
        {"local", required_argument, 0, 'L'}, {"no-bos", no_argument, 0, 'B'},
        {"special", no_argument, 0, 'x'},     {"ids", no_argument, 0, 'i'},
        {"file", required_argument, 0, 'f'},  CLI_OPT_JSON,
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0},
    };
    const char *model = NULL, *file = NULL;
    bool no_bos = false, special = false, ids_only = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:h", lo, NULL)) != -1) {
        switch (c) {
        case 'L': model = optarg; break;
        case 'B': no_bos = true; break;
        case 'x': special = true; break;
        case 'i': ids_only = true; break;
        case 'f': file = optarg; break;
        case 'j': cli_json = true; break;
        case 'h':
            printf("usage: elmctl tokenize --local MODEL [OPTIONS] [TEXT | -f FILE | -]\n"
                   "Prints the token ids of TEXT, one per line with its piece. The text is TEXT,\n"
                   "else FILE's bytes (-f), else stdin (byte for byte) when it is '-' or not a\n"
                   "terminal.\n\n"
                   "  --local MODEL   the model whose vocabulary tokenizes (a GGUF file)\n"
                   "  -f, --file FILE read the text from FILE ('-': stdin)\n"
                   "  --no-bos        add no BOS/EOS\n"
                   "  --special       let control-token text become control tokens\n"
                   "  --ids           print the ids on one line\n"
                   "  --json          print {\"n_tokens\":N,\"tokens\":[{\"id\":ID,\"piece\":S},\n"
                   "                  ...]}; an error is {\"error\":S,\"exit_code\":N}\n"
                   "Exit status: 0 ok, 1 failure, 2 usage error.\n");
            return 0;
        default: return cli_bad_option(argv);
        }
    }
    if (!model)
        return cli_usage("tokenize needs --local MODEL");
    size_t len;
    bool given;
    char *text = NULL;
    int exit_code = cli_read_text(file, argc - optind, argv + optind, &text, &len, &given);
    if (exit_code)
        return exit_code;
    if (!given) {
        free(text);
        return cli_usage("tokenize needs a TEXT argument, -f FILE or text on stdin");
    }
    char err[512] = "";
    struct elm_gguf *g = NULL;
    struct elm_vocab *v = NULL;
    exit_code = CLI_FAIL;
    int rc = elm_gguf_open(model, &g, err, sizeof err);
    if (!rc)
        rc = elm_vocab_load(g, &v, err, sizeof err);
    if (rc) {
        cli_fail_file(model, rc, err);
        goto out;
    }
    int32_t *ids, n;
    if ((rc = elm_tokenize_alloc(v, text, len, !no_bos, special, &ids, &n))) {
        cli_fail("cannot tokenize: %s", elm_strerror(rc));
        goto out;
    }
    print_tokens(v, ids, n, ids_only);
    free(ids);
    exit_code = CLI_OK;
out:
    free(text);
    elm_vocab_destroy(&v);
    elm_gguf_destroy(&g);
    return exit_code;
}
