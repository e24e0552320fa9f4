/*
 * media.h - the audio pipeline's parts, shared inside the engine:
 *
 *   storage_io.c  FFmpeg I/O over imm_storage
 *   source.c      demux + decode + clip one source, sample-exact
 *   plan.c        a target's resolved parameters (request, else the AlignmentIndex source)
 *   convert.c     resample/remix one source's audio into a target's format, exact in length
 *   lane.c        a target's converter and encoder on a thread of its own
 *   tempo.c       a target's Speed (atempo), exact in length
 *   segment.c     a segmented (HLS) target's files through storage
 *   sink.c        FIFO -> encoder in frame_size chunks -> muxer -> storage, committed on success
 *   task.c        runs them in order and reports like the service
 */
#ifndef IMMERGE_MEDIA_H
#define IMMERGE_MEDIA_H

#include "internal.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>

/* ---- storage_io.c ---- */
imm_err imm_io_open_input(imm_storage *st, const char *uri, AVFormatContext **out, imm_error *err);
/* A playlist segment that was missing or out of bounds, even where the demuxer went on without it:
 * a merge never silently drops part of a source. */
imm_err imm_io_input_check(AVFormatContext *fmt, imm_error *err);
/* Sets err for a failure while reading fmt: the storage's own reason (a playlist segment missing
 * or out of bounds) when there is one, else code with the printf-style message. */
imm_err imm_io_input_error(AVFormatContext *fmt, imm_err code, imm_error *err, const char *msg,
                           ...) __attribute__((format(printf, 4, 5)));
void imm_io_close_input(imm_storage *st, AVFormatContext **fmt);
imm_err imm_io_open_output(imm_storage *st, const char *uri, AVIOContext **pb, imm_error *err);
/* Flushes pb and makes the object appear at its URI; *size gets its final size. */
imm_err imm_io_commit_output(imm_storage *st, AVIOContext *pb, int64_t *size, imm_error *err);
/* Frees pb; an uncommitted object is discarded. */
void imm_io_close_output(imm_storage *st, AVIOContext **pb);

/* ---- source.c ---- */
typedef struct imm_source imm_source;

/* What a probe learns of a source's selected audio stream. */
typedef struct imm_source_info {
    int sample_rate;
    int channels;
    AVChannelLayout layout;
    enum AVSampleFormat sample_fmt;
    int bits_per_raw_sample; /* 0 when unknown */
    int64_t bit_rate;        /* 0 when unknown */
    double duration;         /* seconds, an estimate from the container; 0 when unknown */
    int stream_index;
    const AVDictionary *metadata; /* container-level tags, valid while the source is open */
} imm_source_info;

/* Opens a source and its decoder(s). sel chooses the audio stream, or the streams to mix (see
 * source.c); clipping comes from req. */
imm_err imm_source_open(imm_storage *st, const imm_source_req *req, const imm_stream_select *sel,
                        imm_source **out, imm_error *err);
const imm_source_info *imm_source_get_info(const imm_source *src);
/* The next run of clipped samples: frame's samples [*offset, *offset + *count). *frame is NULL at
 * the end of the (clipped) source. The frame stays owned by the source until the next call. */
imm_err imm_source_read(imm_source *src, AVFrame **frame, int *offset, int *count,
                        imm_error *err);
/* Samples delivered so far, at the source's decoded rate. */
int64_t imm_source_samples(const imm_source *src);
void imm_source_close(imm_source *src);

/* ---- plan.c ---- */
typedef struct imm_target_plan {
    char *uri; /* {autoext} resolved */
    const imm_container_info *container;
    const imm_codec_info *codec;
    const AVCodec *encoder; /* NULL when amrnb */
    bool amrnb;             /* AMR-NB through amrnb.c */
    int sample_rate;
    AVChannelLayout layout;
    enum AVSampleFormat sample_fmt;
    int64_t bitrate;      /* 0 for lossless codecs and VBR by quality */
    int bits_per_sample;  /* FLAC: 16 or 24; 0 otherwise */
    int quality;          /* the request's Quality, -1 when not set */
    double qscale;        /* > 0: VBR at this encoder quality (FFmpeg's -q:a scale) */
    int compression_level; /* >= 0: FLAC's, from Quality */
    double speed;         /* Speed: 1.0, or 0.5..1 through tempo.c */
    bool segment;         /* an HLS playlist (uri) and its segments, through segment.c */
    double segment_duration;
    int segment_start;
} imm_target_plan;

imm_err imm_plan_target(const imm_target_req *t, int index, const imm_source_info *primary,
                        imm_target_plan *out, imm_error *err);
void imm_plan_clear(imm_target_plan *plan);

/* ---- convert.c ---- */
typedef struct imm_convert imm_convert;

imm_convert *imm_convert_new(const imm_target_plan *plan);
/* Converts samples [offset, offset + count) of frame into fifo. */
imm_err imm_convert_push(imm_convert *cv, const AVFrame *frame, int offset, int count,
                         AVAudioFifo *fifo, imm_error *err);
/* Ends a source: flushes the resampler and makes this source's contribution exactly
 * round(input samples * out rate / in rate) long. */
imm_err imm_convert_finish(imm_convert *cv, AVAudioFifo *fifo, imm_error *err);
void imm_convert_free(imm_convert *cv);

/* ---- amrnb.c ---- */
#define IMM_AMRNB_FRAME 160 /* samples of 8 kHz mono per frame */
typedef struct imm_amrnb imm_amrnb;

/* The AMR-NB mode's bitrate for a requested one: the highest mode at or below it (4750 at least). */
int imm_amrnb_mode_rate(int64_t bitrate);
imm_amrnb *imm_amrnb_new(int64_t bitrate);
/* One frame of IMM_AMRNB_FRAME samples into pkt (data and duration; the caller sets pts). */
int imm_amrnb_encode(imm_amrnb *a, const int16_t *pcm, AVPacket *pkt);
void imm_amrnb_free(imm_amrnb *a);

/* ---- tempo.c ---- */
typedef struct imm_tempo imm_tempo;

imm_err imm_tempo_new(const imm_target_plan *plan, imm_tempo **out, imm_error *err);
/* Moves what `in` holds through atempo into `out`; with flush, ends the stream and makes the
 * total exactly round(samples in / speed). */
imm_err imm_tempo_run(imm_tempo *t, AVAudioFifo *in, AVAudioFifo *out, int flush,
                      imm_error *err);
void imm_tempo_free(imm_tempo *t);

/* ---- segment.c ---- */
typedef struct imm_segmenter imm_segmenter;

/* An hls muxer for plan (a segmented target) whose files all go through storage. */
imm_err imm_segmenter_open(imm_storage *st, const imm_target_plan *plan, AVFormatContext **mux,
                           imm_segmenter **out, imm_error *err);
/* The muxer options for avformat_write_header. */
AVDictionary **imm_segmenter_options(imm_segmenter *g);
/* A failure met while the muxer wrote (a refused path, storage); IMM_OK if none. */
imm_err imm_segmenter_check(imm_segmenter *g, imm_error *err);
/* Makes the playlist appear; *size gets the bytes of it and all segments. */
imm_err imm_segmenter_commit(imm_segmenter *g, int64_t *size, imm_error *err);
/* Frees; without a commit, the segments already written are removed. Free the muxer first. */
void imm_segmenter_free(imm_segmenter *g);

/* ---- sink.c ---- */
typedef struct imm_sink imm_sink;

imm_err imm_sink_open(imm_storage *st, const imm_target_plan *plan, const AVDictionary *metadata,
                      imm_sink **out, imm_error *err);
AVAudioFifo *imm_sink_fifo(imm_sink *sink);
/* Encodes what the FIFO holds in whole encoder frames. */
imm_err imm_sink_drain(imm_sink *sink, imm_error *err);
/* Encodes the rest, flushes the encoder and writes the trailer; the output is not yet visible. */
imm_err imm_sink_finish(imm_sink *sink, imm_error *err);
imm_err imm_sink_commit(imm_sink *sink, imm_error *err);
int64_t imm_sink_samples(const imm_sink *sink);
int64_t imm_sink_size(const imm_sink *sink);
/* Frees the sink; an output not committed is discarded. */
void imm_sink_free(imm_sink *sink);

/* ---- lane.c ---- */
typedef struct imm_lane imm_lane;

/* A thread that converts and encodes for one target (its sink and converter stay the caller's). */
imm_err imm_lane_start(imm_sink *sink, imm_convert *convert, imm_lane **out, imm_error *err);
/* Queues samples [offset, offset + count) of frame (by reference), waiting while the queue is
 * full; fails with the lane's own error once it has failed. */
imm_err imm_lane_push(imm_lane *l, const AVFrame *frame, int offset, int count, imm_error *err);
/* Queues the end of a source: the converter is flushed to its exact length. */
imm_err imm_lane_end_source(imm_lane *l, imm_error *err);
/* Queues the end of the stream: the sink finishes (imm_sink_finish). */
imm_err imm_lane_finish(imm_lane *l, imm_error *err);
/* Waits until the lane has handled everything up to its finish, or failed. */
imm_err imm_lane_wait(imm_lane *l, imm_error *err);
/* Stops the lane (what is queued is dropped) and joins its thread. */
void imm_lane_free(imm_lane *l);

#endif
