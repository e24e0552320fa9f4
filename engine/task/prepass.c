/*
 * prepass.c - what some extensions must know before the merge starts, from every source decoded
 * once more: each source's exact length and title (Chapters: MP3 and Ogg write them before the
 * audio), and for Loudness each target's merged timeline, converted as that target will convert
 * it and measured (EBU R128 integrated loudness and sample peak), with the gain that brings it to
 * the requested loudness, lowered where it would lift the peak above MaxPeak. The merge itself
 * applies the gain as the encoder takes its frames (sink.c).
 *
 * Each target is measured as its encoder will receive it, in its own rate, layout and sample
 * format: a mono target of stereo sources is not as loud as a stereo one, and libswresample
 * downmixes into integer formats more quietly than into float ones. What is measured is the
 * merge before fades.
 */
#include "engine/task/task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 4096

typedef struct meter {
    imm_target_plan plan; /* the target's rate, layout and sample format */
    imm_convert *cv;
    AVAudioFifo *fifo;
    imm_loudness *loud;
} meter;

/* Passes what the FIFO holds on to the meter, in blocks; all of it when `all`. */
static imm_err pass_on(meter *m, int all, imm_error *err)
{
    imm_err e = IMM_OK;
    int n;
    while (!e && (n = av_audio_fifo_size(m->fifo)) >= (all ? 1 : BLOCK)) {
        AVFrame *f = av_frame_alloc();
        n = FFMIN(n, BLOCK);
        if (f) {
            f->nb_samples = n;
            f->format = m->plan.sample_fmt;
            f->sample_rate = m->plan.sample_rate;
        }
        if (!f || av_channel_layout_copy(&f->ch_layout, &m->plan.layout) < 0 ||
            av_frame_get_buffer(f, 0) < 0)
            e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        else if (av_audio_fifo_read(m->fifo, (void **)f->extended_data, n) < n)
            e = imm_error_set(err, IMM_EINTERNAL, "audio FIFO underrun");
        else
            e = imm_loudness_add(m->loud, f, err);
        av_frame_free(&f);
    }
    return e;
}

/* Its "title" tag, else the last part of its URI without the extension. */
static void title_of(const imm_source_req *sr, const imm_source_info *in, char *buf, size_t len)
{
    const AVDictionaryEntry *t = av_dict_get(in->metadata, "title", NULL, 0);
    const char *name = strrchr(sr->uri, '/') ? strrchr(sr->uri, '/') + 1 : sr->uri;
    if (t && *t->value) {
        snprintf(buf, len, "%s", t->value);
        return;
    }
    snprintf(buf, len, "%s", name);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf)
        *dot = '\0';
}

/* Reads source i: its length and title, and into every meter (n of them). */
static imm_err read_source(imm_storage *st, const imm_request *req, int i, meter *m, int n,
                           const imm_guard *guard, imm_prepass *out, imm_error *err)
{
    imm_source *src = NULL;
    AVFrame *f;
    int offset, count;
    imm_err e = imm_source_open(st, &req->sources[i], &req->targets[0].select, &src, err);
    /* TrimSilence: the first and last samples louder than the threshold in any channel. */
    double threshold = pow(10, req->ext.trim_threshold / 20);
    int64_t pos = 0, first = -1, last = -1;
    imm_timeline all = {0};
    if (!e)
        title_of(&req->sources[i], imm_source_get_info(src), out->title[i], sizeof(out->title[i]));
    while (!e && !(e = imm_source_read(src, &f, &offset, &count, err)) && f &&
           !(e = imm_guard_check(guard, err))) {
        for (int k = 0; k < count && req->ext.trim; k++) {
            int loud = 0;
            for (int c = 0; c < f->ch_layout.nb_channels && !loud; c++)
                loud = fabs(imm_sample_value(f, c, offset + k)) > threshold;
            if (loud) {
                first = first < 0 ? pos + k : first;
                last = pos + k;
            }
        }
        pos += count;
        e = imm_timeline_add(&all, f->sample_rate, count, err);
        for (int t = 0; t < n && !e; t++) {
            int64_t skipped;
            if (!(e = imm_convert_push(m[t].cv, f, offset, count, 0, &skipped, m[t].fifo, err)))
                e = pass_on(&m[t], 0, err);
        }
    }
    for (int t = 0; t < n && !e; t++)
        e = imm_convert_finish(m[t].cv, m[t].fifo, err);
    out->span[i] = (imm_span){0, -1};
    if (!e) {
        /* Keep is counted at the source's first rate: TrimSilence knows no other. */
        int64_t keep = llround(req->ext.trim_keep * imm_source_get_info(src)->sample_rate);
        /* A source that is silence throughout is kept whole: dropping it would be a surprise. */
        if (req->ext.trim && first >= 0) {
            out->span[i] = (imm_span){FFMAX(0, first - keep), FFMIN(pos, last + 1 + keep)};
            out->silence[i][0] = out->span[i].from;
            out->silence[i][1] = pos - out->span[i].to;
        }
        e = imm_timeline_slice(&all, out->span[i].from, out->span[i].to < 0 ? pos : out->span[i].to,
                               &out->length[i], err);
    }
    imm_timeline_clear(&all);
    imm_source_close(src);
    return e;
}

imm_err imm_prepass_read(imm_storage *st, const imm_request *req, imm_target_plan *const *plans,
                        int ntargets, const imm_guard *guard, imm_prepass *out, imm_error *err)
{
    meter m[IMM_MAX_TARGETS] = {0};
    imm_err e = IMM_OK;
    int n = req->ext.loudness ? ntargets : 0;
    for (int t = 0; t < n && !e; t++) {
        m[t].plan.sample_rate = plans[t]->sample_rate;
        m[t].plan.sample_fmt = plans[t]->sample_fmt;
        if (av_channel_layout_copy(&m[t].plan.layout, &plans[t]->layout) < 0 ||
            !(m[t].cv = imm_convert_new(&m[t].plan)) ||
            !(m[t].fifo = av_audio_fifo_alloc(plans[t]->sample_fmt, plans[t]->layout.nb_channels,
                                              BLOCK)))
            e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        else
            e = imm_loudness_new(plans[t]->sample_rate, &plans[t]->layout, plans[t]->sample_fmt,
                                 &m[t].loud, err);
    }
    for (int i = 0; i < req->nsources && !e; i++)
        if (!req->sources[i].disable_audio)
            e = read_source(st, req, i, m, n, guard, out, err);
    for (int t = 0; t < n && !e; t++)
        if (!(e = pass_on(&m[t], 1, err)))
            e = imm_loudness_add(m[t].loud, NULL, err);
    for (int t = 0; t < n && !e; t++) {
        imm_normalised *r = &out->loudness[t];
        double peak = imm_loudness_peak(m[t].loud);
        r->measured = imm_loudness_integrated(m[t].loud);
        r->peak = peak > 0 ? 20 * log10(peak) : -HUGE_VAL;
        /* Silence (below the meter's -70 LUFS gate) is left as it is. */
        r->gain = isfinite(r->measured) ? req->ext.loudness_target - r->measured : 0;
        r->limited = isfinite(r->peak) && r->peak + r->gain > req->ext.max_peak;
        if (r->limited)
            r->gain = req->ext.max_peak - r->peak;
        plans[t]->gain = pow(10, r->gain / 20);
    }
    for (int t = 0; t < n; t++) {
        imm_convert_free(m[t].cv);
        av_audio_fifo_free(m[t].fifo);
        imm_loudness_free(m[t].loud);
        av_channel_layout_uninit(&m[t].plan.layout);
    }
    return e;
}

void imm_prepass_clear(imm_prepass *p)
{
    for (int i = 0; i < IMM_MAX_SOURCES; i++)
        imm_timeline_clear(&p->length[i]);
}
