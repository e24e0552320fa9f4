/*
 * crossfade.c - the Crossfade extension for one target: its converted samples pass through here
 * on their way to the sink. The last `n` samples of each source are held back; when the source
 * ends they become its tail, and the next source's first `n` samples are mixed into it (the tail
 * fading out, the new source fading in), so every join shortens the output by n samples. The last
 * source's tail goes out unmixed at the end.
 */
#include "engine/convert/convert.h"

#include <math.h>
#include <stdlib.h>

struct imm_crossfade {
    const imm_target_plan *plan;
    int n;              /* samples of overlap, in the target's rate */
    AVAudioFifo *stage; /* what the converter wrote, not yet passed on */
    uint8_t **tail;     /* the previous source's last n samples */
    int ntail;          /* 0 before the first join */
    int mixed;          /* of the current source's first samples, how many went into the tail */
    uint8_t **buf;      /* scratch for n samples */
};

imm_err imm_crossfade_new(const imm_target_plan *plan, imm_crossfade **out, imm_error *err)
{
    imm_crossfade *x = calloc(1, sizeof(*x));
    int ch = plan->layout.nb_channels;
    *out = NULL;
    if (!x)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    x->plan = plan;
    x->n = (int)plan->xfade;
    if (!(x->stage = av_audio_fifo_alloc(plan->sample_fmt, ch, x->n * 2)) ||
        av_samples_alloc_array_and_samples(&x->tail, NULL, ch, x->n, plan->sample_fmt, 0) < 0 ||
        av_samples_alloc_array_and_samples(&x->buf, NULL, ch, x->n, plan->sample_fmt, 0) < 0) {
        imm_crossfade_free(x);
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    *out = x;
    return IMM_OK;
}

AVAudioFifo *imm_crossfade_input(imm_crossfade *x)
{
    return x->stage;
}

/* The gains of the source fading out and of the one fading in, at overlap sample k. */
static void gains(const imm_crossfade *x, int k, double *out, double *in)
{
    double t = (k + 0.5) / x->n;
    if (x->plan->xfade_curve == IMM_CURVE_SINE) { /* equal power */
        *out = cos(t * M_PI / 2);
        *in = sin(t * M_PI / 2);
    } else {
        *out = 1 - t;
        *in = t;
    }
}

static imm_err write(AVAudioFifo *out, uint8_t **data, int n, imm_error *err)
{
    if (n > 0 && av_audio_fifo_write(out, (void **)data, n) < n)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    return IMM_OK;
}

imm_err imm_crossfade_flow(imm_crossfade *x, AVAudioFifo *out, imm_error *err)
{
    const imm_target_plan *p = x->plan;
    int ch = p->layout.nb_channels, have;
    imm_err e = IMM_OK;
    while (!e && x->mixed < x->ntail && (have = av_audio_fifo_size(x->stage)) > 0) {
        int k = FFMIN(have, x->ntail - x->mixed);
        av_audio_fifo_read(x->stage, (void **)x->buf, k);
        for (int i = 0; i < k; i++) {
            double g_out, g_in;
            gains(x, x->mixed + i, &g_out, &g_in);
            for (int c = 0; c < ch; c++)
                imm_sample_put(x->buf, p->sample_fmt, ch, c, i,
                               imm_sample_get(x->tail, p->sample_fmt, ch, c, x->mixed + i) * g_out +
                               imm_sample_get(x->buf, p->sample_fmt, ch, c, i) * g_in);
        }
        /* The mixed samples replace the tail's, in place, then go out once all are mixed. */
        av_samples_copy(x->tail, x->buf, x->mixed, 0, k, ch, p->sample_fmt);
        x->mixed += k;
        if (x->mixed == x->ntail)
            e = write(out, x->tail, x->ntail, err);
    }
    /* Past the mix, all but the last n samples go on: those may be this source's tail. */
    while (!e && x->mixed == x->ntail && (have = av_audio_fifo_size(x->stage) - x->n) > 0) {
        int k = FFMIN(have, x->n);
        av_audio_fifo_read(x->stage, (void **)x->buf, k);
        e = write(out, x->buf, k, err);
    }
    return e;
}

imm_err imm_crossfade_end_source(imm_crossfade *x, AVAudioFifo *out, imm_error *err)
{
    imm_err e = imm_crossfade_flow(x, out, err);
    if (e)
        return e;
    if (x->mixed < x->ntail || av_audio_fifo_size(x->stage) < x->n)
        return imm_error_set(err, IMM_EARG, "A source is shorter than the crossfade "
                             "(ImmergeExtensions.Crossfade, %d samples at %d Hz), which must fit "
                             "within every source.", x->n, x->plan->sample_rate);
    av_audio_fifo_read(x->stage, (void **)x->tail, x->n);
    x->ntail = x->n;
    x->mixed = 0;
    return IMM_OK;
}

imm_err imm_crossfade_finish(imm_crossfade *x, AVAudioFifo *out, imm_error *err)
{
    imm_err e = write(out, x->tail, x->ntail, err);
    x->ntail = x->mixed = 0;
    return e;
}

void imm_crossfade_free(imm_crossfade *x)
{
    if (!x)
        return;
    av_audio_fifo_free(x->stage);
    if (x->tail)
        av_freep(&x->tail[0]);
    av_freep(&x->tail);
    if (x->buf)
        av_freep(&x->buf[0]);
    av_freep(&x->buf);
    free(x);
}
