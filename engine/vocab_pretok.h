/* vocab_pretok.h — the pre-tokenizers of byte-level BPE vocabularies: the regex lists that
 * tokenizer.ggml.pre names, emulated by hand, which cut a text fragment into the words that
 * vocab_bpe.c then merges. Not a public header.
 */
#ifndef ELM_VOCAB_PRETOK_H
#define ELM_VOCAB_PRETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct elm_pretok; /* one entry of the name table in vocab_pretok.c; static, never freed */

/* The pre-tokenizer tokenizer.ggml.pre = name[0..len) selects, or NULL when elm does not know
 * the name. name NULL selects llama.cpp's default list (the key is missing). */
const struct elm_pretok *elm_pretok_find(const char *name, size_t len);

/* The name of the i-th pre-tokenizer elm knows (i from 0), or NULL past the last: lets the fuzz
 * targets (fuzz/) and tests drive every one without a second copy of the list. */
const char *elm_pretok_name(size_t i);

/* True when a word that is itself a token is emitted whole, without merging (llama.cpp's
 * ignore_merges: Llama 3 and Tekken). */
bool elm_pretok_ignores_merges(const struct elm_pretok *p);

/* True when BOS is added by default (no tokenizer.ggml.add_bos_token key): Llama 3, Tekken. */
bool elm_pretok_adds_bos(const struct elm_pretok *p);

/* Cuts the n code points cp[] (with their elm_unicode_flags in fl[]) into words. On success
 * *lens is a malloc'ed array (the caller frees it) of *n_words word lengths in code points, in
 * text order, summing to n. Returns 0 or -ENOMEM. */
int elm_pretok_split(const struct elm_pretok *p, const uint32_t *cp, const uint8_t *fl, size_t n,
                     uint32_t **lens, size_t *n_words);

#endif
