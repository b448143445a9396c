/* vocab_spm.h — the SentencePiece-style tokenizer ("llama" vocabularies) and the SPM-only parts
 * of loading and decoding, called by vocab.c. Not a public header. Text given here holds no
 * special tokens: vocab.c splits them out first.
 */
#ifndef ELM_VOCAB_SPM_H
#define ELM_VOCAB_SPM_H

#include "engine/vocab_table.h"

/* SentencePiece-style: escapes spaces to U+2581, prepends one when add_prefix. */
int elm_spm_tokenize(const struct elm_vocab *v, const char *text, size_t len, bool add_prefix,
                     struct elm_ids *out);

/* Fills spm_byte[] once the token table exists. */
void elm_spm_init_bytes(struct elm_vocab *v);

/* The byte a "<0xNN>" byte-fallback token stands for, or -1 when the text is not of that form. */
int elm_spm_byte_value(const char *s, size_t len);

/* Turns a NORMAL SPM token's "▁" into spaces: writes at most len bytes to out, returns count. */
size_t elm_spm_unescape(const char *text, size_t len, char *out);

#endif
