/*
 * request.c - the CreateMediaConvertTask request: parse the JSON, judge every field that can be
 * judged without reading a source, and build the imm_request model the rest of the engine uses.
 *
 * Messages name the field by its full path (Targets[0].Audio.TranscodeAudio.SampleRate) because
 * that is what a user has to find in their request. Every object's keys are checked against the
 * official SDK's model: a key it does not have (a typo, a miscased "bitrate") is refused, because
 * an ignored key silently gives a different output than the one asked for. Fields the SDK has but
 * this engine does not implement (video, subtitles, attached streams, TargetGroups) are refused by
 * name for the same reason.
 */
#include "engine/request/request.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#define MAX_USER_DATA 2048

typedef struct ctx {
    imm_error *err;
    char path[160]; /* the field being judged, for messages */
    int nsources;   /* of the request, once its Sources are read */
} ctx;



static imm_err bad(ctx *c, const char *why)
{
    return imm_error_set(c->err, IMM_EARG, "The parameter %s %s.", c->path, why);
}

static imm_err check_uri(ctx *c, const char *uri)
{
    imm_uri u;
    imm_error ue;
    if (imm_uri_parse(uri, &u, &ue))
        return imm_error_set(c->err, IMM_EARG, "The parameter %s is invalid: %s", c->path,
                             ue.message);
    return IMM_OK;
}

__attribute__((format(printf, 2, 3))) static void at(ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->path, sizeof(c->path), fmt, ap);
    va_end(ap);
}

/* Every key of obj, the object at c->path, is one of `keys` (NULL-terminated), or the request is
 * refused naming the key and `what` it is not (with the right spelling when only the case differs):
 * an ignored key would silently switch a setting off. */
static imm_err only_keys(ctx *c, const cJSON *obj, const char *const *keys, const char *what)
{
    char where[sizeof(c->path)];
    const cJSON *item;
    snprintf(where, sizeof(where), "%s", c->path);
    cJSON_ArrayForEach(item, obj) {
        int k = 0;
        while (keys[k] && strcmp(item->string, keys[k]))
            k++;
        if (keys[k])
            continue;
        at(c, "%s%s%.100s", where, *where ? "." : "", item->string);
        for (k = 0; keys[k]; k++)
            if (!strcasecmp(item->string, keys[k])) {
                char why[160];
                snprintf(why, sizeof(why), "is not %s; field names are case-sensitive: %s",
                         what, keys[k]);
                return bad(c, why);
            }
        char why[200];
        snprintf(why, sizeof(why), "is not %s", what);
        return bad(c, why);
    }
    return IMM_OK;
}

/* Field getters: each returns IMM_OK and leaves *out alone when the field is absent (or null). */
static imm_err get_string(ctx *c, const cJSON *obj, const char *name, char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return IMM_OK;
    if (!cJSON_IsString(v))
        return bad(c, "must be a string");
    char *s = strdup(v->valuestring);
    if (!s)
        return imm_error_set(c->err, IMM_EINTERNAL, "out of memory");
    free(*out);
    *out = s;
    return IMM_OK;
}

static imm_err get_number(ctx *c, const cJSON *obj, const char *name, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return IMM_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return bad(c, "must be a number");
    *out = v->valuedouble;
    return IMM_OK;
}

static imm_err get_int(ctx *c, const cJSON *obj, const char *name, int64_t lo, int64_t hi,
                       int64_t *out)
{
    double d = NAN;
    imm_err e = get_number(c, obj, name, &d);
    if (e || isnan(d))
        return e;
    if (d != floor(d))
        return bad(c, "must be an integer");
    if (d < (double)lo || d > (double)hi) {
        char why[96];
        snprintf(why, sizeof(why), "must be between %lld and %lld", (long long)lo, (long long)hi);
        return bad(c, why);
    }
    *out = (int64_t)d;
    return IMM_OK;
}

static imm_err get_bool(ctx *c, const cJSON *obj, const char *name, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return IMM_OK;
    if (!cJSON_IsBool(v))
        return bad(c, "must be true or false");
    *out = cJSON_IsTrue(v);
    return IMM_OK;
}

static imm_err get_object(ctx *c, const cJSON *obj, const char *name, const cJSON **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return IMM_OK;
    if (!cJSON_IsObject(v))
        return bad(c, "must be an object");
    *out = v;
    return IMM_OK;
}

static void lower(char *s)
{
    for (; s && *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static imm_err parse_option(ctx *c, const cJSON *obj, const char *name, imm_option *out)
{
    char *s = NULL;
    imm_err e = get_string(c, obj, name, &s);
    if (e || !s)
        return e;
    lower(s);
    if (!strcmp(s, "fixed"))
        *out = IMM_OPT_FIXED;
    else if (!strcmp(s, "adaptive"))
        *out = IMM_OPT_ADAPTIVE;
    else if (!strcmp(s, "fall"))
        *out = IMM_OPT_FALL;
    else
        e = bad(c, "must be one of fixed, adaptive, fall");
    free(s);
    return e;
}

/* A field of the SDK's model that asks for video work (or a stream immerge does not write): refused
 * by name when it asks for anything, since an audio-only output would silently differ from the
 * service's. An empty object or array, or an object of empty ones, asks for nothing. */
static int asks_nothing(const cJSON *v)
{
    if (!v || cJSON_IsNull(v))
        return 1;
    if (cJSON_IsArray(v))
        return !v->child;
    if (!cJSON_IsObject(v))
        return 0;
    for (const cJSON *m = v->child; m; m = m->next) /* {"Stream": []} keeps no stream */
        if (!cJSON_IsNull(m) && !((cJSON_IsArray(m) || cJSON_IsObject(m)) && !m->child))
            return 0;
    return 1;
}

/* off (may be NULL) names the field's own switch ({"DisableVideo": true}): switched off, the
 * field asks for the audio-only output immerge makes, whatever else it holds (the service
 * leaves the rest unused too). */
static imm_err refuse_video_field(ctx *c, const cJSON *obj, const char *name, const char *off,
                                  const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (asks_nothing(v) || (off && cJSON_IsObject(v) &&
                            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, off))))
        return IMM_OK;
    char why[200];
    snprintf(why, sizeof(why), "asks for %s, which immerge (audio only) does not do; remove it",
             what);
    char where[sizeof(c->path)];
    snprintf(where, sizeof(where), "%s", c->path);
    at(c, "%s.%s", where, name);
    return bad(c, why);
}

static imm_err parse_source(ctx *c, const cJSON *js, int i, imm_source_req *src)
{
    static const char *const keys[] = {"URI", "StartTime", "Duration", "DisableAudio",
                                       "DisableVideo", "Attached", "AlignMode", "Subtitles",
                                       NULL};
    imm_err e;
    at(c, "%s[%d]", "Sources", i);
    if (!cJSON_IsObject(js))
        return bad(c, "must be an object");
    if ((e = only_keys(c, js, keys, "a field of a source")))
        return e;
    at(c, "%s[%d]", "Sources", i);
    if ((e = refuse_video_field(c, js, "Subtitles", NULL, "subtitles to be added")))
        return e;
    at(c, "%s[%d].URI", "Sources", i);
    if ((e = get_string(c, js, "URI", &src->uri)))
        return e;
    if (!src->uri || !*src->uri)
        return bad(c, "is required but not provided");
    if ((e = check_uri(c, src->uri)))
        return e;
    at(c, "%s[%d].StartTime", "Sources", i);
    if ((e = get_number(c, js, "StartTime", &src->start_time)))
        return e;
    if (src->start_time < 0)
        return bad(c, "must not be negative");
    at(c, "%s[%d].Duration", "Sources", i);
    if ((e = get_number(c, js, "Duration", &src->duration)))
        return e;
    if (src->duration < 0)
        return bad(c, "must not be negative");
    at(c, "%s[%d].DisableAudio", "Sources", i);
    if ((e = get_bool(c, js, "DisableAudio", &src->disable_audio)))
        return e;
    /* DisableVideo: the output is audio only either way; a source that has video must say so
     * to go into a container that could carry it (run.c). */
    at(c, "%s[%d].DisableVideo", "Sources", i);
    if ((e = get_bool(c, js, "DisableVideo", &src->disable_video)))
        return e;
    bool attached = false;
    at(c, "%s[%d].Attached", "Sources", i);
    if ((e = get_bool(c, js, "Attached", &attached)))
        return e;
    src->attached = attached;
    const cJSON *align = cJSON_GetObjectItemCaseSensitive(js, "AlignMode");
    at(c, "%s[%d].AlignMode", "Sources", i);
    if (align && !cJSON_IsNull(align) &&
        (!cJSON_IsString(align) || (strcmp(align->valuestring, "false") &&
                                    strcmp(align->valuestring, "loop") &&
                                    strcmp(align->valuestring, "pad"))))
        return bad(c, "must be false, loop or pad");
    return IMM_OK;
}

/* Targets[].Video, Image, Subtitle, AttachedPicture and Data: video-side work, refused, unless
 * switched off. */
static imm_err check_video_fields(ctx *c, const cJSON *tj, int i, imm_target_req *t)
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
        at(c, "Targets[%d]", i);
        imm_err e = refuse_video_field(c, tj, names[k][0], names[k][1], names[k][2]);
        if (e)
            return e;
    }
    return IMM_OK;
}

static imm_err parse_streams(ctx *c, const cJSON *audio, int i, imm_target_req *t)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(audio, "Stream");
    at(c, "%s[%d].Audio.Stream", "Targets", i);
    if (!v || cJSON_IsNull(v))
        return IMM_OK;
    if (!cJSON_IsArray(v))
        return bad(c, "must be an array of integers");
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) ||
            item->valuedouble < 0)
            return bad(c, "must be an array of non-negative integers");
        if (t->select.n < IMM_MAX_STREAM_SELECT)
            t->select.index[t->select.n++] = item->valueint;
    }
    return IMM_OK;
}

/* A target that would copy the audio stream (said as `how`): Codec is named, with why. */
static imm_err copy_refused(ctx *c, const char *how)
{
    char why[256];
    snprintf(why, sizeof(why), "is required: %s means a stream copy, which %s; name a codec "
             "(mp3, vorbis, aac, flac, ac3, opus, amr)", how,
             c->nsources > 1 ? "cannot merge several sources"
                             : "immerge does not do (it always re-encodes)");
    return bad(c, why);
}

static imm_err parse_transcode(ctx *c, const cJSON *ta, int i, imm_target_req *t)
{
    imm_err e;
    int64_t v;
    bool has_bitrate = false;

    static const char *const keys[] = {"Codec", "Bitrate", "BitrateOption", "SampleRate",
                                       "SampleRateOption", "Channel", "BitsPerSample",
                                       "Quality", NULL};
    at(c, "%s[%d].Audio.TranscodeAudio", "Targets", i);
    if ((e = only_keys(c, ta, keys, "a field of TranscodeAudio")))
        return e;
    at(c, "%s[%d].Audio.TranscodeAudio.Codec", "Targets", i);
    if ((e = get_string(c, ta, "Codec", &t->codec)))
        return e;
    if (!t->codec || !*t->codec)
        return copy_refused(c, "an absent Codec");
    lower(t->codec);
    if (!strcmp(t->codec, "copy"))
        return copy_refused(c, "copy");
    const imm_codec_info *codec = imm_codec_find(t->codec);
    if (!codec)
        return bad(c, "must be one of mp3, vorbis, aac, flac, ac3, opus, amr");

    at(c, "%s[%d].Audio.TranscodeAudio.Bitrate", "Targets", i);
    v = -1;
    if ((e = get_int(c, ta, "Bitrate", 1000, 10000000, &v)))
        return e;
    if (v >= 0) {
        t->bitrate = v;
        has_bitrate = true;
    }
    at(c, "%s[%d].Audio.TranscodeAudio.Quality", "Targets", i);
    v = -1;
    if ((e = get_int(c, ta, "Quality", 0, 100, &v)))
        return e;
    if (v >= 0 && has_bitrate)
        return bad(c, "cannot be set together with Bitrate");
    t->quality = (int)v;
    at(c, "%s[%d].Audio.TranscodeAudio.BitrateOption", "Targets", i);
    if ((e = parse_option(c, ta, "BitrateOption", &t->bitrate_option)))
        return e;

    at(c, "%s[%d].Audio.TranscodeAudio.SampleRate", "Targets", i);
    v = 0;
    if ((e = get_int(c, ta, "SampleRate", 1, 1000000, &v)))
        return e;
    if (v && !imm_service_sample_rate((int)v))
        return bad(c, "must be one of 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, "
                      "48000, 64000, 88200, 96000");
    if (v && !imm_codec_takes_rate(codec, (int)v)) {
        char why[96];
        snprintf(why, sizeof(why), "%lld is not a sample rate the %s codec takes", (long long)v,
                 codec->name);
        return bad(c, why);
    }
    t->sample_rate = (int)v;
    at(c, "%s[%d].Audio.TranscodeAudio.SampleRateOption", "Targets", i);
    if ((e = parse_option(c, ta, "SampleRateOption", &t->sample_rate_option)))
        return e;

    at(c, "%s[%d].Audio.TranscodeAudio.Channel", "Targets", i);
    v = 0;
    if ((e = get_int(c, ta, "Channel", 1, 8, &v)))
        return e;
    if (v > codec->max_channels) {
        char why[96];
        snprintf(why, sizeof(why), "must be at most %d for the %s codec", codec->max_channels,
                 codec->name);
        return bad(c, why);
    }
    t->channels = (int)v;

    at(c, "%s[%d].Audio.TranscodeAudio.BitsPerSample", "Targets", i);
    v = 0;
    if ((e = get_int(c, ta, "BitsPerSample", 0, 64, &v)))
        return e;
    if (v && v != 16 && v != 24)
        return bad(c, "must be 16 or 24");
    if (v && strcmp(codec->name, "flac"))
        return bad(c, "applies to the flac codec only");
    t->bits_per_sample = (int)v;
    return IMM_OK;
}

static imm_err parse_audio(ctx *c, const cJSON *tj, int i, imm_target_req *t)
{
    static const char *const keys[] = {"DisableAudio", "Stream", "FilterAudio", "TranscodeAudio",
                                       NULL};
    static const char *const filter_keys[] = {"Mixing", NULL};
    const cJSON *audio, *ta, *filter;
    bool disable = false, mixing = false;
    imm_err e;

    at(c, "%s[%d].Audio", "Targets", i);
    if ((e = get_object(c, tj, "Audio", &audio)))
        return e;
    if (!audio) {
        at(c, "%s[%d].Audio.TranscodeAudio.Codec", "Targets", i);
        return copy_refused(c, "an absent Audio");
    }
    if ((e = only_keys(c, audio, keys, "a field of Audio")))
        return e;
    at(c, "%s[%d].Audio.DisableAudio", "Targets", i);
    if ((e = get_bool(c, audio, "DisableAudio", &disable)))
        return e;
    if (disable)
        return bad(c, "is true, which leaves an audio merge with nothing to write");
    if ((e = parse_streams(c, audio, i, t)))
        return e;
    at(c, "%s[%d].Audio.FilterAudio", "Targets", i);
    if ((e = get_object(c, audio, "FilterAudio", &filter)))
        return e;
    if (filter && (e = only_keys(c, filter, filter_keys, "a field of FilterAudio")))
        return e;
    at(c, "%s[%d].Audio.FilterAudio.Mixing", "Targets", i);
    if (filter && (e = get_bool(c, filter, "Mixing", &mixing)))
        return e;
    t->select.mixing = mixing;
    at(c, "%s[%d].Audio.TranscodeAudio", "Targets", i);
    if ((e = get_object(c, audio, "TranscodeAudio", &ta)))
        return e;
    if (!ta) {
        at(c, "%s[%d].Audio.TranscodeAudio", "Targets", i);
        return bad(c, "is required: an absent TranscodeAudio means an output without audio, "
                      "which leaves an audio merge with nothing to write");
    }
    return parse_transcode(c, ta, i, t);
}

static imm_err parse_container(ctx *c, const cJSON *tj, int i, imm_target_req *t)
{
    imm_err e;
    at(c, "%s[%d].Container", "Targets", i);
    if ((e = get_string(c, tj, "Container", &t->container)))
        return e;
    if (!t->container) {
        /* The service needs Container; a URI whose extension names one is as clear. */
        const char *base = strrchr(t->uri, '/');
        const char *dot = strrchr(base ? base : t->uri, '.');
        const imm_container_info *ci = dot ? imm_container_by_extension(dot + 1) : NULL;
        if (!ci)
            return bad(c, "is required when the URI has no known extension");
        t->container = strdup(ci->name);
        if (!t->container)
            return imm_error_set(c->err, IMM_EINTERNAL, "out of memory");
    }
    lower(t->container);
    if (!imm_container_find(t->container))
        return bad(c, "must be one of mp3, aac, flac, oga, ac3, opus, mp4, mkv, mov, asf, avi, "
                      "mxf, ts, flv");
    return IMM_OK;
}

/* Segment {Format, Duration, StartNumber}: HLS for ts (MPEG-TS segments) and mp4 (fMP4). */
static imm_err parse_segment(ctx *c, const cJSON *tj, int i, imm_target_req *t)
{
    const cJSON *seg;
    char *format = NULL;
    int64_t start = 0;
    imm_err e;
    static const char *const keys[] = {"Format", "Duration", "StartNumber", NULL};
    at(c, "%s[%d].Segment", "Targets", i);
    if ((e = get_object(c, tj, "Segment", &seg)) || !seg)
        return e;
    if ((e = only_keys(c, seg, keys, "a field of Segment")))
        return e;
    at(c, "%s[%d].Segment.Format", "Targets", i);
    if ((e = get_string(c, seg, "Format", &format)))
        return e;
    if (format)
        lower(format);
    int hls = !format || !strcmp(format, "hls"), dash = format && !strcmp(format, "dash");
    free(format);
    if (dash)
        return bad(c, "dash is not supported by this engine yet; use hls");
    if (!hls)
        return bad(c, "must be hls or dash");
    if (strcmp(t->container, "ts") && strcmp(t->container, "mp4")) {
        at(c, "%s[%d].Container", "Targets", i);
        return bad(c, "must be ts or mp4 for a segmented (HLS) output");
    }
    t->segment = true;
    t->segment_duration = 10;
    at(c, "%s[%d].Segment.Duration", "Targets", i);
    if ((e = get_number(c, seg, "Duration", &t->segment_duration)))
        return e;
    if (!(t->segment_duration >= 1 && t->segment_duration <= 3600))
        return bad(c, "must be from 1 to 3600 seconds");
    at(c, "%s[%d].Segment.StartNumber", "Targets", i);
    if ((e = get_int(c, seg, "StartNumber", 0, 1000000000, &start)))
        return e;
    t->segment_start = (int)start;
    return IMM_OK;
}

static imm_err parse_target(ctx *c, const cJSON *tj, int i, imm_target_req *t)
{
    imm_err e;
    double speed = 1.0;

    static const char *const keys[] = {"URI", "Container", "Audio", "Video", "Image", "Subtitle",
                                       "Segment", "Speed", "StripMetadata", "AttachedPicture",
                                       "Data", NULL};
    at(c, "%s[%d]", "Targets", i);
    if (!cJSON_IsObject(tj))
        return bad(c, "must be an object");
    if ((e = only_keys(c, tj, keys, "a field of a target")))
        return e;
    at(c, "%s[%d].URI", "Targets", i);
    if ((e = get_string(c, tj, "URI", &t->uri)))
        return e;
    if (!t->uri || !*t->uri)
        return bad(c, "is required but not provided");
    if ((e = parse_container(c, tj, i, t)))
        return e;
    if ((e = parse_segment(c, tj, i, t)) || (e = check_video_fields(c, tj, i, t)))
        return e;
    if ((e = parse_audio(c, tj, i, t)))
        return e;
    const imm_container_info *ci = imm_container_find(t->container);
    if (!imm_container_carries(ci, t->codec)) {
        at(c, "%s[%d].Audio.TranscodeAudio.Codec", "Targets", i);
        char why[96];
        snprintf(why, sizeof(why), "%s cannot be carried in the %s container", t->codec,
                 t->container);
        return bad(c, why);
    }
    at(c, "%s[%d].Speed", "Targets", i);
    if ((e = get_number(c, tj, "Speed", &speed)))
        return e;
    if (speed < 0.5 || speed > 1.0)
        return bad(c, "must be between 0.5 and 1.0");
    t->speed = speed;
    at(c, "%s[%d].StripMetadata", "Targets", i);
    return get_bool(c, tj, "StripMetadata", &t->strip_metadata);
}

static imm_err parse_array(ctx *c, const cJSON *root, const char *name, const cJSON **out, int *n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    snprintf(c->path, sizeof(c->path), "%s", name);
    if (!v || cJSON_IsNull(v))
        return bad(c, "is required but not provided");
    if (!cJSON_IsArray(v))
        return bad(c, "must be an array");
    *n = cJSON_GetArraySize(v);
    if (*n == 0)
        return bad(c, "must not be empty");
    *out = v;
    return IMM_OK;
}

static imm_err parse_alignment(ctx *c, const cJSON *root, imm_request *req)
{
    int64_t v = 0;
    imm_err e;
    snprintf(c->path, sizeof(c->path), "AlignmentIndex");
    if ((e = get_int(c, root, "AlignmentIndex", 0, IMM_MAX_SOURCES - 1, &v)))
        return e;
    if (v >= req->nsources)
        return bad(c, "must name one of the Sources (0-based)");
    req->alignment_index = (int)v;
    if (req->sources[v].attached) {
        at(c, "%s[%d].Attached", "Sources", (int)v);
        return bad(c, "cannot be true on the AlignmentIndex source");
    }
    for (int i = 0; i < req->nsources; i++)
        if (req->sources[i].attached) {
            at(c, "%s[%d].Attached", "Sources", i);
            return bad(c, "is true: adding a source as a synchronised extra stream is not "
                          "supported by immerge (it would append it instead); remove Attached "
                          "to concatenate the source");
        }
    return IMM_OK;
}

/* Notification {MNS {TopicName}, ExtendedMessageURI, RocketMQ}, and the legacy top-level
 * NotifyTopicName. Delivery is notify/'s; here only what was asked. */
static imm_err parse_notification(ctx *c, const cJSON *root, imm_request *req)
{
    static const char *const keys[] = {"MNS", "RocketMQ", "ExtendedMessageURI", NULL};
    static const char *const mns_keys[] = {"TopicName", "Endpoint", NULL};
    const cJSON *note, *mns = NULL, *rocket = NULL;
    imm_err e;
    snprintf(c->path, sizeof(c->path), "Notification");
    if ((e = get_object(c, root, "Notification", &note)))
        return e;
    if (note) {
        if ((e = only_keys(c, note, keys, "a field of Notification")))
            return e;
        snprintf(c->path, sizeof(c->path), "Notification.MNS");
        if ((e = get_object(c, note, "MNS", &mns)))
            return e;
        if (mns && (e = only_keys(c, mns, mns_keys, "a field of Notification.MNS")))
            return e;
        snprintf(c->path, sizeof(c->path), "Notification.MNS.TopicName");
        if (mns && (e = get_string(c, mns, "TopicName", &req->notify_topic)))
            return e;
        if (req->notify_topic)
            req->notify_topic_field = "Notification.MNS.TopicName";
        snprintf(c->path, sizeof(c->path), "Notification.MNS.Endpoint");
        if (mns && (e = get_string(c, mns, "Endpoint", &req->notify_endpoint)))
            return e;
        if (req->notify_endpoint)
            req->notify_endpoint_field = "Notification.MNS.Endpoint";
        snprintf(c->path, sizeof(c->path), "Notification.RocketMQ");
        if ((e = get_object(c, note, "RocketMQ", &rocket)))
            return e;
        req->notify_rocketmq = rocket != NULL;
        snprintf(c->path, sizeof(c->path), "Notification.ExtendedMessageURI");
        if ((e = get_string(c, note, "ExtendedMessageURI", &req->notify_extended_uri)))
            return e;
        if (req->notify_extended_uri && (e = check_uri(c, req->notify_extended_uri)))
            return e;
    }
    if (!req->notify_topic) {
        snprintf(c->path, sizeof(c->path), "NotifyTopicName");
        if ((e = get_string(c, root, "NotifyTopicName", &req->notify_topic)))
            return e;
        if (req->notify_topic)
            req->notify_topic_field = "NotifyTopicName";
    }
    if (!req->notify_endpoint) {
        snprintf(c->path, sizeof(c->path), "NotifyEndpoint");
        if ((e = get_string(c, root, "NotifyEndpoint", &req->notify_endpoint)))
            return e;
        if (req->notify_endpoint)
            req->notify_endpoint_field = "NotifyEndpoint";
    }
    if (req->notify_endpoint && !*req->notify_endpoint) {
        free(req->notify_endpoint);
        req->notify_endpoint = NULL;
    }
    if (req->notify_endpoint && strncmp(req->notify_endpoint, "http://", 7) &&
        strncmp(req->notify_endpoint, "https://", 8)) {
        snprintf(c->path, sizeof(c->path), "%s", req->notify_endpoint_field);
        return bad(c, "is not an MNS endpoint (http:// or https://ACCOUNT.mns.REGION.aliyuncs.com)");
    }
    if (req->notify_topic && !*req->notify_topic) {
        free(req->notify_topic);
        req->notify_topic = NULL;
    }
    /* MNS topic names: letters, digits and '-', starting with a letter, at most 256. */
    if (req->notify_topic) {
        const char *t = req->notify_topic;
        int okname = ((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z')) && strlen(t) <= 256;
        for (; okname && *t; t++)
            okname = (*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') ||
                     (*t >= '0' && *t <= '9') || *t == '-';
        snprintf(c->path, sizeof(c->path), "%s", req->notify_topic_field);
        if (!okname)
            return bad(c, "is not an MNS topic name (a letter, then letters, digits and '-')");
    }
    return IMM_OK;
}

#define MAX_FADE 30.0 /* seconds: a fade stays within the last chunk of a chunked target */

static imm_err parse_curve(ctx *c, const cJSON *obj, const char *name, imm_curve *out)
{
    char *s = NULL;
    imm_err e = get_string(c, obj, name, &s);
    if (!e && s) {
        if (!strcmp(s, "linear"))
            *out = IMM_CURVE_LINEAR;
        else if (!strcmp(s, "sine"))
            *out = IMM_CURVE_SINE;
        else
            e = bad(c, "must be linear or sine");
    }
    free(s);
    return e;
}

/* An extension that puts `what` into every output: each target's container (NULL-terminated
 * `can`, not segmented) must be able to hold it, or the request is refused rather than a target
 * silently left without. */
static imm_err every_target_carries(ctx *c, const imm_request *req, const char *field,
                                    const char *what, const char *const *can, const char *names)
{
    for (int t = 0; t < req->ntargets; t++) {
        const imm_target_req *tr = &req->targets[t];
        int k = 0;
        while (can[k] && strcmp(tr->container, can[k]))
            k++;
        if (!can[k] || tr->segment)
            return imm_error_set(c->err, IMM_EARG, "The parameter ImmergeExtensions.%s asks for %s, "
                                 "which Targets[%d] (%s%s) cannot carry; %s can.", field, what, t,
                                 tr->container, tr->segment ? ", segmented" : "", names);
    }
    return IMM_OK;
}

/* ImmergeExtensions.name, an object of settings that must all be among `keys` (NULL-terminated);
 * *out is NULL when it is absent. */
static imm_err get_settings(ctx *c, const cJSON *ext, const char *name, const char *const *keys,
                            const cJSON **out)
{
    char what[160];
    int n = snprintf(what, sizeof(what), "a %s setting (", name);
    at(c, "ImmergeExtensions.%s", name);
    imm_err e = get_object(c, ext, name, out);
    if (e || !*out)
        return e;
    for (int k = 0; keys[k] && n < (int)sizeof(what); k++)
        n += snprintf(what + n, sizeof(what) - (size_t)n, "%s%s", k ? ", " : "", keys[k]);
    if (n < (int)sizeof(what))
        snprintf(what + n, sizeof(what) - (size_t)n, ")");
    return only_keys(c, *out, keys, what);
}

/* Crossfade: {"Duration": seconds, "Curve": "sine" (equal power, the default) or "linear"}. */
static imm_err parse_crossfade(ctx *c, const cJSON *ext, imm_extensions *x)
{
    static const char *const keys[] = {"Duration", "Curve", NULL};
    const cJSON *xf;
    imm_err e = get_settings(c, ext, "Crossfade", keys, &xf);
    if (e || !xf)
        return e;
    x->crossfade_curve = IMM_CURVE_SINE;
    at(c, "ImmergeExtensions.Crossfade.Duration");
    if ((e = get_number(c, xf, "Duration", &x->crossfade)))
        return e;
    if (!(x->crossfade > 0 && x->crossfade <= 10))
        return bad(c, "is required: the seconds each join overlaps, above 0 and at most 10");
    at(c, "ImmergeExtensions.Crossfade.Curve");
    return parse_curve(c, xf, "Curve", &x->crossfade_curve);
}

/* TrimSilence: {"Threshold": dBFS, "Keep": seconds}, both optional. */
static imm_err parse_trim(ctx *c, const cJSON *ext, imm_extensions *x)
{
    static const char *const keys[] = {"Threshold", "Keep", NULL};
    const cJSON *trim;
    imm_err e = get_settings(c, ext, "TrimSilence", keys, &trim);
    if (e || !trim)
        return e;
    x->trim = true;
    x->trim_threshold = -50;
    at(c, "ImmergeExtensions.TrimSilence.Threshold");
    if ((e = get_number(c, trim, "Threshold", &x->trim_threshold)))
        return e;
    if (x->trim_threshold < -96 || x->trim_threshold > -20)
        return bad(c, "must be between -96 and -20 dBFS");
    at(c, "ImmergeExtensions.TrimSilence.Keep");
    if ((e = get_number(c, trim, "Keep", &x->trim_keep)))
        return e;
    if (x->trim_keep < 0 || x->trim_keep > 5)
        return bad(c, "must be between 0 and 5 seconds");
    return IMM_OK;
}

/* ImmergeExtensions: every key is known, or the request is refused (a typo must not silently
 * switch an extension off). */
static imm_err parse_extensions(ctx *c, const cJSON *root, imm_request *req)
{
    static const char *const known[] = {"FadeIn", "FadeOut", "FadeCurve", "Loudness", "Chapters",
                                        "TagsFrom", "TrimSilence", "MaxSources", "CoverFrom",
                                        "Crossfade", NULL};
    /* The muxers that keep an attached picture as cover art (FFmpeg 5.1's MOV muxer drops it,
     * Matroska would make it a video track). */
    static const char *const covered[] = {"mp3", "mp4", "flac", NULL};
    static const char *const chaptered[] = {"mp3", "mp4", "mkv", "mov", "oga", "opus", "flac",
                                            NULL};
    imm_extensions *x = &req->ext;
    const cJSON *ext, *loud;
    imm_err e;
    int64_t from = -1;
    x->tags_from = x->cover_from = -1;
    snprintf(c->path, sizeof(c->path), "ImmergeExtensions");
    if ((e = get_object(c, root, "ImmergeExtensions", &ext)) || !ext)
        return e;
    if ((e = only_keys(c, ext, known,
                       "an extension this immerge knows (see docs/extensions.md)")))
        return e;
    const char *fades[] = {"FadeIn", "FadeOut"};
    double *fade[] = {&x->fade_in, &x->fade_out};
    for (int i = 0; i < 2; i++) {
        at(c, "ImmergeExtensions.%s", fades[i]);
        if ((e = get_number(c, ext, fades[i], fade[i])))
            return e;
        if (*fade[i] < 0 || *fade[i] > MAX_FADE)
            return bad(c, "must be between 0 and 30 seconds");
    }
    at(c, "ImmergeExtensions.FadeCurve");
    if ((e = parse_curve(c, ext, "FadeCurve", &x->fade_curve)))
        return e;
    at(c, "ImmergeExtensions.TagsFrom");
    if ((e = get_int(c, ext, "TagsFrom", 0, req->nsources - 1, &from)))
        return e;
    x->tags_from = (int)from;
    from = -1;
    at(c, "ImmergeExtensions.CoverFrom");
    if ((e = get_int(c, ext, "CoverFrom", 0, req->nsources - 1, &from)))
        return e;
    x->cover_from = (int)from;
    if (x->cover_from >= 0 &&
        (e = every_target_carries(c, req, "CoverFrom", "cover art", covered, "MP3, MP4 and FLAC")))
        return e;
    at(c, "ImmergeExtensions.Chapters");
    if ((e = get_bool(c, ext, "Chapters", &x->chapters)))
        return e;
    if (x->chapters &&
        (e = every_target_carries(c, req, "Chapters", "chapters", chaptered,
                                  "MP3, MP4, MKV, MOV, Ogg and FLAC")))
        return e;
    if ((e = parse_trim(c, ext, x)) || (e = parse_crossfade(c, ext, x)))
        return e;
    static const char *const loudness[] = {"Target", "MaxPeak", NULL};
    if ((e = get_settings(c, ext, "Loudness", loudness, &loud)) || !loud)
        return e;
    x->loudness = true;
    x->loudness_target = NAN;
    x->max_peak = -1.0;
    at(c, "ImmergeExtensions.Loudness.Target");
    if ((e = get_number(c, loud, "Target", &x->loudness_target)))
        return e;
    if (!(x->loudness_target >= -70 && x->loudness_target <= -5))
        return bad(c, "is required: the integrated loudness to reach, -70 to -5 LUFS");
    at(c, "ImmergeExtensions.Loudness.MaxPeak");
    if ((e = get_number(c, loud, "MaxPeak", &x->max_peak)))
        return e;
    if (x->max_peak < -20 || x->max_peak > 0)
        return bad(c, "must be between -20 and 0 dBFS");
    return IMM_OK;
}

static imm_err parse_extras(ctx *c, const cJSON *root, imm_request *req)
{
    imm_err e;
    const cJSON *tags;
    snprintf(c->path, sizeof(c->path), "UserData");
    if ((e = get_string(c, root, "UserData", &req->user_data)))
        return e;
    if (req->user_data && strlen(req->user_data) > MAX_USER_DATA)
        return imm_error_set(c->err, IMM_ELIMIT, "The parameter UserData exceeds %d bytes.",
                             MAX_USER_DATA);
    snprintf(c->path, sizeof(c->path), "Tags");
    if ((e = get_object(c, root, "Tags", &tags)))
        return e;
    /* The SDK types Tags map<string, any>: every value is kept as given. */
    if (tags && !(req->tags = cJSON_Duplicate(tags, 1)))
        return imm_error_set(c->err, IMM_EINTERNAL, "out of memory");
    return parse_notification(c, root, req);
}

/* A target (or the ExtendedMessageURI) that overwrote a source, or another target, would lose
 * data the user still has. */
static imm_err check_target_clashes(ctx *c, const imm_request *req)
{
    const char *extended = req->notify_extended_uri;
    at(c, "Notification.ExtendedMessageURI");
    for (int j = 0; extended && j < req->nsources; j++)
        if (!strcmp(extended, req->sources[j].uri))
            return bad(c, "names one of the Sources; the task JSON never overwrites an input");
    for (int j = 0; extended && j < req->ntargets; j++)
        if (!strcmp(extended, req->targets[j].resolved))
            return bad(c, "names one of the Targets; the task JSON would replace an output");
    imm_err e = IMM_OK;
    char *uris[IMM_MAX_TARGETS] = {0};
    for (int i = 0; i < req->ntargets && !e; i++) {
        uris[i] = imm_target_uri(&req->targets[i]);
        if (!uris[i]) {
            e = imm_error_set(c->err, IMM_EINTERNAL, "out of memory");
            break;
        }
        at(c, "%s[%d].URI", "Targets", i);
        for (int j = 0; j < req->nsources && !e; j++)
            if (!strcmp(uris[i], req->sources[j].uri))
                e = bad(c, "names one of the Sources; a merge never overwrites its input");
        for (int j = 0; j < i && !e; j++)
            if (!strcmp(uris[i], uris[j]))
                e = bad(c, "names the same object as another target");
    }
    for (int i = 0; i < req->ntargets; i++)
        free(uris[i]);
    return e;
}

/* Each source is decoded once for all targets, so they must select (and mix) the same streams. */
static imm_err check_same_streams(ctx *c, const imm_request *req)
{
    const imm_stream_select *s0 = &req->targets[0].select;
    for (int i = 1; i < req->ntargets; i++) {
        const imm_stream_select *s = &req->targets[i].select;
        if (s->n != s0->n || memcmp(s->index, s0->index, sizeof(int) * (size_t)s->n)) {
            at(c, "Targets[%d].Audio.Stream", i);
            return bad(c, "differs from Targets[0]'s; selecting different streams per target "
                          "is not supported by this engine yet");
        }
        if (s->mixing != s0->mixing) {
            at(c, "Targets[%d].Audio.FilterAudio.Mixing", i);
            return bad(c, "differs from Targets[0]'s; mixing for some targets only is not "
                          "supported by this engine yet");
        }
    }
    return IMM_OK;
}

/* ImmergeExtensions.MaxSources, read before the Sources it admits. */
static imm_err parse_max_sources(ctx *c, const cJSON *root, imm_request *req)
{
    const cJSON *ext = cJSON_GetObjectItemCaseSensitive(root, "ImmergeExtensions");
    int64_t v = IMM_SERVICE_MAX_SOURCES;
    req->ext.max_sources = IMM_SERVICE_MAX_SOURCES;
    if (!cJSON_IsObject(ext))
        return IMM_OK; /* parse_extensions says what is wrong with it */
    at(c, "ImmergeExtensions.MaxSources");
    imm_err e = get_int(c, ext, "MaxSources", 1, IMM_MAX_SOURCES, &v);
    req->ext.max_sources = (int)v;
    return e;
}

static imm_err parse_root(ctx *c, const cJSON *root, imm_request *req)
{
    imm_err e;
    const cJSON *arr, *item;
    int n, i = 0;

    /* The SDK's CreateMediaConvertTaskRequest, the legacy notification fields and ours. */
    static const char *const keys[] = {"ProjectName", "Sources", "Targets", "TargetGroups",
                                       "AlignmentIndex", "Notification", "Tags", "UserData",
                                       "CredentialConfig", "NotifyTopicName", "NotifyEndpoint",
                                       "ImmergeExtensions", NULL};
    c->path[0] = '\0';
    if ((e = only_keys(c, root, keys, "a field of CreateMediaConvertTask")))
        return e;
    snprintf(c->path, sizeof(c->path), "ProjectName");
    if ((e = get_string(c, root, "ProjectName", &req->project)))
        return e;
    if (!req->project || !*req->project)
        return bad(c, "is required but not provided");

    if ((e = parse_max_sources(c, root, req)) || (e = parse_array(c, root, "Sources", &arr, &n)))
        return e;
    if (n > req->ext.max_sources)
        return imm_error_set(c->err, IMM_ELIMIT,
                             "The parameter Sources has %d elements; at most %d media files can "
                             "be merged in one task%s.", n, req->ext.max_sources,
                             n <= IMM_MAX_SOURCES ? " (ImmergeExtensions.MaxSources allows more)"
                                                  : "");
    cJSON_ArrayForEach(item, arr) {
        if ((e = parse_source(c, item, i, &req->sources[i])))
            return e;
        i++;
    }
    req->nsources = c->nsources = n;
    if ((e = parse_alignment(c, root, req)))
        return e;

    /* TargetGroups: HLS packaging groups, each with its master playlist. Checked before Targets,
     * which the SDK does not require when groups are given. */
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(root, "TargetGroups");
    snprintf(c->path, sizeof(c->path), "TargetGroups");
    if (groups && !cJSON_IsNull(groups) && !cJSON_IsArray(groups))
        return bad(c, "must be an array");
    if (cJSON_GetArraySize(groups) > 0)
        return bad(c, "(HLS packaging groups with a master playlist) is not supported by "
                      "immerge; use Targets with Segment {\"Format\": \"hls\"} for one HLS "
                      "output per target");
    if ((e = parse_array(c, root, "Targets", &arr, &n)))
        return e;
    if (n > IMM_MAX_TARGETS)
        return imm_error_set(c->err, IMM_ELIMIT,
                             "The parameter Targets has %d elements; at most %d are allowed.", n,
                             IMM_MAX_TARGETS);
    i = 0;
    cJSON_ArrayForEach(item, arr) {
        req->ntargets = i + 1; /* so that imm_request_free sees what was allocated */
        if ((e = parse_target(c, item, i, &req->targets[i])))
            return e;
        i++;
    }
    if ((e = check_same_streams(c, req)) || (e = parse_extensions(c, root, req)) ||
        (e = parse_extras(c, root, req)))
        return e;
    /* Last: a template may name the Tags. */
    req->created = (int64_t)time(NULL);
    for (i = 0; i < req->ntargets; i++) {
        imm_target_req *t = &req->targets[i];
        if (!(t->resolved = imm_target_uri_resolve(req, i, req->created, c->err)))
            return c->err->code;
        at(c, "%s[%d].URI", "Targets", i);
        if ((e = check_uri(c, t->resolved)))
            return e;
    }
    return check_target_clashes(c, req);
}

/* Whether the text holds a NUL: a raw byte, or the escape \u0000 that cJSON would turn into
 * one and so silently cut the string there ("a.mp3\u0000/../x" would read as "a.mp3"). */
static int holds_nul(const char *json, size_t len)
{
    if (memchr(json, '\0', len))
        return 1;
    for (size_t i = 0; i + 1 < len; i++)
        if (json[i] == '\\') {
            if (json[i + 1] == 'u' && i + 5 < len && !memcmp(json + i + 2, "0000", 4))
                return 1;
            i++; /* the escaped character */
        }
    return 0;
}

imm_err imm_request_parse(const char *json, size_t len, imm_request **out, imm_error *err)
{
    ctx c = {.err = err};
    imm_err e;
    *out = NULL;

    if (holds_nul(json, len))
        return imm_error_set(err, IMM_EARG, "The request holds a NUL character (\\u0000), which "
                             "no field may contain.");

    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return imm_error_set(err, IMM_EJSON, "The request is not valid JSON (near byte %ld).",
                             (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
    imm_request *req = calloc(1, sizeof(*req));
    if (!req) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        e = imm_error_set(err, IMM_EJSON, "The request must be a JSON object.");
        goto out;
    }
    if ((e = parse_root(&c, root, req)))
        goto out;
    req->raw = strndup(json, len);
    if (!req->raw) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto out;
    }
    *out = req;
    req = NULL;
out:
    imm_request_free(req);
    cJSON_Delete(root);
    return e;
}

void imm_request_free(imm_request *req)
{
    if (!req)
        return;
    for (int i = 0; i < IMM_MAX_SOURCES; i++)
        free(req->sources[i].uri);
    for (int i = 0; i < req->ntargets; i++) {
        free(req->targets[i].uri);
        free(req->targets[i].resolved);
        free(req->targets[i].container);
        free(req->targets[i].codec);
    }
    free(req->project);
    free(req->notify_topic);
    free(req->notify_extended_uri);
    free(req->notify_endpoint);
    free(req->user_data);
    free(req->raw);
    cJSON_Delete(req->tags);
    free(req);
}

imm_notification imm_request_notification(const imm_request *req)
{
    return (imm_notification){.topic = req->notify_topic,
                              .topic_field = req->notify_topic_field,
                              .endpoint = req->notify_endpoint,
                              .endpoint_field = req->notify_endpoint_field,
                              .extended_uri = req->notify_extended_uri,
                              .rocketmq = req->notify_rocketmq};
}

imm_err imm_request_check_storage(const imm_request *req, imm_storage *st, imm_error *err)
{
    imm_error why;
    char field[64];
    const char *uri;
    if (!st->ops->admits)
        return IMM_OK;
    for (int i = 0; i < req->nsources + req->ntargets + 1; i++) {
        if (i < req->nsources) {
            snprintf(field, sizeof(field), "Sources[%d].URI", i);
            uri = req->sources[i].uri;
        } else if (i < req->nsources + req->ntargets) {
            snprintf(field, sizeof(field), "Targets[%d].URI", i - req->nsources);
            uri = req->targets[i - req->nsources].resolved;
        } else {
            snprintf(field, sizeof(field), "Notification.ExtendedMessageURI");
            uri = req->notify_extended_uri;
        }
        if (uri && st->ops->admits(st, uri, &why))
            return imm_error_set(err, why.code, "The parameter %s is refused: %s", field,
                                 why.message);
    }
    return IMM_OK;
}
