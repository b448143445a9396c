/* quantize.h — writing a quantized copy of a GGUF model (elmctl quantize).
 *
 * Presets follow the widely used llama.cpp presets so users get the files they expect: every
 * 2-D weight gets the preset's base type, except that the output matrix (token_embd when the
 * output is tied) gets Q6_K (Q8_0 when its rows are not a multiple of 256; unchanged for Q8_0
 * and float presets), and the K_M mixes give attention-V and FFN-down of some layers Q6_K.
 * --pure uses the base type everywhere. A K-quant tensor whose rows are not a multiple of 256
 * falls back like llama.cpp (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, Q2_K/Q3_K → Q4_0), and a
 * tensor whose rows fit no block of its type, like every 1-D tensor, is kept in F32. All
 * metadata is kept; general.file_type and general.quantization_version are set.
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

#endif
