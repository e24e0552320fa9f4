/*
 * target.c - one of the request's Targets: its URI, container, Audio (TranscodeAudio, Stream,
 * FilterAudio), Segment and the video and subtitle fields an audio merge refuses by name.
 */
#include "engine/request/request.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* Targets[].Video, Image, Subtitle, AttachedPicture and Data: video-side work, refused, unless
 * switched off. */
static imm_err check_video_fields(imm_fields *c, const cJSON *tj, int i, imm_target_req *t)
{
    t->disable_video = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(tj, "Video"), "DisableVideo"));
    static const char *const names[][3] = {
        {"Video", "DisableVideo", "video processing"},
        {"Image", NULL, "frame captures, sprites or animated images"},
        {"Subtitle", "DisableSubtitle", "subtitle processing"},
        {"AttachedPicture", NULL, "attached pictures to be kept (see ImmergeExtensions.CoverFrom)"},
        {"Data", NULL, "data streams to be kept"},
    };
    for (size_t k = 0; k < sizeof(names) / sizeof(*names); k++) {
        imm_field_at(c, "Targets[%d]", i);
        imm_err e = imm_field_refuse_video(c, tj, names[k][0], names[k][1], names[k][2]);
        if (e)
            return e;
    }
    return IMM_OK;
}

static imm_err parse_streams(imm_fields *c, const cJSON *audio, int i, imm_target_req *t)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(audio, "Stream");
    imm_field_at(c, "%s[%d].Audio.Stream", "Targets", i);
    if (!v || cJSON_IsNull(v))
        return IMM_OK;
    if (!cJSON_IsArray(v))
        return imm_field_bad(c, "must be an array of integers");
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) ||
            item->valuedouble < 0)
            return imm_field_bad(c, "must be an array of non-negative integers");
        if (t->select.n < IMM_MAX_STREAM_SELECT)
            t->select.index[t->select.n++] = item->valueint;
    }
    return IMM_OK;
}

/* A target that would copy the audio stream (said as `how`): Codec is named, with why. */
static imm_err copy_refused(imm_fields *c, const char *how)
{
    char why[256];
    snprintf(why, sizeof(why), "is required: %s means a stream copy, which %s; name a codec "
             "(mp3, vorbis, aac, flac, ac3, opus, amr)", how,
             c->nsources > 1 ? "cannot merge several sources"
                             : "immerge does not do (it always re-encodes)");
    return imm_field_bad(c, why);
}

static imm_err parse_transcode(imm_fields *c, const cJSON *ta, int i, imm_target_req *t)
{
    imm_err e;
    int64_t v;
    bool has_bitrate = false;

    static const char *const keys[] = {"Codec", "Bitrate", "BitrateOption", "SampleRate",
                                       "SampleRateOption", "Channel", "BitsPerSample",
                                       "Quality", NULL};
    imm_field_at(c, "%s[%d].Audio.TranscodeAudio", "Targets", i);
    if ((e = imm_field_keys(c, ta, keys, "a field of TranscodeAudio")))
        return e;
    imm_field_at(c, "%s[%d].Audio.TranscodeAudio.Codec", "Targets", i);
    if ((e = imm_field_string(c, ta, "Codec", &t->codec)))
        return e;
    if (!t->codec || !*t->codec)
        return copy_refused(c, "an absent Codec");
    imm_field_lower(t->codec);
    if (!strcmp(t->codec, "copy"))
        return copy_refused(c, "copy");
    const imm_codec_info *codec = imm_codec_find(t->codec);
    if (!codec)
        return imm_field_bad(c, "must be one of mp3, vorbis, aac, flac, ac3, opus, amr");

    imm_field_at(c, "%s[%d].Audio.TranscodeAudio.Bitrate", "Targets", i);
    v = -1;
    if ((e = imm_field_int(c, ta, "Bitrate", 1000, 10000000, &v)))
        return e;
    if (v >= 0) {
        t->bitrate = v;
        has_bitrate = true;
    }
    imm_field_at(c, "%s[%d].Audio.TranscodeAudio.Quality", "Targets", i);
    v = -1;
    if ((e = imm_field_int(c, ta, "Quality", 0, 100, &v)))
        return e;
    if (v >= 0 && has_bitrate)
        return imm_field_bad(c, "cannot be set together with Bitrate");
    t->quality = (int)v;
    imm_field_at(c, "%s[%d].Audio.TranscodeAudio.BitrateOption", "Targets", i);
    if ((e = imm_field_option(c, ta, "BitrateOption", &t->bitrate_option)))
        return e;

    imm_field_at(c, "%s[%d].Audio.TranscodeAudio.SampleRate", "Targets", i);
    v = 0;
    if ((e = imm_field_int(c, ta, "SampleRate", 1, 1000000, &v)))
        return e;
    if (v && !imm_service_sample_rate((int)v))
        return imm_field_bad(c, "must be one of 8000, 11025, 12000, 16000, 22050, 24000, 32000, "
                                "44100, 48000, 64000, 88200, 96000");
    if (v && !imm_codec_takes_rate(codec, (int)v)) {
        char why[96];
        snprintf(why, sizeof(why), "%lld is not a sample rate the %s codec takes", (long long)v,
                 codec->name);
        return imm_field_bad(c, why);
    }
    t->sample_rate = (int)v;
    imm_field_at(c, "%s[%d].Audio.TranscodeAudio.SampleRateOption", "Targets", i);
    if ((e = imm_field_option(c, ta, "SampleRateOption", &t->sample_rate_option)))
        return e;

    imm_field_at(c, "%s[%d].Audio.TranscodeAudio.Channel", "Targets", i);
    v = 0;
    if ((e = imm_field_int(c, ta, "Channel", 1, 8, &v)))
        return e;
    if (v > codec->max_channels) {
        char why[96];
        snprintf(why, sizeof(why), "must be at most %d for the %s codec", codec->max_channels,
                 codec->name);
        return imm_field_bad(c, why);
    }
    t->channels = (int)v;

    imm_field_at(c, "%s[%d].Audio.TranscodeAudio.BitsPerSample", "Targets", i);
    v = 0;
    if ((e = imm_field_int(c, ta, "BitsPerSample", 0, 64, &v)))
        return e;
    if (v && v != 16 && v != 24)
        return imm_field_bad(c, "must be 16 or 24");
    if (v && strcmp(codec->name, "flac"))
        return imm_field_bad(c, "applies to the flac codec only");
    t->bits_per_sample = (int)v;
    return IMM_OK;
}

static imm_err parse_audio(imm_fields *c, const cJSON *tj, int i, imm_target_req *t)
{
    static const char *const keys[] = {"DisableAudio", "Stream", "FilterAudio", "TranscodeAudio",
                                       NULL};
    static const char *const filter_keys[] = {"Mixing", NULL};
    const cJSON *audio, *ta, *filter;
    bool disable = false, mixing = false;
    imm_err e;

    imm_field_at(c, "%s[%d].Audio", "Targets", i);
    if ((e = imm_field_object(c, tj, "Audio", &audio)))
        return e;
    if (!audio) {
        imm_field_at(c, "%s[%d].Audio.TranscodeAudio.Codec", "Targets", i);
        return copy_refused(c, "an absent Audio");
    }
    if ((e = imm_field_keys(c, audio, keys, "a field of Audio")))
        return e;
    imm_field_at(c, "%s[%d].Audio.DisableAudio", "Targets", i);
    if ((e = imm_field_bool(c, audio, "DisableAudio", &disable)))
        return e;
    if (disable)
        return imm_field_bad(c, "is true, which leaves an audio merge with nothing to write");
    if ((e = parse_streams(c, audio, i, t)))
        return e;
    imm_field_at(c, "%s[%d].Audio.FilterAudio", "Targets", i);
    if ((e = imm_field_object(c, audio, "FilterAudio", &filter)))
        return e;
    if (filter && (e = imm_field_keys(c, filter, filter_keys, "a field of FilterAudio")))
        return e;
    imm_field_at(c, "%s[%d].Audio.FilterAudio.Mixing", "Targets", i);
    if (filter && (e = imm_field_bool(c, filter, "Mixing", &mixing)))
        return e;
    t->select.mixing = mixing;
    imm_field_at(c, "%s[%d].Audio.TranscodeAudio", "Targets", i);
    if ((e = imm_field_object(c, audio, "TranscodeAudio", &ta)))
        return e;
    if (!ta) {
        imm_field_at(c, "%s[%d].Audio.TranscodeAudio", "Targets", i);
        return imm_field_bad(c, "is required: an absent TranscodeAudio means an output without "
                                "audio, which leaves an audio merge with nothing to write");
    }
    return parse_transcode(c, ta, i, t);
}

static imm_err parse_container(imm_fields *c, const cJSON *tj, int i, imm_target_req *t)
{
    imm_err e;
    imm_field_at(c, "%s[%d].Container", "Targets", i);
    if ((e = imm_field_string(c, tj, "Container", &t->container)))
        return e;
    if (!t->container) {
        /* The service needs Container; a URI whose extension names one is as clear. */
        const char *base = strrchr(t->uri, '/');
        const char *dot = strrchr(base ? base : t->uri, '.');
        const imm_container_info *ci = dot ? imm_container_by_extension(dot + 1) : NULL;
        if (!ci)
            return imm_field_bad(c, "is required when the URI has no known extension");
        t->container = strdup(ci->name);
        if (!t->container)
            return imm_error_set(c->err, IMM_EINTERNAL, "out of memory");
    }
    imm_field_lower(t->container);
    if (!imm_container_find(t->container))
        return imm_field_bad(c, "must be one of mp3, aac, flac, oga, ac3, opus, mp4, mkv, mov, "
                                "asf, avi, mxf, ts, flv");
    return IMM_OK;
}

/* Segment {Format, Duration, StartNumber}: HLS for ts (MPEG-TS segments) and mp4 (fMP4). */
static imm_err parse_segment(imm_fields *c, const cJSON *tj, int i, imm_target_req *t)
{
    const cJSON *seg;
    char *format = NULL;
    int64_t start = 0;
    imm_err e;
    static const char *const keys[] = {"Format", "Duration", "StartNumber", NULL};
    imm_field_at(c, "%s[%d].Segment", "Targets", i);
    if ((e = imm_field_object(c, tj, "Segment", &seg)) || !seg)
        return e;
    if ((e = imm_field_keys(c, seg, keys, "a field of Segment")))
        return e;
    imm_field_at(c, "%s[%d].Segment.Format", "Targets", i);
    if ((e = imm_field_string(c, seg, "Format", &format)))
        return e;
    if (format)
        imm_field_lower(format);
    int hls = !format || !strcmp(format, "hls"), dash = format && !strcmp(format, "dash");
    free(format);
    if (dash)
        return imm_field_bad(c, "dash is not supported by this engine yet; use hls");
    if (!hls)
        return imm_field_bad(c, "must be hls or dash");
    if (strcmp(t->container, "ts") && strcmp(t->container, "mp4")) {
        imm_field_at(c, "%s[%d].Container", "Targets", i);
        return imm_field_bad(c, "must be ts or mp4 for a segmented (HLS) output");
    }
    t->segment = true;
    t->segment_duration = 10;
    imm_field_at(c, "%s[%d].Segment.Duration", "Targets", i);
    if ((e = imm_field_number(c, seg, "Duration", &t->segment_duration)))
        return e;
    if (!(t->segment_duration >= 1 && t->segment_duration <= 3600))
        return imm_field_bad(c, "must be from 1 to 3600 seconds");
    imm_field_at(c, "%s[%d].Segment.StartNumber", "Targets", i);
    if ((e = imm_field_int(c, seg, "StartNumber", 0, 1000000000, &start)))
        return e;
    t->segment_start = (int)start;
    return IMM_OK;
}

imm_err imm_parse_target(imm_fields *c, const cJSON *tj, int i, imm_target_req *t)
{
    imm_err e;
    double speed = 1.0;

    static const char *const keys[] = {"URI", "Container", "Audio", "Video", "Image", "Subtitle",
                                       "Segment", "Speed", "StripMetadata", "AttachedPicture",
                                       "Data", NULL};
    imm_field_at(c, "%s[%d]", "Targets", i);
    if (!cJSON_IsObject(tj))
        return imm_field_bad(c, "must be an object");
    if ((e = imm_field_keys(c, tj, keys, "a field of a target")))
        return e;
    imm_field_at(c, "%s[%d].URI", "Targets", i);
    if ((e = imm_field_string(c, tj, "URI", &t->uri)))
        return e;
    if (!t->uri || !*t->uri)
        return imm_field_bad(c, "is required but not provided");
    if ((e = parse_container(c, tj, i, t)))
        return e;
    if ((e = parse_segment(c, tj, i, t)) || (e = check_video_fields(c, tj, i, t)))
        return e;
    if ((e = parse_audio(c, tj, i, t)))
        return e;
    const imm_container_info *ci = imm_container_find(t->container);
    if (!imm_container_carries(ci, t->codec)) {
        imm_field_at(c, "%s[%d].Audio.TranscodeAudio.Codec", "Targets", i);
        char why[96];
        snprintf(why, sizeof(why), "%s cannot be carried in the %s container", t->codec,
                 t->container);
        return imm_field_bad(c, why);
    }
    imm_field_at(c, "%s[%d].Speed", "Targets", i);
    if ((e = imm_field_number(c, tj, "Speed", &speed)))
        return e;
    if (speed < 0.5 || speed > 1.0)
        return imm_field_bad(c, "must be between 0.5 and 1.0");
    t->speed = speed;
    imm_field_at(c, "%s[%d].StripMetadata", "Targets", i);
    return imm_field_bool(c, tj, "StripMetadata", &t->strip_metadata);
}
