/*
 * sink.c - one target's output: a FIFO of converted samples, the encoder fed in its frame size,
 * and the muxer writing through storage to a temporary object that commit makes visible.
 *
 * Timestamps are sample counts (time base 1/rate), so the encoder's packets carry its priming
 * (initial_padding) and the last packet's true duration; the MP3 muxer turns those into the LAME
 * tag's delay/padding and the MP4 muxer into an edit list, which is how the output stays gapless.
 *
 * A sink can also encode one chunk of a target split over several cores (chunk.c): it is given the
 * whole timeline but encodes only its window, keeps only the packets that start inside it, and
 * either muxes them (the first chunk) or spools them for the first chunk's sink to append. Whether
 * a chunk holds the timeline's end is known only when the timeline goes on past its window or
 * ends, so the packets after the window wait (a few frames) until then.
 */
#include "engine/sink/sink.h"

#include <libavutil/intreadwrite.h>
#include <math.h>
#include <string.h>

#include <stdlib.h>

/* Packets around a chunk's end: the splice's margin, the look-ahead and the encoder's delay. */
#define MAX_HELD 320

struct imm_sink {
    imm_storage *st;
    const imm_target_plan *plan;
    imm_chunk_window win;
    AVIOContext *pb;
    AVFormatContext *mux; /* NULL when the packets are spooled */
    imm_spool *spool;
    AVStream *stream;
    AVCodecContext *enc;
    imm_amrnb *amr;     /* instead of enc, for AMR-NB */
    imm_segmenter *seg; /* a segmented target: the muxer writes through it, not pb */
    AVAudioFifo *fifo;  /* what the encoder takes next */
    AVAudioFifo *input; /* with a Speed: what the merge gives, before tempo; else == fifo */
    imm_tempo *tempo;
    AVFrame *frame;
    AVPacket *pkt;
    AVPacket *held[MAX_HELD]; /* packets near and past the window's end: see write_packet */
    int nheld;
    int frame_size;
    int delay;   /* the encoder's priming: a packet's pts + delay is its first input sample */
    int64_t pos; /* the timeline sample at the FIFO's head, the next frame's pts */
    int64_t end; /* the timeline's length once it has ended here, else INT64_MAX */
    int hold;    /* samples kept back until the end: the fade-out needs to know where it is */
    int full;    /* the timeline went on past win.limit: a later chunk holds its end */
    int64_t encoded; /* samples given to the encoder (atomic: the task's thread reports it) */
    /* The MP3 muxer's LAME tag: see deliver. */
    AVPacket *last;  /* the latest packet, held back until the next or the end */
    AVPacket *prev;  /* MP4 and MOV: the one before it, held too (see edit_listed) */
    int64_t muxed;   /* packets muxed before it */
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
    const AVOutputFormat *of = av_guess_format(p->segment ? "hls" : p->container->muxer, NULL,
                                               NULL);
    if (of && (of->flags & AVFMT_GLOBALHEADER))
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
    s->delay = enc->initial_padding;
    return IMM_OK;
}

static imm_err open_muxer(imm_sink *s, const AVDictionary *metadata, imm_error *err)
{
    const imm_target_plan *p = s->plan;
    imm_err e;
    if (p->segment) {
        if ((e = imm_segmenter_open(s->st, p, &s->mux, &s->seg, err)))
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
    /* The muxer sets its own "encoder"; replacing a key moves the dictionary's last entry into
     * its place, which would put a chapter's name before the chapter it names. */
    av_dict_set(&s->mux->metadata, "encoder", NULL, 0);
    if ((e = imm_metadata_add_chapters(s->mux, p, err)))
        return e;
    s->stream = avformat_new_stream(s->mux, NULL);
    if (!s->stream)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    return p->cover ? imm_metadata_add_cover(s->mux, p, err) : IMM_OK;
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
    AVDictionary *movie = NULL;
    /* MP4 and MOV keep the edit list (the samples to play) in the movie's timescale, 1000 by
     * default: 26 ms for 1153 samples, which is 1147. At the sample rate it says exactly N. */
    if (!s->seg && (!strcmp(s->plan->container->muxer, "mp4") ||
                    !strcmp(s->plan->container->muxer, "mov")))
        av_dict_set_int(&movie, "movie_timescale", s->plan->sample_rate, 0);
    ret = avformat_write_header(s->mux, s->seg ? imm_segmenter_options(s->seg) : &movie);
    av_dict_free(&movie);
    if (ret < 0) {
        if (s->seg && imm_segmenter_check(s->seg, err))
            return err->code;
        return imm_error_set(err, IMM_EINTERNAL, "Cannot start the %s output %s: %s",
                             s->plan->container->name, s->plan->uri, av_err2str(ret));
    }
    s->header_written = 1;
    return s->plan->cover ? imm_metadata_write_cover(s->mux, s->plan, err) : IMM_OK;
}

static const imm_chunk_window whole = {0, INT64_MIN, INT64_MAX, INT64_MAX, 0, 0};

/* A sink that muxes through st (st != NULL) or spools its packets. */
static imm_err open_sink(imm_storage *st, const imm_target_plan *plan,
                         const AVDictionary *metadata, const char *temp_dir, imm_sink **out,
                         imm_error *err)
{
    imm_err e;
    imm_sink *s = calloc(1, sizeof(*s));
    if (!s)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    s->st = st;
    s->plan = plan;
    s->win = whole;
    s->end = INT64_MAX;
    s->hold = (int)plan->fade_out;
    if ((st ? (e = open_muxer(s, metadata, err)) : (e = imm_spool_new(temp_dir, &s->spool, err))) ||
        (e = open_encoder(s, err)))
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
    if (st) {
        if (!s->seg && (e = imm_io_open_output(st, plan->uri, &s->pb, err)))
            goto fail;
        s->mux->pb = s->pb;
        if ((e = write_header(s, err)))
            goto fail;
    }
    *out = s;
    return IMM_OK;
fail:
    imm_sink_free(s);
    return e;
}

imm_err imm_sink_open(imm_storage *st, const imm_target_plan *plan, const AVDictionary *metadata,
                      imm_sink **out, imm_error *err)
{
    return open_sink(st, plan, metadata, NULL, out, err);
}

imm_err imm_sink_open_spooled(const imm_target_plan *plan, const char *temp_dir, imm_sink **out,
                              imm_error *err)
{
    return open_sink(NULL, plan, NULL, temp_dir, out, err);
}

int imm_sink_frame_size(const imm_sink *s)
{
    return s->frame_size;
}

void imm_sink_set_window(imm_sink *s, const imm_chunk_window *w)
{
    s->win = *w;
    s->pos = 0;
}

int imm_sink_full(const imm_sink *s)
{
    return s->full;
}

int64_t imm_sink_encoded(const imm_sink *s)
{
    return __atomic_load_n(&s->encoded, __ATOMIC_RELAXED);
}

int64_t imm_sink_unneeded(const imm_sink *s)
{
    /* A quarter second more than the resampler's filter needs to fill, so what the encoder
     * takes from win.first on is exactly what converting from the start would give. */
    int64_t warmup = s->plan->sample_rate / 4;
    if (s->tempo || av_audio_fifo_size(s->fifo))
        return 0; /* a tempo change depends on all that came before */
    return FFMAX(0, s->win.first - warmup - s->pos);
}

void imm_sink_pass(imm_sink *s, int64_t n)
{
    s->pos += n;
}

AVAudioFifo *imm_sink_fifo(imm_sink *sink)
{
    return sink->input;
}

static imm_err mux(imm_sink *s, AVPacket *pkt, imm_error *err)
{
    pkt->stream_index = s->stream->index;
    av_packet_rescale_ts(pkt, (AVRational){1, s->plan->sample_rate}, s->stream->time_base);
    int ret = av_interleaved_write_frame(s->mux, pkt);
    if (ret < 0)
        return imm_error_set(err, IMM_EIO, "Writing %s failed: %s", s->plan->uri,
                             av_err2str(ret));
    return IMM_OK;
}

/* FFmpeg 5.1's MP3 muxer writes into the LAME tag the end padding of the last packet only, as
 * the encoder signalled it for that packet; libmp3lame signals it packet by packet as if there
 * were no encoder delay, so when the padding spans two packets the tag is short by what the
 * packet before carried, and decoders give up to a frame too much. The last packet therefore
 * waits for the end (or for the next), and then carries the exact padding of the whole stream:
 * its packets' samples less the delay less the samples merged. */
static int lame_tag(const imm_sink *s)
{
    return s->mux && !s->seg && !strcmp(s->mux->oformat->name, "mp3") && s->enc;
}

/* MP4 and MOV end their edit list where the last packet ends. The last two packets wait for the
 * end: a last one of padding only (libmp3lame flushes one) is left out, and the last one kept
 * lasts only as far as the samples merged (as FFmpeg's AAC encoder does by itself), so that the
 * edit list says exactly how many there are whatever the codec. (A codec without delay, FLAC,
 * ends where its samples do by itself.) */
static int edit_listed(const imm_sink *s)
{
    return s->mux && !s->seg && s->enc && s->delay > 0 &&
           (!strcmp(s->mux->oformat->name, "mp4") || !strcmp(s->mux->oformat->name, "mov"));
}

static imm_err mux_prev(imm_sink *s, imm_error *err)
{
    if (!s->prev || !s->prev->data)
        return IMM_OK;
    s->muxed++;
    return mux(s, s->prev, err);
}

static imm_err mux_last(imm_sink *s, int at_end, imm_error *err)
{
    if (at_end && edit_listed(s) && s->last && !s->last->data && s->prev)
        av_packet_move_ref(s->last, s->prev);
    if (!s->last || !s->last->data)
        return IMM_OK;
    if (at_end && edit_listed(s)) {
        if (s->prev && s->prev->data && s->last->pts >= s->pos) {
            av_packet_unref(s->last);
            av_packet_move_ref(s->last, s->prev);
        }
        imm_err e = mux_prev(s, err);
        if (e)
            return e;
    }
    int64_t padding = (s->muxed + 1) * s->frame_size - s->delay - s->pos;
    if (at_end && lame_tag(s)) {
        uint8_t *skip = av_packet_new_side_data(s->last, AV_PKT_DATA_SKIP_SAMPLES, 10);
        if (!skip)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        AV_WL32(skip, (uint32_t)s->delay);
        AV_WL32(skip + 4, (uint32_t)FFMAX(padding, 0));
    } else if (at_end && s->last->pts < s->pos && s->pos - s->last->pts < s->last->duration) {
        s->last->duration = s->pos - s->last->pts;
    }
    s->muxed++;
    return mux(s, s->last, err);
}

/* Muxes or spools pkt (in time base 1/rate); it is left blank either way. */
static imm_err deliver(imm_sink *s, AVPacket *pkt, imm_error *err)
{
    if (s->spool) {
        imm_err e = imm_spool_put(s->spool, pkt, err);
        av_packet_unref(pkt);
        return e;
    }
    if (!lame_tag(s) && !edit_listed(s))
        return mux(s, pkt, err);
    if ((!s->last && !(s->last = av_packet_alloc())) ||
        (edit_listed(s) && !s->prev && !(s->prev = av_packet_alloc())))
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    imm_err e = edit_listed(s) ? mux_prev(s, err) : mux_last(s, 0, err);
    if (edit_listed(s))
        av_packet_move_ref(s->prev, s->last);
    av_packet_move_ref(s->last, pkt);
    return e;
}

static void free_packets(AVPacket **pkts, int *n)
{
    for (int i = 0; i < *n; i++)
        av_packet_free(&pkts[i]);
    *n = 0;
}

/* Moves pkt's content onto the end of pkts. */
static imm_err keep(AVPacket **pkts, int *n, AVPacket *pkt, imm_error *err)
{
    if (*n == MAX_HELD)
        return imm_error_set(err, IMM_EINTERNAL, "Too many packets around a chunk's edge.");
    if (!(pkts[*n] = av_packet_alloc()))
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    av_packet_move_ref(pkts[(*n)++], pkt);
    return IMM_OK;
}

static int64_t start_of(const imm_sink *s, const AVPacket *pkt)
{
    return pkt->pts + s->delay;
}

/* A chunk's packets go out from win.margin before keep_from (the splice may need them); those
 * from win.margin before keep_to on are held: the next chunk's splice may patch or drop them, and
 * if the timeline ends before limit they are the output's end after all. */
static imm_err write_packet(imm_sink *s, imm_error *err)
{
    int64_t start = start_of(s, s->pkt);
    if (s->win.keep_from != INT64_MIN && start < s->win.keep_from - s->win.margin) {
        av_packet_unref(s->pkt);
        return IMM_OK;
    }
    if (s->win.keep_to != INT64_MAX && start >= s->win.keep_to - s->win.margin)
        return keep(s->held, &s->nheld, s->pkt, err);
    return deliver(s, s->pkt, err);
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
    f->pts = s->pos;
    imm_gain_apply(s->plan, s->end, f);
    s->pos += n;
    __atomic_fetch_add(&s->encoded, n, __ATOMIC_RELAXED);
    return encode(s, f, err);
}

/* Drops n samples from the FIFO's head. */
static void skip(imm_sink *s, int n)
{
    av_audio_fifo_drain(s->fifo, n);
    s->pos += n;
}

imm_err imm_sink_drain(imm_sink *s, imm_error *err)
{
    imm_err e = s->tempo ? imm_tempo_apply(s->tempo, s->input, s->fifo, 0, err) : IMM_OK;
    int have = av_audio_fifo_size(s->fifo);
    if (have && s->pos < s->win.first)
        skip(s, (int)FFMIN(have, s->win.first - s->pos));
    /* Window edges are whole frames from win.first, so a frame never straddles limit. */
    while (!e && av_audio_fifo_size(s->fifo) - s->hold >= s->frame_size &&
           s->win.limit - s->pos >= s->frame_size)
        e = encode_from_fifo(s, s->frame_size, err);
    if (!e && (have = av_audio_fifo_size(s->fifo)) && s->pos >= s->win.limit) {
        s->full = 1;
        skip(s, have);
    }
    return e;
}

imm_err imm_sink_finish(imm_sink *s, imm_error *err)
{
    imm_err e = s->tempo ? imm_tempo_apply(s->tempo, s->input, s->fifo, 1, err) : IMM_OK;
    if (!s->full)
        s->end = s->pos + av_audio_fifo_size(s->fifo);
    s->hold = 0;
    if (!e)
        e = imm_sink_drain(s, err);
    int rest = av_audio_fifo_size(s->fifo);
    if (!e && rest > 0 && !s->full) {
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
    /* The timeline ended before this chunk's limit: what waited is the output's end. */
    if (!s->full) {
        for (int i = 0; !e && i < s->nheld; i++)
            e = deliver(s, s->held[i], err);
        free_packets(s->held, &s->nheld);
    }
    if (!e && s->spool)
        e = imm_spool_rewind(s->spool, err);
    return e;
}

imm_err imm_sink_join(imm_sink *s, imm_sink *next, int64_t *seam, imm_error *err)
{
    AVPacket *head[MAX_HELD];
    int nhead = 0, got = 0, i;
    imm_err e = IMM_OK;
    *seam = -1;
    if (!s->full)
        return IMM_OK; /* the output already ends before next's chunk */
    /* next's packets as far as the splice may reach, then where the two streams meet */
    while (!(e = imm_spool_get(next->spool, s->pkt, &got, err)) && got) {
        int64_t start = start_of(s, s->pkt);
        if ((e = keep(head, &nhead, s->pkt, err)) ||
            start >= next->win.keep_from + next->win.reach)
            break;
    }
    if (!e)
        e = imm_splice(s->plan, s->frame_size, s->delay, s->held, s->nheld, head, nhead,
                             next->win.keep_from, next->win.reach, seam, err);
    for (i = 0; !e && i < s->nheld && start_of(s, s->held[i]) < *seam; i++)
        e = deliver(s, s->held[i], err);
    for (i = 0; !e && i < nhead; i++)
        if (start_of(s, head[i]) >= *seam)
            e = deliver(s, head[i], err);
    free_packets(head, &nhead);
    free_packets(s->held, &s->nheld);
    while (!e && got && !(e = imm_spool_get(next->spool, s->pkt, &got, err)) && got)
        e = deliver(s, s->pkt, err);
    /* next's own held packets wait for the chunk after it */
    memcpy(s->held, next->held, (size_t)next->nheld * sizeof(*next->held));
    s->nheld = next->nheld;
    next->nheld = 0;
    s->pos = next->pos;
    s->full = next->full;
    return e;
}

/* AAC in MP4 (and M4A) also gets the iTunes gapless item: see mp4_gapless.c. */
static int itunes_gapless(const imm_sink *s)
{
    return s->mux && !s->seg && s->enc && s->enc->codec_id == AV_CODEC_ID_AAC &&
           !strcmp(s->mux->oformat->name, "mp4");
}

/* The trailer, written from trailer_at, ends with the moov (the last box, so its size is what
 * is left from where it starts); it is written again over itself with the item added. */
static imm_err add_gapless(imm_sink *s, int64_t trailer_at, imm_error *err)
{
    size_t n = 0, at, out_len;
    const uint8_t *tail = imm_io_captured(s->pb, &n);
    if (!tail)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    for (at = 0; at + 8 <= n; at++)
        if (!memcmp(tail + at + 4, "moov", 4) && AV_RB32(tail + at) == n - at)
            break;
    if (at + 8 > n)
        return imm_error_set(err, IMM_EINTERNAL, "The MP4 muxer wrote no moov last in %s.",
                             s->plan->uri);
    int64_t padding = s->muxed * s->frame_size - s->delay - s->pos;
    uint8_t *moov = NULL;
    imm_err e = imm_mp4_add_gapless(tail + at, n - at, s->delay, padding, s->pos, &moov,
                                    &out_len, err);
    if (e)
        return e;
    avio_seek(s->pb, trailer_at + (int64_t)at, SEEK_SET);
    avio_write(s->pb, moov, (int)out_len);
    avio_flush(s->pb);
    free(moov);
    if (s->pb->error < 0)
        return imm_error_set(err, IMM_EIO, "Writing %s failed: %s", s->plan->uri,
                             av_err2str(s->pb->error));
    return IMM_OK;
}

imm_err imm_sink_complete(imm_sink *s, imm_error *err)
{
    if (s->full)
        return imm_error_set(err, IMM_EINTERNAL, "The chunks of %s do not reach its end.",
                             s->plan->uri);
    imm_err e = mux_last(s, 1, err);
    if (e)
        return e;
    int64_t trailer_at = avio_tell(s->mux->pb);
    if (itunes_gapless(s))
        imm_io_capture(s->pb, trailer_at);
    int ret = av_write_trailer(s->mux);
    s->trailer_written = 1;
    if (s->seg && (e = imm_segmenter_check(s->seg, err)))
        return e;
    if (ret < 0)
        return imm_error_set(err, IMM_EIO, "Finishing %s failed: %s", s->plan->uri,
                             av_err2str(ret));
    if (itunes_gapless(s) && (e = add_gapless(s, trailer_at, err)))
        return e;
    if (s->seg)
        return imm_segmenter_finish(s->seg, &s->size, err);
    return imm_io_finish_output(s->st, s->pb, &s->size, err);
}

imm_err imm_sink_commit(imm_sink *s, imm_error *err)
{
    if (s->seg)
        return imm_segmenter_commit(s->seg, err);
    return imm_io_commit_output(s->st, s->pb, s->plan->owner, NULL, err);
}

int64_t imm_sink_samples(const imm_sink *s)
{
    return s->pos;
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
    av_packet_free(&s->last);
    av_packet_free(&s->prev);
    free_packets(s->held, &s->nheld);
    imm_spool_free(s->spool);
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
