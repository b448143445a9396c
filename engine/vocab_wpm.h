/* vocab_wpm.h — BERT's WordPiece tokenizer ("bert" vocabularies), called by vocab.c. Not a
 * public header. Text given here holds no special tokens: vocab.c splits them out first.
 */
#ifndef ELM_VOCAB_WPM_H
#define ELM_VOCAB_WPM_H

#include "engine/vocab_table.h"

/* WordPiece: normalise, split into words, cut each word into the longest tokens from the left;
 * a word that cannot be cut becomes the unknown token. */
int elm_wpm_tokenize(const struct elm_vocab *v, const char *text, size_t len, struct elm_ids *out);

#endif
