/* fuzz_tok_spm.c — the SentencePiece tokenizer (engine/vocab_spm.c) on arbitrary text, with the
 * llama vocabulary of the shared test data. Input: one flags byte (fuzz_util.h), then the text.
 */
#include "engine/vocab.h"
#include "fuzz/fuzz_util.h"

static struct elm_vocab *vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    vocab = elm_fuzz_vocab_load("vocab/ggml-vocab-llama-spm.gguf", NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0)
        elm_fuzz_tokenize(vocab, data + 1, size - 1, data[0]);
    return 0;
}
