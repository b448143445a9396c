/* cli_json.h — the JSON elmctl writes on stdout (cli_json.c): strings escaped to valid UTF-8,
 * and an object writer for flat objects of strings, numbers and booleans. Nesting is written
 * by the caller between cli_jw_key() and the next member (an array, an inner object). */
#ifndef ELM_CLI_JSON_H
#define ELM_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cli_jw {
    bool first; /* no member written yet in the current object */
};

/* Writes s[0..len) as a JSON string; bytes that are not valid UTF-8 become U+FFFD, so a token
 * that ends inside a multi-byte character still gives a line any JSON parser reads. */
void cli_json_str(const char *s, size_t len);
void cli_json_strz(const char *s);
/* The length of s[0..len) without a multi-byte character cut at its end (whose lead byte
 * announces more bytes than follow): what can be written now when more text will follow. */
size_t cli_utf8_complete(const char *s, size_t len);

void cli_jw_open(struct cli_jw *j);  /* "{" */
void cli_jw_close(struct cli_jw *j); /* "}" */
void cli_jw_key(struct cli_jw *j, const char *k);
void cli_jw_str(struct cli_jw *j, const char *k, const char *v);
void cli_jw_strn(struct cli_jw *j, const char *k, const char *v, size_t len);
void cli_jw_u64(struct cli_jw *j, const char *k, uint64_t v);
void cli_jw_i64(struct cli_jw *j, const char *k, int64_t v);
void cli_jw_f64(struct cli_jw *j, const char *k, double v);
void cli_jw_bool(struct cli_jw *j, const char *k, bool v);

#endif
