/* quantize.h — writing a quantized copy of a GGUF model (elmctl quantize).
 *
 * Presets follow the widely used llama.cpp presets so users get the files they expect: every
 * 2-D weight gets the preset's base type, except that the output matrix (token_embd when the
 * output is tied) gets Q6_K (Q8_0 when its rows are not a multiple of 256; unchanged for Q8_0
 * and float presets), and the mixes follow llama.cpp's per-tensor rules (llama_tensor_get_type):
 * K_M gives attention-V and FFN-down of some layers Q6_K; Q3_K_M gives attention-V Q5_K in
 * layers 0-1 (else Q4_K), attention-output and FFN-down Q4_K (Q5_K in the first 16th of the
 * layers); Q2_K gives attention-V, attention-output and FFN-down Q3_K; IQ4_NL/IQ4_XS give
 * FFN-down of the first 8th of the layers Q5_K without an importance matrix; with one, Q4_0 and
 * Q5_0 give those Q4_1/Q5_1. Attention-V gets Q4_K (Q2_K) or Q5_K (IQ4) when 4 or more heads
 * share a KV head. --pure uses the base type everywhere. A tensor whose rows are not a multiple
 * of its type's block falls back like llama.cpp (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0,
 * Q2_K/Q3_K/IQ4_XS → IQ4_NL), and a tensor whose rows fit no block of its type, like every 1-D
 * tensor, is kept in F32, as are the weights llama.cpp never quantizes (norms, MoE gates, BERT's
 * position and token-type embeddings, ...). All metadata is kept; general.quantization_version
 * and general.file_type are set last, and tensors are written by block number, then name, as
 * llama-quantize does: the zoo's quantized files are reproduced byte for byte.
 */
#ifndef ELM_QUANTIZE_H
#define ELM_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct elm_quantize_stats {
    int n_quantized;   /* tensors written in a quantized type */
    int n_kept;        /* tensors kept in F32 */
    uint64_t bytes_in;
    uint64_t bytes_out;
};

/* "q8_0 q4_0 ..." — the accepted TYPE names, for help texts. */
const char *elm_quantize_presets(void);
/* Whether preset names one of them (case-insensitive): a front end tells a wrong TYPE (a usage
 * error) from a file that cannot be quantized before it starts. */
bool elm_quantize_preset_known(const char *preset);

/* The preset name of a general.file_type value ("q4_k_m"), or NULL for one elm does not write. */
const char *elm_quantize_file_type_name(uint32_t file_type);

/* Quantizes IN (F32/F16/BF16 weights) into OUT with the named preset (case-insensitive).
 * n_threads <= 0: all CPUs. Returns 0, -errno, ELM_EFORMAT (IN invalid), ELM_EUNSUPPORTED
 * (unknown preset, or IN already quantized) with a message in err. */
int elm_quantize_file(const char *in, const char *out, const char *preset, bool pure,
                      int n_threads, struct elm_quantize_stats *st, char *err, size_t errlen);

/* The same with llama.cpp's importance matrix file (imatrix_path; NULL: none), as
 * `llama-quantize --imatrix`: every tensor with an entry of its name is quantized with those
 * column weights by the types that use them (kernels.h, elm_quantize_row_imatrix), the rules
 * that depend on having a matrix apply, and the quantize.imatrix.* keys record it (the path as
 * given, so the same path gives llama.cpp's bytes). An entry whose size does not match its
 * tensor is an error (ELM_EFORMAT), except for token_embd, as in llama.cpp. */
int elm_quantize_file_imatrix(const char *in, const char *out, const char *preset, bool pure,
                              const char *imatrix_path, int n_threads,
                              struct elm_quantize_stats *st, char *err, size_t errlen);

#endif
