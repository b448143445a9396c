/* eval.c — llama-perplexity's chunked evaluation, perplexity, base log-probability files and
 * KL-divergence statistics (eval.h).
 *
 * The arithmetic follows llama.cpp's examples/perplexity/perplexity.cpp (build b4748, the one
 * shared/models/evalref was made with) operation by operation, including which sums are float
 * and which double, because the reference numbers depend on it: the base file's log-probs are
 * quantized to 16 bits, the KLD sum skips tokens 16 nats below the top, and the "PPL(base)" of
 * the KLD report comes from those clamped codes. The build has -ffp-contract=off, so no
 * expression here is fused where llama.cpp's was not.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/errmsg.h"
#include "elm/status.h"
#include "engine/eval.h"
#include "engine/kv.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the base log-probability file is written in host order, which must be little-endian"
#endif

int elm_eval_tokenize(const struct elm_model *m, const char *text, size_t len, int32_t **ids,
                      int32_t *n)
{
    if (!m->vocab)
        return -EINVAL;
    if (len > 0 && text[len - 1] == '\n') /* llama.cpp's -f drops exactly one */
        len--;
    return elm_tokenize_alloc(m->vocab, text, len, true, false, ids, n);
}

/* ---- the runner ---------------------------------------------------------------------------- */

struct elm_eval {
    const struct elm_model *m;
    int32_t n_ctx;
    struct elm_work *w;
    struct elm_kv *kv;
    struct elm_batch_item *items; /* [n_ctx] */
};

int elm_eval_create(const struct elm_model *m, int32_t n_ctx, enum elm_type kv_type,
                    struct elm_eval **out)
{
    if (n_ctx < 2 || elm_model_is_embedding(m))
        return -EINVAL;
    struct elm_eval *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->m = m;
    e->n_ctx = n_ctx;
    int rc = elm_work_create(m, n_ctx, n_ctx, &e->w);
    if (!rc)
        rc = elm_kv_create(m, n_ctx, kv_type, &e->kv);
    if (!rc && !(e->items = calloc((size_t)n_ctx, sizeof *e->items)))
        rc = -ENOMEM;
    if (rc) {
        elm_eval_destroy(&e);
        return rc;
    }
    *out = e;
    return 0;
}

void elm_eval_destroy(struct elm_eval **pe)
{
    if (!pe || !*pe)
        return;
    struct elm_eval *e = *pe;
    elm_work_destroy(&e->w);
    elm_kv_destroy(&e->kv);
    free(e->items);
    free(e);
    *pe = NULL;
}

int32_t elm_eval_n_ctx(const struct elm_eval *e)
{
    return e->n_ctx;
}

void elm_eval_set_observer(struct elm_eval *e, const struct elm_matmul_observer *o)
{
    elm_work_set_observer(e->w, o);
}

int elm_eval_chunk(struct elm_eval *e, const int32_t *tokens, int32_t first, float *logits)
{
    const int32_t V = e->m->hp.n_vocab;
    const bool bos =
        e->m->vocab && elm_vocab_add_bos(e->m->vocab) && elm_vocab_bos(e->m->vocab) >= 0;
    /* Every position's K/V is written by this pass before any is read, so the cache needs no
     * clearing between chunks: nothing of the previous chunk is visible. */
    for (int32_t j = 0; j < e->n_ctx; j++)
        e->items[j] = (struct elm_batch_item){
            .token = j == 0 && bos ? elm_vocab_bos(e->m->vocab) : tokens[j],
            .pos = j,
            .kv = e->kv,
            .logits = j >= first ? logits + (size_t)(j - first) * (size_t)V : NULL,
        };
    return elm_model_forward(e->m, e->w, e->items, e->n_ctx);
}

/* ---- perplexity ---------------------------------------------------------------------------- */

static float max_of(const float *l, int32_t n)
{
    float mx = l[0];
    for (int32_t i = 1; i < n; i++)
        mx = mx < l[i] ? l[i] : mx;
    return mx;
}

static double sum_exp(const float *l, int32_t n, float mx)
{
    double s = 0.0;
    for (int32_t i = 0; i < n; i++)
        s += expf(l[i] - mx);
    return s;
}

double elm_eval_nll(const float *logits, int32_t n_vocab, int32_t tok)
{
    const float mx = max_of(logits, n_vocab);
    /* llama.cpp: logits[tok] - max_logit in float, then - log(sum_exp) in double */
    return -((double)(logits[tok] - mx) - log(sum_exp(logits, n_vocab, mx)));
}

double elm_ppl_value(const struct elm_ppl *p)
{
    return p->count ? exp(p->nll / (double)p->count) : 0.0;
}

double elm_ppl_err(const struct elm_ppl *p)
{
    if (p->count < 2)
        return 0.0;
    const double mean = p->nll / (double)p->count;
    const double var = p->nll2 / (double)p->count - mean * mean;
    return var > 0 ? exp(mean) * sqrt(var / (double)(p->count - 1)) : 0.0;
}

/* ---- base log-probabilities ---------------------------------------------------------------- */

double elm_logprobs_encode(const float *logits, int32_t n_vocab, int32_t tok, uint16_t *rec)
{
    float mx = logits[0], mn = logits[0];
    for (int32_t i = 1; i < n_vocab; i++) {
        mx = mx < logits[i] ? logits[i] : mx;
        mn = logits[i] < mn ? logits[i] : mn;
    }
    mn = mn < mx - 16 ? mx - 16 : mn; /* keep 16 nats below the top */
    const float lse = (float)log(sum_exp(logits, n_vocab, mx));
    const float min_log_prob = mn - mx - lse;
    const float scale = (mx - mn) / 65535.f;
    memcpy(rec, &scale, sizeof scale);
    memcpy(rec + 2, &min_log_prob, sizeof min_log_prob);
    uint16_t *q = rec + 4;
    memset(q, 0, (size_t)(elm_logprobs_nv(n_vocab) - 4) * sizeof *q);
    if (scale != 0) {
        const float inv = 1 / scale;
        /* rounded to nearest, ties to even (the default rounding mode), as llama.cpp's
         * nearest_int; the value is in [0, 65535] */
        for (int32_t i = 0; i < n_vocab; i++)
            q[i] = logits[i] > mn ? (uint16_t)lrintf(inv * (logits[i] - mn)) : 0;
    }
    return (double)(mx + lse - logits[tok]);
}

static int put(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : -EIO;
}

int elm_logprobs_write_header(FILE *f, int32_t n_ctx, int32_t n_vocab, int32_t n_chunk,
                              const int32_t *tokens)
{
    const int32_t h[3] = {n_ctx, n_vocab, n_chunk};
    int rc = put(f, "_logits_", 8);
    if (!rc)
        rc = put(f, h, sizeof h);
    if (!rc)
        rc = put(f, tokens, (size_t)n_chunk * (size_t)n_ctx * sizeof *tokens);
    return rc;
}

int elm_logprobs_write(FILE *f, const uint16_t *recs, size_t n_values)
{
    return put(f, recs, n_values * sizeof *recs);
}

int elm_logprobs_open(const char *path, struct elm_logprobs_file *lf, char *err, size_t errlen)
{
    *lf = (struct elm_logprobs_file){0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    char magic[8];
    int32_t h[3];
    struct stat st;
    int rc = 0;
    if (fstat(fileno(f), &st) || fread(magic, 1, 8, f) != 8 || memcmp(magic, "_logits_", 8) ||
        fread(h, sizeof h, 1, f) != 1) {
        rc = elm_errf(err, errlen, ELM_EFORMAT, "%s: not a log-probability file", path);
        goto fail;
    }
    /* n_ctx >= 4 so that a chunk scores at least one position */
    if (h[0] < 4 || h[0] > (1 << 20) || h[1] < 1 || h[1] > (1 << 24) || h[2] < 1 ||
        h[2] > (1 << 20)) {
        rc = elm_errf(err, errlen, ELM_EFORMAT, "%s: bad n_ctx %d, n_vocab %d or n_chunk %d", path,
                      h[0], h[1], h[2]);
        goto fail;
    }
    const uint64_t n_tok = (uint64_t)h[0] * (uint64_t)h[2];
    const uint64_t rec = (uint64_t)elm_eval_n_scored(h[0]) * (uint64_t)elm_logprobs_nv(h[1]) * 2;
    const uint64_t want = 20 + 4 * n_tok + (uint64_t)h[2] * rec;
    if ((uint64_t)st.st_size != want) {
        rc = elm_errf(err, errlen, ELM_EFORMAT, "%s: %lld bytes, the header implies %llu", path,
                      (long long)st.st_size, (unsigned long long)want);
        goto fail;
    }
    if (!(lf->tokens = malloc(n_tok * sizeof *lf->tokens))) {
        rc = -ENOMEM;
        goto fail;
    }
    if (fread(lf->tokens, sizeof *lf->tokens, n_tok, f) != n_tok) {
        rc = -EIO;
        goto fail;
    }
    lf->f = f;
    lf->n_ctx = h[0];
    lf->n_vocab = h[1];
    lf->n_chunk = h[2];
    return 0;
fail:
    free(lf->tokens);
    lf->tokens = NULL;
    fclose(f);
    return rc;
}

int elm_logprobs_read_chunk(struct elm_logprobs_file *lf, int32_t i, uint16_t *recs)
{
    if (i < 0 || i >= lf->n_chunk)
        return -EINVAL;
    const size_t nvals =
        (size_t)elm_eval_n_scored(lf->n_ctx) * (size_t)elm_logprobs_nv(lf->n_vocab);
    const off_t off = 20 + 4 * (off_t)lf->n_ctx * lf->n_chunk + (off_t)i * (off_t)nvals * 2;
    if (fseeko(lf->f, off, SEEK_SET) || fread(recs, 2, nvals, lf->f) != nvals)
        return -EIO;
    return 0;
}

void elm_logprobs_close(struct elm_logprobs_file *lf)
{
    if (lf->f)
        fclose(lf->f);
    free(lf->tokens);
    *lf = (struct elm_logprobs_file){0};
}

/* ---- KL-divergence ------------------------------------------------------------------------- */

int elm_kld_add(struct elm_kld *k, const float *logits, int32_t n_vocab, const uint16_t *rec,
                int32_t tok)
{
    if (k->count == k->cap) {
        const int64_t cap = k->cap ? 2 * k->cap : 1024;
        float *a = realloc(k->kld_values, (size_t)cap * sizeof *a);
        if (!a)
            return -ENOMEM;
        k->kld_values = a;
        float *b = realloc(k->p_diff_values, (size_t)cap * sizeof *b);
        if (!b)
            return -ENOMEM;
        k->p_diff_values = b;
        k->cap = cap;
    }
    float mx = logits[0];
    int32_t imax = 0;
    for (int32_t i = 1; i < n_vocab; i++)
        if (logits[i] > mx) {
            mx = logits[i];
            imax = i;
        }
    const float lse = (float)log(sum_exp(logits, n_vocab, mx));
    float scale, min_log_prob;
    memcpy(&scale, rec, sizeof scale);
    memcpy(&min_log_prob, rec + 2, sizeof min_log_prob);
    const uint16_t *q = rec + 4;

    const float nll = mx + lse - logits[tok];
    k->sum_nll += nll;
    k->sum_nll2 += nll * nll;
    const float nll_base = -(scale * q[tok] + min_log_prob);
    k->sum_nll_base += nll_base;
    k->sum_nll_base2 += nll_base * nll_base;
    k->sum_nll_nll_base += nll * nll_base;

    const float top = mx + lse; /* logq(v) = logits[v] - top */
    double sum = 0;
    int32_t imax_base = -1;
    float base_max = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        const float lb = scale * q[i] + min_log_prob;
        if (i == 0 || lb > base_max) {
            base_max = lb;
            imax_base = i;
        }
        if (lb > -16.f) { /* tokens further down carry the clamp, not a probability */
            const float pb = expf(lb);
            sum += pb * (lb - logits[i] + top);
        }
    }
    k->sum_kld += sum;
    k->sum_kld2 += sum * sum;
    k->n_same_top += imax == imax_base;

    const float p_diff = expf(-nll) - expf(-nll_base); /* of the target token */
    k->sum_p_diff += p_diff;
    const double p_diff2 = p_diff * p_diff;
    k->sum_p_diff2 += p_diff2;
    k->sum_p_diff4 += p_diff2 * p_diff2;
    k->kld_values[k->count] = (float)sum;
    k->p_diff_values[k->count] = p_diff;
    k->count++;
    return 0;
}

void elm_kld_fini(struct elm_kld *k)
{
    free(k->kld_values);
    free(k->p_diff_values);
    *k = (struct elm_kld){0};
}

static struct elm_mean_err mean_err(double sum, double sum2, int64_t n)
{
    if (n < 1)
        return (struct elm_mean_err){0, 0};
    const double f = sum / (double)n;
    const double df = sum2 / (double)n - f * f;
    return (struct elm_mean_err){f, df > 0 && n > 10 ? sqrt(df / (double)(n - 1)) : 0.0};
}

static double covariance(double a, double b, double ab, int64_t n)
{
    if (n < 10)
        return 0.0;
    return (ab / (double)n - (a / (double)n) * (b / (double)n)) / (double)(n - 1);
}

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* llama.cpp's percentile: linear interpolation in float at fraction * (n - 1). */
static float percentile(const float *v, int64_t n, float fraction)
{
    if (fraction <= 0)
        return v[0];
    if (fraction >= 1)
        return v[n - 1];
    float p = fraction * (float)(n - 1);
    const int64_t ip = (int64_t)p;
    p -= (float)ip;
    return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

static float median(const float *v, int64_t n)
{
    return n % 2 == 0 ? 0.5f * (v[n / 2] + v[n / 2 - 1]) : v[n / 2];
}

int elm_kld_stats(const struct elm_kld *k, struct elm_kld_stats *s)
{
    *s = (struct elm_kld_stats){.n = k->count};
    const int64_t n = k->count;
    const struct elm_mean_err lq = mean_err(k->sum_nll, k->sum_nll2, n);
    const struct elm_mean_err lb = mean_err(k->sum_nll_base, k->sum_nll_base2, n);
    const double cov = covariance(k->sum_nll, k->sum_nll_base, k->sum_nll_nll_base, n);
    s->ppl_q = (struct elm_mean_err){exp(lq.val), exp(lq.val) * lq.err};
    s->ppl_base = (struct elm_mean_err){exp(lb.val), exp(lb.val) * lb.err};
    s->cor_ln_ppl = cov / (lq.err * lb.err);
    s->ln_ppl_ratio.val = lq.val - lb.val;
    s->ln_ppl_ratio.err = sqrt(lq.err * lq.err + lb.err * lb.err - 2.0 * cov);
    s->ppl_ratio.val = exp(s->ln_ppl_ratio.val);
    s->ppl_ratio.err = s->ppl_ratio.val * s->ln_ppl_ratio.err;
    s->ppl_diff.val = s->ppl_q.val - s->ppl_base.val;
    s->ppl_diff.err = sqrt(s->ppl_q.err * s->ppl_q.err + s->ppl_base.err * s->ppl_base.err -
                           2.0 * s->ppl_q.val * s->ppl_base.val * cov);
    s->kld = mean_err(k->sum_kld, k->sum_kld2, n);
    s->p_diff = mean_err(k->sum_p_diff, k->sum_p_diff2, n);
    const struct elm_mean_err mse = mean_err(k->sum_p_diff2, k->sum_p_diff4, n);
    s->rms_p_diff.val = sqrt(mse.val);
    s->rms_p_diff.err = 0.5 / s->rms_p_diff.val * mse.err;
    if (n > 0) {
        const double p = (double)k->n_same_top / (double)n;
        s->same_top = (struct elm_mean_err){p, sqrt(p * (1.0 - p) / (double)(n - 1))};
    }
    if (n < 1)
        return 0;
    float *kv = malloc((size_t)n * sizeof *kv), *dv = malloc((size_t)n * sizeof *dv);
    if (!kv || !dv) {
        free(kv);
        free(dv);
        return -ENOMEM;
    }
    memcpy(kv, k->kld_values, (size_t)n * sizeof *kv);
    memcpy(dv, k->p_diff_values, (size_t)n * sizeof *dv);
    qsort(kv, (size_t)n, sizeof *kv, cmp_float);
    qsort(dv, (size_t)n, sizeof *dv, cmp_float);
    s->kld_max = kv[n - 1];
    s->kld_999 = percentile(kv, n, 0.999f);
    s->kld_990 = percentile(kv, n, 0.990f);
    s->kld_median = median(kv, n);
    s->kld_100 = percentile(kv, n, 0.100f);
    s->kld_050 = percentile(kv, n, 0.050f);
    s->kld_010 = percentile(kv, n, 0.010f);
    s->kld_min = kv[0];
    s->dp_max = dv[n - 1];
    s->dp_999 = percentile(dv, n, 0.999f);
    s->dp_990 = percentile(dv, n, 0.990f);
    s->dp_950 = percentile(dv, n, 0.950f);
    s->dp_900 = percentile(dv, n, 0.900f);
    s->dp_750 = percentile(dv, n, 0.750f);
    s->dp_median = median(dv, n);
    s->dp_250 = percentile(dv, n, 0.250f);
    s->dp_100 = percentile(dv, n, 0.100f);
    s->dp_050 = percentile(dv, n, 0.050f);
    s->dp_010 = percentile(dv, n, 0.010f);
    s->dp_001 = percentile(dv, n, 0.001f);
    s->dp_min = dv[0];
    free(kv);
    free(dv);
    return 0;
}
