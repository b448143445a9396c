/* seq.c — see seq.h. The stop-string logic keeps back exactly the tail of the text that could
 * still grow into a stop string, so streamed text never has to be taken back. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "engine/seq.h"

struct elm_seq {
    const struct elm_model *m;
    struct elm_kv *kv;
    bool pooled; /* kv's pages come and go with requests (elm_seq_create_pooled) */
    struct elm_sampler *smp;
    int32_t n_ctx;
    int32_t *tokens;  /* [n_ctx] prompt then generated tokens */
    int32_t n_tokens; /* tokens in the sequence */
    int32_t n_past;   /* tokens whose K/V are in the cache */
    int32_t n_prompt;
    int32_t n_gen;
    int32_t n_reused;
    int32_t n_predict;
    int32_t planned_from; /* first position of the last plan */
    float *logits;        /* [n_vocab] output of the last token, when it asked for them */
    float *scratch;       /* [n_vocab] copy the sampler may modify */
    int n_stop;
    char *stop[ELM_MAX_STOP];
    size_t stop_max;      /* longest stop string */
    char *pending;        /* text held back; then the text released by a step */
    size_t pending_len, pending_cap;
    char *released;
    size_t released_cap;
    enum elm_stop_reason done;
    bool started;
};

const char *elm_stop_reason_name(enum elm_stop_reason r)
{
    static const char *names[] = {"none", "eos", "length", "stop", "cancel", "error"};
    return (unsigned)r < sizeof names / sizeof *names ? names[r] : "unknown";
}

void elm_gen_params_default(struct elm_gen_params *p)
{
    memset(p, 0, sizeof *p);
    elm_sampling_default(&p->sampling);
    p->n_predict = -1;
}

/* A sequence around a cache already made (taken over: destroyed on failure). */
static int seq_new(const struct elm_model *m, int32_t n_ctx, struct elm_kv *kv, bool pooled,
                   struct elm_seq **out)
{
    struct elm_seq *s = calloc(1, sizeof *s);
    if (!s) {
        elm_kv_destroy(&kv);
        return -ENOMEM;
    }
    s->m = m;
    s->n_ctx = n_ctx;
    s->kv = kv;
    s->pooled = pooled;
    s->tokens = malloc((size_t)n_ctx * sizeof *s->tokens);
    s->logits = malloc((size_t)m->hp.n_vocab * sizeof(float));
    s->scratch = malloc((size_t)m->hp.n_vocab * sizeof(float));
    if (!s->tokens || !s->logits || !s->scratch) {
        elm_seq_destroy(&s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

int elm_seq_create(const struct elm_model *m, int32_t n_ctx, enum elm_type kv_type,
                   struct elm_seq **out)
{
    if (n_ctx <= 0)
        return -EINVAL;
    struct elm_kv *kv;
    int rc = elm_kv_create(m, n_ctx, kv_type, &kv);
    return rc ? rc : seq_new(m, n_ctx, kv, false, out);
}

int elm_seq_create_pooled(const struct elm_model *m, struct elm_kv_pool *pool, int32_t n_ctx,
                          struct elm_seq **out)
{
    if (n_ctx <= 0 || !pool)
        return -EINVAL;
    struct elm_kv *kv;
    int rc = elm_kv_open(pool, n_ctx, &kv);
    return rc ? rc : seq_new(m, n_ctx, kv, true, out);
}

static void clear_request(struct elm_seq *s)
{
    for (int i = 0; i < s->n_stop; i++)
        free(s->stop[i]);
    s->n_stop = 0;
    s->stop_max = 0;
    elm_sampler_destroy(&s->smp);
}

void elm_seq_destroy(struct elm_seq **ps)
{
    if (!ps || !*ps)
        return;
    struct elm_seq *s = *ps;
    clear_request(s);
    elm_kv_destroy(&s->kv);
    free(s->tokens);
    free(s->logits);
    free(s->scratch);
    free(s->pending);
    free(s->released);
    free(s);
    *ps = NULL;
}

int elm_seq_start(struct elm_seq *s, const int32_t *prompt, int32_t n,
                  const struct elm_gen_params *p)
{
    if (n <= 0 || !p || p->n_stop < 0 || p->n_stop > ELM_MAX_STOP)
        return -EINVAL;
    if (n > s->n_ctx)
        return ELM_ECONTEXT;
    for (int32_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= s->m->hp.n_vocab)
            return ELM_ETOKEN;
    /* Everything that can fail is done into locals first, so that a failure leaves the
     * sequence (its tokens, K/V and previous request's state) as it was. */
    struct elm_sampler *smp = NULL;
    char *stop[ELM_MAX_STOP];
    int n_stop = 0;
    size_t stop_max = 0;
    int rc = elm_sampler_create(&p->sampling, s->m->hp.n_vocab, &smp);
    for (int i = 0; i < p->n_stop && !rc; i++) {
        if (!p->stop[i] || !*p->stop[i])
            continue;
        if (!(stop[n_stop] = strdup(p->stop[i]))) {
            rc = -ENOMEM;
            break;
        }
        size_t l = strlen(p->stop[i]);
        if (l > stop_max)
            stop_max = l;
        n_stop++;
    }
    /* The prompt's positions now; the generated ones page by page (elm_seq_grow). */
    if (!rc && s->pooled && (rc = elm_kv_reserve(s->kv, n)) == 0)
        elm_kv_trim(s->kv, n); /* pages past the prompt: back to the pool */
    if (rc) {
        elm_sampler_destroy(&smp);
        for (int i = 0; i < n_stop; i++)
            free(stop[i]);
        return rc;
    }
    clear_request(s);
    s->smp = smp;
    memcpy(s->stop, stop, (size_t)n_stop * sizeof *stop);
    s->n_stop = n_stop;
    s->stop_max = stop_max;
    /* Prefix reuse: positions whose token is unchanged keep their K/V. At least the last
     * prompt token is evaluated again, because its logits are needed to sample. */
    int32_t keep = 0;
    int32_t limit = s->n_past < n ? s->n_past : n;
    while (keep < limit && s->tokens[keep] == prompt[keep])
        keep++;
    if (keep == n)
        keep = n - 1;
    memcpy(s->tokens, prompt, (size_t)n * sizeof *prompt);
    s->n_tokens = n;
    s->n_past = keep;
    s->n_reused = keep;
    s->n_prompt = n;
    s->n_gen = 0;
    s->n_predict = p->n_predict;
    s->pending_len = 0;
    s->done = ELM_STOP_NONE;
    s->started = true;
    return 0;
}

int elm_seq_plan(struct elm_seq *s, int max, struct elm_batch_item *items)
{
    if (!s->started || s->done != ELM_STOP_NONE || max <= 0)
        return 0;
    int n = s->n_tokens - s->n_past;
    if (n > max)
        n = max;
    for (int i = 0; i < n; i++) {
        int32_t pos = s->n_past + i;
        items[i] = (struct elm_batch_item){
            .token = s->tokens[pos],
            .pos = pos,
            .kv = s->kv,
            .logits = pos == s->n_tokens - 1 ? s->logits : NULL,
        };
    }
    s->planned_from = s->n_past;
    return n;
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *nb = realloc(*buf, c);
    if (!nb)
        return -ENOMEM;
    *buf = nb;
    *cap = c;
    return 0;
}

/* Moves the first n pending bytes to the released buffer. */
static void release(struct elm_seq *s, size_t n, struct elm_seq_out *out)
{
    if (grow(&s->released, &s->released_cap, n + 1) == 0) {
        memcpy(s->released, s->pending, n);
        out->text = s->released;
        out->text_len = n;
    }
    memmove(s->pending, s->pending + n, s->pending_len - n);
    s->pending_len -= n;
}

/* Length of the longest suffix of pending that is a proper prefix of a stop string. */
static size_t held_back(const struct elm_seq *s)
{
    size_t best = 0;
    for (int i = 0; i < s->n_stop; i++) {
        size_t sl = strlen(s->stop[i]);
        for (size_t k = sl - 1; k > best; k--)
            if (k <= s->pending_len &&
                memcmp(s->pending + s->pending_len - k, s->stop[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

static void emit_text(struct elm_seq *s, const char *piece, size_t len, struct elm_seq_out *out)
{
    if (grow(&s->pending, &s->pending_cap, s->pending_len + len + 1)) {
        s->done = ELM_STOP_ERROR;
        return;
    }
    memcpy(s->pending + s->pending_len, piece, len);
    s->pending_len += len;
    for (int i = 0; i < s->n_stop; i++) {
        s->pending[s->pending_len] = 0;
        const char *hit = memmem(s->pending, s->pending_len, s->stop[i], strlen(s->stop[i]));
        if (hit) {
            s->pending_len = (size_t)(hit - s->pending);
            s->done = ELM_STOP_STRING;
            break;
        }
    }
    size_t hold = s->done ? 0 : held_back(s);
    release(s, s->pending_len - hold, out);
}

void elm_seq_advance(struct elm_seq *s, int n, int rc, struct elm_seq_out *out)
{
    *out = (struct elm_seq_out){.token = -1, .text = "", .text_len = 0};
    if (s->done == ELM_STOP_NONE && rc) {
        s->done = ELM_STOP_ERROR;
    } else if (s->done == ELM_STOP_NONE) {
        s->n_past = s->planned_from + n;
        if (s->n_past == s->n_tokens)
            goto sample;
    }
    goto finish;

sample:
    if (s->n_predict >= 0 && s->n_gen >= s->n_predict) { /* n_predict 0: the prompt only */
        s->done = ELM_STOP_LENGTH;
        goto finish;
    }
    const struct elm_vocab *v = s->m->vocab;
    int32_t V = s->m->hp.n_vocab;
    memcpy(s->scratch, s->logits, (size_t)V * sizeof(float));
    int32_t tok = elm_sampler_sample(s->smp, s->scratch, s->tokens, s->n_tokens);
    int32_t prev = s->tokens[s->n_tokens - 1];
    out->token = tok;
    s->n_gen++;
    if (elm_vocab_is_eog(v, tok)) {
        s->done = ELM_STOP_EOS;
        goto finish;
    }
    char piece[256];
    int len = elm_token_to_piece(v, tok, false, piece, sizeof piece);
    if (len > (int)sizeof piece)
        len = (int)sizeof piece; /* a vocabulary entry this long is not something we stream */
    const char *p = piece;
    /* SentencePiece marks word starts with a space; right after BOS there is no word before,
     * so the first space goes (as llama2.c and SentencePiece's decoder do). */
    if (len > 0 && prev == elm_vocab_bos(v) && elm_vocab_kind(v) == ELM_VOCAB_SPM && p[0] == ' ') {
        p++;
        len--;
    }
    if (len > 0)
        emit_text(s, p, (size_t)len, out);
    if (s->done)
        goto finish;
    if (s->n_predict >= 0 && s->n_gen >= s->n_predict)
        s->done = ELM_STOP_LENGTH;
    else if (s->n_tokens >= s->n_ctx)
        s->done = ELM_STOP_LENGTH;
    else
        s->tokens[s->n_tokens++] = tok;

finish:
    if (s->done && s->pending_len && s->done != ELM_STOP_STRING)
        release(s, s->pending_len, out);
    out->done = s->done;
}

void elm_seq_cancel(struct elm_seq *s)
{
    if (s->done == ELM_STOP_NONE)
        s->done = ELM_STOP_CANCEL;
}

void elm_seq_release(struct elm_seq *s, bool keep_history)
{
    elm_seq_cancel(s);
    if (!keep_history) {
        s->n_tokens = 0;
        s->n_past = 0;
    }
    /* n_past: the positions whose K/V the cache holds (a step planned but not advanced
     * never counted) */
    if (s->pooled)
        elm_kv_trim(s->kv, s->n_past);
}

int64_t elm_seq_pages(const struct elm_seq *s)
{
    return elm_kv_pages(s->kv);
}

/* Positions the next n planned tokens reach: they are written at n_past, n_past + 1, ... */
static int32_t reach(const struct elm_seq *s, int n)
{
    int32_t pending = s->n_tokens - s->n_past;
    return s->n_past + (n < pending ? n : pending);
}

int64_t elm_seq_pages_short(const struct elm_seq *s, int n)
{
    int64_t short_by = elm_kv_pages_for(reach(s, n)) - elm_kv_pages(s->kv);
    return short_by > 0 ? short_by : 0;
}

int elm_seq_grow(struct elm_seq *s, int n)
{
    return elm_kv_reserve(s->kv, reach(s, n));
}

int32_t elm_seq_preempt(struct elm_seq *s)
{
    int32_t dropped = s->n_past;
    /* Everything else stays: the tokens (prompt and generated), the sampler's state, the
     * held-back text. Position 0 on, the K/V are computed again by the same batch-invariant
     * passes, so the logits of the last token, and the tokens sampled from them, are those the
     * uninterrupted request would have had. */
    s->n_past = 0;
    if (s->pooled)
        elm_kv_trim(s->kv, 0);
    return dropped;
}

int32_t elm_seq_n_pending(const struct elm_seq *s)
{
    return s->started && s->done == ELM_STOP_NONE ? s->n_tokens - s->n_past : 0;
}

int32_t elm_seq_n_prompt(const struct elm_seq *s)
{
    return s->n_prompt;
}

int32_t elm_seq_n_generated(const struct elm_seq *s)
{
    return s->n_gen;
}

int32_t elm_seq_n_reused(const struct elm_seq *s)
{
    return s->n_reused;
}

int32_t elm_seq_n_ctx(const struct elm_seq *s)
{
    return s->n_ctx;
}

enum elm_stop_reason elm_seq_done(const struct elm_seq *s)
{
    return s->done;
}

const float *elm_seq_logits(const struct elm_seq *s)
{
    return s->logits;
}

int elm_seq_run(struct elm_seq *s, struct elm_work *w, elm_on_token on_token, void *user)
{
    int32_t nb = elm_work_n_batch(w);
    struct elm_batch_item *items = malloc((size_t)nb * sizeof *items);
    if (!items)
        return -ENOMEM;
    int result = 0;
    for (;;) {
        int n = elm_seq_plan(s, nb, items);
        if (n == 0)
            break;
        int rc = elm_seq_grow(s, n); /* a pooled sequence's pages, as it grows */
        if (rc == 0)
            rc = elm_model_forward(s->m, w, items, n);
        if (rc)
            result = rc;
        struct elm_seq_out out;
        elm_seq_advance(s, n, rc, &out);
        if ((out.token >= 0 || out.text_len || out.done) && on_token && on_token(user, &out))
            elm_seq_cancel(s);
        if (out.done)
            break;
    }
    free(items);
    return result;
}

int elm_prompt_tokenize(const struct elm_model *m, const char *text, size_t len,
                        bool parse_special, int32_t **out, int32_t *n)
{
    return elm_tokenize_alloc(m->vocab, text, len, true, parse_special, out, n);
}
