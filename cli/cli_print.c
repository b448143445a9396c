/* cli_print.c — how elmctl shows what elmd reports: `status`, `sessions`, `stats` and `load` as
 * aligned text for people, or with --json as one JSON document for scripts (member names are the
 * client library's struct fields; sizes in bytes, times in nanoseconds, absent values 0 or "").
 *
 * Nothing here names a field: both forms walk the reply's field table (ipc/fields.h), whose
 * lines give each value's JSON key, text row, fragment and unit. A field added to a table shows
 * up in both without a change here.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli_client.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "ipc/fields.h"

/* ---------------------------------------------------------------------------------------------
 * Human units
 */

/* "1h 2m 3s" style durations. */
static const char *human_ns(uint64_t ns, char *buf, size_t cap)
{
    uint64_t s = ns / 1000000000u;
    if (s >= 3600)
        snprintf(buf, cap, "%uh %um %us", (unsigned)(s / 3600), (unsigned)(s / 60 % 60),
                 (unsigned)(s % 60));
    else if (s >= 60)
        snprintf(buf, cap, "%um %us", (unsigned)(s / 60), (unsigned)(s % 60));
    else
        snprintf(buf, cap, "%.1fs", ns * 1e-9);
    return buf;
}

static const char *human_bytes(uint64_t b, char *buf, size_t cap)
{
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", b / (double)(1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.1f MiB", b / (double)(1ull << 20));
    else
        snprintf(buf, cap, "%.1f KiB", b / 1024.0);
    return buf;
}

static const char *human_count(uint64_t n, char *buf, size_t cap)
{
    if (n >= 1000000000u)
        snprintf(buf, cap, "%.2fB", n * 1e-9);
    else if (n >= 1000000u)
        snprintf(buf, cap, "%.1fM", n * 1e-6);
    else
        snprintf(buf, cap, "%.1fK", n * 1e-3);
    return buf;
}

/* ---------------------------------------------------------------------------------------------
 * Walking a field table (ipc/fields.h): values as text, rows, columns, JSON members
 */

/* The value of f in obj as text, in f's unit. Returns buf, or the member itself for strings. */
static const char *render(const struct elm_field *f, const void *obj, char *buf, size_t cap)
{
    if (f->ctype == ELM_CT_STR)
        return elm_field_str(f, obj);
    if (f->ctype == ELM_CT_F64) {
        double v = elm_field_f64(f, obj);
        if (f->unit == ELM_UNIT_SHARE)
            snprintf(buf, cap, "%.0f%%", v * 100.0);
        else
            snprintf(buf, cap, "%.1f", v);
        return buf;
    }
    uint64_t v = elm_field_u64(f, obj);
    switch (f->unit) {
    case ELM_UNIT_SECONDS:
        snprintf(buf, cap, "%.3f s", v * 1e-9);
        return buf;
    case ELM_UNIT_DURATION:
        return human_ns(v, buf, cap);
    case ELM_UNIT_MS:
        snprintf(buf, cap, "%.2f", v * 1e-6);
        return buf;
    case ELM_UNIT_BYTES:
        return human_bytes(v, buf, cap);
    case ELM_UNIT_COUNT:
        return human_count(v, buf, cap);
    case ELM_UNIT_YESNO:
        return v ? "yes" : "no";
    case ELM_UNIT_NAMES:
        return v >= f->min && v <= f->max && f->names[v] ? f->names[v] : "unknown";
    default:
        if (elm_field_is_signed(f))
            snprintf(buf, cap, "%lld", (long long)v);
        else
            snprintf(buf, cap, "%llu", (unsigned long long)v);
        return buf;
    }
}

/* Prints f's fragment with its value where the fragment says "%s"; nothing for a NONZERO field
 * at its default (the fragment would have nothing to say). */
static void fragment(const struct elm_field *f, const void *obj)
{
    char buf[64];
    if ((f->flags & ELM_FIELD_NONZERO) && elm_field_is_default(f, obj))
        return;
    const char *at = strstr(f->text, "%s");
    if (!at) {
        fputs(f->text, stdout);
        return;
    }
    printf("%.*s%s%s", (int)(at - f->text), f->text, render(f, obj, buf, sizeof buf), at + 2);
}

/* The number of fields from i on that share f[i]'s row. */
static unsigned row_len(const struct elm_fields *t, unsigned i)
{
    unsigned k = 1;
    while (i + k < t->n && t->f[i + k].row && !strcmp(t->f[i + k].row, t->f[i].row))
        k++;
    return k;
}

/* One line per row: the label, then each field's fragment. A row whose fields all hold their
 * defaults is left out unless all is set (counters read better as 0 than absent). */
static void print_rows(const struct elm_fields *t, const void *obj, bool all)
{
    for (unsigned i = 0; i < t->n;) {
        const struct elm_field *f = &t->f[i];
        unsigned k = f->row ? row_len(t, i) : 1;
        bool empty = true;
        for (unsigned r = 0; r < k; r++)
            empty = empty && elm_field_is_default(&f[r], obj);
        if (f->row && f->text && (all || !empty)) {
            printf("%-17s ", f->row);
            for (unsigned r = 0; r < k; r++)
                fragment(&f[r], obj);
            putchar('\n');
        }
        i += k;
    }
}

/* Every field's fragment on the current line, without labels. */
static void print_inline(const struct elm_fields *t, const void *obj)
{
    for (unsigned i = 0; i < t->n; i++)
        if (t->f[i].text)
            fragment(&t->f[i], obj);
    putchar('\n');
}

/* A list as a table: the header from the rows' labels, then one line per struct. */
static void print_columns(const struct elm_fields *t, const void *objs, size_t size, size_t n)
{
    char buf[64];
    for (unsigned i = 0; i < t->n; i++)
        if (t->f[i].row)
            printf("%s%*s", i ? "  " : "", t->f[i].width, t->f[i].row);
    putchar('\n');
    for (size_t k = 0; k < n; k++) {
        const void *obj = (const char *)objs + k * size;
        for (unsigned i = 0; i < t->n; i++) {
            const struct elm_field *f = &t->f[i];
            if (!f->row)
                continue;
            const char *v = (f->flags & ELM_FIELD_NONZERO) && elm_field_is_default(f, obj)
                                ? "-"
                                : render(f, obj, buf, sizeof buf);
            int w = f->width < 0 ? -f->width : f->width;
            if (w) /* left-aligned strings are cut to their column */
                printf("%s%*.*s", i ? "  " : "", f->width, w, v);
            else /* the last column: no padding */
                printf("%s%s", i ? "  " : "", v);
        }
        putchar('\n');
    }
}

static json_t *json_value(const struct elm_field *f, const void *obj)
{
    char buf[64];
    if (f->ctype == ELM_CT_STR || f->unit == ELM_UNIT_NAMES) {
        const char *v = render(f, obj, buf, sizeof buf);
        return cli_json_text(v, strlen(v));
    }
    if (f->ctype == ELM_CT_F64) /* to the 3 decimals the text view shows */
        return cli_json_real(round(elm_field_f64(f, obj) * 1e3) / 1e3);
    if (f->ctype == ELM_CT_BOOL)
        return json_boolean(elm_field_u64(f, obj));
    return json_integer((json_int_t)elm_field_u64(f, obj)); /* signed fields are stored as such */
}

/* Every field as a member named after its struct member; the lines of an array member (which
 * share the name) become one JSON array. */
static json_t *json_fields(json_t *j, const struct elm_fields *t, const void *obj)
{
    for (unsigned i = 0; i < t->n;) {
        unsigned k = 1;
        while (i + k < t->n && !strcmp(t->f[i + k].json, t->f[i].json))
            k++;
        json_t *v = k > 1 ? json_array() : json_value(&t->f[i], obj);
        for (unsigned r = 0; k > 1 && r < k; r++)
            json_array_append_new(v, json_value(&t->f[i + r], obj));
        json_object_set_new(j, t->f[i].json, v);
        i += k;
    }
    return j;
}

/* ---------------------------------------------------------------------------------------------
 * What elmctl prints for each query: the table, and what the client library adds
 */

void cli_print_status(const elm_client *c, const struct elm_daemon_status *st)
{
    if (cli_json) {
        json_t *j = json_pack("{sIsbsb}", "protocol_version",
                              (json_int_t)elm_client_protocol_version(c), "model_loaded",
                              st->model_loaded, "loading", st->loading);
        cli_json_print(json_fields(j, &elm_fields_status, st));
        return;
    }
    print_rows(&elm_fields_status, st, false);
    printf("%-17s %u\n", "protocol", elm_client_protocol_version(c));
    if (!st->model_loaded)
        printf("%-17s none (load one with 'elmctl load MODEL')\n", "model");
}

void cli_print_load(const char *path, const struct elm_load_result *r)
{
    if (cli_json) {
        json_t *j = json_object();
        cli_json_set_text(j, "model_path", 10, path, strlen(path));
        cli_json_print(json_fields(j, &elm_fields_load, r));
        return;
    }
    printf("loaded %s", path);
    print_inline(&elm_fields_load, r);
}

void cli_print_sessions(const struct elm_session_info *s, size_t n)
{
    if (cli_json) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, json_fields(json_object(), &elm_fields_session, &s[i]));
        cli_json_print(a);
        return;
    }
    if (n == 0)
        printf("no sessions\n");
    else
        print_columns(&elm_fields_session, s, sizeof *s, n);
}

void cli_print_stats(const struct elm_daemon_stats *s)
{
    if (cli_json) {
        cli_json_print(json_fields(json_object(), &elm_fields_stats, s));
        return;
    }
    print_rows(&elm_fields_stats, s, true);
}
