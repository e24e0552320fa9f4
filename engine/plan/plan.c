/*
 * plan.c - what one target will be: container, encoder, sample rate, channel layout, sample
 * format, bitrate. A field the request leaves out takes the AlignmentIndex (primary) source's value,
 * as the service does; the *Option fields (fixed/adaptive/fall) are judged against that source too.
 *
 * A primary source whose value the codec cannot take (96 kHz into MP3) is refused unless the target
 * sets the field: the service's documentation warns of exactly this, and guessing would surprise.
 * The one exception is a left-out bitrate: a lossless primary's 1411 kbit/s clamps to the codec's
 * maximum, since no lossy codec could honour it and the user asked for nothing specific.
 */
#include "engine/plan/plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BITRATE 128000

__attribute__((format(printf, 4, 5))) static imm_err refuse(imm_error *err, int index,
                                                             const char *field, const char *fmt,
                                                             ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return imm_error_set(err, IMM_EARG, "The parameter Targets[%d].Audio.TranscodeAudio.%s %s",
                         index, field, why);
}

static const AVCodec *find_encoder(const imm_codec_info *codec, int rate)
{
    for (int i = 0; i < 3 && codec->encoders[i]; i++) {
        const AVCodec *c = avcodec_find_encoder_by_name(codec->encoders[i]);
        if (!c)
            continue;
        if (!c->supported_samplerates)
            return c;
        for (const int *r = c->supported_samplerates; *r; r++)
            if (*r == rate)
                return c;
    }
    return NULL;
}

static imm_err plan_rate(const imm_target_req *t, int index, const imm_source_info *primary,
                         imm_target_plan *p, imm_error *err)
{
    int src = primary->sample_rate;
    if (!t->sample_rate) {
        if (!imm_codec_takes_rate(p->codec, src))
            return refuse(err, index, "SampleRate",
                          "is not set, and the primary source's %lld Hz is not a rate the %s "
                          "codec takes: set SampleRate.", (long long)src, p->codec->name);
        p->sample_rate = src;
        p->rate_from = "AlignmentIndex source";
        return IMM_OK;
    }
    p->sample_rate = t->sample_rate;
    p->rate_from = src < t->sample_rate && t->sample_rate_option == IMM_OPT_FIXED
                       ? "request (SampleRateOption fixed: above the AlignmentIndex source's)"
                       : "request";
    if (src < t->sample_rate && t->sample_rate_option == IMM_OPT_FALL)
        return refuse(err, index, "SampleRate",
                      "is above the primary source's %lld Hz and SampleRateOption is fall.",
                      (long long)src);
    if (src < t->sample_rate && t->sample_rate_option == IMM_OPT_ADAPTIVE) {
        /* The source's own rate, or the nearest rate below it that the codec takes. */
        int best = 0;
        static const int rates[] = {96000, 88200, 64000, 48000, 44100, 32000, 24000,
                                    22050, 16000, 12000, 11025, 8000};
        for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]) && !best; i++)
            if (rates[i] <= src && imm_codec_takes_rate(p->codec, rates[i]))
                best = rates[i];
        p->sample_rate = best ? best : t->sample_rate;
        p->rate_from = best ? "SampleRateOption adaptive: the AlignmentIndex source's rate or the "
                              "codec's next below it, as the request's is higher"
                            : "request (SampleRateOption adaptive: no lower rate fits the codec)";
    }
    return IMM_OK;
}

static imm_err plan_layout(const imm_target_req *t, int index, const imm_source_info *primary,
                           imm_target_plan *p, imm_error *err)
{
    int channels = t->channels ? t->channels : primary->channels;
    p->channels_from = t->channels ? "request" : "AlignmentIndex source";
    if (channels > p->codec->max_channels)
        return refuse(err, index, "Channel",
                      "is not set, and the primary source's %lld channels are more than the %s "
                      "codec takes: set Channel.", (long long)channels, p->codec->name);
    if (primary->channels == channels)
        av_channel_layout_copy(&p->layout, &primary->layout);
    else
        av_channel_layout_default(&p->layout, channels);
    const AVChannelLayout *ok = p->encoder->ch_layouts;
    if (!ok)
        return IMM_OK;
    for (const AVChannelLayout *l = ok; l->nb_channels; l++)
        if (!av_channel_layout_compare(l, &p->layout))
            return IMM_OK;
    for (const AVChannelLayout *l = ok; l->nb_channels; l++)
        if (l->nb_channels == channels) {
            av_channel_layout_uninit(&p->layout);
            return av_channel_layout_copy(&p->layout, l) < 0
                       ? imm_error_set(err, IMM_EINTERNAL, "out of memory")
                       : IMM_OK;
        }
    return refuse(err, index, "Channel", "asks for %lld channels, which the %s encoder cannot "
                  "write.", (long long)channels, p->encoder->name);
}

/* The encoder's format closest to what the primary decodes to, so 16-bit stays 16-bit. */
static void plan_sample_fmt(const imm_source_info *primary, imm_target_plan *p)
{
    const enum AVSampleFormat *fmts = p->encoder->sample_fmts;
    if (p->bits_per_sample) {
        p->sample_fmt = p->bits_per_sample > 16 ? AV_SAMPLE_FMT_S32 : AV_SAMPLE_FMT_S16;
        return;
    }
    p->sample_fmt = fmts ? fmts[0] : AV_SAMPLE_FMT_FLTP;
    for (int i = 0; fmts && fmts[i] != AV_SAMPLE_FMT_NONE; i++)
        if (av_get_packed_sample_fmt(fmts[i]) == av_get_packed_sample_fmt(primary->sample_fmt))
            p->sample_fmt = fmts[i];
}

static imm_err plan_bitrate(const imm_target_req *t, int index, const imm_source_info *primary,
                            imm_target_plan *p, imm_error *err)
{
    int64_t src = primary->bit_rate, max = p->codec->max_bitrate;
    if (p->codec->lossless)
        return IMM_OK;
    if (!t->bitrate) {
        p->bitrate = src > 0 ? src : DEFAULT_BITRATE;
        p->bitrate_from = src > 0 ? "AlignmentIndex source" : "default (the source's is unknown)";
        if (p->bitrate > max) {
            p->bitrate = max;
            p->bitrate_from = "AlignmentIndex source, lowered to the codec's highest";
        }
        return IMM_OK;
    }
    p->bitrate = t->bitrate;
    p->bitrate_from = "request";
    if (src > 0 && src < t->bitrate && t->bitrate_option == IMM_OPT_FALL)
        return refuse(err, index, "Bitrate",
                      "is above the primary source's %lld bit/s and BitrateOption is fall.",
                      (long long)src);
    if (src > 0 && src < t->bitrate && t->bitrate_option == IMM_OPT_ADAPTIVE) {
        p->bitrate = src;
        p->bitrate_from = "BitrateOption adaptive: the AlignmentIndex source's, as the request's "
                          "is higher";
    }
    return IMM_OK;
}

/* Quality 0..100 onto each encoder's own scale (docs/request.md, "Quality"): LAME's V9..V0, the AAC and
 * Vorbis encoders' VBR quality, FLAC's compression level; Opus and AC-3 have no quality scale in
 * FFmpeg, so Quality picks their bitrate (Opus VBR, AC-3 constant). */
static void plan_quality(int q, imm_target_plan *p)
{
    static const int ac3_rates[] = {32, 40, 48, 56, 64, 80, 96, 112, 128, 160,
                                    192, 224, 256, 320, 384, 448, 512, 576, 640};
    const char *name = p->codec->name;
    int channels = p->layout.nb_channels;
    p->bitrate = 0;
    p->bitrate_from = "Quality";
    if (!strcmp(name, "mp3")) {
        p->qscale = (100 - q) * 9 / 100.0; /* LAME -V: 0 is best */
        if (p->qscale <= 0)
            p->qscale = 0.001; /* V0; 0 itself would mean "not set" */
    } else if (!strcmp(name, "aac")) {
        p->qscale = 0.1 + 1.9 * q / 100.0;
    } else if (!strcmp(name, "vorbis")) {
        p->qscale = q / 10.0 > 0 ? q / 10.0 : 0.001;
    } else if (!strcmp(name, "flac")) {
        p->compression_level = (q * 8 + 50) / 100;
    } else if (!strcmp(name, "opus")) {
        p->bitrate = (int64_t)channels * (16000 + q * 1120);
    } else if (!strcmp(name, "ac3")) {
        int want = channels * (32 + q * 96 / 100), best = ac3_rates[0];
        for (size_t i = 0; i < sizeof(ac3_rates) / sizeof(*ac3_rates); i++)
            if (abs(ac3_rates[i] - want) < abs(best - want))
                best = ac3_rates[i];
        p->bitrate = best * 1000;
    }
}

imm_err imm_plan_target(const imm_target_req *t, int index, const imm_source_info *primary,
                        imm_target_plan *p, imm_error *err)
{
    imm_err e;
    memset(p, 0, sizeof(*p));
    p->quality = t->quality;
    p->compression_level = -1;
    p->gain = 1.0;
    p->speed = t->speed;
    p->container = imm_container_find(t->container);
    p->codec = imm_codec_find(t->codec);
    p->uri = imm_target_uri(t);
    p->segment = t->segment;
    p->segment_duration = t->segment_duration;
    p->segment_start = t->segment_start;
    if (!p->uri)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    if ((e = plan_rate(t, index, primary, p, err)))
        return e;
    p->encoder = find_encoder(p->codec, p->sample_rate);
    /* AMR-NB without an FFmpeg encoder: ours, over libopencore-amrnb (amrnb.c). */
    p->amrnb = !p->encoder && !strcmp(p->codec->name, "amr") && p->sample_rate == 8000;
    if (!p->encoder && !strcmp(p->codec->name, "amr") && !p->amrnb)
        return refuse(err, index, "SampleRate", "%d needs AMR-WB, for which this build has no "
                      "encoder; AMR-NB at 8000 Hz is supported.", p->sample_rate);
    if (!p->encoder && !p->amrnb)
        return imm_error_set(err, IMM_EARG,
                             "The parameter Targets[%d].Audio.TranscodeAudio.Codec %s has no "
                             "encoder for %d Hz in this FFmpeg build.", index, p->codec->name,
                             p->sample_rate);
    /* The table says what the service allows; the muxer says what this FFmpeg build can write. */
    const AVOutputFormat *of = av_guess_format(p->container->muxer, NULL, NULL);
    enum AVCodecID id = p->amrnb ? AV_CODEC_ID_AMR_NB : p->encoder->id;
    if (!of || !avformat_query_codec(of, id, FF_COMPLIANCE_EXPERIMENTAL))
        return imm_error_set(err, IMM_EARG, "The parameter Targets[%d].Audio.TranscodeAudio.Codec "
                             "%s cannot be written into the %s container by this FFmpeg build.",
                             index, p->codec->name, p->container->name);
    if (p->amrnb) {
        av_channel_layout_default(&p->layout, 1); /* the request check keeps Channel at 1 */
        p->channels_from = "AMR-NB is mono";
        p->sample_fmt = AV_SAMPLE_FMT_S16;
        if (t->quality >= 0) {
            p->bitrate = imm_amrnb_mode_rate(4750 + (12200 - 4750) * t->quality / 100);
            p->bitrate_from = "Quality";
        } else if ((e = plan_bitrate(t, index, primary, p, err)))
            return e;
        else
            p->bitrate = imm_amrnb_mode_rate(p->bitrate);
        return IMM_OK;
    }
    if ((e = plan_layout(t, index, primary, p, err)))
        return e;
    if (p->codec->lossless && !strcmp(p->codec->name, "flac"))
        p->bits_per_sample = t->bits_per_sample ? t->bits_per_sample
                             : primary->bits_per_raw_sample > 16 ? 24 : 16;
    plan_sample_fmt(primary, p);
    if (t->quality >= 0) {
        plan_quality(t->quality, p);
        return IMM_OK;
    }
    return plan_bitrate(t, index, primary, p, err);
}

void imm_plan_clear(imm_target_plan *p)
{
    free(p->uri);
    av_channel_layout_uninit(&p->layout);
    memset(p, 0, sizeof(*p));
}
