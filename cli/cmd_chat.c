/* cmd_chat.c — `elmctl chat`: a conversation with a chat model, rendered with its chat template
 * (engine/chat.h; through elmd, the daemon renders it the same way).
 *
 * Each turn renders the whole conversation and sends it; the sequence (or elmd's session) keeps
 * the KV of the longest prefix it already holds, so only the new turn's tokens are evaluated
 * (-v shows the counts). Interactive when stdin is a terminal: lines are edited with libedit
 * (BSD-licensed, Debian's libedit-dev: history and the usual keys without a GPL dependency),
 * /reset starts over, /system TEXT sets the system message and starts over, Ctrl-C stops the
 * reply being written and returns to the prompt. Otherwise the conversation is read from stdin
 * as JSON (cli_messages.h) and the reply printed, or with --json one JSON record.
 */
#include <editline/readline.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_client.h"
#include "cli/cli_json.h"
#include "cli/cli_messages.h"
#include "cli/cli_util.h"
#include "elm/status.h"
#include "engine/chat.h"
#include "engine/seq.h"

struct chat_opts {
    const char *model, *system, *tmpl, *kernel, *runtime_dir;
    const char *local_only; /* the last option given that only --local uses */
    struct elm_gen_params gp;
    long threads, ctx;
    enum elm_type kv_type;
    bool verbose;
    struct elm_session_params sp; /* --model, --keep-alive (the daemon's) */
};

/* Where replies come from: the engine in this process, or elmd. */
struct backend {
    struct elm_model *m;
    struct elm_work *w;
    struct elm_seq *s;
    enum elm_chat_tmpl t;
    int32_t n_ctx;
    elm_client *c;
    elm_session *sess;
};

/* One reply: its text, and what it cost. */
struct turn {
    char *text;
    size_t len, cap;
    bool print; /* stream the text to stdout as it comes */
    const char *reason;
    long n_tokens; /* the conversation's prompt tokens (-1: elmd does not say) */
    long n_eval;   /* of those, evaluated this turn */
    long n_gen;
    double t_first, t_total; /* seconds */
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void turn_text(struct turn *t, const char *s, size_t n)
{
    if (t->print && n) {
        fwrite(s, 1, n, stdout);
        fflush(stdout);
    }
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *g = realloc(t->text, cap);
        if (!g)
            return; /* the reply is still shown; the history keeps what fitted */
        t->text = g;
        t->cap = cap;
    }
    memcpy(t->text + t->len, s, n);
    t->len += n;
    t->text[t->len] = 0;
}

/* ---- in this process ----------------------------------------------------------------------- */

static int local_open(const struct chat_opts *o, struct backend *b)
{
    char err[512] = "";
    struct elm_model_params mp = {.n_threads = (int)o->threads, .kernel = o->kernel};
    int rc = elm_model_load(o->model, &mp, &b->m, err, sizeof err);
    if (rc)
        return cli_fail_file(o->model, rc, err);
    if ((rc = elm_chat_model_template(b->m, o->tmpl, &b->t, err, sizeof err)))
        return cli_fail("%s: %s", o->model, err);
    if ((rc = elm_kv_type_check(b->m, o->kv_type, err, sizeof err)))
        return cli_fail("--kv-type: %s", err);
    b->n_ctx = elm_model_ctx_default(b->m, (int32_t)o->ctx);
    if ((rc = elm_seq_create(b->m, b->n_ctx, o->kv_type, &b->s)) ||
        (rc = elm_work_create(b->m, 256, b->n_ctx, &b->w)))
        return cli_fail("cannot start: %s", elm_strerror(rc));
    if (o->verbose)
        fprintf(stderr, "elmctl: chat template %s, context %d\n", elm_chat_name(b->t), b->n_ctx);
    return 0;
}

static int on_seq_token(void *user, const struct elm_seq_out *out)
{
    struct turn *t = user;
    if (out->token >= 0 && !t->t_first)
        t->t_first = now_s();
    turn_text(t, out->text, out->text_len);
    return interrupted; /* non-zero cancels: Ctrl-C ends the reply, not the program */
}

static int local_reply(const struct chat_opts *o, struct backend *b, const struct cli_msg *msgs,
                       int n, struct turn *t)
{
    struct elm_chat_msg *cm = malloc((size_t)n * sizeof *cm);
    if (!cm)
        return cli_fail("out of memory");
    for (int i = 0; i < n; i++)
        cm[i] = (struct elm_chat_msg){msgs[i].role, strlen(msgs[i].role), msgs[i].content,
                                      strlen(msgs[i].content)};
    char *text = NULL;
    size_t len;
    int32_t *ids = NULL, n_ids = 0;
    int exit_code = CLI_FAIL;
    int rc = elm_chat_render_alloc(b->t, cm, n, true, &text, &len);
    if (!rc)
        rc = elm_prompt_tokenize(b->m, text, len, true, &ids, &n_ids);
    if (rc) {
        cli_fail("cannot render the conversation: %s", elm_strerror(rc));
        goto out;
    }
    if (n_ids >= b->n_ctx) {
        cli_fail("the conversation has %d tokens but the context holds %d (--ctx, or /reset)",
                 n_ids, b->n_ctx);
        goto out;
    }
    double t0 = now_s();
    if ((rc = elm_seq_start(b->s, ids, n_ids, &o->gp)) ||
        (rc = elm_seq_run(b->s, b->w, on_seq_token, t))) {
        cli_fail("generation failed: %s", elm_strerror(rc));
        goto out;
    }
    t->t_total = now_s() - t0;
    t->t_first = t->t_first ? t->t_first - t0 : 0;
    t->reason = elm_stop_reason_name(elm_seq_done(b->s));
    t->n_tokens = n_ids;
    t->n_eval = n_ids - elm_seq_n_reused(b->s);
    t->n_gen = elm_seq_n_generated(b->s);
    exit_code = 0;
out:
    free(ids);
    free(text);
    free(cm);
    return exit_code;
}

/* ---- through elmd -------------------------------------------------------------------------- */

static int remote_open(const struct chat_opts *o, struct backend *b)
{
    if (o->tmpl)
        return cli_usage("--chat-template applies to --local only: elmd renders with the "
                         "model's own template");
    if (o->local_only)
        fprintf(stderr, "elmctl: %s applies to --local only; elmd uses its own setting\n",
                o->local_only);
    int exit_code = cli_connect(o->runtime_dir, &b->c);
    if (exit_code)
        return exit_code;
    struct elm_session_params sp = o->sp;
    sp.n_ctx = (uint32_t)o->ctx;
    return cli_session_open(b->c, &sp, &b->sess);
}

static int remote_reply(const struct chat_opts *o, struct backend *b, const struct cli_msg *msgs,
                        int n, struct turn *t)
{
    const struct elm_sampling *sp = &o->gp.sampling;
    struct elm_request r;
    elm_request_init(&r);
    r.n_predict = o->gp.n_predict;
    r.temp = sp->temp;
    r.top_k = sp->top_k;
    r.top_p = sp->top_p;
    r.min_p = sp->min_p;
    r.repeat_penalty = sp->repeat_penalty;
    r.repeat_last_n = sp->repeat_last_n;
    r.seed = sp->seed;
    struct elm_chat_message *cm = malloc((size_t)n * sizeof *cm);
    if (!cm)
        return cli_fail("out of memory");
    for (int i = 0; i < n; i++)
        cm[i] = (struct elm_chat_message){msgs[i].role, msgs[i].content};
    struct elm_event ev = {0};
    bool cancelled = false;
    int rc = elm_session_submit_chat(b->sess, &r, cm, n);
    while (rc == 0) {
        /* a bounded wait, so a Ctrl-C that lands outside the futex sleep is seen too */
        rc = elm_session_next(b->sess, &ev, 200);
        if (rc == -EINTR || rc == -ETIMEDOUT) {
            rc = 0;
            if (interrupted && !cancelled) {
                cancelled = true;
                rc = elm_session_cancel(b->sess);
            }
            continue;
        }
        if (rc == 0 && ev.type == ELM_EVENT_TOKEN)
            turn_text(t, ev.text, ev.text_len);
        else if (rc == 0)
            break;
    }
    free(cm);
    if (rc)
        return cli_client_fail(b->c, rc, "chat failed");
    if (ev.type == ELM_EVENT_ERROR)
        return cli_fail("chat failed: %s", ev.message[0] ? ev.message : elm_strerror(ev.error));
    t->reason = elm_finish_reason_name(ev.reason);
    t->n_tokens = -1;
    t->n_eval = ev.n_prompt;
    t->n_gen = ev.n_gen;
    t->t_first = ev.t_first_ns * 1e-9;
    t->t_total = ev.t_total_ns * 1e-9;
    return 0;
}

/* ---- the conversation ---------------------------------------------------------------------- */

static int reply(const struct chat_opts *o, struct backend *b, const struct cli_msg *msgs, int n,
                 struct turn *t)
{
    interrupted = 0;
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    sigaction(SIGINT, &sa, &old);
    int rc = b->m ? local_reply(o, b, msgs, n, t) : remote_reply(o, b, msgs, n, t);
    sigaction(SIGINT, &old, NULL);
    if (!rc && t->print) { /* the reply's line ends before anything else is said */
        putchar('\n');
        fflush(stdout);
    }
    if (!rc && o->verbose) {
        fprintf(stderr, "elmctl: ");
        if (t->n_tokens >= 0)
            fprintf(stderr, "%ld prompt tokens, ", t->n_tokens);
        fprintf(stderr, "%ld evaluated, %ld generated; first after %.3f s, all in %.3f s (%s)\n",
                t->n_eval, t->n_gen, t->t_first, t->t_total, t->reason);
    }
    return rc;
}

/* The conversation back to its system message (if any). */
static void reset(struct cli_msg **msgs, int *n, const char *system)
{
    cli_msgs_free(*msgs, *n);
    *msgs = NULL;
    *n = 0;
    if (system && system[0])
        cli_msgs_push(msgs, n, "system", system);
}

static int interactive(const struct chat_opts *o, struct backend *b)
{
    struct cli_msg *msgs = NULL;
    int n = 0;
    char *system = o->system ? strdup(o->system) : NULL;
    reset(&msgs, &n, system);
    fprintf(stderr, "elmctl chat: /reset starts over, /system TEXT sets the system message, "
                    "Ctrl-C stops a reply, Ctrl-D leaves\n");
    char *line;
    while ((line = readline("> ")) != NULL) {
        if (!line[0]) {
            free(line);
            continue;
        }
        add_history(line);
        if (!strcmp(line, "/reset") || !strncmp(line, "/system ", 8) || !strcmp(line, "/system")) {
            if (line[1] == 's') {
                free(system);
                system = strdup(line[7] ? line + 8 : "");
            }
            reset(&msgs, &n, system);
            fprintf(stderr, "(new conversation)\n");
            free(line);
            continue;
        }
        int rc = cli_msgs_push(&msgs, &n, "user", line);
        free(line);
        if (rc) {
            fprintf(stderr, "elmctl: %s\n", elm_strerror(rc));
            continue;
        }
        struct turn t = {.print = true};
        if (reply(o, b, msgs, n, &t)) {
            /* reply() said why; the turn is forgotten and the conversation goes on */
            n--;
            free(msgs[n].role);
            free(msgs[n].content);
            free(t.text);
            continue;
        }
        /* what was shown stays in the history, a reply cut by Ctrl-C too */
        cli_msgs_push(&msgs, &n, "assistant", t.text ? t.text : "");
        free(t.text);
    }
    cli_msgs_free(msgs, n);
    free(system);
    return 0;
}

static int one_reply(const struct chat_opts *o, struct backend *b)
{
    char *text = NULL, err[160];
    size_t len;
    bool given;
    int rc = cli_read_text("-", 0, NULL, &text, &len, &given);
    if (rc)
        return rc;
    struct cli_msg *msgs = NULL;
    int n = 0;
    if (o->system && o->system[0] && cli_msgs_push(&msgs, &n, "system", o->system)) {
        free(text);
        return cli_fail("out of memory");
    }
    struct cli_msg *in;
    int n_in;
    if (cli_msgs_read(text, len, &in, &n_in, err, sizeof err)) {
        free(text);
        cli_msgs_free(msgs, n);
        return cli_usage("stdin: %s (expected [{\"role\":...,\"content\":...}, ...] or JSON "
                         "lines)",
                         err);
    }
    free(text);
    for (int i = 0; i < n_in && !rc; i++)
        rc = cli_msgs_push(&msgs, &n, in[i].role, in[i].content);
    cli_msgs_free(in, n_in);
    struct turn t = {.print = !cli_json};
    if (rc)
        rc = cli_fail("%s", elm_strerror(rc));
    else
        rc = reply(o, b, msgs, n, &t);
    cli_msgs_free(msgs, n);
    if (!rc && cli_json) {
        json_t *j = json_pack("{ss}", "role", "assistant");
        cli_json_set_text(j, "content", 7, t.text ? t.text : "", t.len);
        json_object_set_new(j, "reason", json_string(t.reason));
        if (t.n_tokens >= 0)
            json_object_set_new(j, "n_prompt", json_integer(t.n_tokens));
        json_object_set_new(j, "n_evaluated", json_integer(t.n_eval));
        json_object_set_new(j, "n_gen", json_integer(t.n_gen));
        json_object_set_new(j, "t_first_ns", json_integer((json_int_t)(t.t_first * 1e9)));
        json_object_set_new(j, "t_total_ns", json_integer((json_int_t)(t.t_total * 1e9)));
        cli_json_print(j);
    }
    free(t.text);
    return rc ? rc : interrupted ? 130 : 0;
}

/* ---- options ------------------------------------------------------------------------------- */

static const char chat_usage[] =
    "usage: elmctl chat [--local MODEL] [--system TEXT] [--chat-template NAME] [OPTIONS]\n"
    "Chats with elmd's model, or with --local with MODEL run in this process. The conversation\n"
    "is rendered with the model's chat template as llama.cpp's built-in formats do.\n"
    "On a terminal: type a message per line; /reset starts over, /system TEXT sets the system\n"
    "message (and starts over), Ctrl-C stops the reply, Ctrl-D leaves. Otherwise stdin holds\n"
    "the conversation as JSON, [{\"role\":\"user\",\"content\":\"Hi\"}, ...] or one such\n"
    "object per line, and the assistant's reply is printed.\n\n"
    "  --local MODEL         run MODEL (a GGUF file) in this process\n"
    "  --system TEXT         a system message opening the conversation\n"
    "  --chat-template NAME  render with NAME instead of the file's template  [--local]\n"
    "                        (chatml, llama2, llama2-sys, mistral-v1, mistral-v3,\n"
    "                        mistral-v3-tekken, mistral-v7, phi3, zephyr, gemma, llama3...)\n"
    "  --runtime-dir DIR     the daemon's directory\n" CLI_MODEL_USAGE
    "  -n, --n-predict N     at most N tokens per reply (default: until the model ends it)\n"
    "  --temp T              temperature, 0 = greedy (default 0.8)\n"
    "  --seed S              random seed (default: clock)\n"
    "  --ctx N               context size (default: the model's, at most 4096)\n"
    "  --threads N           compute threads (default: CPU count)            [--local]\n"
    "  --kv-type f16|f32|q8_0  KV cache precision (default f16)              [--local]\n"
    "  --kernel NAME         force a kernel variant                          [--local]\n"
    "  -v, --verbose         after each reply: tokens evaluated (only the new turn's; the\n"
    "                        rest of the conversation is kept), generated, timings\n"
    "  --json                (stdin conversation) print {\"role\":\"assistant\",\"content\":S,\n"
    "                        \"reason\":S,\"n_prompt\":N (--local),\"n_evaluated\":N,\n"
    "                        \"n_gen\":N,\"t_first_ns\":N,\"t_total_ns\":N}; an error is\n"
    "                        {\"error\":S,\"exit_code\":N}\n"
    "Exit status: 0 ok, 1 failure, 2 usage error, 130 interrupted (Ctrl-C).\n";

static int parse_chat(int argc, char **argv, struct chat_opts *o)
{
    static const struct option lo[] = {
        {"local", required_argument, 0, 'L'},
        {"system", required_argument, 0, 'y'},
        {"chat-template", required_argument, 0, 'C'},
        {"n-predict", required_argument, 0, 'n'},
        {"temp", required_argument, 0, 't'},
        {"seed", required_argument, 0, 's'},
        {"ctx", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 'T'},
        {"kv-type", required_argument, 0, 'K'},
        {"kernel", required_argument, 0, 'G'},
        {"runtime-dir", required_argument, 0, 'D'},
        {"model", required_argument, 0, 'M'},
        {"keep-alive", required_argument, 0, 'A'},
        {"verbose", no_argument, 0, 'v'},
        CLI_OPT_JSON,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    long l;
    double d;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:vh", lo, NULL)) != -1) {
        if (cli_model_opt(c, &o->sp))
            continue;
        switch (c) {
        case 'L':
            o->model = optarg;
            break;
        case 'y':
            o->system = optarg;
            break;
        case 'C':
            if (elm_chat_from_name(optarg) == ELM_CHAT_UNKNOWN)
                return cli_usage("unknown --chat-template '%s' (one of: %s)", optarg,
                                 elm_chat_names());
            o->tmpl = optarg;
            break;
        case 'n':
            if (!cli_int("--n-predict", optarg, 1, 1 << 30, &l))
                return CLI_USAGE;
            o->gp.n_predict = (int32_t)l;
            break;
        case 't':
            if (!cli_float("--temp", optarg, 0, 100, &d))
                return CLI_USAGE;
            o->gp.sampling.temp = (float)d;
            break;
        case 's': {
            char *end;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (end == optarg || *end || *optarg == '-' || v == ELM_SEED_RANDOM)
                return cli_usage("--seed expects a non-negative integer, got '%s'", optarg);
            o->gp.sampling.seed = v;
            break;
        }
        case 'c':
            if (!cli_int("--ctx", optarg, 1, 1 << 20, &o->ctx))
                return CLI_USAGE;
            break;
        case 'T':
            o->local_only = "--threads";
            if (!cli_int("--threads", optarg, 1, 1024, &o->threads))
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
        case 'G':
            o->kernel = optarg, o->local_only = "--kernel";
            break;
        case 'D':
            o->runtime_dir = optarg;
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'j':
            cli_json = true;
            break;
        case 'h':
            fputs(chat_usage, stdout);
            return -1;
        default:
            return cli_bad_option(argv);
        }
    }
    if (optind != argc)
        return cli_usage("chat takes no arguments: the conversation comes from stdin");
    return 0;
}

int cli_cmd_chat(int argc, char **argv)
{
    struct chat_opts o = {.kv_type = ELM_TYPE_F16, .runtime_dir = cli_runtime_dir};
    elm_gen_params_default(&o.gp);
    int rc = parse_chat(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    struct backend b = {0};
    rc = o.model ? local_open(&o, &b) : remote_open(&o, &b);
    if (!rc)
        rc = isatty(STDIN_FILENO) && !cli_json ? interactive(&o, &b) : one_reply(&o, &b);
    elm_seq_destroy(&b.s);
    elm_work_destroy(&b.w);
    elm_model_destroy(&b.m);
    elm_session_close(&b.sess);
    elm_client_close(&b.c);
    return rc;
}
