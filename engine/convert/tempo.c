/*
 * tempo.c - a target's Speed: the merged stream played 0.5..1x as fast with its pitch kept, by
 * libavfilter's atempo (WSOLA), after the sources are joined so the joins are stretched like the
 * rest.
 *
 * atempo's own output length drifts by a few milliseconds, so the stage holds it to exactly
 * round(input samples / speed): while input is still coming it never passes on more than
 * floor(input so far / speed), which the final length cannot be below; at the end it passes the
 * rest up to the exact length and pads with silence if atempo fell short.
 */
#include "engine/convert/convert.h"

#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/opt.h>
#include <math.h>
#include <stdio.h>

struct imm_tempo {
    AVFilterGraph *graph;
    AVFilterContext *src, *sink;
    AVFrame *frame;
    AVAudioFifo *held; /* filtered samples not yet allowed out */
    double speed;
    int64_t in, out;   /* samples into atempo, samples passed on */
    int64_t pts;
    int channels;
    enum AVSampleFormat fmt;
};

imm_err imm_tempo_new(const imm_target_plan *p, imm_tempo **out, imm_error *err)
{
    char layout[128], args[512];
    imm_tempo *t = av_mallocz(sizeof(*t));
    if (!t)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    *out = t;
    t->speed = p->speed;
    t->channels = p->layout.nb_channels;
    t->fmt = p->sample_fmt;
    av_channel_layout_describe(&p->layout, layout, sizeof(layout));
    snprintf(args, sizeof(args), "sample_rate=%d:sample_fmt=%s:channel_layout=%s:time_base=1/%d",
             p->sample_rate, av_get_sample_fmt_name(p->sample_fmt), layout, p->sample_rate);
    char tempo[32];
    snprintf(tempo, sizeof(tempo), "tempo=%.6f", p->speed);
    AVFilterContext *atempo = NULL;
    const enum AVSampleFormat fmts[] = {p->sample_fmt, AV_SAMPLE_FMT_NONE};
    int ret = (t->graph = avfilter_graph_alloc()) && (t->frame = av_frame_alloc()) &&
                      (t->held = av_audio_fifo_alloc(p->sample_fmt, t->channels, 4096))
                  ? 0
                  : AVERROR(ENOMEM);
    if (ret >= 0)
        ret = avfilter_graph_create_filter(&t->src, avfilter_get_by_name("abuffer"), "in", args,
                                           NULL, t->graph);
    if (ret >= 0)
        ret = avfilter_graph_create_filter(&atempo, avfilter_get_by_name("atempo"), "tempo",
                                           tempo, NULL, t->graph);
    if (ret >= 0)
        ret = avfilter_graph_create_filter(&t->sink, avfilter_get_by_name("abuffersink"), "out",
                                           NULL, NULL, t->graph);
    if (ret >= 0)
        ret = av_opt_set_int_list(t->sink, "sample_fmts", fmts, AV_SAMPLE_FMT_NONE,
                                  AV_OPT_SEARCH_CHILDREN);
    if (ret >= 0)
        ret = avfilter_link(t->src, 0, atempo, 0);
    if (ret >= 0)
        ret = avfilter_link(atempo, 0, t->sink, 0);
    if (ret >= 0)
        ret = avfilter_graph_config(t->graph, NULL);
    if (ret < 0)
        return imm_error_set(err, IMM_EINTERNAL, "Cannot set up Speed %g (atempo): %s", p->speed,
                             av_err2str(ret));
    return IMM_OK;
}

/* Moves from held into out as much as the length rule allows (limit < 0: all). */
static imm_err release(imm_tempo *t, AVAudioFifo *out, int64_t limit, imm_error *err)
{
    int n = av_audio_fifo_size(t->held);
    if (limit >= 0 && t->out + n > limit)
        n = limit > t->out ? (int)(limit - t->out) : 0;
    while (n > 0) {
        uint8_t *planes[AV_NUM_DATA_POINTERS];
        int chunk = n < 4096 ? n : 4096;
        if (av_samples_alloc(planes, NULL, t->channels, chunk, t->fmt, 0) < 0)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        int got = av_audio_fifo_read(t->held, (void **)planes, chunk);
        int wrote = got > 0 ? av_audio_fifo_write(out, (void **)planes, got) : got;
        av_freep(&planes[0]);
        if (got <= 0 || wrote < got)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        t->out += got;
        n -= got;
    }
    return IMM_OK;
}

/* Collects what atempo has ready into held. */
static imm_err collect(imm_tempo *t, imm_error *err)
{
    for (;;) {
        int ret = av_buffersink_get_frame(t->sink, t->frame);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return IMM_OK;
        if (ret < 0)
            return imm_error_set(err, IMM_EINTERNAL, "Speed (atempo) failed: %s",
                                 av_err2str(ret));
        ret = av_audio_fifo_write(t->held, (void **)t->frame->extended_data,
                                  t->frame->nb_samples);
        av_frame_unref(t->frame);
        if (ret < 0)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
}

imm_err imm_tempo_apply(imm_tempo *t, AVAudioFifo *in, AVAudioFifo *out, int flush,
                      imm_error *err)
{
    imm_err e = IMM_OK;
    int ret;
    while (!e && av_audio_fifo_size(in) > 0) {
        AVFrame *f = t->frame;
        int n = av_audio_fifo_size(in) < 4096 ? av_audio_fifo_size(in) : 4096;
        f->nb_samples = n;
        f->format = t->fmt;
        f->sample_rate = t->sink->inputs[0]->sample_rate;
        if (av_channel_layout_copy(&f->ch_layout, &t->src->outputs[0]->ch_layout) < 0 ||
            av_frame_get_buffer(f, 0) < 0)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        av_audio_fifo_read(in, (void **)f->extended_data, n);
        f->pts = t->pts;
        t->pts += n;
        t->in += n;
        ret = av_buffersrc_add_frame(t->src, f); /* takes the frame's data, leaves f blank */
        if (ret < 0)
            return imm_error_set(err, IMM_EINTERNAL, "Speed (atempo) failed: %s",
                                 av_err2str(ret));
        e = collect(t, err);
    }
    if (e)
        return e;
    if (!flush)
        return release(t, out, (int64_t)floor(t->in / t->speed), err);
    if ((ret = av_buffersrc_add_frame(t->src, NULL)) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "Speed (atempo) failed: %s", av_err2str(ret));
    int64_t total = llround(t->in / t->speed);
    if ((e = collect(t, err)) || (e = release(t, out, total, err)))
        return e;
    if (t->out < total) {
        int n = (int)(total - t->out);
        uint8_t **pad = NULL;
        if (av_samples_alloc_array_and_samples(&pad, NULL, t->channels, n, t->fmt, 0) < 0)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        av_samples_set_silence(pad, 0, n, t->channels, t->fmt);
        ret = av_audio_fifo_write(out, (void **)pad, n);
        av_freep(&pad[0]);
        av_freep(&pad);
        if (ret < n)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        t->out = total;
    }
    return IMM_OK;
}

void imm_tempo_free(imm_tempo *t)
{
    if (!t)
        return;
    avfilter_graph_free(&t->graph);
    av_frame_free(&t->frame);
    av_audio_fifo_free(t->held);
    av_free(t);
}
