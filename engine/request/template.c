/*
 * template.c - the service's TargetURI templates: oss://{bucket}/{dirname}/{barename}.{autoext}.
 *
 * As the service documents them (its "TargetURI template" page): variables in braces, in the
 * manner of Python's str.format; {{ and }} stand for literal braces; {tags.KEY} takes the
 * request's Tags. The file variables (bucket, key, dirname, barename, basename, ext) describe the
 * AlignmentIndex source, the one whose parameters a merge takes; t_year..t_sec are the task's
 * creation time in UTC. A variable this engine cannot resolve is refused by name rather than left
 * in the object's name as text.
 */
#include "engine/request/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

typedef struct out {
    char *buf;
    size_t len, cap;
} out;

static int put(out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        size_t cap = (o->len + n + 1) * 2;
        char *grown = realloc(o->buf, cap);
        if (!grown)
            return -1;
        o->buf = grown;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
    return 0;
}

/* The parts of the primary source's name: oss://BUCKET/KEY, KEY = DIRNAME/BASENAME, BASENAME =
 * BARENAME.EXT. A local path has no bucket and is its own key. */
typedef struct file_vars {
    char bucket[64];
    const char *key, *base, *dot; /* base and dot point into key; dot may be NULL */
} file_vars;

static void split_file(const char *uri, file_vars *f)
{
    imm_uri u;
    imm_error ignored;
    memset(f, 0, sizeof(*f));
    if (!imm_uri_parse(uri, &u, &ignored) && u.is_oss) {
        snprintf(f->bucket, sizeof(f->bucket), "%s", u.bucket);
        f->key = u.key;
    } else {
        f->key = !imm_uri_parse(uri, &u, &ignored) ? u.path : uri;
        while (*f->key == '/')
            f->key++;
    }
    const char *slash = strrchr(f->key, '/');
    f->base = slash ? slash + 1 : f->key;
    f->dot = strrchr(f->base, '.');
}

/* A Tags value as text: strings as they are, numbers and booleans as JSON writes them. */
static imm_err tag_text(const cJSON *tags, const char *name, size_t len, out *o, int target,
                        imm_error *err)
{
    const cJSON *v = NULL;
    cJSON_ArrayForEach(v, tags) {
        if (v->string && strlen(v->string) == len && !memcmp(v->string, name, len))
            break;
    }
    if (!v)
        return imm_error_set(err, IMM_EARG, "The parameter Targets[%d].URI uses {tags.%.*s}, but "
                             "Tags has no %.*s.", target, (int)len, name, (int)len, name);
    char num[64];
    const char *s = NULL;
    if (cJSON_IsString(v))
        s = v->valuestring;
    else if (cJSON_IsBool(v))
        s = cJSON_IsTrue(v) ? "true" : "false";
    else if (cJSON_IsNumber(v)) {
        if (v->valuedouble == (double)(long long)v->valuedouble)
            snprintf(num, sizeof(num), "%lld", (long long)v->valuedouble);
        else
            snprintf(num, sizeof(num), "%.17g", v->valuedouble);
        s = num;
    }
    if (!s)
        return imm_error_set(err, IMM_EARG, "The parameter Targets[%d].URI uses {tags.%.*s}, "
                             "whose value is not a string, number or boolean.", target, (int)len,
                             name);
    return put(o, s, strlen(s)) ? imm_error_set(err, IMM_EINTERNAL, "out of memory") : IMM_OK;
}

static int is(const char *name, size_t len, const char *what)
{
    return strlen(what) == len && !memcmp(name, what, len);
}

/* One {name}: appended to o, or refused. */
static imm_err expand(const imm_request *req, int target, const char *name, size_t len,
                      const struct tm *created, out *o, int *used_autoext, imm_error *err)
{
    const imm_target_req *t = &req->targets[target];
    if (len > 5 && !memcmp(name, "tags.", 5))
        return tag_text(req->tags, name + 5, len - 5, o, target, err);
    file_vars f;
    split_file(req->sources[req->alignment_index].uri, &f);
    const char *s = NULL;
    size_t n = (size_t)-1; /* all of s */
    char num[16];
    static const char *const times[] = {"t_year", "t_mon", "t_day", "t_hour", "t_min", "t_sec"};
    int tv[] = {created->tm_year + 1900, created->tm_mon + 1, created->tm_mday, created->tm_hour,
                created->tm_min, created->tm_sec};
    for (int k = 0; k < 6; k++)
        if (is(name, len, times[k])) {
            snprintf(num, sizeof(num), k ? "%02d" : "%04d", tv[k]);
            s = num;
        }
    if (s) {
        /* a t_* variable */
    } else if (is(name, len, "autoext")) {
        s = t->segment ? "m3u8" : t->container;
        *used_autoext = 1;
    } else if (is(name, len, "bucket")) {
        s = f.bucket;
    } else if (is(name, len, "key")) {
        s = f.key;
    } else if (is(name, len, "dirname")) {
        s = f.key;
        n = f.base > f.key ? (size_t)(f.base - f.key - 1) : 0;
    } else if (is(name, len, "basename")) {
        s = f.base;
    } else if (is(name, len, "barename")) {
        s = f.base;
        n = f.dot ? (size_t)(f.dot - f.base) : strlen(f.base);
    } else if (is(name, len, "ext")) {
        s = f.dot ? f.dot + 1 : "";
    } else if (is(name, len, "streamindex")) {
        s = "0"; /* the output's one audio stream */
    } else if (is(name, len, "index") && !t->segment) {
        s = "1"; /* the target's one output file */
    } else {
        const char *why =
            is(name, len, "index") ? "immerge names an HLS target's segments after its playlist"
            : is(name, len, "resolution") ? "it is the video's resolution, and immerge writes "
                                            "audio only"
            : (is(name, len, "year") || is(name, len, "mon") || is(name, len, "day") ||
               is(name, len, "hour") || is(name, len, "min") || is(name, len, "sec"))
                ? "it is the source's upload time, which immerge does not read; {t_year}.. "
                  "{t_sec} give the task's creation time"
                : "it is not a TargetURI variable (see docs/request.md, \"TargetURI templates\")";
        return imm_error_set(err, IMM_EARG, "The parameter Targets[%d].URI uses {%.*s}, which "
                             "immerge cannot resolve: %s.", target, (int)len, name, why);
    }
    if (n == (size_t)-1)
        n = strlen(s);
    return put(o, s, n) ? imm_error_set(err, IMM_EINTERNAL, "out of memory") : IMM_OK;
}

char *imm_target_uri_resolve(const imm_request *req, int target, int64_t created,
                             imm_error *err)
{
    const char *p = req->targets[target].uri;
    const imm_target_req *t = &req->targets[target];
    out o = {0};
    int used_autoext = 0;
    time_t when = (time_t)created;
    struct tm tm;
    gmtime_r(&when, &tm);
    if (put(&o, "", 0)) {
        imm_error_set(err, IMM_EINTERNAL, "out of memory");
        return NULL;
    }
    while (*p) {
        const char *brace = strpbrk(p, "{}");
        if (!brace) {
            if (put(&o, p, strlen(p)))
                goto oom;
            break;
        }
        if (put(&o, p, (size_t)(brace - p)))
            goto oom;
        if (brace[0] == brace[1]) { /* {{ or }}: a literal brace */
            if (put(&o, brace, 1))
                goto oom;
            p = brace + 2;
            continue;
        }
        const char *close = brace[0] == '{' ? strpbrk(brace + 1, "{}") : NULL;
        if (!close || *close != '}') {
            imm_error_set(err, IMM_EARG, "The parameter Targets[%d].URI has an unmatched '%c' "
                          "at character %d; write {{ or }} for a literal brace.", target,
                          close ? *close : *brace, (int)((close ? close : brace) -
                                                         req->targets[target].uri) + 1);
            free(o.buf);
            return NULL;
        }
        if (expand(req, target, brace + 1, (size_t)(close - brace - 1), &tm, &o, &used_autoext,
                   err)) {
            free(o.buf);
            return NULL;
        }
        p = close + 1;
    }
    if (!used_autoext) {
        /* No {autoext} and no extension: the service gives the name the container's. */
        const char *base = strrchr(o.buf, '/');
        base = base ? base + 1 : o.buf;
        if (!strchr(base, '.')) {
            const char *ext = t->segment ? "m3u8" : t->container;
            if (put(&o, ".", 1) || put(&o, ext, strlen(ext)))
                goto oom;
        }
    }
    return o.buf;
oom:
    free(o.buf);
    imm_error_set(err, IMM_EINTERNAL, "out of memory");
    return NULL;
}
