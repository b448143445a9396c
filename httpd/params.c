/* params.c — request fields into an elm_request (params.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sampling.h"
#include "httpd/params.h"

static int fail(struct perr *e, const char *key, const char *fmt, ...)
{
    va_list ap;
    snprintf(e->param, sizeof e->param, "%s", key);
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* o[key], or NULL when absent or null. */
static const json_t *get(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

int p_bool(const json_t *o, const char *key, bool *out, struct perr *e)
{
    const json_t *v = get(o, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return fail(e, key, "%s must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

int p_int(const json_t *o, const char *key, long long lo, long long hi, long long *out,
          struct perr *e)
{
    const json_t *v = get(o, key);
    if (!v)
        return 0;
    /* 5.0 is an integer to a JavaScript client: accept a real without a fraction */
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!json_is_integer(v) && !(isfinite(d) && d == floor(d) && fabs(d) < 9e15))
        return fail(e, key, "%s must be an integer", key);
    long long n = json_is_integer(v) ? (long long)json_integer_value(v) : (long long)d;
    if (n < lo || n > hi)
        return fail(e, key, "%s must be between %lld and %lld", key, lo, hi);
    *out = n;
    return 0;
}

int p_float(const json_t *o, const char *key, float *out, struct perr *e)
{
    const json_t *v = get(o, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return fail(e, key, "%s must be a number", key);
    *out = (float)json_number_value(v);
    return 0;
}

int p_str(const json_t *o, const char *key, const char **out, struct perr *e)
{
    const json_t *v = get(o, key);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return fail(e, key, "%s must be a string", key);
    *out = json_string_value(v);
    return 0;
}

int p_keep_alive(const json_t *o, const char *key, char *buf, size_t cap, struct perr *e)
{
    const json_t *v = json_object_get(o, key);
    int n = 0;
    buf[0] = 0;
    if (json_is_string(v))
        n = snprintf(buf, cap, "%s", json_string_value(v));
    else if (json_is_number(v))
        n = snprintf(buf, cap, "%.17g", json_number_value(v));
    else if (v && !json_is_null(v))
        return fail(e, key, "%s must be a duration or a number", key);
    if (n < 0 || (size_t)n >= cap)
        return fail(e, key, "%s is too long", key);
    return 0;
}

static int add_stop(const json_t *s, const char *key, struct elm_request *r, struct perr *e)
{
    if (!json_is_string(s))
        return fail(e, key, "%s must be a string or an array of strings", key);
    size_t n = json_string_length(s);
    if (n == 0 || n > ELM_REQUEST_MAX_STOP_LEN || strlen(json_string_value(s)) != n)
        return fail(e, key, "each %s string must be 1 to %d bytes", key, ELM_REQUEST_MAX_STOP_LEN);
    if (r->n_stop >= ELM_REQUEST_MAX_STOP)
        return fail(e, key, "at most %d %s strings", ELM_REQUEST_MAX_STOP, key);
    r->stop[r->n_stop++] = json_string_value(s);
    return 0;
}

int p_stop(const json_t *o, const char *key, struct elm_request *r, struct perr *e)
{
    const json_t *v = get(o, key);
    if (!v)
        return 0;
    if (!json_is_array(v))
        return add_stop(v, key, r, e);
    size_t i;
    const json_t *s;
    for (i = 0; i < json_array_size(v); i++) {
        s = json_array_get(v, i);
        if (add_stop(s, key, r, e))
            return -1;
    }
    return 0;
}

int p_unsupported_num(const json_t *o, const char *key, double neutral, struct perr *e)
{
    const json_t *v = get(o, key);
    if (!v || (json_is_number(v) && json_number_value(v) == neutral))
        return 0;
    if (!json_is_number(v))
        return fail(e, key, "%s must be a number", key);
    return fail(e, key, "%s is not supported by elm's sampler (only %g)", key, neutral);
}

int p_unsupported(const json_t *o, const char *key, struct perr *e)
{
    const json_t *v = get(o, key);
    bool empty = !v || json_is_false(v) || (json_is_string(v) && !json_string_length(v)) ||
                 (json_is_array(v) && !json_array_size(v)) ||
                 (json_is_object(v) && !json_object_size(v)) ||
                 (json_is_number(v) && json_number_value(v) == 0);
    return empty ? 0 : fail(e, key, "%s is not supported", key);
}

int p_check_sampling(const struct elm_request *r, const char *const names[6], struct perr *e)
{
    /* One value at a time on top of valid defaults: a failure names its own field. */
    for (int i = 0; i < 6; i++) {
        struct elm_sampling s;
        elm_sampling_default(&s);
        switch (i) {
        case 0:
            s.temp = r->temp;
            break;
        case 1:
            s.top_k = r->top_k;
            break;
        case 2:
            s.top_p = r->top_p;
            break;
        case 3:
            s.min_p = r->min_p;
            break;
        case 4:
            s.repeat_penalty = r->repeat_penalty;
            break;
        default:
            s.repeat_last_n = r->repeat_last_n;
            break;
        }
        if (elm_sampling_check(&s))
            return fail(e, names[i], "%s is out of range", names[i]);
    }
    return 0;
}

/* A chat's messages: 1..4096 objects with a "role" (system, developer — OpenAI's newer name
 * for system —, user or assistant) and a string "content", borrowed from b into *msgs
 * (malloc'ed; caller frees, also on failure). Images, tool calls and content parts are
 * refused: elm renders text. */
int p_messages(const json_t *b, struct elm_chat_message **msgs, int *n, struct perr *e)
{
    const json_t *a = json_object_get(b, "messages");
    size_t na = json_array_size(a);
    snprintf(e->param, sizeof e->param, "messages");
    if (!json_is_array(a) || na < 1 || na > 4096) {
        snprintf(e->msg, sizeof e->msg, "messages must be an array of 1 to 4096 messages");
        return -1;
    }
    if (!(*msgs = calloc(na, sizeof **msgs))) {
        snprintf(e->msg, sizeof e->msg, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < na; i++) {
        const json_t *m = json_array_get(a, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *content = json_string_value(json_object_get(m, "content"));
        if (p_unsupported(m, "images", e) || p_unsupported(m, "tool_calls", e)) {
            snprintf(e->param, sizeof e->param, "messages[%zu].%.30s", i,
                     json_object_get(m, "images") ? "images" : "tool_calls");
            return -1;
        }
        if (!role || !content) {
            snprintf(e->msg, sizeof e->msg,
                     "messages[%zu] must have a string role and a string content", i);
            return -1;
        }
        if (!strcmp(role, "developer"))
            role = "system";
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
            snprintf(e->msg, sizeof e->msg,
                     "messages[%zu].role must be system, developer, user or assistant", i);
            return -1;
        }
        (*msgs)[i] = (struct elm_chat_message){role, content};
    }
    *n = (int)na;
    e->param[0] = 0;
    return 0;
}
