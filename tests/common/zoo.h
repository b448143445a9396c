/* zoo.h — checking elm against the zoo's reference outputs (the .ref.json files in
 * shared/models/zoo, computed by llama.cpp). Used by the engine tests (F32 files) and the kernel
 * tests (every quantized file under every kernel variant). */
#ifndef ELM_TEST_ZOO_H
#define ELM_TEST_ZOO_H

#include <stdbool.h>

#include "kernels/kernels.h"

#define ZOO_MAX_PROMPTS 8

struct zoo_report {
    int prompts;       /* prompts checked */
    int ids_compared;  /* greedy ids compared (all equal, or the check failed) */
    int ids_expected;  /* ids the reference asks to compare: those before its first margin
                        * below the cut (from the reference alone, not from elm) */
    int ids_reference; /* greedy ids in the reference */
    int ids_prompt[ZOO_MAX_PROMPTS]; /* ids compared, per prompt */
    int positions;                   /* positions whose top-10 probabilities were compared */
    double max_dp;                   /* largest |p_elm - p_ref| over the compared top-10 entries */
    char failure[512];               /* empty when everything held */
};

/* Runs every prompt of zoo/<name>.ref.json through zoo/<name>.gguf with the given kernel
 * variant (NULL: the active one) and KV cache type. The prompt ids must equal the reference;
 * greedy ids must equal it up to the first position whose recorded margin is below
 * margin_cut; the top-10 probabilities must agree within p_tol. Returns 0 when all held,
 * 1 when a check failed (rep->failure says which), -1 when the files are missing. */
int zoo_check(const char *name, const char *kernel, enum elm_type kv_type, double margin_cut,
              double p_tol, struct zoo_report *rep);

/* The same against another reference of that file: ref is its path under the models folder
 * (e.g. "zoo/kv/zoo-llama.kv-f16.ref.json", made with an F16 KV cache; zoo/kv/README.md). */
int zoo_check_ref(const char *name, const char *ref, const char *kernel, enum elm_type kv_type,
                  double margin_cut, double p_tol, struct zoo_report *rep);

/* The same with both files named by their paths under the models folder (e.g. the evalref
 * files, "evalref/quant/zoo-llama-iq4_nl.gguf" and its ".ref.json", in the zoo's format). */
int zoo_check_paths(const char *gguf, const char *ref, const char *kernel, enum elm_type kv_type,
                    double margin_cut, double p_tol, struct zoo_report *rep);

#endif
