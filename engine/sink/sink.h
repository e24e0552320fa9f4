/*
 * sink.h - a target's output: encoder, muxer and storage, committed only on success.
 *
 *   sink.c        FIFO -> encoder in frame_size chunks -> muxer -> storage
 *   amrnb.c       AMR-NB through libopencore-amrnb, where FFmpeg has no AMR encoder
 *   splice.c      where two encoders' packet streams meet (MP3's bit reservoir)
 *   mp4_gapless.c iTunSMPB, the encoder delay and padding, in an MP4's moov
 *   metadata.c    chapters and cover art
 *   segment.c     a segmented (HLS) target's files through storage
 *   spool.c       encoded packets kept in a temporary file until they are muxed
 */
#ifndef IMMERGE_ENGINE_SINK_SINK_H
#define IMMERGE_ENGINE_SINK_SINK_H

#include "engine/convert/convert.h"

/* ---- amrnb.c ---- */
#define IMM_AMRNB_FRAME 160 /* samples of 8 kHz mono per frame */
typedef struct imm_amrnb imm_amrnb;

imm_amrnb *imm_amrnb_new(int64_t bitrate);
/* One frame of IMM_AMRNB_FRAME samples into pkt (data and duration; the caller sets pts). */
int imm_amrnb_encode(imm_amrnb *a, const int16_t *pcm, AVPacket *pkt);
void imm_amrnb_free(imm_amrnb *a);

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

/* ---- metadata.c ---- */
/* A chapter per merged source, as the muxer holds them (AVChapters, or Vorbis comments in Ogg and
 * FLAC, whose FFmpeg 5.1 muxers do not write AVChapters). */
imm_err imm_metadata_add_chapters(AVFormatContext *mux, const imm_target_plan *p, imm_error *err);
/* The plan's cover art as an attached-picture stream, after the audio stream; its one packet is
 * written right after the header. */
imm_err imm_metadata_add_cover(AVFormatContext *mux, const imm_target_plan *p, imm_error *err);
imm_err imm_metadata_write_cover(AVFormatContext *mux, const imm_target_plan *p, imm_error *err);

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

#endif
