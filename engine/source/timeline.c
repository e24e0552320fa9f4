/*
 * timeline.c - where a source's samples lie in time, and how long they become at an output rate,
 * when its sample rate changes mid-stream: a chained Ogg whose links differ in rate, a FLAC
 * stream whose frames change rate, MP3s of different rates joined end to end.
 *
 * A timeline is the list of a stretch's runs, each of one rate. Clipping (imm_clip) works by time
 * on the decoded timeline: StartTime is found in whichever run holds it, as that run's nearest
 * sample, and the clip then lasts Duration from there, its end found the same way in whichever
 * run holds it. With one rate this is the rule it always was: round(StartTime x rate) samples are
 * dropped and round(Duration x rate) taken.
 *
 * Lengths follow the converters' rule (convert.c): each run is resampled on its own and made
 * exactly round(samples x out / in) long, so a stretch's length at an output rate is the sum of
 * its runs'. The task's join report, the chapters and `immerge plan` all count with it, and so
 * agree with what the merge makes.
 */
#include "engine/source/source.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

imm_err imm_timeline_add(imm_timeline *t, int rate, int64_t n, imm_error *err)
{
    if (n <= 0)
        return IMM_OK;
    if (t->n && t->runs[t->n - 1].rate == rate) {
        t->runs[t->n - 1].samples += n;
        return IMM_OK;
    }
    if (t->n == IMM_MAX_RUNS)
        return imm_error_set(err, IMM_EMEDIA, "its sample rate changes more than %d times.",
                             IMM_MAX_RUNS - 1);
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 2;
        imm_rate_run *runs = realloc(t->runs, sizeof(*runs) * (size_t)cap);
        if (!runs)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        t->runs = runs;
        t->cap = cap;
    }
    t->runs[t->n++] = (imm_rate_run){rate, n};
    return IMM_OK;
}

int64_t imm_timeline_samples(const imm_timeline *t)
{
    int64_t n = 0;
    for (int i = 0; i < t->n; i++)
        n += t->runs[i].samples;
    return n;
}

double imm_timeline_seconds(const imm_timeline *t)
{
    double s = 0;
    for (int i = 0; i < t->n; i++)
        s += (double)t->runs[i].samples / t->runs[i].rate;
    return s;
}

int64_t imm_timeline_length(const imm_timeline *t, int rate)
{
    int64_t n = 0;
    for (int i = 0; i < t->n; i++)
        n += av_rescale_rnd(t->runs[i].samples, rate, t->runs[i].rate, AV_ROUND_NEAR_INF);
    return n;
}

imm_err imm_timeline_slice(const imm_timeline *t, int64_t from, int64_t to, imm_timeline *out,
                           imm_error *err)
{
    int64_t at = 0;
    imm_err e = IMM_OK;
    for (int i = 0; i < t->n && at < to && !e; i++) {
        int64_t a = FFMAX(at, from), b = FFMIN(at + t->runs[i].samples, to);
        if (b > a)
            e = imm_timeline_add(out, t->runs[i].rate, b - a, err);
        at += t->runs[i].samples;
    }
    return e;
}

void imm_timeline_json(struct cJSON *o, const imm_timeline *t)
{
    cJSON *runs = cJSON_AddArrayToObject(o, "SampleRateRuns");
    for (int i = 0; i < t->n; i++) {
        cJSON *run = cJSON_CreateObject();
        cJSON_AddNumberToObject(run, "SampleRate", t->runs[i].rate);
        cJSON_AddNumberToObject(run, "Samples", (double)t->runs[i].samples);
        cJSON_AddItemToArray(runs, run);
    }
}

void imm_timeline_clear(imm_timeline *t)
{
    free(t->runs);
    *t = (imm_timeline){0};
}

void imm_clip_init(imm_clip *c, double start, double duration)
{
    *c = (imm_clip){.start = start, .duration = duration, .end = INT64_MAX};
}

/* Where the clip ends in the current run, once its start is known. */
static int64_t end_in_run(const imm_clip *c)
{
    if (c->duration <= 0)
        return INT64_MAX;
    return llround((c->end_time - c->run_start) * c->rate);
}

int64_t imm_clip_take(imm_clip *c, int rate, int64_t n, int64_t *offset)
{
    if (rate != c->rate) {
        if (c->rate)
            c->run_start += (double)c->pos / c->rate;
        c->rate = rate;
        c->pos = 0;
        if (c->started)
            c->end = end_in_run(c);
    }
    int64_t first = c->pos, last = c->pos + n, from = first;
    c->pos = last;
    if (c->done)
        return 0;
    if (!c->started) {
        from = FFMAX(first, llround((c->start - c->run_start) * rate));
        if (from >= last)
            return 0;
        c->started = 1;
        /* In the run that holds the start, the end is counted in whole samples from it, so that a
         * clip of one rate is exactly round(Duration x rate) long. */
        c->end_time = c->run_start + (double)from / rate + c->duration;
        c->end = c->duration > 0 ? from + llround(c->duration * rate) : INT64_MAX;
    }
    int64_t to = FFMIN(last, c->end);
    if (last >= c->end)
        c->done = 1;
    *offset = from - first;
    return to > from ? to - from : 0;
}

double imm_clip_seconds(const imm_clip *c)
{
    return c->run_start + (c->rate ? (double)c->pos / c->rate : 0);
}
