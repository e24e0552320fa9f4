/*
 * fields.c - reading the request's JSON field by field: each getter checks the type and range the
 * official SDK's model gives the field, and each refusal names the field by its full path
 * (Targets[0].Audio.TranscodeAudio.SampleRate), because that is what a user has to find in their
 * request. request.c, target.c and extensions.c read the request through these alone.
 */
#include "engine/request/request.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

imm_err imm_field_bad(imm_fields *c, const char *why)
{
    return imm_error_set(c->err, IMM_EARG, "The parameter %s %s.", c->path, why);
}

imm_err imm_field_uri(imm_fields *c, const char *uri)
{
    imm_uri u;
    imm_error ue;
    if (imm_uri_parse(uri, &u, &ue))
        return imm_error_set(c->err, IMM_EARG, "The parameter %s is invalid: %s", c->path,
                             ue.message);
    return IMM_OK;
}

void imm_field_at(imm_fields *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->path, sizeof(c->path), fmt, ap);
    va_end(ap);
}

/* Every key of obj, the object at c->path, is one of `keys` (NULL-terminated), or the request is
 * refused naming the key and `what` it is not (with the right spelling when only the case differs):
 * an ignored key would silently switch a setting off. */
imm_err imm_field_keys(imm_fields *c, const cJSON *obj, const char *const *keys, const char *what)
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
        imm_field_at(c, "%s%s%.100s", where, *where ? "." : "", item->string);
        for (k = 0; keys[k]; k++)
            if (!strcasecmp(item->string, keys[k])) {
                char why[160];
                snprintf(why, sizeof(why), "is not %s; field names are case-sensitive: %s",
                         what, keys[k]);
                return imm_field_bad(c, why);
            }
        char why[200];
        snprintf(why, sizeof(why), "is not %s", what);
        return imm_field_bad(c, why);
    }
    return IMM_OK;
}

/* Field getters: each returns IMM_OK and leaves *out alone when the field is absent (or null). */
imm_err imm_field_string(imm_fields *c, const cJSON *obj, const char *name, char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return IMM_OK;
    if (!cJSON_IsString(v))
        return imm_field_bad(c, "must be a string");
    char *s = strdup(v->valuestring);
    if (!s)
        return imm_error_set(c->err, IMM_EINTERNAL, "out of memory");
    free(*out);
    *out = s;
    return IMM_OK;
}

imm_err imm_field_number(imm_fields *c, const cJSON *obj, const char *name, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return IMM_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return imm_field_bad(c, "must be a number");
    *out = v->valuedouble;
    return IMM_OK;
}

imm_err imm_field_int(imm_fields *c, const cJSON *obj, const char *name, int64_t lo, int64_t hi,
                      int64_t *out)
{
    double d = NAN;
    imm_err e = imm_field_number(c, obj, name, &d);
    if (e || isnan(d))
        return e;
    if (d != floor(d))
        return imm_field_bad(c, "must be an integer");
    if (d < (double)lo || d > (double)hi) {
        char why[96];
        snprintf(why, sizeof(why), "must be between %lld and %lld", (long long)lo, (long long)hi);
        return imm_field_bad(c, why);
    }
    *out = (int64_t)d;
    return IMM_OK;
}

imm_err imm_field_bool(imm_fields *c, const cJSON *obj, const char *name, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return IMM_OK;
    if (!cJSON_IsBool(v))
        return imm_field_bad(c, "must be true or false");
    *out = cJSON_IsTrue(v);
    return IMM_OK;
}

imm_err imm_field_object(imm_fields *c, const cJSON *obj, const char *name, const cJSON **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return IMM_OK;
    if (!cJSON_IsObject(v))
        return imm_field_bad(c, "must be an object");
    *out = v;
    return IMM_OK;
}

void imm_field_lower(char *s)
{
    for (; s && *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

imm_err imm_field_option(imm_fields *c, const cJSON *obj, const char *name, imm_option *out)
{
    char *s = NULL;
    imm_err e = imm_field_string(c, obj, name, &s);
    if (e || !s)
        return e;
    imm_field_lower(s);
    if (!strcmp(s, "fixed"))
        *out = IMM_OPT_FIXED;
    else if (!strcmp(s, "adaptive"))
        *out = IMM_OPT_ADAPTIVE;
    else if (!strcmp(s, "fall"))
        *out = IMM_OPT_FALL;
    else
        e = imm_field_bad(c, "must be one of fixed, adaptive, fall");
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
imm_err imm_field_refuse_video(imm_fields *c, const cJSON *obj, const char *name, const char *off,
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
    imm_field_at(c, "%s.%s", where, name);
    return imm_field_bad(c, why);
}

imm_err imm_field_array(imm_fields *c, const cJSON *root, const char *name, const cJSON **out,
                        int *n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    snprintf(c->path, sizeof(c->path), "%s", name);
    if (!v || cJSON_IsNull(v))
        return imm_field_bad(c, "is required but not provided");
    if (!cJSON_IsArray(v))
        return imm_field_bad(c, "must be an array");
    *n = cJSON_GetArraySize(v);
    if (*n == 0)
        return imm_field_bad(c, "must not be empty");
    *out = v;
    return IMM_OK;
}

imm_err imm_field_curve(imm_fields *c, const cJSON *obj, const char *name, imm_curve *out)
{
    char *s = NULL;
    imm_err e = imm_field_string(c, obj, name, &s);
    if (!e && s) {
        if (!strcmp(s, "linear"))
            *out = IMM_CURVE_LINEAR;
        else if (!strcmp(s, "sine"))
            *out = IMM_CURVE_SINE;
        else
            e = imm_field_bad(c, "must be linear or sine");
    }
    free(s);
    return e;
}
