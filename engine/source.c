/*
 * source.c - one source: demux, decode the selected audio stream, and clip it to
 * [StartTime, StartTime + Duration) exactly, in samples.
 *
 * Positions are counted in decoded samples from the first sample the decoder outputs, not taken
 * from timestamps: timestamps after a seek or in streams that start late are estimates, while the
 * decoder's output, once its own delay and the container's gapless info (LAME/Xing, MP4 edit lists,
 * Opus pre-skip) are applied, is exact. So the clip is exact too. Corrupt packets are skipped the
 * way the ffmpeg CLI skips them; a source that yields no audio at all because of them fails.
 */
#include "media.h"

#include <math.h>
#include <stdlib.h>

struct imm_source {
    imm_storage *st;
    const char *uri;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;
    imm_source_info info;
    int64_t pos;        /* decoded samples seen, before clipping */
    int64_t clip_start; /* samples */
    int64_t clip_end;   /* samples, exclusive; INT64_MAX = to the end */
    int64_t delivered;
    int64_t decode_errors;
    int64_t frames;
    int done;
};

/* Audio.Stream counts audio streams only: 0 is the source's first audio stream. Unknown indexes are
 * ignored, as the service does; an index above 100 means "all", of which the first is taken. */
static int pick_stream(const AVFormatContext *fmt, const int *streams, int nstreams)
{
    int audio[64], n = 0;
    for (unsigned i = 0; i < fmt->nb_streams && n < 64; i++)
        if (fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO)
            audio[n++] = (int)i;
    if (n == 0)
        return -1;
    for (int i = 0; i < nstreams; i++) {
        if (streams[i] > 100)
            return audio[0];
        if (streams[i] < n)
            return audio[streams[i]];
    }
    return audio[0];
}

static imm_err open_decoder(imm_source *src, const AVStream *st, imm_error *err)
{
    const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
    if (!codec)
        return imm_error_set(err, IMM_EMEDIA, "%s: no decoder for its %s audio.", src->uri,
                             avcodec_get_name(st->codecpar->codec_id));
    src->dec = avcodec_alloc_context3(codec);
    if (!src->dec)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    int ret = avcodec_parameters_to_context(src->dec, st->codecpar);
    if (ret >= 0) {
        src->dec->pkt_timebase = st->time_base;
        ret = avcodec_open2(src->dec, codec, NULL);
    }
    if (ret < 0)
        return imm_error_set(err, IMM_EMEDIA, "%s: cannot open the %s decoder: %s", src->uri,
                             codec->name, av_err2str(ret));
    if (src->dec->sample_rate <= 0 || src->dec->ch_layout.nb_channels <= 0)
        return imm_error_set(err, IMM_EMEDIA, "%s: its audio has no sample rate or channels.",
                             src->uri);
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
    in->sample_fmt = src->dec->sample_fmt;
    in->bits_per_raw_sample = par->bits_per_raw_sample ? par->bits_per_raw_sample
                                                       : par->bits_per_coded_sample;
    in->bit_rate = par->bit_rate ? par->bit_rate : src->fmt->bit_rate;
    if (st->duration != AV_NOPTS_VALUE && st->duration > 0)
        in->duration = (double)st->duration * av_q2d(st->time_base);
    else if (src->fmt->duration > 0)
        in->duration = (double)src->fmt->duration / AV_TIME_BASE;
    in->metadata = src->fmt->metadata;
}

imm_err imm_source_open(imm_storage *st, const imm_source_req *req, const int *streams,
                        int nstreams, imm_source **out, imm_error *err)
{
    imm_err e;
    imm_source *src = calloc(1, sizeof(*src));
    if (!src)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    src->st = st;
    src->uri = req->uri;
    if ((e = imm_io_open_input(st, req->uri, &src->fmt, err)))
        goto fail;
    int index = pick_stream(src->fmt, streams, nstreams);
    if (index < 0) {
        e = imm_error_set(err, IMM_EMEDIA, "%s has no audio stream.", req->uri);
        goto fail;
    }
    for (unsigned i = 0; i < src->fmt->nb_streams; i++)
        src->fmt->streams[i]->discard = (int)i == index ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
    AVStream *stream = src->fmt->streams[index];
    if ((e = open_decoder(src, stream, err)))
        goto fail;
    fill_info(src, stream);
    src->pkt = av_packet_alloc();
    src->frame = av_frame_alloc();
    if (!src->pkt || !src->frame) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto fail;
    }
    double rate = src->info.sample_rate;
    src->clip_start = llround(req->start_time * rate);
    src->clip_end = req->duration > 0 ? src->clip_start + llround(req->duration * rate)
                                      : INT64_MAX;
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

/* Feeds the decoder one packet of our stream, or starts draining at the end of the input. */
static imm_err feed_decoder(imm_source *src, imm_error *err)
{
    int ret;
    for (;;) {
        ret = av_read_frame(src->fmt, src->pkt);
        if (ret == AVERROR_EOF || (ret < 0 && avio_feof(src->fmt->pb))) {
            imm_err e = imm_io_input_check(src->fmt, err);
            if (e)
                return e;
            avcodec_send_packet(src->dec, NULL);
            return IMM_OK;
        }
        if (ret < 0)
            return imm_io_input_error(src->fmt, IMM_EMEDIA, err, "%s: reading failed: %s",
                                      src->uri, av_err2str(ret));
        if (src->pkt->stream_index == src->info.stream_index)
            break;
        av_packet_unref(src->pkt);
    }
    ret = avcodec_send_packet(src->dec, src->pkt);
    av_packet_unref(src->pkt);
    if (ret < 0 && ret != AVERROR(EAGAIN)) {
        if (ret != AVERROR_INVALIDDATA)
            return imm_error_set(err, IMM_EMEDIA, "%s: decoding failed: %s", src->uri,
                                 av_err2str(ret));
        src->decode_errors++;
    }
    return IMM_OK;
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
        if (src->pos >= src->clip_end)
            return end_of_source(src, frame, err);
        int ret = avcodec_receive_frame(src->dec, src->frame);
        if (ret == AVERROR(EAGAIN)) {
            if ((e = feed_decoder(src, err)))
                return e;
            continue;
        }
        if (ret == AVERROR_EOF)
            return end_of_source(src, frame, err);
        if (ret == AVERROR_INVALIDDATA) {
            src->decode_errors++;
            continue;
        }
        if (ret < 0)
            return imm_error_set(err, IMM_EMEDIA, "%s: decoding failed: %s", src->uri,
                                 av_err2str(ret));
        src->frames++;
        int64_t first = src->pos, last = src->pos + src->frame->nb_samples;
        src->pos = last;
        int64_t from = first > src->clip_start ? first : src->clip_start;
        int64_t to = last < src->clip_end ? last : src->clip_end;
        if (to <= from) {
            av_frame_unref(src->frame);
            continue;
        }
        *frame = src->frame;
        *offset = (int)(from - first);
        *count = (int)(to - from);
        src->delivered += to - from;
        return IMM_OK;
    }
}

void imm_source_close(imm_source *src)
{
    if (!src)
        return;
    av_frame_free(&src->frame);
    av_packet_free(&src->pkt);
    avcodec_free_context(&src->dec);
    av_channel_layout_uninit(&src->info.layout);
    imm_io_close_input(src->st, &src->fmt);
    free(src);
}
