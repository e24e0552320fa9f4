/*
 * gain.c - the gain a target's samples get just before the encoder: the Loudness extension's
 * normalisation, and the fade-in and fade-out at the timeline's two ends (FadeIn, FadeOut).
 * The sink applies it because only the sink knows where the timeline ends.
 */
#include "engine/convert/convert.h"

#include <math.h>

static double curve(imm_curve c, double x)
{
    return c == IMM_CURVE_SINE ? sin(x * M_PI / 2) : x;
}

/* The gain at timeline sample k: loudness normalisation, then the fades at either end. */
static double gain_at(const imm_target_plan *p, int64_t end, int64_t k)
{
    double g = p->gain;
    if (k < p->fade_in)
        g *= curve(p->fade_curve, (k + 0.5) / (double)p->fade_in);
    if (end != INT64_MAX && k >= end - p->fade_out)
        g *= curve(p->fade_curve, (end - k - 0.5) / (double)p->fade_out);
    return g;
}

void imm_gain_apply(const imm_target_plan *p, int64_t end, AVFrame *f)
{
    if (p->gain == 1.0 && (p->fade_in <= f->pts || !p->fade_in) &&
        (end == INT64_MAX || f->pts + f->nb_samples <= end - p->fade_out))
        return; /* nothing to change: the usual case */
    int planar = av_sample_fmt_is_planar(f->format), ch = f->ch_layout.nb_channels;
    int planes = planar ? ch : 1, per = planar ? 1 : ch;
    for (int i = 0; i < f->nb_samples; i++) {
        double g = gain_at(p, end, f->pts + i);
        for (int pl = 0; pl < planes; pl++)
            for (int c = 0; c < per; c++) {
                uint8_t *d = f->extended_data[pl];
                int k = i * per + c;
                switch (av_get_packed_sample_fmt(f->format)) {
                case AV_SAMPLE_FMT_FLT: ((float *)d)[k] *= (float)g; break;
                case AV_SAMPLE_FMT_DBL: ((double *)d)[k] *= g; break;
                case AV_SAMPLE_FMT_S16:
                    ((int16_t *)d)[k] = (int16_t)av_clip(lrint(((int16_t *)d)[k] * g), -32768, 32767);
                    break;
                case AV_SAMPLE_FMT_S32:
                    ((int32_t *)d)[k] = (int32_t)av_clipl_int32(llrint(((int32_t *)d)[k] * g));
                    break;
                case AV_SAMPLE_FMT_U8:
                    d[k] = (uint8_t)av_clip_uint8(lrint((d[k] - 128) * g) + 128);
                    break;
                default: break;
                }
            }
    }
}
