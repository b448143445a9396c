/* fuzz_tok_bpe.c — the byte-level BPE tokenizer (engine/vocab_bpe.c) under every pre-tokenizer
 * elm knows (engine/vocab_pretok.c), on arbitrary text. The GPT-2 vocabulary of the shared test
 * data is loaded once per pre-tokenizer, its tokenizer.ggml.pre rewritten, so a pre-tokenizer
 * added to the table is fuzzed without touching this file.
 * Input: one flags byte (fuzz_util.h), one byte choosing the pre-tokenizer, then the text.
 */
#include "engine/vocab.h"
#include "engine/vocab_pretok.h"
#include "fuzz/fuzz_util.h"

#define MAX_PRE 64

static struct elm_vocab *vocab[MAX_PRE];
static unsigned n_vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *name;
    while (n_vocab < MAX_PRE && (name = elm_pretok_name(n_vocab)) != NULL)
        vocab[n_vocab++] = elm_fuzz_vocab_load("vocab/ggml-vocab-gpt-2.gguf", name);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1)
        elm_fuzz_tokenize(vocab[data[1] % n_vocab], data + 2, size - 2, data[0]);
    return 0;
}
