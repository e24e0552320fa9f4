/*
 * convert.h - what happens to the samples between decoder and encoder: resampling and remixing,
 * crossfades, Speed, and the measures taken of them (loudness, each join).
 *
 *   convert.c     resample/remix one source's audio into a target's format, exact in length
 *   crossfade.c   the Crossfade extension: each join's samples overlapped
 *   tempo.c       a target's Speed (atempo), exact in length
 *   loudness.c    EBU R128 loudness and sample peak of a stream (ebur128)
 *   joins.c       how each join between two sources measures (the task's ImmergeReport)
 *   gain.c        the Loudness gain and the fades, applied just before the encoder
 */
#ifndef IMMERGE_ENGINE_CONVERT_CONVERT_H
#define IMMERGE_ENGINE_CONVERT_CONVERT_H

#include "engine/plan/plan.h"

#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>

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

/* ---- tempo.c ---- */
typedef struct imm_tempo imm_tempo;

imm_err imm_tempo_new(const imm_target_plan *plan, imm_tempo **out, imm_error *err);
/* Moves what `in` holds through atempo into `out`; with flush, ends the stream and makes the
 * total exactly round(samples in / speed). */
imm_err imm_tempo_apply(imm_tempo *t, AVAudioFifo *in, AVAudioFifo *out, int flush,
                      imm_error *err);
void imm_tempo_free(imm_tempo *t);

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

/* ---- gain.c ---- */
/* Applies the plan's gain (Loudness) and fades to frame f, whose first sample is timeline sample
 * f->pts of a timeline `end` samples long (INT64_MAX while its end is not known yet: no
 * fade-out then). */
void imm_gain_apply(const imm_target_plan *p, int64_t end, AVFrame *f);

#endif
