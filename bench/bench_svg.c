/* bench_svg.c — the --plot chart writer (see bench_svg.h): panels of line or grouped-bar charts
 * in one SVG, and one scatter panel.
 *
 * Geometry is fixed (an 820 x 360 panel, the plot area inset for axis labels on the left and the
 * legend on the right), which is enough for a handful of series over a few dozen categories and
 * keeps the code free of text measurement.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench_svg.h"

#define PANEL_W 820.0
#define PANEL_H 360.0
#define LEFT    80.0  /* y tick labels and the y axis title */
#define RIGHT   250.0 /* legend: names up to about 30 characters */
#define TOP     40.0  /* title */
#define BOTTOM  60.0  /* x tick labels and the x axis title */

/* Colour-blind-safe palette (Okabe-Ito), in series order. */
static const char *const colours[SVG_MAX_SERIES] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                                    "#E69F00", "#56B4E9", "#F0E442", "#000000"};

double svg_nice_step(double max, int ticks)
{
    if (!(max > 0) || ticks < 1)
        return 1;
    const double raw = max / ticks, mag = pow(10, floor(log10(raw)));
    static const double mult[] = {1, 2, 5, 10};
    for (size_t i = 0; i < sizeof mult / sizeof *mult; i++)
        if (mult[i] * mag >= raw)
            return mult[i] * mag;
    return 10 * mag;
}

/* Text content and attribute values: the five XML specials become entities. */
static void put_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&apos;", f);
            break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t')
                fputc(*s, f);
        }
    }
}

static void text(FILE *f, double x, double y, const char *anchor, const char *extra, const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y, anchor,
            extra ? extra : "");
    put_text(f, s);
    fputs("</text>\n", f);
}

/* The axis follows the medians, with a quarter of headroom, never the whiskers: one outlier
 * repetition (a noisy neighbour, a timer artefact) would otherwise stretch the axis until the
 * real lines lie flat on zero. Whiskers beyond the axis are clipped and end in an arrow. */
static double chart_max(const struct svg_chart *c)
{
    double m = 0;
    for (int s = 0; s < c->n_series; s++)
        for (int i = 0; i < c->n_cats; i++) {
            const double v = c->series[s].y[i];
            if (isfinite(v) && v > m)
                m = v;
        }
    return m * 1.25;
}

static void whisker(FILE *f, double x, double ylo, double yhi, const char *col)
{
    fprintf(f,
            "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fh8M%.1f %.1fh8\" stroke=\"%s\" "
            "stroke-width=\"1\" fill=\"none\"/>\n",
            x, ylo, yhi, x - 4, ylo, x - 4, yhi, col);
}

/* One panel with its top-left corner at (0, oy). */
static void panel(FILE *f, const struct svg_chart *c, double oy)
{
    const double x0 = LEFT, x1 = PANEL_W - RIGHT, y0 = oy + PANEL_H - BOTTOM, y1 = oy + TOP;
    const double max = chart_max(c), step = svg_nice_step(max, 5);
    int nticks = (int)ceil(max / step - 1e-9);
    if (nticks < 1)
        nticks = 1;
    const double ymax = step * nticks;
#define YPOS(v) (y0 - (v) / ymax * (y0 - y1))
    text(f, (x0 + x1) / 2, oy + 24, "middle", " font-size=\"16\" font-weight=\"bold\"", c->title);
    /* y grid, ticks and labels */
    for (int t = 0; t <= nticks; t++) {
        char lab[32];
        snprintf(lab, sizeof lab, "%g", step * t);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0,
                YPOS(step * t), x1, YPOS(step * t));
        text(f, x0 - 6, YPOS(step * t) + 4, "end", NULL, lab);
    }
    fprintf(f, "<path d=\"M%.1f %.1fV%.1fH%.1f\" stroke=\"#000\" fill=\"none\"/>\n", x0, y1, y0,
            x1);
    char rot[96];
    snprintf(rot, sizeof rot, " transform=\"rotate(-90 %.1f %.1f)\"", 18.0, (y0 + y1) / 2);
    text(f, 18, (y0 + y1) / 2, "middle", rot, c->ylabel);
    text(f, (x0 + x1) / 2, y0 + 44, "middle", NULL, c->xlabel);
    /* categories: equal slots, label under each */
    const double slot = (x1 - x0) / (c->n_cats > 0 ? c->n_cats : 1);
    for (int i = 0; i < c->n_cats; i++)
        text(f, x0 + slot * (i + 0.5), y0 + 18, "middle", NULL, c->cats[i]);
    const double bw = slot * 0.8 / (c->n_series > 0 ? c->n_series : 1);
    for (int s = 0; s < c->n_series; s++) {
        const struct svg_series *se = &c->series[s];
        const char *col = colours[s % SVG_MAX_SERIES];
        if (!c->bars) {
            fprintf(f, "<path d=\"");
            bool pen = false;
            for (int i = 0; i < c->n_cats; i++) {
                if (!isfinite(se->y[i])) {
                    pen = false;
                    continue;
                }
                fprintf(f, "%s%.1f %.1f", pen ? "L" : "M", x0 + slot * (i + 0.5), YPOS(se->y[i]));
                pen = true;
            }
            fprintf(f, "\" stroke=\"%s\" stroke-width=\"2\" fill=\"none\"/>\n", col);
        }
        for (int i = 0; i < c->n_cats; i++) {
            if (!isfinite(se->y[i]))
                continue;
            const double cx =
                c->bars ? x0 + slot * (i + 0.1) + bw * (s + 0.5) : x0 + slot * (i + 0.5);
            if (c->bars)
                fprintf(f,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                        "fill=\"%s\"/>\n",
                        cx - bw / 2, YPOS(se->y[i]), bw, y0 - YPOS(se->y[i]), col);
            else
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", cx,
                        YPOS(se->y[i]), col);
            if (se->has_range && isfinite(se->lo[i]) && isfinite(se->hi[i])) {
                const char *wc = c->bars ? "#000" : col;
                const double lo = fmin(se->lo[i], ymax), hi = fmin(se->hi[i], ymax);
                whisker(f, cx, YPOS(lo), YPOS(hi), wc);
                if (se->hi[i] > ymax) /* clipped: an arrow says the range goes on */
                    fprintf(f, "<path d=\"M%.1f %.1fl4 -7l4 7z\" fill=\"%s\"/>\n", cx - 4,
                            YPOS(ymax), wc);
            }
        }
        /* legend entry */
        const double ly = y1 + 10 + 22 * s;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"%s\"/>\n",
                x1 + 16, ly, col);
        text(f, x1 + 36, ly + 12, "start", NULL, se->name);
    }
#undef YPOS
}

/* The file's opening (a white page of n panels); NULL with err set when it cannot be made. */
static FILE *svg_open(const char *path, int n_panels, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
        return NULL;
    }
    const double h = PANEL_H * n_panels;
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
            PANEL_W, h, PANEL_W, h);
    return f;
}

static int svg_close(FILE *f, const char *path, char *err, size_t errlen)
{
    fputs("</svg>\n", f);
    int rc = ferror(f) ? -EIO : 0;
    if (fclose(f) && !rc)
        rc = -errno;
    if (rc)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
    return rc;
}

int svg_write(const char *path, const struct svg_chart *charts, int n_charts, char *err,
              size_t errlen)
{
    if (n_charts < 1 || n_charts > 16) {
        snprintf(err, errlen, "%s: nothing to plot", path);
        return -EINVAL;
    }
    for (int i = 0; i < n_charts; i++)
        if (charts[i].n_cats < 0 || charts[i].n_cats > SVG_MAX_CATS || charts[i].n_series < 0 ||
            charts[i].n_series > SVG_MAX_SERIES) {
            snprintf(err, errlen, "%s: chart %d has too many categories or series", path, i);
            return -EINVAL;
        }
    FILE *f = svg_open(path, n_charts, err, errlen);
    if (!f)
        return -EIO;
    for (int i = 0; i < n_charts; i++)
        panel(f, &charts[i], PANEL_H * i);
    return svg_close(f, path, err, errlen);
}

static bool placeable(const struct svg_point *p)
{
    return isfinite(p->x) && p->x >= 0 && isfinite(p->y) && p->y > 0;
}

int svg_write_scatter(const char *path, const struct svg_scatter *s, char *err, size_t errlen)
{
    if (s->n < 1 || s->n > SVG_MAX_CATS) {
        snprintf(err, errlen, "%s: %d points (1..%d)", path, s->n, SVG_MAX_CATS);
        return -EINVAL;
    }
    double xmax = 0, lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < s->n; i++)
        if (placeable(&s->pts[i])) {
            xmax = fmax(xmax, s->pts[i].x);
            lo = fmin(lo, floor(log10(s->pts[i].y)));
            hi = fmax(hi, ceil(log10(s->pts[i].y)));
        }
    if (!isfinite(lo)) {
        snprintf(err, errlen, "%s: no point with a positive y to plot", path);
        return -EINVAL;
    }
    if (hi <= lo)
        hi = lo + 1;
    const double xstep = svg_nice_step(xmax * 1.15, 6);
    const int nx = (int)ceil(xmax * 1.15 / xstep - 1e-9) > 0 ? (int)ceil(xmax * 1.15 / xstep - 1e-9)
                                                             : 1;
    FILE *f = svg_open(path, 1, err, errlen);
    if (!f)
        return -EIO;
    /* the legend area on the right is not needed: labels sit beside their points */
    const double x0 = LEFT, x1 = PANEL_W - 40, y0 = PANEL_H - BOTTOM, y1 = TOP;
#define XPOS(v) (x0 + (v) / (xstep * nx) * (x1 - x0))
#define YPOS(v) (y0 - (log10(v) - lo) / (hi - lo) * (y0 - y1))
    text(f, (x0 + x1) / 2, 24, "middle", " font-size=\"16\" font-weight=\"bold\"", s->title);
    for (double d = lo; d <= hi + 1e-9; d++) {
        char lab[32];
        snprintf(lab, sizeof lab, "%g", pow(10, d));
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0,
                YPOS(pow(10, d)), x1, YPOS(pow(10, d)));
        text(f, x0 - 6, YPOS(pow(10, d)) + 4, "end", NULL, lab);
    }
    for (int t = 0; t <= nx; t++) {
        char lab[32];
        snprintf(lab, sizeof lab, "%g", xstep * t);
        text(f, XPOS(xstep * t), y0 + 18, "middle", NULL, lab);
    }
    fprintf(f, "<path d=\"M%.1f %.1fV%.1fH%.1f\" stroke=\"#000\" fill=\"none\"/>\n", x0, y1, y0,
            x1);
    char rot[96];
    snprintf(rot, sizeof rot, " transform=\"rotate(-90 %.1f %.1f)\"", 18.0, (y0 + y1) / 2);
    text(f, 18, (y0 + y1) / 2, "middle", rot, s->ylabel);
    text(f, (x0 + x1) / 2, y0 + 38, "middle", NULL, s->xlabel);
    if (s->note)
        text(f, (x0 + x1) / 2, y0 + 54, "middle", " fill=\"#555\"", s->note);
    /* the front: its points in x order, joined */
    int order[SVG_MAX_CATS], nf = 0;
    for (int i = 0; i < s->n; i++)
        if (s->pts[i].front && placeable(&s->pts[i])) {
            int k = nf++;
            while (k > 0 && s->pts[order[k - 1]].x > s->pts[i].x) {
                order[k] = order[k - 1];
                k--;
            }
            order[k] = i;
        }
    if (nf > 1) {
        fprintf(f, "<path d=\"");
        for (int k = 0; k < nf; k++)
            fprintf(f, "%s%.1f %.1f", k ? "L" : "M", XPOS(s->pts[order[k]].x),
                    YPOS(s->pts[order[k]].y));
        fprintf(f, "\" stroke=\"%s\" stroke-width=\"1.5\" fill=\"none\"/>\n", colours[0]);
    }
    for (int i = 0; i < s->n; i++) {
        const struct svg_point *p = &s->pts[i];
        if (!placeable(p))
            continue;
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" fill=\"%s\" stroke=\"%s\"/>\n",
                XPOS(p->x), YPOS(p->y), p->front ? colours[0] : "#fff",
                p->front ? colours[0] : "#777");
        /* labels alternate sides, so neighbours' labels overlap less */
        text(f, XPOS(p->x) + (i % 2 ? -7 : 7), YPOS(p->y) - 6, i % 2 ? "end" : "start", NULL,
             p->label);
    }
#undef XPOS
#undef YPOS
    return svg_close(f, path, err, errlen);
}
