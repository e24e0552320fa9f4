/*
 * plan.h - a target's resolved parameters: the request's, else the AlignmentIndex source's.
 * Every later stage reads a target only through its plan.
 *
 *   plan.c        the plan of one target, and its chapters
 */
#ifndef IMMERGE_ENGINE_PLAN_PLAN_H
#define IMMERGE_ENGINE_PLAN_PLAN_H

#include "engine/source/source.h"

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

#endif
