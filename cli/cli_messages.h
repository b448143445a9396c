/* cli_messages.h — the conversation `elmctl chat` reads from stdin (cli_messages.c): a JSON
 * array of {"role":S,"content":S} objects, or the same objects as JSON lines. */
#ifndef ELM_CLI_MESSAGES_H
#define ELM_CLI_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>

#define CLI_MSG_MAX      4096 /* messages per conversation (the chat request's bound) */
#define CLI_MSG_MAX_ROLE 64   /* bytes of a role */

struct cli_msg {
    char *role, *content; /* malloc'ed, NUL-terminated */
};

/* Parses text[0..len). On success *out (caller frees with cli_msgs_free) holds *n >= 1
 * messages; otherwise -EINVAL with what is wrong, and where, in err. */
int cli_msgs_read(const char *text, size_t len, struct cli_msg **out, int *n, char *err,
                  size_t errlen);
/* Appends a copy of role/content to the *n messages of *m. 0, -ENOMEM or -E2BIG. */
int cli_msgs_push(struct cli_msg **m, int *n, const char *role, const char *content);
void cli_msgs_free(struct cli_msg *m, int n); /* NULL-safe */

#endif
