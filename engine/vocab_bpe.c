/* vocab_bpe.c — the GPT-2 style byte-level BPE tokenizer ("gpt2" vocabularies: GPT-2 and the
 * DeepSeek coder/LLM models), matching llama.cpp's BPE tokenizer token for token.
 *
 * Three steps per text fragment:
 *  1. Pre-tokenize: cut the text into words with the regex list that tokenizer.ggml.pre names.
 *     The regexes are emulated by hand (no regex library); each stage refines the pieces of the
 *     previous one, a match and the text between matches both becoming pieces, which is how
 *     llama.cpp applies a list of regexes.
 *  2. Map every byte of a word to a printable code point (GPT-2's bytes_to_unicode), so that
 *     the merge table only ever sees printable text.
 *  3. Merge: repeatedly join the neighbouring pair with the lowest merge rank (leftmost on a
 *     tie) until no pair is a merge, then look the pieces up. A doubly linked list and a heap
 *     keep this O(n log n) per word.
 *
 * The merge table, (left id, right id) -> rank, is loaded and kept here too. Keying it by ids
 * rather than by text is exact: both halves of every merge must be tokens, so a piece that is
 * no token can never take part in a merge anyway.
 *
 * Invalid UTF-8 is decoded as U+FFFD (see unicode.c), so its bytes are tokenized as the three
 * bytes of U+FFFD, exactly as llama.cpp does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"
#include "elm/status.h"
#include "engine/unicode.h"
#include "engine/vocab_bpe.h"

/* ============================================================================================
 * GPT-2 byte <-> code point map
 * ============================================================================================ */

/* The printable Latin-1 bytes stand for themselves; the 68 others (0x00-0x20, 0x7F-0xA0, 0xAD)
 * are numbered in byte order from U+0100. Computed rather than tabled: no initialisation, so
 * no thread-safety question. */
static uint32_t byte_to_cp(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    if (b <= 0x20)
        return 0x100u + b;
    if (b <= 0xA0)
        return 0x100u + 33 + (b - 0x7Fu);
    return 0x100u + 67; /* 0xAD */
}

/* Inverse of byte_to_cp, or -1 for a code point outside the map. */
static int cp_to_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 0x100 || cp > 0x100 + 67)
        return -1;
    uint32_t n = cp - 0x100;
    if (n < 33)
        return (int)n;
    if (n < 67)
        return (int)(0x7F + n - 33);
    return 0xAD;
}

size_t elm_bpe_unmap(const char *text, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        uint32_t cp = elm_utf8_decode(text + i, len - i, &adv);
        int b = cp_to_byte(cp);
        if (b >= 0) {
            out[o++] = (char)b;
        } else {
            memcpy(out + o, text + i, adv); /* not a mapped byte: keep it as it is */
            o += adv;
        }
        i += adv;
    }
    return o;
}

/* ============================================================================================
 * Merge table: (left id, right id) -> rank
 * ============================================================================================ */

#define KEY_MERGES "tokenizer.ggml.merges"

static uint32_t hash_u64(uint64_t k)
{
    k ^= k >> 33; /* a 64-bit finaliser: ids are small and dense, FNV would cluster them */
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return (uint32_t)k;
}

static int32_t merge_rank_of(const struct elm_vocab *v, int32_t left, int32_t right)
{
    if (!v->merge_keys || left < 0 || right < 0)
        return -1;
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t i = hash_u64(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        if (v->merge_keys[i] == key)
            return v->merge_rank[i];
        if (v->merge_keys[i] == UINT64_MAX)
            return -1;
    }
}

/* Keeps the first rank of a pair listed twice, as llama.cpp does. */
static void merge_insert(struct elm_vocab *v, int32_t left, int32_t right, int32_t rank)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t i = hash_u64(key) & v->merge_mask;
    for (; v->merge_keys[i] != UINT64_MAX; i = (i + 1) & v->merge_mask)
        if (v->merge_keys[i] == key)
            return;
    v->merge_keys[i] = key;
    v->merge_rank[i] = rank;
}

/* tokenizer.ggml.merges: "left right" strings, rank = position. Both halves must be tokens. */
int elm_bpe_load_merges(const struct elm_gguf *g, struct elm_vocab *v, char *err, size_t errlen)
{
    uint64_t n;
    const void *unused;
    int rc = elm_gguf_get_arr(g, KEY_MERGES, ELM_GGUF_STRING, &n, &unused);
    if (rc == -ENOENT)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: missing (required by gpt2 vocabularies)",
                        KEY_MERGES);
    if (rc)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: expected an array of strings", KEY_MERGES);
    if (n > ELM_VOCAB_MAX_TOKENS)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: %llu merges", KEY_MERGES,
                        (unsigned long long)n);
    struct elm_gguf_str *strs = malloc((n ? n : 1) * sizeof *strs);
    if (!strs)
        return -ENOMEM;
    rc = elm_gguf_get_str_arr(g, KEY_MERGES, strs, n);
    if (rc) {
        free(strs);
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: unreadable strings", KEY_MERGES);
    }
    uint32_t size = elm_vocab_table_size(n);
    v->merge_mask = size - 1;
    v->merge_keys = malloc(size * sizeof *v->merge_keys);
    v->merge_rank = malloc(size * sizeof *v->merge_rank);
    if (!v->merge_keys || !v->merge_rank) {
        free(strs);
        return -ENOMEM;
    }
    memset(v->merge_keys, 0xFF, size * sizeof *v->merge_keys);
    for (uint64_t i = 0; i < n; i++) {
        const char *s = strs[i].ptr;
        size_t len = strs[i].len;
        /* split at the first space after the first byte: a token may itself be " " */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        int32_t l = sp ? elm_vocab_lookup(v, s, (size_t)(sp - s)) : -1;
        int32_t r = sp ? elm_vocab_lookup(v, sp + 1, len - (size_t)(sp - s) - 1) : -1;
        if (l < 0 || r < 0) {
            free(strs);
            return elm_errf(err, errlen, ELM_EFORMAT, "%s[%llu]: '%.*s' is not two tokens",
                            KEY_MERGES, (unsigned long long)i, (int)(len > 64 ? 64 : len), s);
        }
        merge_insert(v, l, r, (int32_t)i);
    }
    free(strs);
    return 0;
}

/* ============================================================================================
 * Pre-tokenizer
 * ============================================================================================ */

/* The decoded fragment: code points and their category flags. */
struct pt_text {
    const uint32_t *cp;
    const uint8_t *fl;
};

/* Piece lengths in code points, in text order. */
struct spans {
    uint32_t *len;
    size_t n, cap;
};

static int spans_push(struct spans *s, size_t len)
{
    if (len == 0)
        return 0;
    if (elm_vocab_grow((void **)&s->len, &s->cap, s->n + 1, sizeof *s->len))
        return -ENOMEM;
    s->len[s->n++] = (uint32_t)len;
    return 0;
}

static bool is_space(const struct pt_text *t, size_t i)
{
    return t->fl[i] & ELM_UCAT_SPACE;
}

static bool is_letter(const struct pt_text *t, size_t i)
{
    return t->fl[i] & ELM_UCAT_LETTER;
}

static bool is_number(const struct pt_text *t, size_t i)
{
    return t->fl[i] & ELM_UCAT_NUMBER;
}

static bool is_punct(const struct pt_text *t, size_t i)
{
    return t->fl[i] & ELM_UCAT_PUNCT;
}

/* "[\p{P}\$\+<=>\^~\|]": punctuation plus the ASCII symbols llama.cpp's default list adds. */
static bool is_punct_or_math(const struct pt_text *t, size_t i)
{
    uint32_t c = t->cp[i];
    return is_punct(t, i) || (c < 0x80 && c && strchr("$+<=>^~|", (int)c));
}

static bool is_ascii_digit(const struct pt_text *t, size_t i)
{
    return t->cp[i] >= '0' && t->cp[i] <= '9';
}

/* "[一-龥ࠀ-一가-퟿]": U+0800..U+9FA5 and the Hangul block. llama.cpp matches this class on
 * text where non-ASCII white space was replaced by U+000B, so U+3000 never matches. */
static bool is_cjk(const struct pt_text *t, size_t i)
{
    uint32_t c = t->cp[i];
    if (is_space(t, i))
        return false;
    return (c >= 0x0800 && c <= 0x9FA5) || (c >= 0xAC00 && c <= 0xD7FF);
}

struct cp_range {
    uint32_t lo, hi;
};

static bool in_ranges(const struct cp_range *r, size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid].lo)
            hi = mid;
        else if (c > r[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* DeepSeek LLM's letter class: the cased letters of its tokenizer.json regex, an explicit list
 * (not \p{L}), given as code point ranges because several of them look exactly like letters of
 * other blocks (U+1F7D vs U+03CE, U+2126 vs U+03A9, U+212A vs 'K'). */
static const struct cp_range ds_letters[] = {
    {0x0041, 0x005A},   {0x0061, 0x007A},   {0x00B5, 0x00B5},   {0x00C0, 0x00D6},
    {0x00D8, 0x00F6},   {0x00F8, 0x01BA},   {0x01BC, 0x01BF},   {0x01C4, 0x0293},
    {0x0295, 0x02AF},   {0x0370, 0x0373},   {0x0376, 0x0377},   {0x037B, 0x037D},
    {0x037F, 0x037F},   {0x0386, 0x0386},   {0x0388, 0x038A},   {0x038C, 0x038C},
    {0x038E, 0x03A1},   {0x03A3, 0x03F5},   {0x03F7, 0x0481},   {0x048A, 0x052F},
    {0x0531, 0x0556},   {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
    {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
    {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
    {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

/* DeepSeek LLM's punctuation class: ASCII !-/ and :-~ (which includes the ASCII letters: the
 * letter stage has already taken them), full-width forms, curly quotes, CJK full stops. */
static const struct cp_range ds_puncts[] = {
    {0x0021, 0x002F}, {0x003A, 0x007E}, {0x2018, 0x201F},
    {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
};

static bool is_ds_letter(const struct pt_text *t, size_t i)
{
    return !is_space(t, i) &&
           in_ranges(ds_letters, sizeof ds_letters / sizeof ds_letters[0], t->cp[i]);
}

static bool is_ds_punct(const struct pt_text *t, size_t i)
{
    return !is_space(t, i) &&
           in_ranges(ds_puncts, sizeof ds_puncts / sizeof ds_puncts[0], t->cp[i]);
}

typedef bool (*cp_class)(const struct pt_text *t, size_t i);

/* --- one regex = a "find the leftmost match in [from, hi)" function ------------------------- */

/* A regex stage: finds the leftmost match starting at or after from; false when none. */
typedef bool (*find_fn)(const struct pt_text *t, size_t from, size_t hi, size_t *ms, size_t *me);

static size_t run_end(const struct pt_text *t, size_t i, size_t hi, cp_class cls)
{
    while (i < hi && cls(t, i))
        i++;
    return i;
}

/* "C+" for a class C. */
static bool find_run(const struct pt_text *t, size_t from, size_t hi, cp_class cls, size_t *ms,
                     size_t *me)
{
    for (size_t p = from; p < hi; p++) {
        if (cls(t, p)) {
            *ms = p;
            *me = run_end(t, p, hi, cls);
            return true;
        }
    }
    return false;
}

/* "\s?C+": a white-space character joins the run that follows it. C never contains white
 * space, so trying the space first and the bare class second is the regex's backtracking. */
static bool find_space_run(const struct pt_text *t, size_t from, size_t hi, cp_class cls,
                           size_t *ms, size_t *me)
{
    for (size_t p = from; p < hi; p++) {
        if (is_space(t, p) && p + 1 < hi && cls(t, p + 1)) {
            *ms = p;
            *me = run_end(t, p + 1, hi, cls);
            return true;
        }
        if (cls(t, p)) {
            *ms = p;
            *me = run_end(t, p, hi, cls);
            return true;
        }
    }
    return false;
}

/* "[\r\n]" */
static bool find_newline(const struct pt_text *t, size_t from, size_t hi, size_t *ms, size_t *me)
{
    for (size_t p = from; p < hi; p++) {
        if (t->cp[p] == '\r' || t->cp[p] == '\n') {
            *ms = p;
            *me = p + 1;
            return true;
        }
    }
    return false;
}

/* "\p{N}": one number character at a time (DeepSeek coder splits digit runs). */
static bool find_one_number(const struct pt_text *t, size_t from, size_t hi, size_t *ms, size_t *me)
{
    for (size_t p = from; p < hi; p++) {
        if (is_number(t, p)) {
            *ms = p;
            *me = p + 1;
            return true;
        }
    }
    return false;
}

/* "[0-9][0-9][0-9]" */
static bool find_three_digits(const struct pt_text *t, size_t from, size_t hi, size_t *ms,
                              size_t *me)
{
    for (size_t p = from; p + 3 <= hi; p++) {
        if (is_ascii_digit(t, p) && is_ascii_digit(t, p + 1) && is_ascii_digit(t, p + 2)) {
            *ms = p;
            *me = p + 3;
            return true;
        }
    }
    return false;
}

/* "\s+$": the white space that ends the piece ($ is the end of the piece, not of a line). */
static bool find_trailing_space(const struct pt_text *t, size_t from, size_t hi, size_t *ms,
                                size_t *me)
{
    if (hi <= from || !is_space(t, hi - 1))
        return false;
    size_t p = hi - 1;
    while (p > from && is_space(t, p - 1))
        p--;
    *ms = p;
    *me = hi;
    return true;
}

static bool find_numbers(const struct pt_text *t, size_t from, size_t hi, size_t *ms, size_t *me)
{
    return find_run(t, from, hi, is_number, ms, me);
}

static bool find_cjk(const struct pt_text *t, size_t from, size_t hi, size_t *ms, size_t *me)
{
    return find_run(t, from, hi, is_cjk, ms, me);
}

static bool find_punct_math(const struct pt_text *t, size_t from, size_t hi, size_t *ms, size_t *me)
{
    return find_run(t, from, hi, is_punct_or_math, ms, me);
}

static bool find_sp_letters(const struct pt_text *t, size_t from, size_t hi, size_t *ms, size_t *me)
{
    return find_space_run(t, from, hi, is_letter, ms, me);
}

static bool find_sp_puncts(const struct pt_text *t, size_t from, size_t hi, size_t *ms, size_t *me)
{
    return find_space_run(t, from, hi, is_punct, ms, me);
}

static bool find_sp_ds_letters(const struct pt_text *t, size_t from, size_t hi, size_t *ms,
                               size_t *me)
{
    return find_space_run(t, from, hi, is_ds_letter, ms, me);
}

static bool find_sp_ds_puncts(const struct pt_text *t, size_t from, size_t hi, size_t *ms,
                              size_t *me)
{
    return find_space_run(t, from, hi, is_ds_punct, ms, me);
}

/* Splits [lo, hi) at every match of find: matches and the gaps between them become pieces. */
static int split_by_find(const struct pt_text *t, size_t lo, size_t hi, find_fn find,
                         struct spans *out)
{
    size_t pos = lo, ms, me;
    int rc = 0;
    while (!rc && pos < hi && find(t, pos, hi, &ms, &me)) {
        rc = spans_push(out, ms - pos);
        if (!rc)
            rc = spans_push(out, me - ms);
        pos = me;
    }
    if (!rc)
        rc = spans_push(out, hi - pos);
    return rc;
}

/* GPT-2's regex, written out as a scanner:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * The alternatives are tried in order at each position; the look-ahead "(?!\S)" makes a run of
 * white space leave its last character to the word that follows it. */
static int split_gpt2(const struct pt_text *t, size_t lo, size_t hi, struct spans *out)
{
    size_t pos = lo;
    while (pos < hi) {
        size_t start = pos;
        uint32_t c = t->cp[pos];

        if (c == '\'' && pos + 1 < hi) {
            uint32_t c1 = t->cp[pos + 1];
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
                pos += 2;
                goto piece;
            }
            if (pos + 2 < hi) {
                uint32_t c2 = t->cp[pos + 2];
                if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') ||
                    (c1 == 'l' && c2 == 'l')) {
                    pos += 3;
                    goto piece;
                }
            }
        }

        /* " ?X+" for X = letters, numbers, or anything but space/letter/number */
        size_t q = pos + (c == ' ');
        if (q < hi) {
            if (is_letter(t, q)) {
                pos = run_end(t, q, hi, is_letter);
                goto piece;
            }
            if (is_number(t, q)) {
                pos = run_end(t, q, hi, is_number);
                goto piece;
            }
            if (!is_space(t, q)) {
                while (q < hi && !is_space(t, q) && !is_letter(t, q) && !is_number(t, q))
                    q++;
                pos = q;
                goto piece;
            }
        }

        size_t n_space = 0;
        while (pos + n_space < hi && is_space(t, pos + n_space))
            n_space++;
        if (n_space > 1 && pos + n_space < hi)
            pos += n_space - 1; /* \s+(?!\S): leave one space to the next word */
        else if (n_space > 0)
            pos += n_space; /* \s+ */
        else
            pos++; /* no alternative matched: the character stands alone */
    piece:;
        int rc = spans_push(out, pos - start);
        if (rc)
            return rc;
    }
    return 0;
}

/* A stage is either a hand-written splitter or a find-based regex. */
struct stage {
    int (*split)(const struct pt_text *t, size_t lo, size_t hi, struct spans *out);
    find_fn find;
};

/* The stage lists, in the order llama.cpp applies them for each tokenizer.ggml.pre. */
static const struct stage pre_gpt2[] = {
    {split_gpt2, NULL}, /* the GPT-2 regex above */
};
static const struct stage pre_default[] = {
    {NULL, find_punct_math},   /* [\p{P}\$\+<=>\^~\|]+ */
    {split_gpt2, NULL},        /* the GPT-2 regex */
    {NULL, find_numbers},      /* \p{N}+ */
    {NULL, find_three_digits}, /* [0-9][0-9][0-9] */
};
static const struct stage pre_deepseek_coder[] = {
    {NULL, find_newline},    /* [\r\n] */
    {NULL, find_sp_letters}, /* \s?\p{L}+ */
    {NULL, find_sp_puncts},  /* \s?\p{P}+ */
    {NULL, find_cjk},        /* [一-龥ࠀ-一가-퟿]+ */
    {NULL, find_one_number}, /* \p{N} */
};
static const struct stage pre_deepseek_llm[] = {
    {NULL, find_newline},        /* [\r\n] */
    {NULL, find_sp_ds_letters},  /* \s?[A-Za-zµÀ-Ö...]+ (ds_letters) */
    {NULL, find_sp_ds_puncts},   /* \s?[!-/:-~！-／：-～‘-‟　-。]+ (ds_puncts) */
    {NULL, find_trailing_space}, /* \s+$ */
    {NULL, find_cjk},            /* [一-龥ࠀ-一가-퟿]+ */
    {NULL, find_numbers},        /* \p{N}+ */
};

static const struct stage *stages_of(enum elm_bpe_pre pre, size_t *n)
{
#define STAGES(a) (*n = sizeof(a) / sizeof((a)[0]), (a))
    switch (pre) {
    case ELM_PRE_GPT2:
        return STAGES(pre_gpt2);
    case ELM_PRE_DEEPSEEK_CODER:
        return STAGES(pre_deepseek_coder);
    case ELM_PRE_DEEPSEEK_LLM:
        return STAGES(pre_deepseek_llm);
    case ELM_PRE_DEFAULT:
    default:
        return STAGES(pre_default);
    }
#undef STAGES
}

/* Runs every stage over the pieces of the previous one; the result ends up in *words. */
static int pretokenize(const struct elm_vocab *v, const struct pt_text *t, size_t n_cp,
                       struct spans *words)
{
    size_t n_stages;
    const struct stage *st = stages_of(v->pre, &n_stages);
    struct spans cur = {0}, next = {0};
    int rc = spans_push(&cur, n_cp);

    for (size_t s = 0; !rc && s < n_stages; s++) {
        next.n = 0;
        size_t lo = 0;
        for (size_t i = 0; !rc && i < cur.n; i++) {
            size_t hi = lo + cur.len[i];
            rc = st[s].split ? st[s].split(t, lo, hi, &next)
                             : split_by_find(t, lo, hi, st[s].find, &next);
            lo = hi;
        }
        struct spans tmp = cur;
        cur = next;
        next = tmp;
    }
    free(next.len);
    if (rc) {
        free(cur.len);
        return rc;
    }
    *words = cur;
    return 0;
}

/* ============================================================================================
 * Byte-level merges
 * ============================================================================================ */

struct bpe_state {
    const struct elm_vocab *v;
    char *word; /* the byte-mapped word */
    size_t word_cap;
    struct elm_sym *sym;
    size_t sym_cap;
    struct elm_heap heap;
};

static int try_merge(struct bpe_state *st, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const struct elm_sym *l = &st->sym[left], *r = &st->sym[right];
    int32_t rank = merge_rank_of(st->v, l->id, r->id);
    if (rank < 0)
        return 0;
    struct elm_bigram b = {.key = rank, .left = left, .right = right, .size = l->len + r->len};
    return elm_heap_push(&st->heap, b);
}

/* Byte-maps code points cp[0..n) into st->word and returns its length via *len. */
static int map_word(struct bpe_state *st, const uint32_t *cp, size_t n, size_t *len)
{
    /* at most 4 UTF-8 bytes per code point, each mapped to at most 2 bytes */
    int rc = elm_vocab_grow((void **)&st->word, &st->word_cap, n * 8, 1);
    if (rc)
        return rc;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char u8[4];
        size_t k = elm_utf8_encode(cp[i], u8);
        for (size_t j = 0; j < k; j++)
            o += elm_utf8_encode(byte_to_cp((uint8_t)u8[j]), st->word + o);
    }
    *len = o;
    return 0;
}

static int merge_word(struct bpe_state *st, size_t n, struct elm_ids *out)
{
    const char *w = st->word;
    int rc = elm_vocab_grow((void **)&st->sym, &st->sym_cap, n, sizeof *st->sym);
    if (rc)
        return rc;

    int32_t n_sym = elm_syms_split(st->v, w, n, st->sym);

    st->heap.n = 0;
    for (int32_t i = 1; !rc && i < n_sym; i++)
        rc = try_merge(st, i - 1, i);

    struct elm_bigram b;
    while (!rc && elm_heap_pop(&st->heap, &b)) {
        struct elm_sym *l = &st->sym[b.left], *r = &st->sym[b.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.size)
            continue; /* stale: a side changed since the pair was queued */
        l->len += r->len;
        l->id = elm_vocab_lookup(st->v, w + l->start, l->len);
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            st->sym[r->next].prev = b.left;
        rc = try_merge(st, l->prev, b.left);
        if (!rc)
            rc = try_merge(st, b.left, l->next);
    }

    for (int32_t i = n_sym ? 0 : -1; !rc && i >= 0; i = st->sym[i].next) {
        const struct elm_sym *s = &st->sym[i];
        if (s->id >= 0) {
            rc = elm_ids_push(out, s->id);
            continue;
        }
        /* Not a token: fall back to its single bytes, dropping any that are no token either
         * (llama.cpp does the same; with a complete byte map this does not happen). */
        for (uint32_t j = 0; !rc && j < s->len; j++) {
            int32_t id = elm_vocab_lookup(st->v, w + s->start + j, 1);
            if (id >= 0)
                rc = elm_ids_push(out, id);
        }
    }
    return rc;
}

int elm_bpe_tokenize(const struct elm_vocab *v, const char *text, size_t len, struct elm_ids *out)
{
    struct bpe_state st = {.v = v};
    struct spans words = {0};
    uint32_t *cp = NULL;
    uint8_t *fl = NULL;
    int rc = 0;

    if (len == 0)
        return 0;
    /* 32-bit spans and symbol offsets (a byte may map to 6 bytes): refuse absurd fragments. */
    if (len > UINT32_MAX / 8)
        return -EOVERFLOW;
    cp = malloc(len * sizeof *cp);
    fl = malloc(len);
    if (!cp || !fl) {
        rc = -ENOMEM;
        goto out;
    }
    size_t n_cp = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        cp[n_cp] = elm_utf8_decode(text + i, len - i, &adv);
        fl[n_cp] = (uint8_t)elm_unicode_flags(cp[n_cp]);
        n_cp++;
        i += adv;
    }

    const struct pt_text t = {.cp = cp, .fl = fl};
    rc = pretokenize(v, &t, n_cp, &words);
    size_t lo = 0;
    for (size_t i = 0; !rc && i < words.n; i++) {
        size_t wlen;
        rc = map_word(&st, cp + lo, words.len[i], &wlen);
        if (!rc)
            rc = merge_word(&st, wlen, out);
        lo += words.len[i];
    }

out:
    free(words.len);
    free(st.heap.a);
    free(st.sym);
    free(st.word);
    free(fl);
    free(cp);
    return rc;
}
