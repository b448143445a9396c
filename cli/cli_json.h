/* cli_json.h — the JSON elmctl writes on stdout, built with jansson (cli_json.c). Documents are
 * json_t trees written as one compact line; text from a model or a file goes through
 * cli_json_text(), which turns bytes that are not valid UTF-8 into U+FFFD (jansson refuses such
 * strings), so a token that ends inside a multi-byte character still gives a line any JSON
 * parser reads. */
#ifndef ELM_CLI_JSON_H
#define ELM_CLI_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A JSON string of s[0..len) with invalid UTF-8 replaced. New reference; NULL only on OOM. */
json_t *cli_json_text(const char *s, size_t len);
/* A number, or null when v is not finite (JSON has no inf or nan). New reference. */
json_t *cli_json_real(double v);
/* obj[key] = s[0..len) as cli_json_text(); the key goes through the same replacement. */
void cli_json_set_text(json_t *obj, const char *key, size_t key_len, const char *s, size_t len);
/* Writes v as one compact line on stdout, flushes, and releases the caller's reference. */
void cli_json_print(json_t *v);

#endif
