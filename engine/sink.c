/*
 * sink.c - one target's output: a FIFO of converted samples, the encoder fed in its frame size,
 * and the muxer writing through storage to a temporary object that commit makes visible.
 *
 * Timestamps are sample counts (time base 1/rate), so the encoder's packets carry its priming
 * (initial_padding) and the last packet's true duration; the MP3 muxer turns those into the LAME
 * tag's delay/padding and the MP4 muxer into an edit list, which is how the output stays gapless.
 */
#include "media.h"

#include <math.h>
#include <string.h>

#include <stdlib.h>

struct imm_sink {
    imm_storage *st;
    const imm_target_plan *plan;
    AVIOContext *pb;
    AVFormatContext *mux;
    AVStream *stream;
    AVCodecContext *enc;
    imm_amrnb *amr;     /* instead of enc, for AMR-NB */
    imm_segmenter *seg; /* a segmented target: the muxer writes through it, not pb */
    AVAudioFifo *fifo;  /* what the encoder takes next */
    AVAudioFifo *input; /* with a Speed: what the merge gives, before tempo; else == fifo */
    imm_tempo *tempo;
    AVFrame *frame;
    AVPacket *pkt;
    int frame_size;
    int64_t next_pts;
    int64_t size;
    int header_written;
    int trailer_written;
};

static imm_err open_encoder(imm_sink *s, imm_error *err)
{
    const imm_target_plan *p = s->plan;
    if (p->amrnb) {
        s->frame_size = IMM_AMRNB_FRAME;
        return (s->amr = imm_amrnb_new(p->bitrate))
                   ? IMM_OK
                   : imm_error_set(err, IMM_EINTERNAL, "Cannot start the AMR-NB encoder.");
    }
    AVCodecContext *enc = avcodec_alloc_context3(p->encoder);
    if (!enc)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    s->enc = enc;
    enc->sample_rate = p->sample_rate;
    enc->sample_fmt = p->sample_fmt;
    enc->time_base = (AVRational){1, p->sample_rate};
    if (av_channel_layout_copy(&enc->ch_layout, &p->layout) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    enc->bit_rate = p->bitrate;
    if (p->qscale > 0) {
        enc->flags |= AV_CODEC_FLAG_QSCALE;
        enc->global_quality = (int)lrint(p->qscale * FF_QP2LAMBDA);
    }
    if (p->compression_level >= 0)
        enc->compression_level = p->compression_level;
    if (p->bits_per_sample)
        enc->bits_per_raw_sample = p->bits_per_sample;
    enc->strict_std_compliance = FF_COMPLIANCE_EXPERIMENTAL;
    if (s->mux->oformat->flags & AVFMT_GLOBALHEADER)
        enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    /* A Bitrate is a target the output should meet. libopus's free VBR overshoots it by half on
     * some speech, so it is held to constrained VBR (Quality stays free VBR). */
    AVDictionary *opts = NULL;
    if (!strcmp(p->encoder->name, "libopus") && p->quality < 0)
        av_dict_set(&opts, "vbr", "constrained", 0);
    /* libvorbis's free ABR undershoots by a quarter on short speech; bounds keep it on target. */
    if (!strcmp(p->encoder->name, "libvorbis") && p->quality < 0 && p->bitrate > 0) {
        enc->rc_min_rate = p->bitrate * 3 / 4;
        enc->rc_max_rate = p->bitrate * 5 / 4;
    }
    int ret = avcodec_open2(enc, p->encoder, &opts);
    av_dict_free(&opts);
    if (ret < 0)
        return imm_error_set(err, IMM_EINTERNAL, "Cannot open the %s encoder (%d Hz, %d ch): %s",
                             p->encoder->name, p->sample_rate, p->layout.nb_channels,
                             av_err2str(ret));
    s->frame_size = enc->frame_size > 0 ? enc->frame_size : 4096;
    return IMM_OK;
}

static imm_err open_muxer(imm_sink *s, const AVDictionary *metadata, imm_error *err)
{
    const imm_target_plan *p = s->plan;
    if (p->segment) {
        imm_err e = imm_segmenter_open(s->st, p, &s->mux, &s->seg, err);
        if (e)
            return e;
    } else {
        int ret = avformat_alloc_output_context2(&s->mux, NULL, p->container->muxer, NULL);
        if (ret < 0)
            return imm_error_set(err, IMM_EINTERNAL, "No %s muxer in this FFmpeg build: %s",
                                 p->container->muxer, av_err2str(ret));
    }
    s->mux->strict_std_compliance = FF_COMPLIANCE_EXPERIMENTAL;
    if (metadata)
        av_dict_copy(&s->mux->metadata, metadata, 0);
    s->stream = avformat_new_stream(s->mux, NULL);
    if (!s->stream)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    return IMM_OK;
}

static imm_err write_header(imm_sink *s, imm_error *err)
{
    AVCodecParameters *par = s->stream->codecpar;
    int ret = 0;
    if (s->amr) {
        par->codec_type = AVMEDIA_TYPE_AUDIO;
        par->codec_id = AV_CODEC_ID_AMR_NB;
        par->sample_rate = s->plan->sample_rate;
        par->frame_size = IMM_AMRNB_FRAME;
        par->bit_rate = s->plan->bitrate;
        ret = av_channel_layout_copy(&par->ch_layout, &s->plan->layout);
    } else {
        ret = avcodec_parameters_from_context(par, s->enc);
    }
    if (ret < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    s->stream->time_base = (AVRational){1, s->plan->sample_rate};
    if ((ret = avformat_write_header(s->mux, s->seg ? imm_segmenter_options(s->seg) : NULL)) < 0) {
        if (s->seg && imm_segmenter_check(s->seg, err))
            return err->code;
        return imm_error_set(err, IMM_EINTERNAL, "Cannot start the %s output %s: %s",
                             s->plan->container->name, s->plan->uri, av_err2str(ret));
    }
    s->header_written = 1;
    return IMM_OK;
}

imm_err imm_sink_open(imm_storage *st, const imm_target_plan *plan, const AVDictionary *metadata,
                      imm_sink **out, imm_error *err)
{
    imm_err e;
    imm_sink *s = calloc(1, sizeof(*s));
    if (!s)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    s->st = st;
    s->plan = plan;
    if ((e = open_muxer(s, metadata, err)) || (e = open_encoder(s, err)))
        goto fail;
    s->fifo = av_audio_fifo_alloc(plan->sample_fmt, plan->layout.nb_channels, s->frame_size * 2);
    s->input = s->fifo;
    if (plan->speed != 1.0) {
        if ((e = imm_tempo_new(plan, &s->tempo, err)))
            goto fail;
        s->input = av_audio_fifo_alloc(plan->sample_fmt, plan->layout.nb_channels, 4096);
    }
    s->frame = av_frame_alloc();
    s->pkt = av_packet_alloc();
    if (!s->fifo || !s->input || !s->frame || !s->pkt) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto fail;
    }
    if (!s->seg && (e = imm_io_open_output(st, plan->uri, &s->pb, err)))
        goto fail;
    s->mux->pb = s->pb;
    if ((e = write_header(s, err)))
        goto fail;
    *out = s;
    return IMM_OK;
fail:
    imm_sink_free(s);
    return e;
}

AVAudioFifo *imm_sink_fifo(imm_sink *sink)
{
    return sink->input;
}

static imm_err write_packet(imm_sink *s, imm_error *err)
{
    s->pkt->stream_index = s->stream->index;
    av_packet_rescale_ts(s->pkt, (AVRational){1, s->plan->sample_rate}, s->stream->time_base);
    int ret = av_interleaved_write_frame(s->mux, s->pkt);
    if (ret < 0)
        return imm_error_set(err, IMM_EIO, "Writing %s failed: %s", s->plan->uri,
                             av_err2str(ret));
    return IMM_OK;
}

/* Sends one frame (NULL: flush) and writes every packet the encoder has ready. */
static imm_err encode(imm_sink *s, AVFrame *frame, imm_error *err)
{
    if (s->amr) {
        if (!frame)
            return IMM_OK;
        if (imm_amrnb_encode(s->amr, (const int16_t *)frame->data[0], s->pkt) < 0)
            return imm_error_set(err, IMM_EINTERNAL, "Encoding %s (AMR-NB) failed.",
                                 s->plan->uri);
        s->pkt->pts = s->pkt->dts = frame->pts;
        return write_packet(s, err);
    }
    int ret = avcodec_send_frame(s->enc, frame);
    if (ret < 0)
        return imm_error_set(err, IMM_EINTERNAL, "Encoding %s failed: %s", s->plan->uri,
                             av_err2str(ret));
    for (;;) {
        ret = avcodec_receive_packet(s->enc, s->pkt);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return IMM_OK;
        if (ret < 0)
            return imm_error_set(err, IMM_EINTERNAL, "Encoding %s failed: %s", s->plan->uri,
                                 av_err2str(ret));
        imm_err e = write_packet(s, err);
        if (e)
            return e;
    }
}

static imm_err encode_from_fifo(imm_sink *s, int n, imm_error *err)
{
    AVFrame *f = s->frame;
    av_frame_unref(f);
    f->nb_samples = n;
    f->format = s->plan->sample_fmt;
    f->sample_rate = s->plan->sample_rate;
    if (av_channel_layout_copy(&f->ch_layout, &s->plan->layout) < 0 ||
        av_frame_get_buffer(f, 0) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    if (av_audio_fifo_read(s->fifo, (void **)f->data, n) < n)
        return imm_error_set(err, IMM_EINTERNAL, "audio FIFO underrun");
    f->pts = s->next_pts;
    s->next_pts += n;
    return encode(s, f, err);
}

imm_err imm_sink_drain(imm_sink *s, imm_error *err)
{
    imm_err e = s->tempo ? imm_tempo_run(s->tempo, s->input, s->fifo, 0, err) : IMM_OK;
    while (!e && av_audio_fifo_size(s->fifo) >= s->frame_size)
        e = encode_from_fifo(s, s->frame_size, err);
    return e;
}

imm_err imm_sink_finish(imm_sink *s, imm_error *err)
{
    imm_err e = s->tempo ? imm_tempo_run(s->tempo, s->input, s->fifo, 1, err) : IMM_OK;
    if (!e)
        e = imm_sink_drain(s, err);
    int rest = av_audio_fifo_size(s->fifo);
    if (!e && rest > 0) {
        /* Encoders that cannot take a short last frame get it padded with silence: the stream
         * is then longer than the input, which their containers could not express anyway. */
        int caps = s->enc ? s->enc->codec->capabilities : 0;
        if (!(caps & (AV_CODEC_CAP_SMALL_LAST_FRAME | AV_CODEC_CAP_VARIABLE_FRAME_SIZE))) {
            uint8_t **pad = NULL;
            int n = s->frame_size - rest, ch = s->plan->layout.nb_channels;
            enum AVSampleFormat fmt = s->plan->sample_fmt;
            if (av_samples_alloc_array_and_samples(&pad, NULL, ch, n, fmt, 0) < 0)
                return imm_error_set(err, IMM_EINTERNAL, "out of memory");
            av_samples_set_silence(pad, 0, n, ch, fmt);
            av_audio_fifo_write(s->fifo, (void **)pad, n);
            av_freep(&pad[0]);
            av_freep(&pad);
            rest = s->frame_size;
        }
        e = encode_from_fifo(s, rest, err);
    }
    if (!e)
        e = encode(s, NULL, err);
    if (!e) {
        int ret = av_write_trailer(s->mux);
        s->trailer_written = 1;
        if (s->seg && (e = imm_segmenter_check(s->seg, err)))
            return e;
        if (ret < 0)
            return imm_error_set(err, IMM_EIO, "Finishing %s failed: %s", s->plan->uri,
                                 av_err2str(ret));
    }
    return e;
}

imm_err imm_sink_commit(imm_sink *s, imm_error *err)
{
    if (s->seg)
        return imm_segmenter_commit(s->seg, &s->size, err);
    return imm_io_commit_output(s->st, s->pb, &s->size, err);
}

int64_t imm_sink_samples(const imm_sink *s)
{
    return s->next_pts;
}

int64_t imm_sink_size(const imm_sink *s)
{
    return s->size;
}

void imm_sink_free(imm_sink *s)
{
    if (!s)
        return;
    av_frame_free(&s->frame);
    av_packet_free(&s->pkt);
    if (s->input != s->fifo)
        av_audio_fifo_free(s->input);
    av_audio_fifo_free(s->fifo);
    imm_tempo_free(s->tempo);
    avcodec_free_context(&s->enc);
    imm_amrnb_free(s->amr);
    /* FFmpeg 5.1's hls muxer frees its segment buffers only in write_trailer, so an abandoned
     * segmented output is finished (into files the segmenter then removes) rather than leaked. */
    if (s->seg && s->header_written && !s->trailer_written)
        av_write_trailer(s->mux);
    if (s->mux) {
        s->mux->pb = NULL;
        avformat_free_context(s->mux);
    }
    imm_segmenter_free(s->seg);
    imm_io_close_output(s->st, &s->pb);
    free(s);
}
