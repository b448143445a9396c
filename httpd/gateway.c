/* gateway.c — elm-httpd's connection to elmd (gateway.h). elmd never listens on a network: this
 * process is an ordinary libelmclient client, and every HTTP request becomes a session whose
 * tokens come back through shared memory.
 *
 * Reconnecting: a call that fails with ELM_EDAEMON drops the shared client; the next request
 * connects again, so a restarted daemon is served without restarting the gateway. Sessions hold
 * their own reference to the client they were opened on, so dropping it never pulls a
 * connection from under a running generation.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/trace.h"
#include "httpd/gateway.h"
#include "httpd/metrics.h"

#define POLL_MS      100   /* how often a waiting generation looks at its HTTP client's socket */
#define BUSY_WAIT_MS 10000 /* how long a request waits for one of elmd's session slots */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void gw_init(struct gw *g, const char *runtime_dir, uint32_t max_prompt_bytes)
{
    memset(g, 0, sizeof *g);
    g->runtime_dir = runtime_dir;
    g->max_prompt_bytes = max_prompt_bytes;
    pthread_mutex_init(&g->lock, NULL);
    gw_pool_start(&g->pool, runtime_dir, max_prompt_bytes);
}

void gw_fini(struct gw *g)
{
    gw_pool_stop(&g->pool);
    elm_client_close(&g->c);
    pthread_mutex_destroy(&g->lock);
}

/* With g->lock held: a connected client, or the error of connecting. */
static int connected(struct gw *g)
{
    return g->c ? 0 : elm_client_connect(g->runtime_dir, &g->c);
}

/* With g->lock held: after a failed call, forget a client whose daemon is gone. */
static void after(struct gw *g, int rc)
{
    if (rc == ELM_EDAEMON || rc == ELM_ESHUTDOWN || rc == ELM_EPROTO)
        elm_client_close(&g->c);
}

int gw_status(struct gw *g, struct elm_daemon_status *out)
{
    pthread_mutex_lock(&g->lock);
    int rc = connected(g);
    if (rc == 0 && (rc = elm_client_status(g->c, out)) != 0) {
        after(g, rc);
        /* A client made before the daemon restarted fails once: try a fresh one. */
        if (rc == ELM_EDAEMON && (rc = connected(g)) == 0)
            after(g, rc = elm_client_status(g->c, out));
    }
    pthread_mutex_unlock(&g->lock);
    elm_trace("h_status");
    if (rc == 0)
        gw_cache_put(&g->pool, out);
    else if (rc == ELM_EDAEMON || rc == ELM_ESHUTDOWN)
        gw_cache_drop(&g->pool);
    return rc;
}

int gw_status_cached(struct gw *g, struct elm_daemon_status *out, const char *model)
{
    char dname[GW_NAME_MAX];
    /* only good news is taken from the cache: "no model", "no such model" are asked afresh */
    if (gw_cache_get(&g->pool, out) && out->model_loaded &&
        (!model || gw_model_resolve(out, model, dname, sizeof dname))) {
        elm_trace("h_status");
        return 0;
    }
    return gw_status(g, out);
}

void gw_model_id(const struct elm_daemon_status *st, char *buf, size_t cap)
{
    const char *base = strrchr(st->model_path, '/');
    base = base ? base + 1 : st->model_path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf"))
        n -= 5;
    snprintf(buf, cap, "%.*s", (int)n, base);
}

/* Whether name is want, or want followed by ":latest". */
static bool same_name(const char *name, const char *want)
{
    size_t n = strlen(want);
    return n && !strncmp(name, want, n) && (!name[n] || !strcmp(name + n, ":latest"));
}

bool gw_model_matches(const struct elm_daemon_status *st, const char *name)
{
    char id[256];
    gw_model_id(st, id, sizeof id);
    return st->model_loaded && (same_name(name, id) || same_name(name, st->model_name));
}

bool gw_model_resolve(const struct elm_daemon_status *st, const char *name, char *buf, size_t cap)
{
    char names[GW_MAX_MODELS][GW_NAME_MAX];
    int n = gw_model_names(st, names);
    if (gw_model_matches(st, name)) {
        snprintf(buf, cap, "%s", "");
        return true;
    }
    for (int i = 0; i < n; i++)
        if (same_name(name, names[i])) {
            snprintf(buf, cap, "%s", i ? names[i] : "");
            return true;
        }
    return false;
}

/* Whether the peer of fd has closed its end (or the socket failed). Data it sent early (a
 * pipelined request) is left for the HTTP server. */
static bool client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
        return true;
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* One attempt at a session, connecting (again) first when needed. The daemon's message goes to
 * err: the client it lives in may be dropped here. */
static int open_session(struct gw *g, const struct elm_session_params *p, elm_session **s,
                        char *err, size_t cap)
{
    pthread_mutex_lock(&g->lock);
    int rc = connected(g);
    for (int attempt = 0; rc == 0 && attempt < 2; attempt++) {
        if ((rc = elm_session_open_params(g->c, p, s)) == 0)
            break;
        snprintf(err, cap, "%s", elm_client_last_message(g->c));
        after(g, rc);
        /* a client made before the daemon restarted fails once: try a fresh one */
        if (rc != ELM_EDAEMON || attempt || (rc = connected(g)) != 0)
            break;
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

/* A session for gen: a pooled one, or one opened now, waiting while every one of elmd's slots
 * is taken. */
static int gen_open(struct gw *g, struct gw_gen *gen, const struct gw_target *t, bool take,
                    int client_fd, const char **msg)
{
    const char *model = t->model ? t->model : "";
    memset(gen, 0, sizeof *gen);
    gen->g = g;
    gen->client_fd = client_fd;
    snprintf(gen->model, sizeof gen->model, "%s", model);
    gen->held = t->keep_alive != NULL;
    *msg = gen->err;
    gen->s = gw_pool_begin(&g->pool, model, take && !t->n_ctx && !t->keep_alive, gen->held);
    if (gen->s) {
        gen->pooled = true;
        elm_trace("h_open");
        return 0;
    }
    struct elm_session_params p = {.n_ctx = t->n_ctx,
                                   .max_prompt_bytes = g->max_prompt_bytes,
                                   .model = model,
                                   .keep_alive = t->keep_alive};
    /* Every session slot of elmd taken (its max_sessions): give back an idle one of ours, else
     * wait a little for one to free up, as long as the client waits too, rather than refuse a
     * burst at once. */
    uint64_t give_up = now_ns() + BUSY_WAIT_MS * 1000000ull;
    int rc;
    while ((rc = open_session(g, &p, &gen->s, gen->err, sizeof gen->err)) == ELM_EBUSY &&
           now_ns() < give_up && !client_gone(client_fd))
        if (!gw_pool_evict(&g->pool))
            nanosleep(&(struct timespec){0, 20 * 1000000}, NULL);
    if (rc) {
        gw_pool_end(&g->pool, gen->model, NULL, gen->held);
        gen->g = NULL; /* nothing for gw_gen_end */
    } else
        elm_trace("h_open");
    return rc;
}

static int submit(struct gw_gen *gen, const struct elm_request *r,
                  const struct elm_chat_message *msgs, int n_msgs)
{
    return msgs ? elm_session_submit_chat(gen->s, r, msgs, n_msgs) : elm_session_submit(gen->s, r);
}

/* Submits r (with msgs: a chat request) on a session of its own. */
static int gen_start(struct gw *g, struct gw_gen *gen, const struct gw_target *t,
                     const struct elm_request *r, const struct elm_chat_message *msgs, int n_msgs,
                     int client_fd, const char **msg)
{
    int rc = gen_open(g, gen, t, true, client_fd, msg);
    if (rc)
        return rc;
    rc = submit(gen, r, msgs, n_msgs);
    if (rc && gen->pooled) {
        /* a pooled session elmd has let go meanwhile (its model unloaded, the daemon
         * restarted): once more on a session opened now */
        gw_gen_end(gen);
        if ((rc = gen_open(g, gen, t, false, client_fd, msg)) == 0)
            rc = submit(gen, r, msgs, n_msgs);
    }
    if (rc) {
        gw_gen_end(gen);
        return rc;
    }
    gen->submitted = true;
    gen->t_submit = gen->t_checked = now_ns();
    elm_trace("h_submit");
    return 0;
}

int gw_gen_start(struct gw *g, struct gw_gen *gen, const struct gw_target *t,
                 const struct elm_request *r, int client_fd, const char **msg)
{
    return gen_start(g, gen, t, r, NULL, 0, client_fd, msg);
}

int gw_chat_start(struct gw *g, struct gw_gen *gen, const struct gw_target *t,
                  const struct elm_request *r, const struct elm_chat_message *msgs, int n_msgs,
                  int client_fd, const char **msg)
{
    return gen_start(g, gen, t, r, msgs, n_msgs, client_fd, msg);
}

int gw_embed(struct gw *g, struct gw_gen *gen, const struct gw_target *t, const char *const *texts,
             size_t n, float **vecs, uint32_t *n_embd, uint32_t *n_tokens, const char **msg)
{
    int rc = gen_open(g, gen, t, true, -1, msg);
    if (rc)
        return rc;
    rc = elm_session_embed(gen->s, texts, n, 0, vecs, n_embd, n_tokens);
    if (rc && gen->pooled) { /* a pooled session let go meanwhile: see gen_start */
        gw_gen_end(gen);
        if ((rc = gen_open(g, gen, t, false, -1, msg)) == 0)
            rc = elm_session_embed(gen->s, texts, n, 0, vecs, n_embd, n_tokens);
    }
    if (rc && gen->s)
        snprintf(gen->err, sizeof gen->err, "%s", elm_session_last_message(gen->s));
    else if (!rc) {
        uint32_t sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += n_tokens[i];
        metrics_done(sum, 0); /* the texts' tokens count as prompt tokens */
    }
    gw_gen_end(gen);
    return rc;
}

int gw_keep_alive(struct gw *g, struct gw_gen *gen, const struct gw_target *t, const char **msg)
{
    int rc = gen_open(g, gen, t, false, -1, msg);
    if (rc)
        return rc;
    /* closed here rather than by the pool thread: elmd has the model's new keep_alive (and
     * its unload under way) when the reply goes */
    elm_session_close(&gen->s);
    gw_gen_end(gen);
    return 0;
}

/* What gw_gen_next() and gw_gen_ready() do with the event elm_session_next() gave (rc 0) or
 * its error: the metrics, and whether the HTTP client is still there. */
static int took(struct gw_gen *gen, int rc, struct elm_event *ev)
{
    if (rc == 0 && ev->type == ELM_EVENT_TOKEN) {
        uint64_t t = now_ns();
        /* Looked at while tokens flow too, so a client that hangs up then (a non-streamed reply
         * writes nothing until the end) is noticed; as often as while waiting, not at every
         * token: a poll() per token is a system call per token for every stream. */
        if (t - gen->t_checked >= POLL_MS * 1000000ull) {
            gen->t_checked = t;
            if (client_gone(gen->client_fd))
                return -ECONNRESET;
        }
        if (gen->had_token)
            metrics_next_token(t - gen->t_last);
        else {
            elm_trace("h_first");
            metrics_first_token(t - gen->t_submit);
        }
        gen->had_token = true;
        gen->t_last = t;
    } else {
        if (rc == 0 && ev->type == ELM_EVENT_DONE)
            metrics_done(ev->n_prompt, ev->n_gen);
        gen->submitted = false; /* the request is over */
    }
    return rc;
}

int gw_gen_next(struct gw_gen *gen, struct elm_event *ev)
{
    for (;;) {
        int rc = elm_session_next(gen->s, ev, POLL_MS);
        if (rc != -ETIMEDOUT && rc != -EINTR)
            return took(gen, rc, ev);
        gen->t_checked = now_ns();
        if (client_gone(gen->client_fd))
            return -ECONNRESET;
    }
}

int gw_gen_ready(struct gw_gen *gen, struct elm_event *ev)
{
    int rc = elm_session_next(gen->s, ev, 0);
    return rc == -ETIMEDOUT || rc == -EINTR ? -EAGAIN : took(gen, rc, ev);
}

int gw_gen_collect(struct gw_gen *gen, char **text, size_t *len, struct elm_event *ev)
{
    *text = NULL;
    *len = 0;
    int rc;
    while ((rc = gw_gen_next(gen, ev)) == 0 && ev->type == ELM_EVENT_TOKEN) {
        char *t = realloc(*text, *len + ev->text_len + 1);
        if (!t)
            return -ENOMEM;
        *text = t;
        memcpy(t + *len, ev->text, ev->text_len);
        *len += ev->text_len;
        t[*len] = 0;
    }
    return rc;
}

void gw_gen_end(struct gw_gen *gen)
{
    if (!gen->g)
        return; /* zeroed: never started */
    /* cancelled here, so the daemon stops at once; closed by the pool thread, so the next
     * request on this HTTP connection does not wait for the control call */
    if (gen->s && gen->submitted)
        elm_session_cancel(gen->s);
    gw_pool_end(&gen->g->pool, gen->model, gen->s, gen->held);
    gen->s = NULL;
    gen->g = NULL;
    gen->submitted = false;
}
