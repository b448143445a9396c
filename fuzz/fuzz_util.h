/* fuzz_util.h — what the libFuzzer targets of fuzz/ share: finding the shared test data and
 * loading a vocabulary from it once per process.
 *
 * Every target is one fuzz_<name>.c defining LLVMFuzzerTestOneInput (and, when it needs data
 * loaded once, LLVMFuzzerInitialize). Nothing here may exit on bad input: only a missing data
 * file is fatal, and it is fatal at start-up, so a run never "passes" without its vocabulary.
 */
#ifndef ELM_FUZZ_UTIL_H
#define ELM_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct elm_vocab;

/* ELM_MODELS_DIR, else the checkout's ../shared/models (compiled in). Static string. */
const char *elm_fuzz_models_dir(void);

/* Loads the vocabulary of ELM_MODELS_DIR/rel. With pre != NULL the file's tokenizer.ggml.pre is
 * replaced by pre first (rewritten through engine/gguf_writer into a temporary file), so one
 * byte-level BPE vocabulary can drive every pre-tokenizer. Exits the process with a message when
 * the file is missing or does not load: a fuzz run without its data would test nothing. */
struct elm_vocab *elm_fuzz_vocab_load(const char *rel, const char *pre);

/* Tokenizes text with both settings of parse_special (chosen by flags bit 0, add_special by bit 1),
 * then turns every id back into text, piece by piece and as a whole. Returns nothing: the
 * sanitizers are the oracle, plus the checks inside (an id outside the vocabulary aborts). */
void elm_fuzz_tokenize(const struct elm_vocab *v, const uint8_t *text, size_t len, uint8_t flags);

#endif
