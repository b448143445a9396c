/* vocab_types.h — the vocabulary's enums: the kinds of tokenizer and the GGUF token types. Their
 * own header so that the public engine/vocab.h and the tokenizers' internal table
 * (engine/vocab_table.h) can both use them without including each other.
 */
#ifndef ELM_VOCAB_TYPES_H
#define ELM_VOCAB_TYPES_H

/* GGUF token types (tokenizer.ggml.token_type) */
enum elm_token_type {
    ELM_TOKEN_UNDEFINED = 0,
    ELM_TOKEN_NORMAL = 1,
    ELM_TOKEN_UNKNOWN = 2,
    ELM_TOKEN_CONTROL = 3,
    ELM_TOKEN_USER_DEFINED = 4,
    ELM_TOKEN_UNUSED = 5,
    ELM_TOKEN_BYTE = 6,
};

enum elm_vocab_kind {
    ELM_VOCAB_SPM, /* "llama": SentencePiece-style BPE */
    ELM_VOCAB_BPE, /* "gpt2": byte-level BPE */
    ELM_VOCAB_WPM, /* "bert": WordPiece */
};

#endif
