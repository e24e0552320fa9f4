/*
 * loudness.c - integrated loudness (EBU R128) and sample peak of a stream of frames,
 * through libavfilter's ebur128: for `immerge compare` and for the Loudness extension's first
 * pass (measure, then gain).
 */
#include "engine/convert/convert.h"

#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <math.h>
#include <stdlib.h>

struct imm_loudness {
    AVFilterGraph *graph;
    AVFilterContext *in, *out;
    AVFrame *got;
    int64_t pts;
    double lufs; /* -HUGE_VAL until measured */
    double peak;
};

imm_err imm_loudness_new(int rate, const AVChannelLayout *layout, enum AVSampleFormat fmt,
                         imm_loudness **out, imm_error *err)
{
    char args[256], name[64];
    AVFilterContext *meter = NULL;
    imm_loudness *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (!m)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    m->lufs = -HUGE_VAL;
    av_channel_layout_describe(layout, name, sizeof(name));
    snprintf(args, sizeof(args), "sample_rate=%d:sample_fmt=%s:channel_layout=%s:"
             "time_base=1/%d", rate, av_get_sample_fmt_name(fmt), name, rate);
    int ret = (m->graph = avfilter_graph_alloc()) && (m->got = av_frame_alloc()) ? 0
                                                                                : AVERROR(ENOMEM);
    if (ret >= 0)
        ret = avfilter_graph_create_filter(&m->in, avfilter_get_by_name("abuffer"), "in", args,
                                           NULL, m->graph);
    if (ret >= 0) /* with metadata, each frame out carries the integrated loudness so far */
        ret = avfilter_graph_create_filter(&meter, avfilter_get_by_name("ebur128"), "r128",
                                           "metadata=1", NULL, m->graph);
    if (ret >= 0)
        ret = avfilter_graph_create_filter(&m->out, avfilter_get_by_name("abuffersink"), "out",
                                           NULL, NULL, m->graph);
    if (ret >= 0)
        ret = avfilter_link(m->in, 0, meter, 0);
    if (ret >= 0)
        ret = avfilter_link(meter, 0, m->out, 0);
    if (ret >= 0)
        ret = avfilter_graph_config(m->graph, NULL);
    if (ret < 0) {
        imm_loudness_free(m);
        return imm_error_set(err, IMM_EINTERNAL, "Cannot set up the loudness meter: %s",
                             av_err2str(ret));
    }
    *out = m;
    return IMM_OK;
}

imm_err imm_loudness_add(imm_loudness *m, AVFrame *f, imm_error *err)
{
    if (f) {
        for (int c = 0; c < f->ch_layout.nb_channels; c++)
            for (int i = 0; i < f->nb_samples; i++)
                m->peak = fmax(m->peak, fabs(imm_sample_value(f, c, i)));
        f->pts = m->pts;
        m->pts += f->nb_samples;
    }
    int ret = av_buffersrc_write_frame(m->in, f);
    while (ret >= 0 && (ret = av_buffersink_get_frame(m->out, m->got)) >= 0) {
        const AVDictionaryEntry *i = av_dict_get(m->got->metadata, "lavfi.r128.I", NULL, 0);
        if (i)
            m->lufs = strtod(i->value, NULL);
        av_frame_unref(m->got);
    }
    if (ret < 0 && ret != AVERROR(EAGAIN) && ret != AVERROR_EOF)
        return imm_error_set(err, IMM_EINTERNAL, "Measuring loudness failed: %s",
                             av_err2str(ret));
    return IMM_OK;
}

double imm_loudness_integrated(const imm_loudness *m)
{
    return m->lufs;
}

double imm_loudness_peak(const imm_loudness *m)
{
    return m->peak;
}

void imm_loudness_free(imm_loudness *m)
{
    if (!m)
        return;
    avfilter_graph_free(&m->graph);
    av_frame_free(&m->got);
    free(m);
}
