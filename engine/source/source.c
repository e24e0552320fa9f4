/*
 * source.c - one source: demux, decode the selected audio stream, and clip it to
 * [StartTime, StartTime + Duration) exactly, in samples.
 *
 * Positions are counted in decoded samples from the first sample the decoder outputs, not taken
 * from timestamps: timestamps after a seek or in streams that start late are estimates, while the
 * decoder's output, once its own delay and the container's gapless info (LAME/Xing, MP4 edit lists,
 * Opus pre-skip) are applied, is exact. So the clip is exact too. Where the rate changes mid-stream
 * (a chained Ogg, a FLAC stream), the clip is taken by time on that decoded timeline (timeline.c).
 * Corrupt packets are skipped the way the ffmpeg CLI skips them; a source that yields no audio at
 * all because of them fails.
 *
 * With FilterAudio.Mixing, every selected audio stream is decoded and the streams are mixed by
 * libavfilter's amix (each weighted 1/N, so N full-scale tracks cannot clip), aligned at their first
 * decoded samples and converted to the first selected stream's rate and layout; the mix lasts as
 * long as the longest stream. Clipping then counts the mixed samples, exactly as for one stream.
 */
#include "engine/source/source.h"

#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/intreadwrite.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MIX 16

/* The mix of several streams: one abuffer per stream into amix, then one format. */
typedef struct mixer {
    AVFilterGraph *graph;
    AVFilterContext *in[MAX_MIX], *out;
    int64_t pts[MAX_MIX];
    int closing; /* the input ended: every mix input but the first has been given its end */
    int ended;   /* ... and the first too */
} mixer;

struct imm_source {
    imm_storage *st;
    const char *uri;
    AVFormatContext *fmt;
    AVCodecContext *dec;          /* the first selected stream's decoder, == decs[0] */
    AVCodecContext *decs[MAX_MIX];
    int streams[MAX_MIX];         /* their container stream indexes */
    int nstreams;
    mixer *mix;                   /* NULL unless several streams are mixed */
    AVPacket *pkt;
    AVFrame *frame;
    imm_stream_select sel;        /* kept to open the source again (imm_source_reopen_whole) */
    imm_source_info info;
    imm_clip clip;              /* StartTime and Duration */
    imm_span span;              /* TrimSilence: the part of the clip's samples delivered */
    int64_t clipped;            /* samples the clip has let through so far */
    int64_t dropped;            /* decoded samples before the first one delivered */
    int64_t delivered;
    int64_t trimmed_start, trimmed_end; /* what the container told the decoder to drop */
    int64_t decode_errors;
    int64_t frames;
    int done;
};

/* Audio.Stream counts audio streams only: 0 is the source's first audio stream. Unknown indexes are
 * ignored, as the service does; an index above 100 means "all". Without mixing the first stream
 * found is taken; with mixing, every one found (in order, once each). Returns how many. */
static int pick_streams(const AVFormatContext *fmt, const imm_stream_select *sel, int *out)
{
    int audio[64], n = 0, picked = 0;
    for (unsigned i = 0; i < fmt->nb_streams && n < 64; i++)
        if (fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO)
            audio[n++] = (int)i;
    if (n == 0)
        return 0;
    for (int i = 0; i < sel->n && picked < MAX_MIX; i++) {
        int from = sel->index[i] > 100 ? 0 : sel->index[i];
        int to = sel->index[i] > 100 ? n : sel->index[i] + 1;
        for (int a = from; a < to && a < n && picked < MAX_MIX; a++) {
            int dup = 0;
            for (int k = 0; k < picked; k++)
                dup |= out[k] == audio[a];
            if (!dup)
                out[picked++] = audio[a];
        }
        if (picked && !sel->mixing)
            return 1;
    }
    if (!picked)
        out[picked++] = audio[0];
    return picked;
}

static imm_err open_decoder(imm_source *src, const AVStream *st, AVCodecContext **out,
                            imm_error *err)
{
    const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
    if (!codec)
        return imm_error_set(err, IMM_EMEDIA, "%s: no decoder for its %s audio.", src->uri,
                             avcodec_get_name(st->codecpar->codec_id));
    AVCodecContext *dec = *out = avcodec_alloc_context3(codec);
    if (!dec)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    int ret = avcodec_parameters_to_context(dec, st->codecpar);
    if (ret >= 0) {
        dec->pkt_timebase = st->time_base;
        ret = avcodec_open2(dec, codec, NULL);
    }
    if (ret < 0)
        return imm_error_set(err, IMM_EMEDIA, "%s: cannot open the %s decoder: %s", src->uri,
                             codec->name, av_err2str(ret));
    if (dec->sample_rate <= 0 || dec->ch_layout.nb_channels <= 0)
        return imm_error_set(err, IMM_EMEDIA, "%s: its audio has no sample rate or channels.",
                             src->uri);
    return IMM_OK;
}

static void layout_name(const AVCodecContext *dec, char *buf, size_t len)
{
    AVChannelLayout l = {0};
    if (dec->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
        av_channel_layout_default(&l, dec->ch_layout.nb_channels);
    else
        av_channel_layout_copy(&l, &dec->ch_layout);
    av_channel_layout_describe(&l, buf, len);
    av_channel_layout_uninit(&l);
}

/* abuffer per stream -> amix -> aformat (the first stream's rate and layout, float) -> sink. */
static imm_err open_mixer(imm_source *src, imm_error *err)
{
    char args[512], layout[128];
    mixer *m = src->mix = av_mallocz(sizeof(*m));
    AVFilterContext *amix = NULL, *fmt = NULL;
    int ret = m && (m->graph = avfilter_graph_alloc()) ? 0 : AVERROR(ENOMEM);
    for (int i = 0; i < src->nstreams && ret >= 0; i++) {
        AVCodecContext *d = src->decs[i];
        char name[16];
        layout_name(d, layout, sizeof(layout));
        snprintf(args, sizeof(args), "sample_rate=%d:sample_fmt=%s:channel_layout=%s:"
                 "time_base=1/%d", d->sample_rate, av_get_sample_fmt_name(d->sample_fmt), layout,
                 d->sample_rate);
        snprintf(name, sizeof(name), "in%d", i);
        ret = avfilter_graph_create_filter(&m->in[i], avfilter_get_by_name("abuffer"), name, args,
                                           NULL, m->graph);
    }
    if (ret >= 0) {
        snprintf(args, sizeof(args), "inputs=%d:duration=longest", src->nstreams);
        ret = avfilter_graph_create_filter(&amix, avfilter_get_by_name("amix"), "mix", args, NULL,
                                           m->graph);
    }
    if (ret >= 0) {
        layout_name(src->decs[0], layout, sizeof(layout));
        snprintf(args, sizeof(args), "sample_fmts=fltp:sample_rates=%d:channel_layouts=%s",
                 src->decs[0]->sample_rate, layout);
        ret = avfilter_graph_create_filter(&fmt, avfilter_get_by_name("aformat"), "fmt", args,
                                           NULL, m->graph);
    }
    if (ret >= 0)
        ret = avfilter_graph_create_filter(&m->out, avfilter_get_by_name("abuffersink"), "out",
                                           NULL, NULL, m->graph);
    for (int i = 0; i < src->nstreams && ret >= 0; i++)
        ret = avfilter_link(m->in[i], 0, amix, (unsigned)i);
    if (ret >= 0)
        ret = avfilter_link(amix, 0, fmt, 0);
    if (ret >= 0)
        ret = avfilter_link(fmt, 0, m->out, 0);
    if (ret >= 0)
        ret = avfilter_graph_config(m->graph, NULL);
    if (ret < 0)
        return imm_error_set(err, IMM_EINTERNAL, "%s: cannot set up the mix of %d audio streams: "
                             "%s", src->uri, src->nstreams, av_err2str(ret));
    return IMM_OK;
}

static void fill_info(imm_source *src, const AVStream *st)
{
    imm_source_info *in = &src->info;
    const AVCodecParameters *par = st->codecpar;
    in->stream_index = st->index;
    in->sample_rate = src->dec->sample_rate;
    in->channels = src->dec->ch_layout.nb_channels;
    if (src->dec->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
        av_channel_layout_default(&in->layout, in->channels);
    else
        av_channel_layout_copy(&in->layout, &src->dec->ch_layout);
    in->sample_fmt = src->mix ? AV_SAMPLE_FMT_FLTP : src->dec->sample_fmt;
    in->bits_per_raw_sample = par->bits_per_raw_sample ? par->bits_per_raw_sample
                                                       : par->bits_per_coded_sample;
    in->bit_rate = par->bit_rate ? par->bit_rate : src->fmt->bit_rate;
    if (st->duration != AV_NOPTS_VALUE && st->duration > 0)
        in->duration = (double)st->duration * av_q2d(st->time_base);
    else if (src->fmt->duration > 0)
        in->duration = (double)src->fmt->duration / AV_TIME_BASE;
    static const char *const method[] = {[AVFMT_DURATION_FROM_PTS] = "timestamps",
                                         [AVFMT_DURATION_FROM_STREAM] = "stream header",
                                         [AVFMT_DURATION_FROM_BITRATE] = "bitrate estimate"};
    unsigned m = (unsigned)src->fmt->duration_estimation_method;
    in->duration_from = in->duration > 0 && m < 3 ? method[m] : NULL;
    in->format = src->fmt->iformat->name;
    in->codec = src->dec->codec->name;
    in->nstreams = src->nstreams;
    in->metadata = src->fmt->metadata;
    for (unsigned i = 0; i < src->fmt->nb_streams; i++) {
        const AVStream *s = src->fmt->streams[i];
        if (s->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
            !(s->disposition & AV_DISPOSITION_ATTACHED_PIC))
            in->has_video = 1;
    }
}

imm_err imm_source_open(imm_storage *st, const imm_source_req *req, const imm_stream_select *sel,
                        imm_source **out, imm_error *err)
{
    imm_err e;
    imm_source *src = calloc(1, sizeof(*src));
    if (!src)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    src->st = st;
    src->uri = req->uri;
    src->sel = *sel;
    src->span = (imm_span){0, -1};
    imm_clip_init(&src->clip, req->start_time, req->duration);
    if ((e = imm_io_open_input(st, req->uri, &src->fmt, err)))
        goto fail;
    src->nstreams = pick_streams(src->fmt, sel, src->streams);
    if (!src->nstreams) {
        e = imm_error_set(err, IMM_EMEDIA, "%s has no audio stream.", req->uri);
        goto fail;
    }
    for (unsigned i = 0; i < src->fmt->nb_streams; i++)
        src->fmt->streams[i]->discard = AVDISCARD_ALL;
    for (int i = 0; i < src->nstreams; i++) {
        src->fmt->streams[src->streams[i]]->discard = AVDISCARD_DEFAULT;
        if ((e = open_decoder(src, src->fmt->streams[src->streams[i]], &src->decs[i], err)))
            goto fail;
    }
    src->dec = src->decs[0];
    if (src->nstreams > 1 && (e = open_mixer(src, err)))
        goto fail;
    AVStream *stream = src->fmt->streams[src->streams[0]];
    fill_info(src, stream);
    src->pkt = av_packet_alloc();
    src->frame = av_frame_alloc();
    if (!src->pkt || !src->frame) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto fail;
    }
    *out = src;
    return IMM_OK;
fail:
    imm_source_close(src);
    return e;
}

const imm_source_info *imm_source_get_info(const imm_source *src)
{
    return &src->info;
}

int64_t imm_source_samples(const imm_source *src)
{
    return src->delivered;
}

imm_err imm_source_cover(const imm_source *src, imm_cover *out, imm_error *err)
{
    for (unsigned i = 0; i < src->fmt->nb_streams; i++) {
        const AVStream *st = src->fmt->streams[i];
        if (!(st->disposition & AV_DISPOSITION_ATTACHED_PIC) || !st->attached_pic.size)
            continue;
        if (!(out->pkt = av_packet_clone(&st->attached_pic)) ||
            !(out->par = avcodec_parameters_alloc()) ||
            avcodec_parameters_copy(out->par, st->codecpar) < 0)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        return IMM_OK;
    }
    return imm_error_set(err, IMM_EMEDIA, "%s has no cover art (attached picture) for "
                         "ImmergeExtensions.CoverFrom.", src->uri);
}

void imm_cover_clear(imm_cover *c)
{
    av_packet_free(&c->pkt);
    avcodec_parameters_free(&c->par);
}

void imm_source_narrow(imm_source *src, const imm_span *span)
{
    if (span->to >= 0)
        src->span = *span;
}

int64_t imm_source_clip_start(const imm_source *src)
{
    return src->dropped;
}

double imm_source_decoded_seconds(const imm_source *src)
{
    return imm_clip_seconds(&src->clip);
}

void imm_source_trimmed(const imm_source *src, int64_t *start, int64_t *end)
{
    *start = src->trimmed_start;
    *end = src->trimmed_end;
}

/* The next packet of the input into src->pkt; *end is set instead at the end of the input (after
 * checking that no playlist segment was refused on the way). */
static imm_err read_packet(imm_source *src, int *end, imm_error *err)
{
    int ret = av_read_frame(src->fmt, src->pkt);
    *end = ret == AVERROR_EOF || (ret < 0 && avio_feof(src->fmt->pb));
    if (*end)
        return imm_io_input_check(src->fmt, err);
    if (ret < 0)
        return imm_io_input_error(src->fmt, IMM_EMEDIA, err, "%s: reading failed: %s",
                                  src->uri, av_err2str(ret));
    return IMM_OK;
}

/* Sends src->pkt to dec. A packet the decoder rejects as corrupt is counted and skipped, as the
 * ffmpeg CLI skips it. */
static imm_err send_packet(imm_source *src, AVCodecContext *dec, imm_error *err)
{
    size_t size;
    const uint8_t *skip = av_packet_get_side_data(src->pkt, AV_PKT_DATA_SKIP_SAMPLES, &size);
    if (skip && size >= 8 && dec == src->dec) {
        src->trimmed_start += AV_RL32(skip);
        src->trimmed_end += AV_RL32(skip + 4);
    }
    int ret = avcodec_send_packet(dec, src->pkt);
    av_packet_unref(src->pkt);
    if (ret < 0 && ret != AVERROR(EAGAIN)) {
        if (ret != AVERROR_INVALIDDATA)
            return imm_error_set(err, IMM_EMEDIA, "%s: decoding failed: %s", src->uri,
                                 av_err2str(ret));
        src->decode_errors++;
    }
    return IMM_OK;
}

/* The next frame from dec into f, frames it cannot decode counted and skipped: 0, EAGAIN, EOF or
 * another error. */
static int receive_decoded(imm_source *src, AVCodecContext *dec, AVFrame *f)
{
    int ret;
    while ((ret = avcodec_receive_frame(dec, f)) == AVERROR_INVALIDDATA)
        src->decode_errors++;
    return ret;
}

/* Feeds the decoder one packet of our stream, or starts draining at the end of the input. */
static imm_err feed_decoder(imm_source *src, imm_error *err)
{
    int end;
    imm_err e;
    for (;;) {
        if ((e = read_packet(src, &end, err)))
            return e;
        if (end) {
            avcodec_send_packet(src->dec, NULL);
            return IMM_OK;
        }
        if (src->pkt->stream_index == src->info.stream_index)
            return send_packet(src, src->dec, err);
        av_packet_unref(src->pkt);
    }
}

/* Moves every frame decoder k has ready into the mix. */
static imm_err push_decoded(imm_source *src, int k, imm_error *err)
{
    AVFrame *f = src->frame;
    for (;;) {
        int ret = receive_decoded(src, src->decs[k], f);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return IMM_OK;
        if (ret < 0)
            return imm_error_set(err, IMM_EMEDIA, "%s: decoding failed: %s", src->uri,
                                 av_err2str(ret));
        if (f->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC) {
            int n = f->ch_layout.nb_channels;
            av_channel_layout_uninit(&f->ch_layout);
            av_channel_layout_default(&f->ch_layout, n);
        }
        f->pts = src->mix->pts[k];
        src->mix->pts[k] += f->nb_samples;
        if ((ret = av_buffersrc_add_frame(src->mix->in[k], f)) < 0) {
            av_frame_unref(f);
            return imm_error_set(err, IMM_EINTERNAL, "%s: mixing failed: %s", src->uri,
                                 av_err2str(ret));
        }
    }
}

/* The mixing counterpart of feed_decoder: one packet of any selected stream, decoded into the
 * mix; at the end of the input, every decoder drained and every mix input ended. */
static imm_err feed_mix(imm_source *src, imm_error *err)
{
    int end, ret;
    imm_err e = read_packet(src, &end, err);
    if (e)
        return e;
    if (end) {
        for (int k = 0; k < src->nstreams; k++) {
            avcodec_send_packet(src->decs[k], NULL);
            if ((e = push_decoded(src, k, err)))
                return e;
        }
        /* amix drops what its first input still holds once that input ends, so the others end
         * first; receive() ends the first input when the mix has passed on all it has. */
        for (int k = 1; k < src->nstreams; k++)
            if ((ret = av_buffersrc_close(src->mix->in[k], src->mix->pts[k], 0)) < 0)
                return imm_error_set(err, IMM_EINTERNAL, "%s: mixing failed: %s", src->uri,
                                     av_err2str(ret));
        src->mix->closing = 1;
        return IMM_OK;
    }
    int k = 0;
    while (k < src->nstreams && src->streams[k] != src->pkt->stream_index)
        k++;
    if (k == src->nstreams) {
        av_packet_unref(src->pkt);
        return IMM_OK;
    }
    if ((e = send_packet(src, src->decs[k], err)))
        return e;
    return push_decoded(src, k, err);
}

/* The next decoded (or mixed) frame into src->frame: 0, AVERROR(EAGAIN) when more input is
 * needed, AVERROR_EOF at the end, or another error. */
static int receive(imm_source *src)
{
    if (!src->mix)
        return receive_decoded(src, src->dec, src->frame);
    mixer *m = src->mix;
    int ret = av_buffersink_get_frame(m->out, src->frame);
    if (ret == AVERROR(EAGAIN) && m->closing && !m->ended) {
        if ((ret = av_buffersrc_close(m->in[0], m->pts[0], 0)) < 0)
            return ret;
        m->ended = 1;
        ret = av_buffersink_get_frame(m->out, src->frame);
    }
    /* After the inputs ended, what amix still holds comes out only when the graph is asked for
     * it, as the ffmpeg CLI asks (the bound is a guard, never reached in practice). */
    for (int i = 0; ret == AVERROR(EAGAIN) && m->ended && i < 1 << 16; i++) {
        int r = avfilter_graph_request_oldest(m->graph);
        if (r < 0 && r != AVERROR(EAGAIN))
            return r;
        ret = av_buffersink_get_frame(m->out, src->frame);
    }
    return ret == AVERROR(EAGAIN) && m->ended ? AVERROR_EOF : ret;
}

static imm_err end_of_source(imm_source *src, AVFrame **frame, imm_error *err)
{
    src->done = 1;
    *frame = NULL;
    if (src->frames == 0 && src->decode_errors > 0)
        return imm_error_set(err, IMM_EMEDIA, "%s: no audio could be decoded (%lld bad packets).",
                             src->uri, (long long)src->decode_errors);
    return IMM_OK;
}

imm_err imm_source_read(imm_source *src, AVFrame **frame, int *offset, int *count,
                        imm_error *err)
{
    imm_err e;
    *frame = NULL;
    if (src->done)
        return IMM_OK;
    av_frame_unref(src->frame);
    for (;;) {
        if (src->clip.done || (src->span.to >= 0 && src->clipped >= src->span.to))
            return end_of_source(src, frame, err);
        int ret = receive(src);
        if (ret == AVERROR(EAGAIN)) {
            if ((e = src->mix ? feed_mix(src, err) : feed_decoder(src, err)))
                return e;
            continue;
        }
        if (ret == AVERROR_EOF)
            return end_of_source(src, frame, err);
        if (ret < 0)
            return imm_error_set(err, IMM_EMEDIA, "%s: decoding failed: %s", src->uri,
                                 av_err2str(ret));
        src->frames++;
        AVFrame *f = src->frame;
        int64_t at, n = imm_clip_take(&src->clip, f->sample_rate, f->nb_samples, &at);
        /* TrimSilence's span counts the samples the clip lets through. */
        int64_t first = src->clipped;
        src->clipped += n;
        int64_t from = FFMAX(first, src->span.from);
        int64_t to = src->span.to < 0 ? src->clipped : FFMIN(src->clipped, src->span.to);
        if (to <= from) {
            if (!src->delivered)
                src->dropped += f->nb_samples;
            av_frame_unref(f);
            continue;
        }
        *frame = f;
        *offset = (int)(at + from - first);
        *count = (int)(to - from);
        if (!src->delivered)
            src->dropped += *offset;
        src->delivered += to - from;
        return IMM_OK;
    }
}

imm_err imm_source_next_packet(imm_source *src, AVPacket **pkt, imm_error *err)
{
    int end;
    *pkt = NULL;
    av_packet_unref(src->pkt);
    for (;;) {
        imm_err e = read_packet(src, &end, err);
        if (e || end)
            return e;
        if (src->pkt->stream_index == src->info.stream_index) {
            *pkt = src->pkt;
            return IMM_OK;
        }
        av_packet_unref(src->pkt);
    }
}

const AVFormatContext *imm_source_demuxer(const imm_source *src)
{
    return src->fmt;
}

imm_err imm_source_reopen_whole(const imm_source *src, imm_source **out, imm_error *err)
{
    imm_source_req whole = {.uri = (char *)src->uri};
    return imm_source_open(src->st, &whole, &src->sel, out, err);
}

void imm_source_close(imm_source *src)
{
    if (!src)
        return;
    av_frame_free(&src->frame);
    av_packet_free(&src->pkt);
    for (int i = 0; i < src->nstreams; i++)
        avcodec_free_context(&src->decs[i]);
    if (src->mix)
        avfilter_graph_free(&src->mix->graph);
    av_freep(&src->mix);
    av_channel_layout_uninit(&src->info.layout);
    imm_io_close_input(src->st, &src->fmt);
    free(src);
}
