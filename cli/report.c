/* report.c — how elmctl shows what elmd reports: `status`, `sessions` and `stats` as aligned
 * text for people, or with --json as one JSON document for scripts (field names are the client
 * library's struct fields; sizes in bytes, times in nanoseconds, absent values 0 or "").
 */
#ifdef ELM_HAVE_CLIENT
#include <stdio.h>

#include "cli.h"

/* ---------------------------------------------------------------------------------------------
 * A JSON object writer: enough for flat objects of strings and numbers, and arrays of them
 */

struct json {
    bool first; /* no member written yet in the current object */
};

static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void j_open(struct json *j)
{
    putchar('{');
    j->first = true;
}

static void j_key(struct json *j, const char *k)
{
    printf("%s\"%s\":", j->first ? "" : ",", k);
    j->first = false;
}

static void j_str(struct json *j, const char *k, const char *v)
{
    j_key(j, k);
    json_str(v);
}

static void j_u64(struct json *j, const char *k, uint64_t v)
{
    j_key(j, k);
    printf("%llu", (unsigned long long)v);
}

static void j_i64(struct json *j, const char *k, long long v)
{
    j_key(j, k);
    printf("%lld", v);
}

static void j_f64(struct json *j, const char *k, double v)
{
    j_key(j, k);
    printf("%.3f", v);
}

static void j_bool(struct json *j, const char *k, bool v)
{
    j_key(j, k);
    fputs(v ? "true" : "false", stdout);
}

static void j_u64x3(struct json *j, const char *k, const uint64_t v[3])
{
    j_key(j, k);
    printf("[%llu,%llu,%llu]", (unsigned long long)v[0], (unsigned long long)v[1],
           (unsigned long long)v[2]);
}

/* ---------------------------------------------------------------------------------------------
 * Human units
 */

/* "1h 2m 3s" style durations. */
static const char *human_ns(uint64_t ns, char *buf, size_t cap)
{
    uint64_t s = ns / 1000000000u;
    if (s >= 3600)
        snprintf(buf, cap, "%uh %um %us", (unsigned)(s / 3600), (unsigned)(s / 60 % 60),
                 (unsigned)(s % 60));
    else if (s >= 60)
        snprintf(buf, cap, "%um %us", (unsigned)(s / 60), (unsigned)(s % 60));
    else
        snprintf(buf, cap, "%.1fs", ns * 1e-9);
    return buf;
}

static const char *human_bytes(uint64_t b, char *buf, size_t cap)
{
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", b / (double)(1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.1f MiB", b / (double)(1ull << 20));
    else
        snprintf(buf, cap, "%.1f KiB", b / 1024.0);
    return buf;
}

static const char *human_count(uint64_t n, char *buf, size_t cap)
{
    if (n >= 1000000000u)
        snprintf(buf, cap, "%.2fB", n * 1e-9);
    else if (n >= 1000000u)
        snprintf(buf, cap, "%.1fM", n * 1e-6);
    else
        snprintf(buf, cap, "%.1fK", n * 1e-3);
    return buf;
}

/* ---------------------------------------------------------------------------------------------
 * status
 */

static void status_json(const elm_client *c, const struct elm_daemon_status *st)
{
    struct json j;
    j_open(&j);
    j_str(&j, "daemon_version", st->daemon_version);
    j_i64(&j, "pid", st->pid);
    j_u64(&j, "protocol_version", elm_client_protocol_version(c));
    j_u64(&j, "uptime_ns", st->uptime_ns);
    j_u64(&j, "n_sessions", st->n_sessions);
    j_u64(&j, "max_sessions", st->max_sessions);
    j_bool(&j, "model_loaded", st->model_loaded);
    j_str(&j, "model_path", st->model_path);
    j_str(&j, "model_name", st->model_name);
    j_u64(&j, "n_ctx", st->n_ctx);
    j_u64(&j, "n_vocab", st->n_vocab);
    j_str(&j, "arch", st->arch);
    j_str(&j, "kernel", st->kernel);
    j_str(&j, "kv_type", st->kv_type);
    j_u64(&j, "n_params", st->n_params);
    j_u64(&j, "n_threads", st->n_threads);
    j_u64(&j, "load_ns", st->load_ns);
    j_u64(&j, "weight_bytes", st->weight_bytes);
    j_u64(&j, "pinned_bytes", st->pinned_bytes);
    j_u64(&j, "huge_bytes", st->huge_bytes);
    j_str(&j, "backing", st->backing);
    j_str(&j, "load_notes", st->load_notes);
    j_u64(&j, "kv_bytes", st->kv_bytes);
    j_u64(&j, "kv_tokens", st->kv_tokens);
    j_u64(&j, "kv_capacity", st->kv_capacity);
    j_u64(&j, "kv_pages", st->kv_pages);
    j_u64(&j, "kv_pages_free", st->kv_pages_free);
    j_u64(&j, "kv_page_bytes", st->kv_page_bytes);
    j_u64(&j, "kv_page_tokens", st->kv_page_tokens);
    j_str(&j, "kv_backing", st->kv_backing);
    j_bool(&j, "kv_locked", st->kv_locked);
    j_u64(&j, "n_queued", st->n_queued);
    j_bool(&j, "loading", st->loading);
    j_str(&j, "loading_path", st->loading_path);
    j_u64(&j, "load_done", st->load_done);
    j_u64(&j, "load_total", st->load_total);
    j_str(&j, "load_error", st->load_error);
    puts("}");
}

static void status_model(const struct elm_daemon_status *st)
{
    char a[64], b[64];
    printf("model     %s  %s\n", st->model_name[0] ? st->model_name : "-", st->model_path);
    if (st->arch[0])
        printf("          %s, %s parameters, %s kernels, %u threads, loaded in %.3f s\n", st->arch,
               human_count(st->n_params, a, sizeof a), st->kernel, st->n_threads,
               st->load_ns * 1e-9);
    if (st->weight_bytes)
        printf("weights   %s: %s, %.0f%% on huge pages, %s\n",
               human_bytes(st->weight_bytes, a, sizeof a), st->backing,
               st->huge_bytes >= st->weight_bytes ? 100.0
                                                  : 100.0 * st->huge_bytes / st->weight_bytes,
               st->pinned_bytes ? "pinned" : "not pinned (may be paged out)");
    if (st->load_notes[0])
        printf("          %s\n", st->load_notes);
    printf("context   %u tokens per session%s%s%s, vocabulary %u\n", st->n_ctx,
           st->kv_type[0] ? " (KV cache " : "", st->kv_type, st->kv_type[0] ? ")" : "",
           st->n_vocab);
    if (st->kv_pages) {
        printf("kv pool   %s: %llu of %llu pages free (%llu positions, %s each), %s, %s\n",
               human_bytes(st->kv_bytes, b, sizeof b), (unsigned long long)st->kv_pages_free,
               (unsigned long long)st->kv_pages, (unsigned long long)st->kv_page_tokens,
               human_bytes(st->kv_page_bytes, a, sizeof a),
               st->kv_backing[0] ? st->kv_backing : "?", st->kv_locked ? "pinned" : "not pinned");
        printf("          %llu of %llu positions hold sessions' tokens; %u request%s waiting\n",
               (unsigned long long)st->kv_tokens, (unsigned long long)st->kv_capacity, st->n_queued,
               st->n_queued == 1 ? "" : "s");
    }
}

void cli_print_status(const elm_client *c, const struct elm_daemon_status *st)
{
    char t[64];
    if (cli_json) {
        status_json(c, st);
        return;
    }
    printf("elmd %s, pid %ld, up %s (protocol %u)\n",
           st->daemon_version[0] ? st->daemon_version : "(version unknown)", st->pid,
           human_ns(st->uptime_ns, t, sizeof t), elm_client_protocol_version(c));
    if (st->model_loaded)
        status_model(st);
    else
        printf("model     none (load one with 'elmctl load MODEL')\n");
    if (st->loading && st->load_total)
        printf("loading   %s (%d%%)\n", st->loading_path,
               (int)(st->load_done * 100 / st->load_total));
    else if (st->loading)
        printf("loading   %s\n", st->loading_path);
    if (st->load_error[0])
        printf("last load failed: %s\n", st->load_error);
    if (st->max_sessions)
        printf("sessions  %u of %u\n", st->n_sessions, st->max_sessions);
    else
        printf("sessions  %u\n", st->n_sessions);
}

/* ---------------------------------------------------------------------------------------------
 * load
 */

void cli_print_load(const char *path, const struct elm_load_result *r)
{
    if (cli_json) {
        struct json j;
        j_open(&j);
        j_str(&j, "model_path", path);
        j_str(&j, "model_name", r->model_name);
        j_u64(&j, "n_ctx", r->n_ctx);
        j_u64(&j, "n_vocab", r->n_vocab);
        j_u64(&j, "load_ns", r->load_ns);
        puts("}");
        return;
    }
    printf("loaded %s (%s): context %u tokens, vocabulary %u, in %.3f s\n", path,
           r->model_name[0] ? r->model_name : "unnamed", r->n_ctx, r->n_vocab, r->load_ns * 1e-9);
}

/* ---------------------------------------------------------------------------------------------
 * sessions
 */

static const char *state_name(int state)
{
    switch (state) {
    case ELM_SESSION_IDLE:
        return "idle";
    case ELM_SESSION_RUNNING:
        return "running";
    case ELM_SESSION_CLOSING:
        return "closing";
    default:
        return "unknown";
    }
}

void cli_print_sessions(const struct elm_session_info *s, size_t n)
{
    char t[64];
    if (cli_json) {
        putchar('[');
        for (size_t i = 0; i < n; i++) {
            struct json j;
            if (i)
                putchar(',');
            j_open(&j);
            j_u64(&j, "id", s[i].id);
            j_str(&j, "state", state_name(s[i].state));
            j_i64(&j, "pid", s[i].pid);
            j_str(&j, "client_name", s[i].client_name);
            j_u64(&j, "n_ctx", s[i].n_ctx);
            j_u64(&j, "n_prompt_tokens", s[i].n_prompt_tokens);
            j_u64(&j, "n_gen_tokens", s[i].n_gen_tokens);
            j_u64(&j, "age_ns", s[i].age_ns);
            putchar('}');
        }
        puts("]");
        return;
    }
    if (n == 0) {
        printf("no sessions\n");
        return;
    }
    printf("%8s  %-8s %8s  %-16s %6s %8s %8s  %s\n", "ID", "STATE", "PID", "CLIENT", "CTX",
           "PROMPT", "GEN", "AGE");
    for (size_t i = 0; i < n; i++)
        printf("%8llu  %-8s %8ld  %-16.16s %6u %8llu %8llu  %s\n", (unsigned long long)s[i].id,
               state_name(s[i].state), s[i].pid, s[i].client_name[0] ? s[i].client_name : "-",
               s[i].n_ctx, (unsigned long long)s[i].n_prompt_tokens,
               (unsigned long long)s[i].n_gen_tokens, human_ns(s[i].age_ns, t, sizeof t));
}

/* ---------------------------------------------------------------------------------------------
 * stats
 */

void cli_print_stats(const struct elm_daemon_stats *s)
{
    char t[64], b[64];
    if (cli_json) {
        struct json j;
        j_open(&j);
        j_u64(&j, "uptime_ns", s->uptime_ns);
        j_u64(&j, "n_requests", s->n_requests);
        j_u64(&j, "n_errors", s->n_errors);
        j_u64(&j, "n_prompt_tokens", s->n_prompt_tokens);
        j_u64(&j, "n_prompt_reused", s->n_prompt_reused);
        j_u64(&j, "prompt_ns", s->prompt_ns);
        j_u64(&j, "n_gen_tokens", s->n_gen_tokens);
        j_u64(&j, "gen_ns", s->gen_ns);
        j_f64(&j, "gen_tokens_per_s", s->gen_tokens_per_s);
        j_u64x3(&j, "ttft_ns", s->ttft_ns);
        j_u64x3(&j, "itl_ns", s->itl_ns);
        j_u64(&j, "n_steps", s->n_steps);
        j_u64(&j, "rss_bytes", s->rss_bytes);
        j_u64(&j, "n_sessions", s->n_sessions);
        j_u64(&j, "n_client_deaths", s->n_client_deaths);
        j_u64(&j, "n_ring_errors", s->n_ring_errors);
        j_u64(&j, "n_busy", s->n_busy);
        j_u64(&j, "n_kv_reclaimed", s->n_kv_reclaimed);
        puts("}");
        return;
    }
    printf("uptime            %s\n", human_ns(s->uptime_ns, t, sizeof t));
    printf("requests          %llu (%llu failed)\n", (unsigned long long)s->n_requests,
           (unsigned long long)s->n_errors);
    printf("prompt tokens     %llu evaluated in %.3f s, %llu reused from history\n",
           (unsigned long long)s->n_prompt_tokens, s->prompt_ns * 1e-9,
           (unsigned long long)s->n_prompt_reused);
    printf("generated tokens  %llu in %.3f s (%.1f tokens/s)\n",
           (unsigned long long)s->n_gen_tokens, s->gen_ns * 1e-9, s->gen_tokens_per_s);
    printf("first token       %.1f / %.1f / %.1f ms (median / p90 / p99)\n", s->ttft_ns[0] * 1e-6,
           s->ttft_ns[1] * 1e-6, s->ttft_ns[2] * 1e-6);
    printf("between tokens    %.2f / %.2f / %.2f ms\n", s->itl_ns[0] * 1e-6, s->itl_ns[1] * 1e-6,
           s->itl_ns[2] * 1e-6);
    printf("forward passes    %llu\n", (unsigned long long)s->n_steps);
    printf("resident memory   %s\n", human_bytes(s->rss_bytes, b, sizeof b));
    printf("open sessions     %u (%llu freed after their client died, %llu closed for a bad "
           "record)\n",
           s->n_sessions, (unsigned long long)s->n_client_deaths,
           (unsigned long long)s->n_ring_errors);
    printf("kv memory         %llu request%s refused busy, %llu idle session%s reclaimed\n",
           (unsigned long long)s->n_busy, s->n_busy == 1 ? "" : "s",
           (unsigned long long)s->n_kv_reclaimed, s->n_kv_reclaimed == 1 ? "" : "s");
}
#endif
