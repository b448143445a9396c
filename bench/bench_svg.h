/* bench_svg.h — a tiny chart writer for elm-bench --plot: line and grouped-bar charts over named
 * categories (client counts, weight types), stacked as panels in one self-contained SVG file.
 *
 * Deliberately small: a linear y axis from 0 with 1-2-5 ticks up to the largest value plus a
 * quarter (whiskers beyond it are clipped, with an arrow), category labels on x, a legend,
 * optional min..max whiskers. No fonts or scripts are referenced, so the file renders the same
 * in a browser, an image viewer or a Markdown page.
 */
#ifndef ELM_BENCH_SVG_H
#define ELM_BENCH_SVG_H

#include <stdbool.h>
#include <stddef.h>

#define SVG_MAX_SERIES 8
#define SVG_MAX_CATS   32

struct svg_series {
    const char *name;
    double y[SVG_MAX_CATS];  /* one value per category; NaN: no point (gap / no bar) */
    double lo[SVG_MAX_CATS]; /* whisker ends when has_range (min and max of the repetitions) */
    double hi[SVG_MAX_CATS];
    bool has_range;
};

struct svg_chart {
    const char *title;
    const char *xlabel, *ylabel;
    bool bars; /* grouped bars instead of lines */
    int n_cats;
    const char *cats[SVG_MAX_CATS];
    int n_series;
    struct svg_series series[SVG_MAX_SERIES];
};

/* Writes the charts, one panel each from top to bottom, to path. Returns 0, -EINVAL (no chart,
 * or a count out of range) or -errno of the write; err gets a message naming the file. */
int svg_write(const char *path, const struct svg_chart *charts, int n_charts, char *err,
              size_t errlen);

/* A scatter plot (elm-bench compress): labelled points on a linear x axis from 0 and a log10 y
 * axis over whole decades. Points marked `front` are filled and joined in x order (a Pareto
 * front); the others are hollow; labels alternate right and left. A point whose x or y cannot
 * be placed (y <= 0, NaN) is left out of the plot. */
struct svg_point {
    const char *label;
    double x, y;
    bool front;
};
struct svg_scatter {
    const char *title, *xlabel, *ylabel, *note; /* note: a line under the x axis title, or NULL */
    int n;
    struct svg_point pts[SVG_MAX_CATS];
};
/* Writes one scatter panel to path; errors as svg_write. */
int svg_write_scatter(const char *path, const struct svg_scatter *s, char *err, size_t errlen);

/* The smallest 1, 2 or 5 x 10^k step that divides [0, max] into at most `ticks` intervals
 * (exported for the tests of the axis). max <= 0 gives 1. */
double svg_nice_step(double max, int ticks);

#endif
