/* cli_messages.c — reading a conversation for `elmctl chat` from JSON (cli_messages.h), with
 * jansson, the JSON library elm uses everywhere: an array of messages, or message objects one
 * after another (JSON lines). Every count and length is bounded, so a malformed or hostile input
 * is an error message, never a crash; members other than role and content are ignored. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_messages.h"

void cli_msgs_free(struct cli_msg *m, int n)
{
    for (int i = 0; m && i < n; i++) {
        free(m[i].role);
        free(m[i].content);
    }
    free(m);
}

int cli_msgs_push(struct cli_msg **m, int *n, const char *role, const char *content)
{
    if (*n >= CLI_MSG_MAX)
        return -E2BIG;
    struct cli_msg *g = realloc(*m, ((size_t)*n + 1) * sizeof *g);
    if (!g)
        return -ENOMEM;
    *m = g;
    g[*n].role = strdup(role);
    g[*n].content = strdup(content);
    if (!g[*n].role || !g[*n].content) {
        free(g[*n].role);
        free(g[*n].content);
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

/* Appends message object o; false with why in err. */
static bool add(const json_t *o, struct cli_msg **m, int *n, char *err, size_t errlen)
{
    const json_t *role = json_object_get(o, "role"), *content = json_object_get(o, "content");
    if (!json_is_object(o) || !json_is_string(role) || !json_is_string(content)) {
        snprintf(err, errlen,
                 "message %d: a message needs a string \"role\" and a string "
                 "\"content\"",
                 *n + 1);
        return false;
    }
    size_t rl = json_string_length(role);
    if (rl == 0 || rl > CLI_MSG_MAX_ROLE) {
        snprintf(err, errlen, "message %d: a role must have 1 to %d bytes", *n + 1,
                 CLI_MSG_MAX_ROLE);
        return false;
    }
    int rc = cli_msgs_push(m, n, json_string_value(role), json_string_value(content));
    if (rc)
        snprintf(err, errlen, "%s", rc == -E2BIG ? "too many messages" : "out of memory");
    return rc == 0;
}

static bool blank(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p == end;
}

int cli_msgs_read(const char *text, size_t len, struct cli_msg **out, int *n, char *err,
                  size_t errlen)
{
    struct cli_msg *m = NULL;
    int k = 0;
    bool ok = true;
    size_t off = 0;
    snprintf(err, errlen, "no messages");
    while (ok && !blank(text + off, text + len)) {
        json_error_t e;
        json_t *doc = json_loadb(text + off, len - off, JSON_DISABLE_EOF_CHECK, &e);
        if (!doc) {
            snprintf(err, errlen, "%s at byte %zu", e.text, off + (size_t)e.position);
            ok = false;
            break;
        }
        if (json_is_array(doc)) { /* the whole input is one array */
            ok = off == 0 && json_array_size(doc) <= CLI_MSG_MAX &&
                 blank(text + e.position, text + len);
            if (!ok)
                snprintf(err, errlen,
                         off                                  ? "an array after messages"
                         : json_array_size(doc) > CLI_MSG_MAX ? "too many messages"
                                                              : "trailing text after the array");
            size_t i;
            json_t *v;
            json_array_foreach(doc, i, v) if (ok) ok = add(v, &m, &k, err, errlen);
        } else {
            ok = add(doc, &m, &k, err, errlen);
        }
        off += (size_t)e.position;
        json_decref(doc);
    }
    if (!ok || !k) {
        cli_msgs_free(m, k);
        return -EINVAL;
    }
    *out = m;
    *n = k;
    return 0;
}
