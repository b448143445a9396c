/* metrics.c — elm-httpd's counters and their Prometheus exposition (metrics.h). */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "httpd/metrics.h"

#define MAX_SERIES 128 /* (endpoint, status) pairs; more are counted as "other" */

/* Upper bounds of the latency buckets, in seconds: from a tiny model's sub-millisecond tokens
 * to a large model's prompt of several seconds. */
static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_BOUNDS (sizeof bounds / sizeof *bounds)

struct hist {
    uint64_t n[N_BOUNDS + 1]; /* per bucket; the last is above every bound */
    double sum;
    uint64_t count;
};

struct series {
    const char *endpoint; /* a route's path: static */
    unsigned status;
    uint64_t n;
};

static struct {
    pthread_mutex_t lock;
    struct series req[MAX_SERIES];
    unsigned n_req;
    uint64_t prompt_tokens, gen_tokens;
    struct hist ttft, itl;
} m = {.lock = PTHREAD_MUTEX_INITIALIZER};

void metrics_request(const char *endpoint, unsigned status)
{
    pthread_mutex_lock(&m.lock);
    unsigned i = 0;
    while (i < m.n_req && (m.req[i].status != status || strcmp(m.req[i].endpoint, endpoint)))
        i++;
    if (i == m.n_req && i < MAX_SERIES)
        m.req[m.n_req++] = (struct series){endpoint, status, 0};
    if (i < MAX_SERIES)
        m.req[i].n++;
    pthread_mutex_unlock(&m.lock);
}

static void observe(struct hist *h, uint64_t ns)
{
    double s = ns * 1e-9;
    size_t b = 0;
    while (b < N_BOUNDS && s > bounds[b])
        b++;
    pthread_mutex_lock(&m.lock);
    h->n[b]++;
    h->sum += s;
    h->count++;
    pthread_mutex_unlock(&m.lock);
}

void metrics_first_token(uint64_t ns)
{
    observe(&m.ttft, ns);
}

void metrics_next_token(uint64_t ns)
{
    observe(&m.itl, ns);
}

void metrics_done(uint32_t n_prompt, uint32_t n_gen)
{
    pthread_mutex_lock(&m.lock);
    m.prompt_tokens += n_prompt;
    m.gen_tokens += n_gen;
    pthread_mutex_unlock(&m.lock);
}

/* ---- the exposition ---------------------------------------------------------------------- */

struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = b->oom ? 0 : vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (b->oom || n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        char *p = realloc(b->p, b->cap * 2 + (size_t)n);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = b->cap * 2 + (size_t)n;
    }
}

static void put_hist(struct buf *b, const char *name, const char *help, const struct hist *h,
                     const char *model)
{
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= N_BOUNDS; i++) {
        cum += h->n[i];
        if (i < N_BOUNDS)
            put(b, "%s_bucket{model=\"%s\",le=\"%g\"} %llu\n", name, model, bounds[i],
                (unsigned long long)cum);
        else
            put(b, "%s_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", name, model,
                (unsigned long long)cum);
    }
    put(b, "%s_sum{model=\"%s\"} %.9f\n%s_count{model=\"%s\"} %llu\n", name, model, h->sum, name,
        model, (unsigned long long)h->count);
}

/* A label value: Prometheus escapes \, " and newline; anything else odd becomes '_'. */
static void label(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 1 < cap; s++)
        out[o++] = (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) ? '_' : *s;
    out[o] = 0;
}

char *metrics_render(const struct elm_daemon_status *st, const char *model_id, int ready)
{
    struct buf b = {.p = malloc(4096), .cap = 4096};
    if (!b.p)
        return NULL;
    char model[256];
    label(model, sizeof model, model_id);
    pthread_mutex_lock(&m.lock);
    put(&b, "# HELP elm_http_requests_total HTTP requests answered, by endpoint and status.\n"
            "# TYPE elm_http_requests_total counter\n");
    for (unsigned i = 0; i < m.n_req; i++)
        put(&b, "elm_http_requests_total{endpoint=\"%s\",status=\"%u\"} %llu\n", m.req[i].endpoint,
            m.req[i].status, (unsigned long long)m.req[i].n);
    put(&b,
        "# HELP elm_http_prompt_tokens_total Prompt tokens of the gateway's finished requests.\n"
        "# TYPE elm_http_prompt_tokens_total counter\n"
        "elm_http_prompt_tokens_total{model=\"%s\"} %llu\n"
        "# HELP elm_http_generated_tokens_total Tokens generated for the gateway's requests.\n"
        "# TYPE elm_http_generated_tokens_total counter\n"
        "elm_http_generated_tokens_total{model=\"%s\"} %llu\n",
        model, (unsigned long long)m.prompt_tokens, model, (unsigned long long)m.gen_tokens);
    struct hist ttft = m.ttft, itl = m.itl;
    pthread_mutex_unlock(&m.lock);
    put_hist(&b, "elm_http_ttft_seconds", "Time from submitting a request to its first token.",
             &ttft, model);
    put_hist(&b, "elm_http_inter_token_seconds", "Time between two tokens of a request.", &itl,
             model);
    put(&b, "# HELP elm_up Whether elmd answers the gateway.\n# TYPE elm_up gauge\nelm_up %d\n",
        st != NULL);
    put(&b,
        "# HELP elm_http_ready_sessions Sessions the gateway holds open in elmd without a request "
        "(idle, ready for the next ones, or being closed).\n"
        "# TYPE elm_http_ready_sessions gauge\nelm_http_ready_sessions %d\n",
        ready);
    /* the gateway's own cost: every CPU second it spends is taken from the engine on a small
     * machine (elm-bench serve --http reads these around its rounds); getrusage counts the
     * connection threads that have ended too */
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        put(&b,
            "# HELP process_cpu_seconds_total User and system CPU time of elm-httpd.\n"
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.6f\n"
            "# HELP elm_http_context_switches_total Context switches of elm-httpd's threads "
            "(voluntary: a thread went to sleep and was woken).\n"
            "# TYPE elm_http_context_switches_total counter\n"
            "elm_http_context_switches_total{kind=\"voluntary\"} %ld\n"
            "elm_http_context_switches_total{kind=\"involuntary\"} %ld\n",
            (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6,
            ru.ru_nvcsw, ru.ru_nivcsw);
    if (st) {
        put(&b,
            "# HELP elm_queue_depth Requests waiting for KV memory.\n# TYPE elm_queue_depth gauge\n"
            "elm_queue_depth{model=\"%s\"} %u\n"
            "# HELP elm_kv_pages_in_use KV pool pages held by sessions.\n"
            "# TYPE elm_kv_pages_in_use gauge\nelm_kv_pages_in_use{model=\"%s\"} %llu\n"
            "# HELP elm_kv_pages KV pool pages in all.\n# TYPE elm_kv_pages gauge\n"
            "elm_kv_pages{model=\"%s\"} %llu\n"
            "# HELP elm_sessions Sessions open in elmd (every client's).\n"
            "# TYPE elm_sessions gauge\nelm_sessions{model=\"%s\"} %u\n",
            model, st->n_queued, model,
            (unsigned long long)(st->kv_pages - (st->kv_pages_free < st->kv_pages
                                                     ? st->kv_pages_free
                                                     : st->kv_pages)),
            model, (unsigned long long)st->kv_pages, model, st->n_sessions);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
