/* json.h — a small JSON reader for test fixtures (the zoo's .ref.json files) and for checking
 * the JSON that elm's tools print. Whole-document parse into a tree; not for untrusted input
 * larger than memory. */
#ifndef ELM_TEST_JSON_H
#define ELM_TEST_JSON_H

#include <stdbool.h>
#include <stddef.h>

enum json_kind { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

struct json {
    enum json_kind kind;
    double num;          /* JSON_NUM, JSON_BOOL (0/1) */
    char *str;           /* JSON_STR (NUL-terminated, escapes decoded) */
    size_t str_len;
    struct json **items; /* JSON_ARR elements, JSON_OBJ values */
    char **keys;         /* JSON_OBJ keys */
    size_t n;
};

/* Parses text (NUL-terminated). NULL on a syntax error. Free with json_free. */
struct json *json_parse(const char *text);
void json_free(struct json *j);

/* Member of an object (NULL when absent or j is not an object). */
const struct json *json_get(const struct json *j, const char *key);
/* Element of an array (NULL when out of range or not an array). */
const struct json *json_at(const struct json *j, size_t i);

/* JSON lines (one document per line, as `elmctl generate --json` streams them): a JSON_ARR of
 * the documents, or NULL when a line does not parse or there is none. */
struct json *json_parse_lines(const char *text);
/* Whether text is a whole `elmctl generate --json` stream: n_gen lines {"token":ID,"text":S}
 * (n_gen < 0: any number), then {"done":true,"reason":reason,"n_prompt":N >= 1,"n_gen":n_gen,
 * "t_first_ns":N,"t_total_ns":N}. The tokens' texts, concatenated, go to buf (cap bytes). */
bool json_is_stream(const char *text, const char *reason, int n_gen, char *buf, size_t cap);
/* Whether text is elmctl's error document: one object with a non-empty string "error" that
 * contains needle (NULL: any) and "exit_code" equal to exit_code. */
bool json_is_error(const char *text, int exit_code, const char *needle);

#endif
