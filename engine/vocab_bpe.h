/* vocab_bpe.h — the GPT-2 style byte-level BPE tokenizer ("gpt2" vocabularies) and its merge
 * table, called by vocab.c. Not a public header. Text given here holds no special tokens:
 * vocab.c splits them out first.
 */
#ifndef ELM_VOCAB_BPE_H
#define ELM_VOCAB_BPE_H

#include "engine/gguf.h"
#include "engine/vocab_table.h"

/* Reads tokenizer.ggml.merges (required for gpt2 vocabularies: both halves of every entry must
 * be tokens) into the merge table. */
int elm_bpe_load_merges(const struct elm_gguf *g, struct elm_vocab *v, char *err, size_t errlen);

/* GPT-2 byte-level BPE with the vocab's pre-tokenizer. */
int elm_bpe_tokenize(const struct elm_vocab *v, const char *text, size_t len, struct elm_ids *out);

/* Undoes GPT-2's byte-to-unicode map on a NORMAL token's text: appends the bytes to out (which
 * has room for len bytes; the result is never longer) and returns their count. Code points
 * outside the map are copied through as UTF-8. */
size_t elm_bpe_unmap(const char *text, size_t len, char *out);

/* Whether each of the 256 bytes, mapped, is a token: then no input byte is ever dropped. */
bool elm_bpe_covers_bytes(const struct elm_vocab *v);

#endif
