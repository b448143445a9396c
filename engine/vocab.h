/* vocab.h — tokenizers: SentencePiece-style BPE ("llama", with byte fallback), GPT-2
 * byte-level BPE ("gpt2", with the pre-tokenizers of engine/vocab_pretok.c: Llama 3, Qwen2,
 * Tekken, SmolLM, StarCoder, Falcon, MPT, DBRX, DeepSeek, GPT-2...) and BERT WordPiece ("bert"),
 * loaded from a GGUF file's tokenizer.ggml.* keys.
 *
 * Special tokens: CONTROL and UNKNOWN tokens are matched in the text only when parse_special
 * is true, so that user text such as "<s>" or "[INST]" stays ordinary text by default and
 * cannot inject control tokens. USER_DEFINED tokens (plain text the vocabulary keeps whole,
 * such as "ü" in deepseek) are always split out, as llama.cpp does.
 */
#ifndef ELM_VOCAB_H
#define ELM_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"
#include "engine/vocab_types.h" /* enum elm_token_type, enum elm_vocab_kind */

struct elm_vocab; /* opaque, immutable after load: safe to share between threads */

/* Builds the vocabulary from g's tokenizer keys (copies everything it needs: g may be destroyed
 * afterwards). On failure returns ELM_EFORMAT / ELM_EUNSUPPORTED / -ENOMEM with a message in err;
 * *out untouched. */
int elm_vocab_load(const struct elm_gguf *g, struct elm_vocab **out, char *err, size_t errlen);
void elm_vocab_destroy(struct elm_vocab **v); /* NULL-safe, nulls *v */

int32_t elm_vocab_size(const struct elm_vocab *v);
enum elm_vocab_kind elm_vocab_kind(const struct elm_vocab *v);
int32_t elm_vocab_bos(const struct elm_vocab *v); /* -1 when none */
int32_t elm_vocab_eos(const struct elm_vocab *v); /* -1 when none */
bool elm_vocab_add_bos(const struct elm_vocab *v); /* tokenizer.ggml.add_bos_token or default */
bool elm_vocab_add_eos(const struct elm_vocab *v);
enum elm_token_type elm_vocab_type(const struct elm_vocab *v, int32_t id); /* id must be valid */
int32_t elm_vocab_eot(const struct elm_vocab *v); /* -1 when none (key only) */
int32_t elm_vocab_unk(const struct elm_vocab *v); /* -1 when none */
int32_t elm_vocab_pad(const struct elm_vocab *v); /* -1 when none */
/* True for tokens that end a generation: EOS, EOT, EOM, FIM pad/repo/separator and the chat
 * turn ends llama.cpp recognises by text (<|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>,
 * <|endoftext|>...). The one definition, used by every generation path. */
bool elm_vocab_is_eog(const struct elm_vocab *v, int32_t id);
/* The end-of-generation ids (*n of them), in the vocabulary's memory. */
const int32_t *elm_vocab_eog(const struct elm_vocab *v, int *n);
/* The stored token text (e.g. "▁Hello", "<0x0A>", "Ġworld"); not NUL-terminated. */
const char *elm_vocab_text(const struct elm_vocab *v, int32_t id, size_t *len);

/* Id of the token whose stored text is exactly text[0..len) (e.g. "<|im_end|>", "▁Hello"), or
 * -1 when there is none. */
int32_t elm_vocab_find(const struct elm_vocab *v, const char *text, size_t len);

/* The most input bytes one token can stand for, so that a text of len bytes has at least
 * len / this tokens: a bound on a prompt's tokens that costs nothing (elmd refuses a prompt
 * that cannot fit the context before tokenizing it). Every token consumes at most its own
 * text's bytes of input (SPM's "▁" and GPT-2's byte map only lengthen the text), provided no
 * input vanishes: 0 (no bound) for WordPiece (a whole unknown word is one token, control
 * characters vanish), for a vocabulary with a byte that has no token (it is dropped), and
 * when a token that can match (user-defined ones; with parse_special, control ones too)
 * swallows the white space around it. */
size_t elm_vocab_max_bytes_per_token(const struct elm_vocab *v, bool parse_special);

/* Tokenizes len bytes of text. add_special adds BOS/EOS as the vocab asks; parse_special lets
 * CONTROL/USER_DEFINED token text in the input become those tokens. Writes at most cap ids to
 * out and returns the total number of tokens (which may exceed cap: call again with a bigger
 * buffer), or a negative error. */
int elm_tokenize(const struct elm_vocab *v, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t *out, int cap);

/* The same, all of it: *out is a malloc'ed array of *n ids (the caller frees it; not NULL on
 * success, even for no tokens). add_special false is "no BOS/EOS" (a continued conversation,
 * `elmctl tokenize --no-bos`). Returns 0 or a negative error; *out and *n written on success. */
int elm_tokenize_alloc(const struct elm_vocab *v, const char *text, size_t len, bool add_special,
                       bool parse_special, int32_t **out, int32_t *n);

/* The bytes one token contributes to the output text: byte tokens become their byte, "▁" a
 * space, GPT-2's byte map is undone. CONTROL/UNKNOWN tokens render as nothing unless special.
 * Writes at most cap bytes and returns the piece's full length, or a negative error
 * (ELM_ETOKEN for a bad id). */
int elm_token_to_piece(const struct elm_vocab *v, int32_t id, bool special, char *buf, int cap);

/* Decodes a whole sequence; remove_leading_space drops the SPM prefix space of the first
 * piece (as when text was tokenized with the space prefix). Returns total length like above. */
int elm_detokenize(const struct elm_vocab *v, const int32_t *ids, int n, bool special,
                   bool remove_leading_space, char *buf, int cap);

#endif
