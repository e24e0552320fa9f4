/*
 * metrics.c - the Prometheus text format (see metrics.h).
 */
#include "serve/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct imm_metrics {
    char *text;
    size_t len, cap;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void put(imm_metrics *m, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !m->failed; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(m->text + m->len, m->cap - m->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            m->failed = 1;
        } else if ((size_t)n < m->cap - m->len) {
            m->len += (size_t)n;
            return;
        } else {
            size_t cap = (m->cap + (size_t)n) * 2;
            char *t = realloc(m->text, cap);
            if (!t)
                m->failed = 1;
            else
                m->text = t, m->cap = cap;
        }
    }
}

imm_metrics *imm_metrics_new(void)
{
    imm_metrics *m = calloc(1, sizeof(*m));
    if (m && !(m->text = malloc(m->cap = 4096))) {
        free(m);
        return NULL;
    }
    if (m)
        m->text[0] = '\0';
    return m;
}

void imm_metrics_family(imm_metrics *m, const char *name, const char *type, const char *help)
{
    put(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A value as the format writes it: integers without a fraction, +Inf, NaN. */
static void put_value(imm_metrics *m, double v)
{
    if (isnan(v))
        put(m, "NaN");
    else if (isinf(v))
        put(m, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        put(m, "%.0f", v);
    else
        put(m, "%.17g", v);
}

void imm_metrics_sample(imm_metrics *m, const char *name, double value, ...)
{
    va_list ap;
    va_start(ap, value);
    put(m, "%s", name);
    int n = 0;
    for (const char *label; (label = va_arg(ap, const char *)); n++) {
        const char *v = va_arg(ap, const char *);
        put(m, "%s%s=\"", n ? "," : "{", label);
        /* The format escapes backslash, double quote and line feed in label values. */
        for (; *v; v++) {
            if (*v == '\\' || *v == '"')
                put(m, "\\%c", *v);
            else if (*v == '\n')
                put(m, "\\n");
            else
                put(m, "%c", *v);
        }
        put(m, "\"");
    }
    va_end(ap);
    put(m, "%s ", n ? "}" : "");
    put_value(m, value);
    put(m, "\n");
}

char *imm_metrics_finish(imm_metrics *m)
{
    char *out = m->failed ? NULL : m->text;
    if (m->failed)
        free(m->text);
    free(m);
    return out;
}

void imm_histogram_init(imm_histogram *h, const double *bounds)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->bounds, bounds, sizeof(h->bounds));
}

void imm_histogram_observe(imm_histogram *h, double value)
{
    int i = 0;
    while (i < IMM_HISTOGRAM_BUCKETS && value > h->bounds[i])
        i++;
    if (i < IMM_HISTOGRAM_BUCKETS)
        h->counts[i]++;
    h->count++;
    h->sum += value;
}

void imm_metrics_histogram(imm_metrics *m, const char *name, const imm_histogram *h)
{
    char sample[160], le[32];
    long long cumulative = 0;
    snprintf(sample, sizeof(sample), "%s_bucket", name);
    for (int i = 0; i < IMM_HISTOGRAM_BUCKETS; i++) {
        cumulative += h->counts[i];
        snprintf(le, sizeof(le), "%g", h->bounds[i]);
        imm_metrics_sample(m, sample, (double)cumulative, "le", le, NULL);
    }
    imm_metrics_sample(m, sample, (double)h->count, "le", "+Inf", NULL);
    snprintf(sample, sizeof(sample), "%s_sum", name);
    imm_metrics_sample(m, sample, h->sum, NULL);
    snprintf(sample, sizeof(sample), "%s_count", name);
    imm_metrics_sample(m, sample, (double)h->count, NULL);
}
