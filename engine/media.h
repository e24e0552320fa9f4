/*
 * media.h - the audio pipeline's parts, shared inside the engine:
 *
 *   storage_io.c  FFmpeg I/O over imm_storage
 *   timeline.c    a source's runs of one rate: clipping by time, lengths as converted
 *   source.c      demux + decode + clip one source, sample-exact
 *   count.c       a source's length without decoding it, for `immerge plan`
 *   plan.c        a target's resolved parameters (request, else the AlignmentIndex source)
 *   convert.c     resample/remix one source's audio into a target's format, exact in length
 *   lane.c        a target's converter and encoder on a thread of its own
 *   chunk.c       one target encoded in chunks on several cores, joined into one stream
 *   spool.c       encoded packets kept in a temporary file until they are muxed
 *   tempo.c       a target's Speed (atempo), exact in length
 *   segment.c     a segmented (HLS) target's files through storage
 *   sink.c        FIFO -> encoder in frame_size chunks -> muxer -> storage, committed on success
 *   joins.c       how each join between two sources measures (the task's ImmergeReport)
 *   loudness.c    EBU R128 loudness and sample peak of a stream (ebur128)
 *   prepass.c     the sources read once before the merge, for Loudness and Chapters
 *   preview.c     `immerge plan`'s answer, from the probes and plans alone
 *   compare.c     `immerge compare`: two files' lengths, levels, loudness, offset and SNR
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
/* Flushes pb; *size gets the object's final size. Nothing is visible yet. */
imm_err imm_io_finish_output(imm_storage *st, AVIOContext *pb, int64_t *size, imm_error *err);
/* Makes the finished object appear at its URI: once for owner when it is not NULL (see
 * imm_storage_ops.commit_owned; *already, which may be NULL, is set when owner had committed it
 * and nothing was written), else replacing what is there. */
imm_err imm_io_commit_output(imm_storage *st, AVIOContext *pb, const char *owner, int *already,
                             imm_error *err);
/* From the output's byte at offset on, keeps a copy of what is written to pb, until pb is
 * closed: the MP4 muxer's moov, which it writes last (and patches as it goes). */
void imm_io_capture(AVIOContext *pb, int64_t offset);
/* What was kept since imm_io_capture, as far as it has been flushed (NULL when memory ran out). */
const uint8_t *imm_io_captured(AVIOContext *pb, size_t *len);
/* Frees pb; an uncommitted object is discarded. */
void imm_io_close_output(imm_storage *st, AVIOContext **pb);

/* ---- timeline.c ---- */
#define IMM_MAX_RUNS 4096 /* runs of one rate a source may have: past it, InvalidMedia */

typedef struct imm_run {
    int rate;
    int64_t samples;
} imm_run;

/* Decoded samples as their runs of one rate, in order; zero-initialised it is empty. */
typedef struct imm_timeline {
    imm_run *runs;
    int n, cap;
} imm_timeline;

/* Appends n samples at rate (continuing the last run when it has that rate). */
imm_err imm_timeline_add(imm_timeline *t, int rate, int64_t n, imm_error *err);
/* Samples of every rate together, and the time they last. */
int64_t imm_timeline_samples(const imm_timeline *t);
double imm_timeline_seconds(const imm_timeline *t);
/* How many samples it becomes at an output rate, as the converters make it: each run
 * round(samples x rate / its rate). */
int64_t imm_timeline_length(const imm_timeline *t, int rate);
/* Appends its samples [from, to) (counted across the runs) to out. */
imm_err imm_timeline_slice(const imm_timeline *t, int64_t from, int64_t to, imm_timeline *out,
                           imm_error *err);
/* Adds "SampleRateRuns": [{"SampleRate", "Samples"}...] to a JSON object. */
struct cJSON;
void imm_timeline_json(struct cJSON *o, const imm_timeline *t);
void imm_timeline_clear(imm_timeline *t);

/* StartTime and Duration applied by time to decoded samples whatever their rates (timeline.c). */
typedef struct imm_clip {
    double start, duration; /* seconds; duration 0: to the end */
    double run_start;       /* seconds before the current run */
    int rate;               /* the current run's; 0 before any sample */
    int64_t pos;            /* samples of the current run so far */
    int started;            /* the clip's first sample has been found ... */
    double end_time;        /* ... and from it, where the clip ends */
    int64_t end;            /* that end in the current run (INT64_MAX: none) */
    int done;               /* the clip has ended */
} imm_clip;

void imm_clip_init(imm_clip *c, double start, double duration);
/* Of the next n decoded samples, at rate, those in the clip: how many, from *offset. */
int64_t imm_clip_take(imm_clip *c, int rate, int64_t n, int64_t *offset);
/* The decoded time taken in so far. */
double imm_clip_seconds(const imm_clip *c);

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
    const char *duration_from; /* "timestamps", "stream header", "bitrate estimate"; NULL unknown */
    const char *format;      /* the demuxer's name ("mp3", "mov,mp4,m4a,3gp,3g2,mj2") */
    const char *codec;       /* the decoder's name */
    int stream_index;
    int nstreams;            /* streams mixed into one (FilterAudio.Mixing), else 1 */
    int has_video;           /* a video stream that is not just cover art */
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
/* Samples delivered so far, of whatever rates the source decodes to. */
int64_t imm_source_samples(const imm_source *src);
/* Part of a clip, in samples counted from the clip's start (of every rate, as they come):
 * [from, to); to < 0: all of it. */
typedef struct imm_span {
    int64_t from, to;
} imm_span;
/* An attached picture (cover art) and its stream's parameters. */
typedef struct imm_cover {
    AVPacket *pkt;
    AVCodecParameters *par;
} imm_cover;
/* The source's cover art (CoverFrom), copied; InvalidMedia when it has none. */
imm_err imm_source_cover(const imm_source *src, imm_cover *out, imm_error *err);
void imm_cover_clear(imm_cover *c);
/* Narrows the clip to span (TrimSilence), before the first read: span counts the samples the
 * clip lets through. */
void imm_source_narrow(imm_source *src, const imm_span *span);
/* The decoded samples before the first one delivered (StartTime, TrimSilence), once it is. */
int64_t imm_source_clip_start(const imm_source *src);
/* The decoded time read so far, whatever the rates: once the source has ended, its length. */
double imm_source_decoded_seconds(const imm_source *src);
/* The next packet of the selected stream, read but not decoded (valid until the next call);
 * *pkt NULL at the end. Only for a source that is not read otherwise (count.c). */
imm_err imm_source_next_packet(imm_source *src, AVPacket **pkt, imm_error *err);
const AVFormatContext *imm_source_demuxer(const imm_source *src);
/* The same source and stream selection, opened again, whole (no clip). */
imm_err imm_source_reopen_whole(const imm_source *src, imm_source **out, imm_error *err);
/* The encoder delay (start) and padding (end) the container has so far told the decoder to drop
 * (AV_PKT_DATA_SKIP_SAMPLES), in samples. */
void imm_source_trimmed(const imm_source *src, int64_t *start, int64_t *end);
void imm_source_close(imm_source *src);

/* ---- count.c ---- */
/* For `immerge plan`: the source's whole decoded timeline (its runs of one rate), found without
 * decoding it where that is exact or a good estimate: PCM headers say exactly; other codecs'
 * packets are read (not decoded) and their durations summed, less the encoder delay and padding
 * the container signals. Streams joined end to end (a chained Ogg, MP3 files one after another)
 * are decoded. `whole` stays empty when its length cannot be known (a packet without duration, a
 * mix of streams). *from says which way, *exact whether that way is exact for this container.
 * Leaves the source unusable for reading. */
imm_err imm_source_count(imm_source *src, imm_timeline *whole, const char **from, int *exact,
                         imm_error *err);
/* Whether a demuxer's ("mp3", "mov,mp4,m4a,3gp,3g2,mj2") header gives the whole file's length as
 * a time, so that a StartTime clearly past it can be refused before decoding. */
bool imm_demuxer_gives_length(const char *format);

/* ---- plan.c ---- */
/* A chapter: a merged source, by what of it is merged. */
typedef struct imm_chapter {
    const imm_timeline *length;
    const char *title;
} imm_chapter;

typedef struct imm_target_plan {
    char *uri; /* {autoext} resolved */
    const char *owner; /* borrowed: imm_run_options.owner, who commits the output (NULL: anyone) */
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
    /* ImmergeExtensions, in this target's samples: fades at the output's ends, and the gain
     * that normalises its loudness (1: none). */
    int64_t fade_in, fade_out;
    imm_curve fade_curve;
    double gain;
    const imm_chapter *chapters; /* one per merged source, in order (Chapters) */
    int nchapters;
    const imm_cover *cover;      /* CoverFrom's picture, or NULL */
    int64_t xfade;               /* Crossfade: samples each join overlaps (0: none) */
    imm_curve xfade_curve;
    /* Where the sample rate, channel count and bitrate came from, for `immerge plan`: the
     * request, the AlignmentIndex source, a *Option's outcome, Quality or a default. */
    const char *rate_from, *channels_from, *bitrate_from;
} imm_target_plan;

imm_err imm_plan_target(const imm_target_req *t, int index, const imm_source_info *primary,
                        imm_target_plan *out, imm_error *err);
void imm_plan_clear(imm_target_plan *plan);

/* ---- convert.c ---- */
typedef struct imm_convert imm_convert;

imm_convert *imm_convert_new(const imm_target_plan *plan);
/* Converts samples [offset, offset + count) of frame into fifo. The next `unneeded` output
 * samples are not wanted (imm_sink_unneeded): input whose output all falls among them may be
 * counted instead of converted, and *skipped then says how many output samples were passed over
 * (to be passed to imm_sink_pass); what is converted after that is exact all the same. */
imm_err imm_convert_push(imm_convert *cv, const AVFrame *frame, int offset, int count,
                         int64_t unneeded, int64_t *skipped, AVAudioFifo *fifo, imm_error *err);
/* Ends a source: flushes the resampler and makes this source's contribution exactly
 * round(input samples * out rate / in rate) long. */
imm_err imm_convert_finish(imm_convert *cv, AVAudioFifo *fifo, imm_error *err);
void imm_convert_free(imm_convert *cv);
/* Sample i of channel `channel` of f (or of planes in fmt), in any sample format, full scale
 * 1.0; and the same written, clipped to the format's range. */
double imm_sample_value(const AVFrame *f, int channel, int i);
double imm_sample_get(uint8_t *const *planes, enum AVSampleFormat fmt, int channels, int channel,
                      int i);
void imm_sample_put(uint8_t *const *planes, enum AVSampleFormat fmt, int channels, int channel,
                    int i, double v);

/* ---- crossfade.c ---- */
typedef struct imm_crossfade imm_crossfade;

/* A target's crossfades (plan->xfade samples each): the converter writes into
 * imm_crossfade_input; flow passes on to out all that is settled. */
imm_err imm_crossfade_new(const imm_target_plan *plan, imm_crossfade **out, imm_error *err);
AVAudioFifo *imm_crossfade_input(imm_crossfade *x);
imm_err imm_crossfade_flow(imm_crossfade *x, AVAudioFifo *out, imm_error *err);
/* A source has ended (after its converter's finish): its last samples become the next join's. */
imm_err imm_crossfade_end_source(imm_crossfade *x, AVAudioFifo *out, imm_error *err);
/* The merge has ended: the last source's held samples go out. */
imm_err imm_crossfade_finish(imm_crossfade *x, AVAudioFifo *out, imm_error *err);
void imm_crossfade_free(imm_crossfade *x);

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
/* After the muxer's trailer: *size gets the bytes of the playlist and all segments. */
imm_err imm_segmenter_finish(imm_segmenter *g, int64_t *size, imm_error *err);
/* Makes the playlist appear (its segments already have). */
imm_err imm_segmenter_commit(imm_segmenter *g, imm_error *err);
/* Frees; without a commit, the segments already written are removed. Free the muxer first. */
void imm_segmenter_free(imm_segmenter *g);

/* ---- spool.c ---- */
typedef struct imm_spool imm_spool;

imm_err imm_spool_new(const char *temp_dir, imm_spool **out, imm_error *err);
imm_err imm_spool_put(imm_spool *sp, const AVPacket *pkt, imm_error *err);
/* Ends writing; imm_spool_get then gives the packets back in order. */
imm_err imm_spool_rewind(imm_spool *sp, imm_error *err);
/* *got = 1 with the next packet in pkt, 0 after the last one. */
imm_err imm_spool_get(imm_spool *sp, AVPacket *pkt, int *got, imm_error *err);
void imm_spool_free(imm_spool *sp);

/* ---- splice.c ---- */
/* Whether the target's encoder is LAME, whose frames reach back into the frames before them. */
int imm_splice_is_lame(const imm_target_plan *plan);
/* Where two chunks' packet streams meet: a (the earlier chunk's packets around its end) and b
 * (the next chunk's from before its start), both in order and with pts + delay = their first
 * input sample. *at gets the seam, a whole frame in [seam, seam + reach); a's packets before it
 * may be patched so that b's from it on decode as the next encoder meant. */
imm_err imm_splice(const imm_target_plan *plan, int frame_size, int delay, AVPacket **a,
                   int na, AVPacket **b, int nb, int64_t seam, int64_t reach, int64_t *at,
                   imm_error *err);

/* ---- sink.c ---- */
typedef struct imm_sink imm_sink;

/* The part of a target's timeline (in output samples) one of its chunks encodes (chunk.c). All
 * are whole encoder frames from 0. */
typedef struct imm_chunk_window {
    int64_t first;     /* samples before it are dropped unencoded: the pre-roll starts here */
    int64_t keep_from; /* the chunk's packets are those whose input starts from here ... */
    int64_t keep_to;   /* ... to here, unless the timeline ends before limit */
    int64_t limit;     /* nothing at or past it is encoded: keep_to plus a look-ahead */
    int64_t margin;    /* packets this far before keep_from and keep_to are kept for the splice */
    int64_t reach;     /* the seam may move this far past keep_from (imm_splice) */
} imm_chunk_window;

/* A sink that muxes the target's output through st. */
imm_err imm_sink_open(imm_storage *st, const imm_target_plan *plan, const AVDictionary *metadata,
                      imm_sink **out, imm_error *err);
/* A later chunk's sink: its packets are spooled in temp_dir for the first chunk's imm_sink_join. */
imm_err imm_sink_open_spooled(const imm_target_plan *plan, const char *temp_dir, imm_sink **out,
                              imm_error *err);
int imm_sink_frame_size(const imm_sink *sink);
/* Makes the sink encode one chunk (before any input). Without, it encodes the whole timeline. */
void imm_sink_set_window(imm_sink *sink, const imm_chunk_window *w);
/* The timeline went on past the window: the sink needs no more input, and a later chunk holds
 * the output's end. */
int imm_sink_full(const imm_sink *sink);
/* Samples encoded so far; may be called from any thread. */
int64_t imm_sink_encoded(const imm_sink *sink);
/* How many samples from the next one the sink would drop anyway, less the resampler's warm-up: a
 * later chunk before its pre-roll. */
int64_t imm_sink_unneeded(const imm_sink *sink);
/* Moves the sink n samples on without input (they were among the unneeded ones). */
void imm_sink_pass(imm_sink *sink, int64_t n);
AVAudioFifo *imm_sink_fifo(imm_sink *sink);
/* Encodes what the FIFO holds in whole encoder frames. */
imm_err imm_sink_drain(imm_sink *sink, imm_error *err);
/* Encodes the rest and flushes the encoder; the output is not yet visible. */
imm_err imm_sink_finish(imm_sink *sink, imm_error *err);
/* Appends a finished later chunk's packets, spliced at *seam (a sample), unless the output already
 * ends before that chunk (*seam = -1). */
imm_err imm_sink_join(imm_sink *sink, imm_sink *next, int64_t *seam, imm_error *err);
/* After imm_sink_finish and the joins: writes the trailer. The output is complete and its size
 * known; nothing of it is visible yet (but the segments of a segmented one). */
imm_err imm_sink_complete(imm_sink *sink, imm_error *err);
/* Makes the finished output appear. */
imm_err imm_sink_commit(imm_sink *sink, imm_error *err);
int64_t imm_sink_samples(const imm_sink *sink);
int64_t imm_sink_size(const imm_sink *sink);
/* Frees the sink; an output not committed is discarded. */
void imm_sink_free(imm_sink *sink);

/* ---- mp4_gapless.c ---- */
/* moov[0, len) is an MP4's moov box. *out (free()) gets it with the iTunes gapless item (iTunSMPB:
 * delay samples of priming, then samples, then padding) added in udta/meta/ilst, which are made
 * where missing. IMM_EINTERNAL when moov is not a well-formed moov. */
imm_err imm_mp4_add_gapless(const uint8_t *moov, size_t len, int64_t delay, int64_t padding,
                            int64_t samples, uint8_t **out, size_t *out_len, imm_error *err);

/* ---- loudness.c ---- */
typedef struct imm_loudness imm_loudness;

/* A meter for frames at rate, layout and fmt. */
imm_err imm_loudness_new(int rate, const AVChannelLayout *layout, enum AVSampleFormat fmt,
                         imm_loudness **out, imm_error *err);
/* Measures f (its pts is set here); NULL at the end, before asking for the result. */
imm_err imm_loudness_add(imm_loudness *m, AVFrame *f, imm_error *err);
/* Integrated loudness in LUFS (-HUGE_VAL when nothing was loud enough to measure), and the
 * sample peak (linear, full scale 1). */
double imm_loudness_integrated(const imm_loudness *m);
double imm_loudness_peak(const imm_loudness *m);
void imm_loudness_free(imm_loudness *m);

/* ---- joins.c ---- */
#define IMM_JOIN_WINDOW 256 /* samples each side of a join that the measure looks at */

typedef struct imm_join_meter {
    float head[IMM_JOIN_WINDOW], tail[IMM_JOIN_WINDOW], prev[IMM_JOIN_WINDOW];
    int nhead, ntail, nprev;
    int sources; /* started so far */
} imm_join_meter;

/* Full scale is 1.0; the signal is the mean of the channels. */
typedef struct imm_join_measure {
    double jump; /* |first sample after - last sample before| */
    double rms;  /* of IMM_JOIN_WINDOW samples each side */
    double step; /* the root mean square step between neighbouring samples on either side */
} imm_join_measure;

/* A source begins: the last one's tail is what the next join is measured against. */
void imm_join_meter_start(imm_join_meter *m);
void imm_join_meter_add(imm_join_meter *m, const AVFrame *f, int offset, int count);
/* The join before the current source, once it has begun: 0 when there is none to measure. */
int imm_join_meter_measure(const imm_join_meter *m, imm_join_measure *out);

/* ---- preview.c ---- */
typedef struct imm_preview_source {
    const imm_source_info *info; /* the probe's; NULL where DisableAudio */
    imm_timeline whole;          /* what it decodes to before clipping; empty: unknown */
    const char *samples_from;    /* how that was found */
    int exact;                   /* counted, not estimated */
} imm_preview_source;

/* `immerge plan`'s JSON (free()): the probed sources, each target's plan and chunk count, and
 * the predicted lengths. NULL when out of memory. */
char *imm_preview_json(const imm_request *req, const imm_preview_source *sources,
                       const imm_target_plan *const *plans, const int *chunks,
                       double input_seconds);

/* ---- lane.c ---- */
typedef struct imm_lane imm_lane;

/* A thread that converts and encodes for one target, crossfading its sources when plan says so
 * (its sink and converter stay the caller's). */
imm_err imm_lane_start(const imm_target_plan *plan, imm_sink *sink, imm_convert *convert,
                       imm_lane **out, imm_error *err);
/* Queues samples [offset, offset + count) of frame (by reference), waiting while the queue is
 * full; fails with the lane's own error once it has failed. */
imm_err imm_lane_push(imm_lane *l, const AVFrame *frame, int offset, int count, imm_error *err);
/* Queues the end of a source: the converter is flushed to its exact length. */
imm_err imm_lane_end_source(imm_lane *l, imm_error *err);
/* Queues the end of the stream: the sink finishes (imm_sink_finish). */
imm_err imm_lane_finish(imm_lane *l, imm_error *err);
/* Zero once the lane's sink wants nothing more of the timeline (imm_sink_full). */
int imm_lane_wants_input(const imm_lane *l);

/* What ends a run early: the caller's cancel flag (may be NULL) and a deadline. */
typedef struct imm_guard {
    const volatile int *cancel;
    double deadline; /* CLOCK_MONOTONIC seconds; 0: none */
    double timeout;  /* the limit it came from, for the message */
} imm_guard;

imm_guard imm_guard_new(const volatile int *cancel, double timeout_seconds);
/* IMM_ECANCELED or IMM_ETIMEOUT when the run must stop, else IMM_OK. */
imm_err imm_guard_check(const imm_guard *g, imm_error *err);

/* Reads src to its end into every lane, and ends the source in each; reading stops early once no
 * lane wants input. on_read (may be NULL) hears of each run of samples read (frame's samples
 * [offset, offset + count)) and may stop the reading with an error. */
imm_err imm_lanes_feed(imm_lane *const *lanes, int n, imm_source *src, const imm_guard *guard,
                       imm_err (*on_read)(void *opaque, const AVFrame *frame, int offset,
                                          int count, imm_error *err),
                       void *opaque, imm_error *err);
/* Waits until the lane has handled everything up to its finish, or failed. */
imm_err imm_lane_wait(imm_lane *l, imm_error *err);
/* Waits at most `seconds` for the lane to end; non-zero when it has (imm_lane_wait then says how). */
int imm_lane_wait_for(imm_lane *l, double seconds);
/* Tells the lane to stop: what is queued is dropped and pushing fails from now on. */
void imm_lane_stop(imm_lane *l);
/* Stops the lane and joins its thread. */
void imm_lane_free(imm_lane *l);

/* ---- prepass.c ---- */
typedef struct imm_normalised {
    double measured; /* LUFS, of the merge as this target converts it; -HUGE_VAL: silence */
    double peak;     /* dBFS, its sample peak before the gain */
    double gain;     /* dB applied */
    int limited;     /* the gain was lowered to keep the peak at MaxPeak */
} imm_normalised;

typedef struct imm_prepass {
    imm_timeline length[IMM_MAX_SOURCES]; /* each source's clipped (and trimmed) part, decoded */
    imm_span span[IMM_MAX_SOURCES];   /* TrimSilence: the part of each clip kept */
    int64_t silence[IMM_MAX_SOURCES][2]; /* TrimSilence: samples dropped at its start and end */
    char title[IMM_MAX_SOURCES][128]; /* its title tag, else its file name */
    imm_normalised loudness[IMM_MAX_TARGETS];
} imm_prepass;

/* Decodes every source once before the merge (prepass.c): each one's length and title, with
 * TrimSilence the part of it that is kept, and with Loudness each target's measure, setting
 * plans[t]->gain. */
imm_err imm_prepass_run(imm_storage *st, const imm_request *req, imm_target_plan *const *plans,
                        int ntargets, const imm_guard *guard, imm_prepass *out, imm_error *err);
void imm_prepass_clear(imm_prepass *p);

/* ---- chunk.c ---- */
#define IMM_MAX_CHUNKS 8
typedef struct imm_chunker imm_chunker;

/* How many chunks a target is encoded in: 1 unless its codec's chunks join seamlessly (AAC,
 * MP3) and, with chunks == 0 (automatic), the timeline of `seconds` is long enough to pay for
 * the pre-roll; then as many as asked, or as cores. */
int imm_chunk_count(const imm_target_plan *plan, double seconds, int chunks);
/* The window of chunk i of n, for a timeline of about `seconds` (of input) and an encoder frame
 * of frame_size samples. */
imm_chunk_window imm_chunk_window_of(const imm_target_plan *plan, double seconds, int frame_size,
                                     int i, int n);
/* A thread that reads the request's sources (each narrowed to spans[i]) from the start into lanes
 * of their own (the chunks before the last), stopping once none of them wants more, then finishes
 * them. */
imm_err imm_chunker_start(imm_storage *st, const imm_request *req, const imm_span *spans,
                          imm_lane *const *lanes, int n, const imm_guard *guard,
                          imm_chunker **out, imm_error *err);
/* Non-zero once the thread has ended, well or not (imm_chunker_join then does not wait). */
int imm_chunker_ended(const imm_chunker *c);
/* Waits for the thread; its error if it failed. */
imm_err imm_chunker_join(imm_chunker *c, imm_error *err);
/* Joins (if still running) and frees; stop the lanes first when giving up. */
void imm_chunker_free(imm_chunker *c);

#endif
