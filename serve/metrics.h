/*
 * metrics.h - the Prometheus text exposition format (version 0.0.4), written: a family's HELP
 * and TYPE lines, then its samples, label values escaped as the format says.
 *
 * Our own, some 80 lines: Debian packages no C client (prometheus-cpp is C++), and what GET
 * /metrics needs is the writer only, not a registry.
 */
#ifndef IMMERGE_SERVE_METRICS_H
#define IMMERGE_SERVE_METRICS_H

#include <stddef.h>

typedef struct imm_metrics imm_metrics;

/* The media type of the text (a GET /metrics answer's Content-Type). */
#define IMM_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

imm_metrics *imm_metrics_new(void);
/* Starts a family: type is "counter", "gauge" or "histogram". */
void imm_metrics_family(imm_metrics *m, const char *name, const char *type, const char *help);
/* One sample of the family begun last: name (the family's, or with _bucket, _sum, _count for a
 * histogram), then label and value pairs (NULL-terminated; none: NULL at once). */
void imm_metrics_sample(imm_metrics *m, const char *name, double value, ...);
/* The text (malloc'd) and m freed; NULL when out of memory. */
char *imm_metrics_finish(imm_metrics *m);

/* A histogram of durations, fixed buckets, for one family. */
#define IMM_HISTOGRAM_BUCKETS 9
typedef struct imm_histogram {
    double bounds[IMM_HISTOGRAM_BUCKETS]; /* ascending upper bounds (le) */
    long long counts[IMM_HISTOGRAM_BUCKETS]; /* observations <= each bound, not cumulative */
    long long count;
    double sum;
} imm_histogram;

void imm_histogram_init(imm_histogram *h, const double *bounds);
void imm_histogram_observe(imm_histogram *h, double value);
/* Its samples (name_bucket with le, cumulative; name_sum; name_count) into m. */
void imm_metrics_histogram(imm_metrics *m, const char *name, const imm_histogram *h);

#endif
