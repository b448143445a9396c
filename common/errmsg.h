/* errmsg.h — the one way elm functions that take a caller's message buffer fill it. */
#ifndef ELM_ERRMSG_H
#define ELM_ERRMSG_H

#include <stddef.h>

/* Formats a message into err (errlen bytes; nothing when errlen is 0) and returns code, so a
 * failing path reads `return elm_errf(err, errlen, ELM_EFORMAT, "tensor '%s'...", name);`. */
int elm_errf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
