/*
 * extensions.c - ImmergeExtensions, immerge's own additions under a key the service never sends
 * (docs/extensions.md): fades, loudness, chapters, TrimSilence, tags and cover art from a
 * chosen source, crossfades, MaxSources. Each is off unless asked for, and one a target's
 * container cannot carry is refused rather than left out.
 */
#include "engine/request/request.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define MAX_FADE 30.0 /* seconds: a fade stays within the last chunk of a chunked target */

/* An extension that puts `what` into every output: each target's container (NULL-terminated
 * `can`, not segmented) must be able to hold it, or the request is refused rather than a target
 * silently left without. */
static imm_err every_target_carries(imm_fields *c, const imm_request *req, const char *field,
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
static imm_err get_settings(imm_fields *c, const cJSON *ext, const char *name,
                            const char *const *keys, const cJSON **out)
{
    char what[160];
    int n = snprintf(what, sizeof(what), "a %s setting (", name);
    imm_field_at(c, "ImmergeExtensions.%s", name);
    imm_err e = imm_field_object(c, ext, name, out);
    if (e || !*out)
        return e;
    for (int k = 0; keys[k] && n < (int)sizeof(what); k++)
        n += snprintf(what + n, sizeof(what) - (size_t)n, "%s%s", k ? ", " : "", keys[k]);
    if (n < (int)sizeof(what))
        snprintf(what + n, sizeof(what) - (size_t)n, ")");
    return imm_field_keys(c, *out, keys, what);
}

/* Crossfade: {"Duration": seconds, "Curve": "sine" (equal power, the default) or "linear"}. */
static imm_err parse_crossfade(imm_fields *c, const cJSON *ext, imm_extensions *x)
{
    static const char *const keys[] = {"Duration", "Curve", NULL};
    const cJSON *xf;
    imm_err e = get_settings(c, ext, "Crossfade", keys, &xf);
    if (e || !xf)
        return e;
    x->crossfade_curve = IMM_CURVE_SINE;
    imm_field_at(c, "ImmergeExtensions.Crossfade.Duration");
    if ((e = imm_field_number(c, xf, "Duration", &x->crossfade)))
        return e;
    if (!(x->crossfade > 0 && x->crossfade <= 10))
        return imm_field_bad(c, "is required: the seconds each join overlaps, above 0 and at most "
                                "10");
    imm_field_at(c, "ImmergeExtensions.Crossfade.Curve");
    return imm_field_curve(c, xf, "Curve", &x->crossfade_curve);
}

/* TrimSilence: {"Threshold": dBFS, "Keep": seconds}, both optional. */
static imm_err parse_trim(imm_fields *c, const cJSON *ext, imm_extensions *x)
{
    static const char *const keys[] = {"Threshold", "Keep", NULL};
    const cJSON *trim;
    imm_err e = get_settings(c, ext, "TrimSilence", keys, &trim);
    if (e || !trim)
        return e;
    x->trim = true;
    x->trim_threshold = -50;
    imm_field_at(c, "ImmergeExtensions.TrimSilence.Threshold");
    if ((e = imm_field_number(c, trim, "Threshold", &x->trim_threshold)))
        return e;
    if (x->trim_threshold < -96 || x->trim_threshold > -20)
        return imm_field_bad(c, "must be between -96 and -20 dBFS");
    imm_field_at(c, "ImmergeExtensions.TrimSilence.Keep");
    if ((e = imm_field_number(c, trim, "Keep", &x->trim_keep)))
        return e;
    if (x->trim_keep < 0 || x->trim_keep > 5)
        return imm_field_bad(c, "must be between 0 and 5 seconds");
    return IMM_OK;
}

/* ImmergeExtensions: every key is known, or the request is refused (a typo must not silently
 * switch an extension off). */
imm_err imm_parse_extensions(imm_fields *c, const cJSON *root, imm_request *req)
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
    if ((e = imm_field_object(c, root, "ImmergeExtensions", &ext)) || !ext)
        return e;
    if ((e = imm_field_keys(c, ext, known,
                            "an extension this immerge knows (see docs/extensions.md)")))
        return e;
    const char *fades[] = {"FadeIn", "FadeOut"};
    double *fade[] = {&x->fade_in, &x->fade_out};
    for (int i = 0; i < 2; i++) {
        imm_field_at(c, "ImmergeExtensions.%s", fades[i]);
        if ((e = imm_field_number(c, ext, fades[i], fade[i])))
            return e;
        if (*fade[i] < 0 || *fade[i] > MAX_FADE)
            return imm_field_bad(c, "must be between 0 and 30 seconds");
    }
    imm_field_at(c, "ImmergeExtensions.FadeCurve");
    if ((e = imm_field_curve(c, ext, "FadeCurve", &x->fade_curve)))
        return e;
    imm_field_at(c, "ImmergeExtensions.TagsFrom");
    if ((e = imm_field_int(c, ext, "TagsFrom", 0, req->nsources - 1, &from)))
        return e;
    x->tags_from = (int)from;
    from = -1;
    imm_field_at(c, "ImmergeExtensions.CoverFrom");
    if ((e = imm_field_int(c, ext, "CoverFrom", 0, req->nsources - 1, &from)))
        return e;
    x->cover_from = (int)from;
    if (x->cover_from >= 0 &&
        (e = every_target_carries(c, req, "CoverFrom", "cover art", covered, "MP3, MP4 and FLAC")))
        return e;
    imm_field_at(c, "ImmergeExtensions.Chapters");
    if ((e = imm_field_bool(c, ext, "Chapters", &x->chapters)))
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
    imm_field_at(c, "ImmergeExtensions.Loudness.Target");
    if ((e = imm_field_number(c, loud, "Target", &x->loudness_target)))
        return e;
    if (!(x->loudness_target >= -70 && x->loudness_target <= -5))
        return imm_field_bad(c, "is required: the integrated loudness to reach, -70 to -5 LUFS");
    imm_field_at(c, "ImmergeExtensions.Loudness.MaxPeak");
    if ((e = imm_field_number(c, loud, "MaxPeak", &x->max_peak)))
        return e;
    if (x->max_peak < -20 || x->max_peak > 0)
        return imm_field_bad(c, "must be between -20 and 0 dBFS");
    return IMM_OK;
}

/* ImmergeExtensions.MaxSources, read before the Sources it admits. */
imm_err imm_parse_max_sources(imm_fields *c, const cJSON *root, imm_request *req)
{
    const cJSON *ext = cJSON_GetObjectItemCaseSensitive(root, "ImmergeExtensions");
    int64_t v = IMM_SERVICE_MAX_SOURCES;
    req->ext.max_sources = IMM_SERVICE_MAX_SOURCES;
    if (!cJSON_IsObject(ext))
        return IMM_OK; /* parse_extensions says what is wrong with it */
    imm_field_at(c, "ImmergeExtensions.MaxSources");
    imm_err e = imm_field_int(c, ext, "MaxSources", 1, IMM_MAX_SOURCES, &v);
    req->ext.max_sources = (int)v;
    return e;
}
