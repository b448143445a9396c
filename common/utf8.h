/* utf8.h — making bytes safe to send as JSON text (utf8.c). A model's tokens are bytes: a token
 * may end inside a multi-byte character (byte-level vocabularies split them), and a file's
 * strings may hold anything. JSON needs valid UTF-8, so elmctl --json and elm-httpd clean what
 * they write here, one rule for both. */
#ifndef ELM_COMMON_UTF8_H
#define ELM_COMMON_UTF8_H

#include <stddef.h>

/* s[0..len) with every byte that does not start a valid UTF-8 sequence replaced by U+FFFD, in a
 * malloc'ed NUL-terminated buffer of *out_len bytes (at most 3 * len). NULL on OOM. Caller
 * frees. */
char *elm_utf8_clean(const char *s, size_t len, size_t *out_len);

/* The length of s[0..len) without a multi-byte character cut at its end (whose lead byte
 * announces more bytes than follow): what can be written now when more text will follow. */
size_t elm_utf8_complete(const char *s, size_t len);

#endif
