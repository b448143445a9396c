/* vocab_pretok.c — the pre-tokenizers of byte-level BPE vocabularies, matching llama.cpp's
 * word boundaries exactly; see vocab_pretok.h.
 *
 * llama.cpp applies a list of regexes per tokenizer.ggml.pre: each one refines the pieces the
 * previous one left, a match and the text between matches both becoming pieces. Its regexes run
 * on a "collapsed" text in which every non-ASCII code point stands for its category (letter,
 * number, punctuation, other; non-ASCII white space becomes U+000B), so \p{L}, \p{N}, \p{P} and
 * \s mean the categories of unicode.c, and an ASCII-only class such as [^a-z] matches every
 * non-ASCII letter. The regexes are written out here by hand (no regex library): a hand-written
 * scanner per regex family, or a "find the leftmost match" function for the simple ones. The
 * name table at the end maps every tokenizer.ggml.pre that elm knows to its list.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/unicode.h"
#include "engine/vocab_pretok.h"
#include "engine/vocab_table.h"

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

/* "[\p{P}\$\+<=>\^~\|`]": Falcon's class, the same with the backtick. */
static bool is_punct_or_math_tick(const struct pt_text *t, size_t i)
{
    return is_punct_or_math(t, i) || t->cp[i] == '`';
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

static bool find_punct_math_tick(const struct pt_text *t, size_t from, size_t hi, size_t *ms,
                                 size_t *me)
{
    return find_run(t, from, hi, is_punct_or_math_tick, ms, me);
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
/* --- the Llama 3 family: llama-bpe, dbrx, qwen2, tekken ------------------------------------- */

/* What distinguishes the members of the family, all of the form
 *   CONTRACTIONS|[^\r\n\p{L}\p{N}]?LETTERS|\p{N}{1,D}|
 * ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ Llama 3:
 * (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]), \p{L}+, D = 3. Qwen2: the same with D
 * = 1. Tekken: no contractions; LETTERS is an upper-case run then a lower-case run (two
 * alternatives, see tekken_letters_end); D = 1; the punctuation run may also end in '/'. */
struct l3_rule {
    bool contractions;
    bool case_split;
    unsigned max_digits;
    bool slash_tail;
};

static bool is_crlf(uint32_t c)
{
    return c == '\r' || c == '\n';
}

static uint32_t ascii_lower(uint32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* "'s|'t|'re|'ve|'m|'ll|'d", ASCII case-insensitive: the match length at p, or 0. */
static size_t contraction_len(const struct pt_text *t, size_t p, size_t hi)
{
    if (t->cp[p] != '\'' || p + 1 >= hi)
        return 0;
    uint32_t c1 = ascii_lower(t->cp[p + 1]);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
        return 2;
    if (p + 2 >= hi)
        return 0;
    uint32_t c2 = ascii_lower(t->cp[p + 2]);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return 3;
    return 0;
}

/* "(?=[\p{L}])([^a-z])": a letter that is no ASCII lower-case letter. */
static bool is_upper_like(const struct pt_text *t, size_t i)
{
    return is_letter(t, i) && !(t->cp[i] >= 'a' && t->cp[i] <= 'z');
}

/* "(?=[\p{L}])([^A-Z])": a letter that is no ASCII upper-case letter. */
static bool is_lower_like(const struct pt_text *t, size_t i)
{
    return is_letter(t, i) && !(t->cp[i] >= 'A' && t->cp[i] <= 'Z');
}

/* Tekken's letters from s (a letter): "U*L+" first, else "U+L*", with U = is_upper_like and
 * L = is_lower_like. The regex engine backtracks U* from its longest run until an L follows,
 * so U*L+ ends after the L run that starts at the last possible place; a non-ASCII letter is
 * both U and L. When no L follows at all, U+ takes the whole U run (L* then matches nothing,
 * else U*L+ would have matched). "JavaScript" gives "Java", "Script"; "HTMLParser" one word. */
static size_t tekken_letters_end(const struct pt_text *t, size_t s, size_t hi)
{
    size_t u = run_end(t, s, hi, is_upper_like);
    for (size_t k = u + 1; k-- > s;)
        if (k < hi && is_lower_like(t, k))
            return run_end(t, k, hi, is_lower_like);
    return u;
}

/* "[^\r\n\p{L}\p{N}]?LETTERS" at p: the end of the match, or p when there is none. */
static size_t l3_letters_end(const struct pt_text *t, size_t p, size_t hi, const struct l3_rule *r)
{
    size_t s = p;
    if (!is_letter(t, p)) {
        if (is_crlf(t->cp[p]) || is_number(t, p) || p + 1 >= hi || !is_letter(t, p + 1))
            return p;
        s = p + 1;
    }
    return r->case_split ? tekken_letters_end(t, s, hi) : run_end(t, s, hi, is_letter);
}

/* " ?[^\s\p{L}\p{N}]+[\r\n]*" (or "[\r\n/]*") at p: the end of the match, or p. */
static size_t l3_punct_end(const struct pt_text *t, size_t p, size_t hi, const struct l3_rule *r)
{
    size_t q = p + (t->cp[p] == ' ');
    size_t e = q;
    while (e < hi && !is_space(t, e) && !is_letter(t, e) && !is_number(t, e))
        e++;
    if (e == q)
        return p;
    while (e < hi && (is_crlf(t->cp[e]) || (r->slash_tail && t->cp[e] == '/')))
        e++;
    return e;
}

/* "\s*[\r\n]+|\s+(?!\S)|\s+" at p: the end of the match, or p. A white-space run that holds a
 * line break ends after its last one; else a run followed by more text leaves its last
 * character to the next word; else it is taken whole. */
static size_t l3_space_end(const struct pt_text *t, size_t p, size_t hi)
{
    size_t e = p, last_nl = p;
    for (; e < hi && is_space(t, e); e++)
        if (is_crlf(t->cp[e]))
            last_nl = e + 1;
    if (last_nl > p)
        return last_nl;
    if (e - p > 1 && e < hi)
        return e - 1;
    return e;
}

/* One scanner for the family: the alternatives are tried in order at each position. */
static int split_l3(const struct pt_text *t, size_t lo, size_t hi, const struct l3_rule *r,
                    struct spans *out)
{
    for (size_t pos = lo; pos < hi;) {
        size_t end = r->contractions ? pos + contraction_len(t, pos, hi) : pos;
        if (end == pos)
            end = l3_letters_end(t, pos, hi, r);
        if (end == pos && is_number(t, pos)) {
            end = run_end(t, pos, hi, is_number);
            if (end - pos > r->max_digits)
                end = pos + r->max_digits;
        }
        if (end == pos)
            end = l3_punct_end(t, pos, hi, r);
        if (end == pos)
            end = l3_space_end(t, pos, hi);
        if (end == pos)
            end = pos + 1; /* no alternative matched: the character stands alone */
        int rc = spans_push(out, end - pos);
        if (rc)
            return rc;
        pos = end;
    }
    return 0;
}

static int split_llama3(const struct pt_text *t, size_t lo, size_t hi, struct spans *out)
{
    static const struct l3_rule r = {.contractions = true, .max_digits = 3};
    return split_l3(t, lo, hi, &r, out);
}

static int split_qwen2(const struct pt_text *t, size_t lo, size_t hi, struct spans *out)
{
    static const struct l3_rule r = {.contractions = true, .max_digits = 1};
    return split_l3(t, lo, hi, &r, out);
}

static int split_tekken(const struct pt_text *t, size_t lo, size_t hi, struct spans *out)
{
    static const struct l3_rule r = {.case_split = true, .max_digits = 1, .slash_tail = true};
    return split_l3(t, lo, hi, &r, out);
}

/* ============================================================================================
 * The regex lists and the names that select them
 * ============================================================================================ */

/* A stage is either a hand-written splitter or a find-based regex. */
struct stage {
    int (*split)(const struct pt_text *t, size_t lo, size_t hi, struct spans *out);
    find_fn find;
};

/* The stage lists, in the order llama.cpp applies them. */
static const struct stage st_gpt2[] = {
    {split_gpt2, NULL}, /* the GPT-2 regex above */
};
static const struct stage st_default[] = {
    {NULL, find_punct_math},   /* [\p{P}\$\+<=>\^~\|]+ */
    {split_gpt2, NULL},        /* the GPT-2 regex */
    {NULL, find_numbers},      /* \p{N}+ */
    {NULL, find_three_digits}, /* [0-9][0-9][0-9] */
};
static const struct stage st_falcon[] = {
    {NULL, find_punct_math_tick}, /* [\p{P}\$\+<=>\^~\|`]+ */
    {split_gpt2, NULL},           /* the GPT-2 regex */
    {NULL, find_three_digits},    /* [0-9][0-9][0-9] */
};
static const struct stage st_digits_gpt2[] = {
    {NULL, find_one_number}, /* \p{N} */
    {split_gpt2, NULL},      /* the GPT-2 regex */
};
static const struct stage st_llama3[] = {
    {split_llama3, NULL},
};
static const struct stage st_qwen2[] = {
    {split_qwen2, NULL},
};
static const struct stage st_tekken[] = {
    {split_tekken, NULL},
};
static const struct stage st_deepseek_coder[] = {
    {NULL, find_newline},    /* [\r\n] */
    {NULL, find_sp_letters}, /* \s?\p{L}+ */
    {NULL, find_sp_puncts},  /* \s?\p{P}+ */
    {NULL, find_cjk},        /* [一-龥ࠀ-一가-퟿]+ */
    {NULL, find_one_number}, /* \p{N} */
};
static const struct stage st_deepseek_llm[] = {
    {NULL, find_newline},        /* [\r\n] */
    {NULL, find_sp_ds_letters},  /* \s?[A-Za-zµÀ-Ö...]+ (ds_letters) */
    {NULL, find_sp_ds_puncts},   /* \s?[!-/:-~！-／：-～‘-‟　-。]+ (ds_puncts) */
    {NULL, find_trailing_space}, /* \s+$ */
    {NULL, find_cjk},            /* [一-龥ࠀ-一가-퟿]+ */
    {NULL, find_numbers},        /* \p{N}+ */
};

struct elm_pretok {
    const char *name;
    const struct stage *stages;
    size_t n_stages;
    bool ignore_merges, add_bos;
};

#define STAGES(a) (a), sizeof(a) / sizeof((a)[0])

/* Every tokenizer.ggml.pre name elm knows, with llama.cpp's (src/llama-vocab.cpp) meaning. */
static const struct elm_pretok pretoks[] = {
    {"default", STAGES(st_default), false, false},
    {"gpt-2", STAGES(st_gpt2), false, false},
    {"phi-2", STAGES(st_gpt2), false, false},
    {"mpt", STAGES(st_gpt2), false, false},
    {"olmo", STAGES(st_gpt2), false, false},
    {"jais", STAGES(st_gpt2), false, false},
    {"falcon", STAGES(st_falcon), false, false},
    {"starcoder", STAGES(st_digits_gpt2), false, false},
    {"refact", STAGES(st_digits_gpt2), false, false},
    {"command-r", STAGES(st_digits_gpt2), false, false},
    {"smollm", STAGES(st_digits_gpt2), false, false},
    {"codeshell", STAGES(st_digits_gpt2), false, false},
    {"exaone", STAGES(st_digits_gpt2), false, false},
    {"llama3", STAGES(st_llama3), true, true},
    {"llama-v3", STAGES(st_llama3), true, true},
    {"llama-bpe", STAGES(st_llama3), true, true},
    {"falcon3", STAGES(st_llama3), true, true},
    {"dbrx", STAGES(st_llama3), false, false},
    {"smaug-bpe", STAGES(st_llama3), false, false},
    {"qwen2", STAGES(st_qwen2), false, false},
    {"stablelm2", STAGES(st_qwen2), false, false},
    {"tekken", STAGES(st_tekken), true, true},
    {"deepseek-coder", STAGES(st_deepseek_coder), false, false},
    {"deepseek-llm", STAGES(st_deepseek_llm), false, false},
};

#undef STAGES

const struct elm_pretok *elm_pretok_find(const char *name, size_t len)
{
    if (!name)
        return &pretoks[0];
    for (size_t i = 0; i < sizeof pretoks / sizeof pretoks[0]; i++)
        if (strlen(pretoks[i].name) == len && memcmp(pretoks[i].name, name, len) == 0)
            return &pretoks[i];
    return NULL;
}

const char *elm_pretok_name(size_t i)
{
    return i < sizeof pretoks / sizeof pretoks[0] ? pretoks[i].name : NULL;
}

bool elm_pretok_ignores_merges(const struct elm_pretok *p)
{
    return p->ignore_merges;
}

bool elm_pretok_adds_bos(const struct elm_pretok *p)
{
    return p->add_bos;
}

/* Runs every stage over the pieces of the previous one. */
int elm_pretok_split(const struct elm_pretok *p, const uint32_t *cp, const uint8_t *fl, size_t n,
                     uint32_t **lens, size_t *n_words)
{
    const struct pt_text t = {.cp = cp, .fl = fl};
    struct spans cur = {0}, next = {0};
    int rc = spans_push(&cur, n);

    for (size_t s = 0; !rc && s < p->n_stages; s++) {
        const struct stage *st = &p->stages[s];
        next.n = 0;
        size_t lo = 0;
        for (size_t i = 0; !rc && i < cur.n; i++) {
            size_t hi = lo + cur.len[i];
            rc = st->split ? st->split(&t, lo, hi, &next)
                           : split_by_find(&t, lo, hi, st->find, &next);
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
    *lens = cur.len;
    *n_words = cur.n;
    return 0;
}
