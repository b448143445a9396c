/* test_utf8.c — elm_utf8_clean() against an independent judge of UTF-8: jansson, which refuses
 * to load or dump a string that is not valid UTF-8 (a reply it cannot dump is a stream
 * elm-httpd has to break off), over every 1-, 2- and 3-byte input and many longer random ones;
 * and elm_utf8_complete() on characters cut at their end. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "tests/common/elm_test.h"

/* s cleaned: jansson takes it as a string, and bytes that were valid UTF-8 come out as they
 * went in (only invalid ones become U+FFFD). */
static void check_clean(const unsigned char *s, size_t len)
{
    size_t n;
    char *c = elm_utf8_clean((const char *)s, len, &n);
    assert_non_null(c);
    assert_true(n <= 3 * len);
    assert_int_equal(c[n], 0);
    json_t *j = json_stringn(c, n); /* NULL when c is not valid UTF-8 */
    if (!j)
        fail_msg("cleaned bytes jansson refuses (input %zu bytes: %02x %02x %02x %02x)", len,
                 len > 0 ? s[0] : 0, len > 1 ? s[1] : 0, len > 2 ? s[2] : 0, len > 3 ? s[3] : 0);
    json_decref(j);
    json_t *orig = json_stringn((const char *)s, len);
    if (orig) { /* valid already: untouched */
        assert_int_equal(n, len);
        assert_memory_equal(c, s, len);
        json_decref(orig);
    }
    free(c);
}

static void test_every_short_input(void **state)
{
    (void)state;
    unsigned char b[3];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (unsigned char)x;
        check_clean(b, 1);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (unsigned char)y;
            check_clean(b, 2);
            /* the third byte over the values that decide a sequence: ASCII, each continuation
             * range's ends, a lead */
            static const unsigned char z[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                              0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xff};
            for (size_t k = 0; k < sizeof z; k++) {
                b[2] = z[k];
                check_clean(b, 3);
            }
        }
    }
}

/* Random byte strings weighted toward leads and continuations, as a sampled model's tokens
 * give them (the stream that showed the fault: temperature 0.8 on a byte-level vocabulary). */
static void test_random_inputs(void **state)
{
    (void)state;
    srand(1234);
    unsigned char b[16];
    for (int it = 0; it < 200000; it++) {
        size_t len = 4 + (size_t)rand() % (sizeof b - 3);
        for (size_t i = 0; i < len; i++) {
            int r = rand() % 4;
            b[i] = (unsigned char)(r == 0   ? rand() % 0x80
                                   : r == 1 ? 0x80 + rand() % 0x40
                                            : 0xc0 + rand() % 0x40);
        }
        check_clean(b, len);
    }
}

static void test_named_cases(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"a\xc3\xa9z", "a\xc3\xa9z"},                                             /* é */
        {"\xf0\x9f\x99\x82", "\xf0\x9f\x99\x82"},                                 /* U+1F642 */
        {"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"},                                 /* U+10FFFF */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* past it */
        {"\xf8\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a 5-byte lead */
        {"\xff\xbf\xbf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
        {"\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong NUL */
        {"\xe2\x82", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* cut short */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n;
        char *c = elm_utf8_clean(cases[i].in, strlen(cases[i].in), &n);
        assert_non_null(c);
        assert_string_equal(c, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
        free(c);
    }
}

static void test_complete(void **state)
{
    (void)state;
    assert_int_equal(elm_utf8_complete("ab", 2), 2);
    assert_int_equal(elm_utf8_complete("a\xc3", 2), 1);         /* é's lead alone */
    assert_int_equal(elm_utf8_complete("a\xf0\x9f\x99", 4), 1); /* 3 of 4 bytes */
    assert_int_equal(elm_utf8_complete("a\xf0\x9f\x99\x82", 5), 5);
    assert_int_equal(elm_utf8_complete("\x80\x80\x80\x80", 4), 4); /* no lead: nothing held */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_short_input),
        cmocka_unit_test(test_random_inputs),
        cmocka_unit_test(test_named_cases),
        cmocka_unit_test(test_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
