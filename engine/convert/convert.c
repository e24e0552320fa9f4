/*
 * convert.c - one target's resampler: brings each source's audio to the target's rate, channel
 * layout and sample format, and makes each source's share of the output exactly as long as it
 * should be.
 *
 * Each source gets a fresh resampler that is flushed at its end, so no tail is lost at a join and
 * no filter state leaks from one source into the next. A resampler's output length after flushing
 * can differ from in * out_rate / in_rate by a sample or two; finish() trims or extends the FIFO's
 * tail to exactly round(in * out_rate / in_rate), which is what makes the merged length predictable.
 * A source whose rate changes mid-stream is a run of each rate, each converted and made exact in
 * the same way (timeline.c counts with this rule); a change of channels or sample format alone
 * sets the resampler up again but goes on counting the run it is in.
 * When the formats already match, samples are copied without a resampler, so a lossless chain is
 * bit-exact.
 *
 * A later chunk's encoder needs nothing before its pre-roll, yet its converter sees the timeline
 * from the start. Input whose output it does not need is only counted, not resampled: resampling
 * is most of what a chunk costs besides encoding. Conversion then starts on a boundary where the
 * input and output sample grids meet (a multiple of in_rate / gcd(in_rate, out_rate) input
 * samples), so the resampler's phase, and every sample it produces once its filter has filled,
 * is exactly what converting from the start would give; the input since the last boundary is kept
 * in `carry` and fed first.
 */
#include "engine/convert/convert.h"

#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <stdlib.h>
#include <string.h>

/* Rates whose grid points are further apart (44101 Hz) are converted from the start. */
#define MAX_GRID 4096

struct imm_convert {
    const imm_target_plan *plan;
    SwrContext *swr;         /* NULL when the current input needs no conversion */
    int active;              /* an input format is set up */
    int in_rate;
    AVChannelLayout in_layout;
    enum AVSampleFormat in_fmt;
    int64_t in_samples;      /* since the input format was set up */
    int64_t out_samples;
    int64_t run_in, run_out; /* the run of this rate before that set-up, in and out */
    int skipping;            /* nothing of this input was converted yet: it may still be skipped */
    int grid;                /* input samples between grid points, 0: too many to skip */
    AVAudioFifo *carry;      /* skipped input since the last grid point */
    uint8_t **buf;           /* scratch for resampled samples */
    int buf_samples;
};

imm_convert *imm_convert_new(const imm_target_plan *plan)
{
    imm_convert *cv = calloc(1, sizeof(*cv));
    if (cv)
        cv->plan = plan;
    return cv;
}

/* A frame whose layout is only a channel count (WMA, raw PCM) matches the default layout we
 * gave it, or every frame would look like a format change. */
static int same_input(const imm_convert *cv, const AVFrame *f)
{
    if (!cv->active || f->sample_rate != cv->in_rate || f->format != cv->in_fmt)
        return 0;
    if (f->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
        return f->ch_layout.nb_channels == cv->in_layout.nb_channels;
    return !av_channel_layout_compare(&f->ch_layout, &cv->in_layout);
}

static imm_err setup(imm_convert *cv, const AVFrame *f, imm_error *err)
{
    const imm_target_plan *p = cv->plan;
    av_channel_layout_uninit(&cv->in_layout);
    if (f->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
        av_channel_layout_default(&cv->in_layout, f->ch_layout.nb_channels);
    else if (av_channel_layout_copy(&cv->in_layout, &f->ch_layout) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    cv->in_rate = f->sample_rate;
    cv->in_fmt = f->format;
    cv->in_samples = cv->out_samples = 0;
    cv->active = 1;
    cv->skipping = 1;
    swr_free(&cv->swr);
    av_audio_fifo_free(cv->carry);
    cv->carry = NULL;
    if (cv->in_rate == p->sample_rate && cv->in_fmt == p->sample_fmt &&
        !av_channel_layout_compare(&cv->in_layout, &p->layout)) {
        cv->grid = 1;
        return IMM_OK;
    }
    int g = (int)av_gcd(cv->in_rate, p->sample_rate);
    cv->grid = cv->in_rate / g <= MAX_GRID ? cv->in_rate / g : 0;
    if (cv->grid > 1 && !(cv->carry = av_audio_fifo_alloc(cv->in_fmt, cv->in_layout.nb_channels,
                                                           cv->grid)))
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    /* FFmpeg 5.1 declares the output layout non-const; it is only read. */
    int ret = swr_alloc_set_opts2(&cv->swr, (AVChannelLayout *)&p->layout, p->sample_fmt, p->sample_rate,
                                  &cv->in_layout, cv->in_fmt, cv->in_rate, 0, NULL);
    if (ret >= 0)
        ret = swr_init(cv->swr);
    if (ret < 0)
        return imm_error_set(err, IMM_EINTERNAL, "Cannot convert %d Hz %d-channel %s audio: %s",
                             cv->in_rate, cv->in_layout.nb_channels,
                             av_get_sample_fmt_name(cv->in_fmt), av_err2str(ret));
    return IMM_OK;
}

static imm_err fifo_write(AVAudioFifo *fifo, uint8_t *const *data, int n, imm_error *err)
{
    if (n > 0 && av_audio_fifo_write(fifo, (void **)data, n) < n)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    return IMM_OK;
}

/* Runs the resampler on n input samples (data NULL: flush) into the FIFO. */
static imm_err resample(imm_convert *cv, const uint8_t **data, int n, AVAudioFifo *fifo,
                        imm_error *err)
{
    const imm_target_plan *p = cv->plan;
    for (;;) {
        int want = swr_get_out_samples(cv->swr, n);
        if (want > cv->buf_samples) {
            if (cv->buf)
                av_freep(&cv->buf[0]);
            av_freep(&cv->buf);
            if (av_samples_alloc_array_and_samples(&cv->buf, NULL, p->layout.nb_channels, want,
                                                   p->sample_fmt, 0) < 0)
                return imm_error_set(err, IMM_EINTERNAL, "out of memory");
            cv->buf_samples = want;
        }
        int got = swr_convert(cv->swr, cv->buf, cv->buf_samples, data, n);
        if (got < 0)
            return imm_error_set(err, IMM_EINTERNAL, "Resampling failed: %s", av_err2str(got));
        cv->out_samples += got;
        imm_err e = fifo_write(fifo, cv->buf, got, err);
        if (e || data || got == 0)
            return e;
        /* flushing: go on until the resampler has nothing left */
    }
}

/* Pointers to sample `offset` of each plane. */
static void data_at(const AVFrame *f, int offset, const uint8_t **out)
{
    int planar = av_sample_fmt_is_planar(f->format);
    int channels = f->ch_layout.nb_channels;
    int bps = av_get_bytes_per_sample(f->format) * (planar ? 1 : channels);
    for (int i = 0; i < (planar ? channels : 1); i++)
        out[i] = f->extended_data[i] + (size_t)offset * (size_t)bps;
}

/* Takes `count` samples at planes without converting them when all of their output lies within
 * the next `unneeded` samples (*took = 1); *skipped gets the output samples that passes over. */
static imm_err skip(imm_convert *cv, const uint8_t **planes, int count, int64_t unneeded,
                    int *took, int64_t *skipped, imm_error *err)
{
    const imm_target_plan *p = cv->plan;
    int64_t end = cv->in_samples + count;
    *took = 0;
    if (!cv->skipping || !cv->grid ||
        av_rescale_rnd(end, p->sample_rate, cv->in_rate, AV_ROUND_UP) - cv->out_samples > unneeded)
        return IMM_OK;
    int64_t point = end - end % cv->grid;
    if (cv->carry) {
        int from = 0; /* without a grid point in these samples, the carry goes on growing */
        if (point > cv->in_samples) {
            av_audio_fifo_reset(cv->carry);
            from = (int)(point - cv->in_samples);
        }
        const uint8_t *stack[AV_NUM_DATA_POINTERS], **at = stack;
        int planar = av_sample_fmt_is_planar(cv->in_fmt);
        int n = planar ? cv->in_layout.nb_channels : 1;
        int bps = av_get_bytes_per_sample(cv->in_fmt) * (planar ? 1 : cv->in_layout.nb_channels);
        if (n > AV_NUM_DATA_POINTERS && !(at = malloc(sizeof(*at) * (size_t)n)))
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        for (int i = 0; i < n; i++)
            at[i] = planes[i] + (size_t)from * (size_t)bps;
        int wrote = av_audio_fifo_write(cv->carry, (void **)at, count - from);
        if (at != stack)
            free(at);
        if (wrote < count - from)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    int64_t out = av_rescale(point, p->sample_rate, cv->in_rate); /* exact at a grid point */
    *skipped = out - cv->out_samples;
    cv->out_samples = out;
    cv->in_samples = end;
    *took = 1;
    return IMM_OK;
}

/* Ends skipping: the carried input since the last grid point is converted first. */
static imm_err feed_carry(imm_convert *cv, AVAudioFifo *fifo, imm_error *err)
{
    int n = cv->carry ? av_audio_fifo_size(cv->carry) : 0;
    cv->skipping = 0;
    if (!n)
        return IMM_OK;
    uint8_t **tmp = NULL;
    if (av_samples_alloc_array_and_samples(&tmp, NULL, cv->in_layout.nb_channels, n, cv->in_fmt,
                                           0) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    av_audio_fifo_read(cv->carry, (void **)tmp, n);
    imm_err e = resample(cv, (const uint8_t **)tmp, n, fifo, err);
    av_freep(&tmp[0]);
    av_freep(&tmp);
    return e;
}

/* Repeats the FIFO's last sample n times: a held value cannot click the way inserted zeros can. */
static imm_err extend_tail(imm_convert *cv, AVAudioFifo *fifo, int n, imm_error *err)
{
    const imm_target_plan *p = cv->plan;
    uint8_t **one = NULL;
    imm_err e = IMM_OK;
    int size = av_audio_fifo_size(fifo);
    if (av_samples_alloc_array_and_samples(&one, NULL, p->layout.nb_channels, 1, p->sample_fmt,
                                           0) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    if (size > 0)
        av_audio_fifo_peek_at(fifo, (void **)one, 1, size - 1);
    else
        av_samples_set_silence(one, 0, 1, p->layout.nb_channels, p->sample_fmt);
    for (int i = 0; i < n && !e; i++)
        e = fifo_write(fifo, one, 1, err);
    av_freep(&one[0]);
    av_freep(&one);
    return e;
}

static imm_err trim_tail(AVAudioFifo *fifo, int n, const imm_target_plan *p, imm_error *err)
{
    int keep = av_audio_fifo_size(fifo) - n;
    uint8_t **tmp = NULL;
    if (keep <= 0) {
        av_audio_fifo_reset(fifo);
        return IMM_OK;
    }
    if (av_samples_alloc_array_and_samples(&tmp, NULL, p->layout.nb_channels, keep,
                                           p->sample_fmt, 0) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    av_audio_fifo_read(fifo, (void **)tmp, keep);
    av_audio_fifo_reset(fifo);
    imm_err e = fifo_write(fifo, tmp, keep, err);
    av_freep(&tmp[0]);
    av_freep(&tmp);
    return e;
}

/* Flushes the input format's resampler and makes the run so far exactly as long as the rule
 * says; `goes_on`: the next input has the same rate, and the run goes on in it. */
static imm_err end_input(imm_convert *cv, AVAudioFifo *fifo, int goes_on, imm_error *err)
{
    imm_err e = IMM_OK;
    if (cv->swr && (e = resample(cv, NULL, 0, fifo, err)))
        return e;
    int64_t want = av_rescale_rnd(cv->run_in + cv->in_samples, cv->plan->sample_rate,
                                  cv->in_rate, AV_ROUND_NEAR_INF) - cv->run_out;
    int64_t diff = cv->out_samples - want;
    if (diff > 0)
        e = trim_tail(fifo, (int)diff, cv->plan, err);
    else if (diff < 0)
        e = extend_tail(cv, fifo, (int)-diff, err);
    cv->run_in = goes_on ? cv->run_in + cv->in_samples : 0;
    cv->run_out = goes_on ? cv->run_out + want : 0;
    cv->active = 0;
    swr_free(&cv->swr);
    av_audio_fifo_free(cv->carry);
    cv->carry = NULL;
    return e;
}

imm_err imm_convert_finish(imm_convert *cv, AVAudioFifo *fifo, imm_error *err)
{
    return cv->active ? end_input(cv, fifo, 0, err) : IMM_OK;
}

imm_err imm_convert_push(imm_convert *cv, const AVFrame *frame, int offset, int count,
                         int64_t unneeded, int64_t *skipped, AVAudioFifo *fifo, imm_error *err)
{
    imm_err e;
    int took = 0;
    *skipped = 0;
    if (!same_input(cv, frame)) {
        if (cv->active && (e = end_input(cv, fifo, frame->sample_rate == cv->in_rate, err)))
            return e;
        if ((e = setup(cv, frame, err)))
            return e;
    }
    const uint8_t *stack[AV_NUM_DATA_POINTERS], **planes = stack;
    int nplanes = av_sample_fmt_is_planar(frame->format) ? frame->ch_layout.nb_channels : 1;
    if (nplanes > AV_NUM_DATA_POINTERS && !(planes = malloc(sizeof(*planes) * (size_t)nplanes)))
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    data_at(frame, offset, planes);
    e = skip(cv, planes, count, unneeded, &took, skipped, err);
    if (!e && !took && cv->skipping)
        e = feed_carry(cv, fifo, err);
    if (!e && !took) {
        cv->in_samples += count;
        if (cv->swr) {
            e = resample(cv, planes, count, fifo, err);
        } else {
            cv->out_samples += count;
            e = fifo_write(fifo, (uint8_t *const *)planes, count, err);
        }
    }
    if (planes != stack)
        free(planes);
    return e;
}

double imm_sample_get(uint8_t *const *planes, enum AVSampleFormat fmt, int channels, int channel,
                      int i)
{
    int planar = av_sample_fmt_is_planar(fmt);
    const uint8_t *p = planes[planar ? channel : 0];
    int k = planar ? i : i * channels + channel;
    switch (av_get_packed_sample_fmt(fmt)) {
    case AV_SAMPLE_FMT_U8: return (p[k] - 128) / 128.0;
    case AV_SAMPLE_FMT_S16: return ((const int16_t *)p)[k] / 32768.0;
    case AV_SAMPLE_FMT_S32: return ((const int32_t *)p)[k] / 2147483648.0;
    case AV_SAMPLE_FMT_S64: return (double)((const int64_t *)p)[k] / 9223372036854775808.0;
    case AV_SAMPLE_FMT_FLT: return ((const float *)p)[k];
    case AV_SAMPLE_FMT_DBL: return ((const double *)p)[k];
    default: return 0;
    }
}

void imm_sample_put(uint8_t *const *planes, enum AVSampleFormat fmt, int channels, int channel,
                    int i, double v)
{
    int planar = av_sample_fmt_is_planar(fmt);
    uint8_t *p = planes[planar ? channel : 0];
    int k = planar ? i : i * channels + channel;
    switch (av_get_packed_sample_fmt(fmt)) {
    case AV_SAMPLE_FMT_U8: p[k] = (uint8_t)av_clip_uint8((int)lrint(v * 128) + 128); break;
    case AV_SAMPLE_FMT_S16: ((int16_t *)p)[k] = (int16_t)av_clip_int16((int)lrint(v * 32768)); break;
    case AV_SAMPLE_FMT_S32: ((int32_t *)p)[k] = av_clipl_int32(llrint(v * 2147483648.0)); break;
    case AV_SAMPLE_FMT_S64: ((int64_t *)p)[k] = llrint(av_clipd(v, -1, 1) * 9223372036854775807.0); break;
    case AV_SAMPLE_FMT_FLT: ((float *)p)[k] = (float)v; break;
    case AV_SAMPLE_FMT_DBL: ((double *)p)[k] = v; break;
    default: break;
    }
}

double imm_sample_value(const AVFrame *f, int channel, int i)
{
    return imm_sample_get(f->extended_data, f->format, f->ch_layout.nb_channels, channel, i);
}

void imm_convert_free(imm_convert *cv)
{
    if (!cv)
        return;
    swr_free(&cv->swr);
    av_audio_fifo_free(cv->carry);
    if (cv->buf)
        av_freep(&cv->buf[0]);
    av_freep(&cv->buf);
    av_channel_layout_uninit(&cv->in_layout);
    free(cv);
}
