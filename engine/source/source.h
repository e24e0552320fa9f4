/*
 * source.h - one source, decoded sample-exact: its timeline of runs of one rate, its clip, and
 * its length without decoding it.
 *
 *   timeline.c    a source's runs of one rate: clipping by time, lengths as converted
 *   source.c      demux + decode + clip one source, sample-exact
 *   count.c       a source's length without decoding it, for `immerge plan`
 */
#ifndef IMMERGE_ENGINE_SOURCE_SOURCE_H
#define IMMERGE_ENGINE_SOURCE_SOURCE_H

#include "engine/io/io.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

/* ---- timeline.c ---- */
#define IMM_MAX_RUNS 4096 /* runs of one rate a source may have: past it, InvalidMedia */

typedef struct imm_rate_run {
    int rate;
    int64_t samples;
} imm_rate_run;

/* Decoded samples as their runs of one rate, in order; zero-initialised it is empty. */
typedef struct imm_timeline {
    imm_rate_run *runs;
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

#endif
