/* json.h — the tests' JSON helpers, over jansson (the library elm uses for every JSON it reads
 * or writes): parsing the zoo's .ref.json files and the JSON elm's tools print, a few accessors
 * that make absent members read as NaN / NULL instead of crashing an assertion, and checks of
 * elmctl's stream and error documents. */
#ifndef ELM_TEST_JSON_H
#define ELM_TEST_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Parses text (NUL-terminated) as one document. NULL on a syntax error. json_decref() it. */
json_t *elm_test_json(const char *text);
/* JSON lines (one document per line, as `elmctl generate --json` and elm-bench --json print
 * them): an array of the documents, or NULL when a line does not parse or there is none. */
json_t *elm_test_json_lines(const char *text);

/* The number j[key] / arr[i] (integer or real), NaN when absent or not a number. */
double elm_test_jnum(const json_t *j, const char *key);
double elm_test_jat(const json_t *arr, size_t i);
/* The string j[key], NULL when absent or not a string. Borrowed from j. */
const char *elm_test_jstr(const json_t *j, const char *key);

/* Whether text is a whole `elmctl generate --json` stream: n_gen lines {"token":ID,"text":S}
 * (n_gen < 0: any number), then {"done":true,"reason":reason,"n_prompt":N >= 1,"n_gen":n_gen,
 * "t_first_ns":N,"t_total_ns":N}. The tokens' texts, concatenated, go to buf (cap bytes). */
bool elm_test_json_is_stream(const char *text, const char *reason, int n_gen, char *buf,
                             size_t cap);
/* Whether text is elmctl's error document: one object with a non-empty string "error" that
 * contains needle (NULL: any) and "exit_code" equal to exit_code. */
bool elm_test_json_is_error(const char *text, int exit_code, const char *needle);

#endif
