/*
 * convert.c - one target's resampler: brings each source's audio to the target's rate, channel
 * layout and sample format, and makes each source's share of the output exactly as long as it
 * should be.
 *
 * Each source gets a fresh resampler that is flushed at its end, so no tail is lost at a join and
 * no filter state leaks from one source into the next. A resampler's output length after flushing
 * can differ from in * out_rate / in_rate by a sample or two; finish() trims or extends the FIFO's
 * tail to exactly round(in * out_rate / in_rate), which is what makes the merged length predictable.
 * When the formats already match, samples are copied without a resampler, so a lossless chain is
 * bit-exact.
 */
#include "media.h"

#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <stdlib.h>
#include <string.h>

struct imm_convert {
    const imm_target_plan *plan;
    SwrContext *swr;         /* NULL when the current input needs no conversion */
    int active;              /* an input format is set up */
    int in_rate;
    AVChannelLayout in_layout;
    enum AVSampleFormat in_fmt;
    int64_t in_samples;      /* since the input format was set up */
    int64_t out_samples;
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
    swr_free(&cv->swr);
    if (cv->in_rate == p->sample_rate && cv->in_fmt == p->sample_fmt &&
        !av_channel_layout_compare(&cv->in_layout, &p->layout))
        return IMM_OK;
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

imm_err imm_convert_push(imm_convert *cv, const AVFrame *frame, int offset, int count,
                         AVAudioFifo *fifo, imm_error *err)
{
    imm_err e;
    if (!same_input(cv, frame)) {
        if (cv->active && (e = imm_convert_finish(cv, fifo, err)))
            return e;
        if ((e = setup(cv, frame, err)))
            return e;
    }
    const uint8_t *stack[AV_NUM_DATA_POINTERS], **planes = stack;
    int nplanes = av_sample_fmt_is_planar(frame->format) ? frame->ch_layout.nb_channels : 1;
    if (nplanes > AV_NUM_DATA_POINTERS && !(planes = malloc(sizeof(*planes) * (size_t)nplanes)))
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    data_at(frame, offset, planes);
    cv->in_samples += count;
    if (cv->swr) {
        e = resample(cv, planes, count, fifo, err);
    } else {
        cv->out_samples += count;
        e = fifo_write(fifo, (uint8_t *const *)planes, count, err);
    }
    if (planes != stack)
        free(planes);
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

imm_err imm_convert_finish(imm_convert *cv, AVAudioFifo *fifo, imm_error *err)
{
    imm_err e = IMM_OK;
    if (!cv->active)
        return IMM_OK;
    if (cv->swr && (e = resample(cv, NULL, 0, fifo, err)))
        return e;
    int64_t want = av_rescale_rnd(cv->in_samples, cv->plan->sample_rate, cv->in_rate,
                                  AV_ROUND_NEAR_INF);
    int64_t diff = cv->out_samples - want;
    if (diff > 0)
        e = trim_tail(fifo, (int)diff, cv->plan, err);
    else if (diff < 0)
        e = extend_tail(cv, fifo, (int)-diff, err);
    cv->active = 0;
    swr_free(&cv->swr);
    return e;
}

void imm_convert_free(imm_convert *cv)
{
    if (!cv)
        return;
    swr_free(&cv->swr);
    if (cv->buf)
        av_freep(&cv->buf[0]);
    av_freep(&cv->buf);
    av_channel_layout_uninit(&cv->in_layout);
    free(cv);
}
