/* params.h — reading a request's JSON fields into an elm_request (params.c), with the checks
 * both APIs share: each field's JSON type, and each sampling value against the one definition
 * of its range (common/sampling.h). A failed check leaves the field's name and a message, so
 * the reply can be a 400 that names it. */
#ifndef ELM_HTTPD_PARAMS_H
#define ELM_HTTPD_PARAMS_H

#include <jansson.h>
#include <stdbool.h>

#include "elm/client.h"

struct perr {
    char param[64]; /* the field at fault, as the client spelled it */
    char msg[256];
};

/* Each reads o[key] when present (absent and null leave *out alone) and returns 0, or -1 with
 * e filled when the value has the wrong type or is out of [lo, hi]. */
int p_bool(const json_t *o, const char *key, bool *out, struct perr *e);
int p_int(const json_t *o, const char *key, long long lo, long long hi, long long *out,
          struct perr *e);
int p_float(const json_t *o, const char *key, float *out, struct perr *e);
/* A string (borrowed from o). */
int p_str(const json_t *o, const char *key, const char **out, struct perr *e);
/* Ollama's keep_alive at key: a duration string ("5m", "0", "-1") or a number of seconds, into
 * buf as elmd reads it (buf[0] 0 when absent or null; elmd checks the grammar). */
int p_keep_alive(const json_t *o, const char *key, char *buf, size_t cap, struct perr *e);
/* "stop": a string or an array of strings (OpenAI), each 1..ELM_REQUEST_MAX_STOP_LEN bytes, at
 * most ELM_REQUEST_MAX_STOP; borrowed from o into r. */
int p_stop(const json_t *o, const char *key, struct elm_request *r, struct perr *e);
/* Refuses a field the sampler cannot honour unless it has its neutral value (a number equal to
 * neutral, or null/false/absent). */
int p_unsupported_num(const json_t *o, const char *key, double neutral, struct perr *e);
/* Refuses a field that is present and not null, false, 0, "" or empty. */
int p_unsupported(const json_t *o, const char *key, struct perr *e);

/* A chat's "messages": 1..4096 objects with a "role" (system, developer — OpenAI's newer name
 * for system —, user or assistant) and a string "content", borrowed from b into *msgs
 * (malloc'ed; caller frees, also on failure). Images, tool calls and content parts are
 * refused: elm renders text. */
int p_messages(const json_t *b, struct elm_chat_message **msgs, int *n, struct perr *e);

/* Checks r's sampling values against their ranges; names[] gives the client's name of temp,
 * top_k, top_p, min_p, repeat_penalty, repeat_last_n (in that order) for the message. */
int p_check_sampling(const struct elm_request *r, const char *const names[6], struct perr *e);

#endif
