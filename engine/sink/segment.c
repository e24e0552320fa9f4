/*
 * segment.c - a segmented (HLS) target: FFmpeg's hls muxer, with every file it writes going
 * through storage.
 *
 * For a playlist oss://b/dir/NAME.m3u8 the segments are NAME-<n>.ts (MPEG-TS) or NAME-<n>.m4s with
 * NAME-init.mp4 (fMP4), numbered from Segment.StartNumber, in the playlist's folder; the muxer may
 * write nothing outside it. A segment is committed as soon as the muxer closes it (a task of hours
 * would otherwise hold thousands of temporary files open); the playlist, which the muxer rewrites
 * after every segment, is kept uncommitted and becomes visible only when the whole task succeeds.
 * If the task fails, the segments it committed are removed again: what is left is what was there.
 */
#include "engine/sink/sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct open_file {
    AVIOContext *pb;
    char *uri;
    int is_playlist;
} open_file;

struct imm_segmenter {
    imm_storage *st;
    const imm_target_plan *plan;
    int is_oss;
    char name[4096];  /* the playlist as FFmpeg sees it: "/bucket/dir/NAME.m3u8" or a path */
    char scope[4096]; /* its folder, which every file must stay in */
    open_file open[8];
    AVIOContext *playlist; /* the latest complete playlist, not yet committed */
    char **committed;
    int ncommitted, cap;
    int64_t size;
    imm_error failure;
    int done;
    AVDictionary *options;
};

static imm_err fail(imm_segmenter *g, const imm_error *e)
{
    if (!g->failure.code)
        g->failure = *e;
    return e->code;
}

static int seg_open(AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
                    AVDictionary **options)
{
    imm_segmenter *g = s->opaque;
    imm_error err;
    char uri[4200];
    int slot = 0;
    (void)options;
    size_t sl = strlen(g->scope);
    if (!(flags & AVIO_FLAG_WRITE) || strncmp(url, g->scope, sl) || url[sl] != '/' ||
        strstr(url + sl, "/../") || strchr(url + sl + 1, '/')) {
        imm_error_set(&err, IMM_EFORBIDDEN, "The segmenter tried to write %s, outside %s.", url,
                      g->scope);
        fail(g, &err);
        return AVERROR(EPERM);
    }
    while (slot < 8 && g->open[slot].pb)
        slot++;
    if (slot == 8) {
        imm_error_set(&err, IMM_EINTERNAL, "too many segment files open at once");
        fail(g, &err);
        return AVERROR(EMFILE);
    }
    snprintf(uri, sizeof(uri), "%s%s", g->is_oss ? "oss:/" : "", url);
    if (imm_io_open_output(g->st, uri, pb, &err)) {
        fail(g, &err);
        return AVERROR(EIO);
    }
    g->open[slot] = (open_file){*pb, strdup(uri), !strcmp(url, g->name)};
    return 0;
}

static int seg_close(AVFormatContext *s, AVIOContext *pb)
{
    imm_segmenter *g = s->opaque;
    imm_error err;
    int slot = 0;
    while (slot < 8 && g->open[slot].pb != pb)
        slot++;
    if (slot == 8 || !pb)
        return 0;
    open_file f = g->open[slot];
    g->open[slot] = (open_file){0};
    if (f.is_playlist) {
        /* Each rewrite replaces the previous one; only the last is ever committed. */
        imm_io_close_output(g->st, &g->playlist);
        g->playlist = pb;
        free(f.uri);
        return 0;
    }
    int64_t size = 0;
    int ret = 0, already = 0;
    if (g->ncommitted == g->cap) {
        char **grown = realloc(g->committed, sizeof(char *) * (size_t)(g->cap * 2 + 16));
        if (grown) {
            g->committed = grown;
            g->cap = g->cap * 2 + 16;
        }
    }
    if (g->ncommitted == g->cap || !f.uri) {
        imm_error_set(&err, IMM_EINTERNAL, "out of memory");
        fail(g, &err);
        ret = AVERROR(ENOMEM);
    } else if (imm_io_finish_output(g->st, pb, &size, &err) ||
               imm_io_commit_output(g->st, pb, g->plan->owner, &already, &err)) {
        fail(g, &err);
        ret = AVERROR(EIO);
    } else {
        /* A segment an earlier run of the task committed is that run's: a failure here leaves
         * it be, as it found it. */
        if (!already) {
            g->committed[g->ncommitted++] = f.uri;
            f.uri = NULL;
        }
        g->size += size;
    }
    free(f.uri);
    imm_io_close_output(g->st, &pb);
    return ret;
}

imm_err imm_segmenter_open(imm_storage *st, const imm_target_plan *p, AVFormatContext **mux,
                           imm_segmenter **out, imm_error *err)
{
    imm_uri u;
    char pattern[4200], init[1024], num[32];
    imm_err e = imm_uri_parse(p->uri, &u, err);
    if (e)
        return e;
    imm_segmenter *g = calloc(1, sizeof(*g));
    if (!g)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    *out = g;
    g->st = st;
    g->plan = p;
    g->is_oss = u.is_oss;
    if (u.is_oss)
        snprintf(g->name, sizeof(g->name), "/%s/%s", u.bucket, u.key);
    else
        snprintf(g->name, sizeof(g->name), "%s", u.path);
    const char *slash = strrchr(g->name, '/');
    size_t dl = slash ? (size_t)(slash - g->name) : 0;
    memcpy(g->scope, g->name, dl);
    g->scope[dl] = '\0';
    const char *base = slash ? slash + 1 : g->name;
    const char *dot = strrchr(base, '.');
    int blen = dot ? (int)(dot - base) : (int)strlen(base);
    int fmp4 = !strcmp(p->container->name, "mp4");
    snprintf(pattern, sizeof(pattern), "%s/%.*s-%%d.%s", g->scope[0] ? g->scope : ".", blen, base,
             fmp4 ? "m4s" : "ts");
    snprintf(init, sizeof(init), "%.*s-init.mp4", blen, base);

    int ret = avformat_alloc_output_context2(mux, NULL, "hls", g->name);
    if (ret < 0)
        return imm_error_set(err, IMM_EINTERNAL, "No hls muxer in this FFmpeg build: %s",
                             av_err2str(ret));
    (*mux)->opaque = g;
    (*mux)->io_open = seg_open;
    (*mux)->io_close2 = seg_close;
    snprintf(num, sizeof(num), "%g", p->segment_duration);
    av_dict_set(&g->options, "hls_time", num, 0);
    av_dict_set_int(&g->options, "start_number", p->segment_start, 0);
    av_dict_set(&g->options, "hls_list_size", "0", 0);
    av_dict_set(&g->options, "hls_playlist_type", "vod", 0);
    av_dict_set(&g->options, "hls_segment_type", fmp4 ? "fmp4" : "mpegts", 0);
    av_dict_set(&g->options, "hls_segment_filename", pattern, 0);
    if (fmp4)
        av_dict_set(&g->options, "hls_fmp4_init_filename", init, 0);
    return IMM_OK;
}

AVDictionary **imm_segmenter_options(imm_segmenter *g)
{
    return &g->options;
}

imm_err imm_segmenter_check(imm_segmenter *g, imm_error *err)
{
    if (g->failure.code)
        *err = g->failure;
    return g->failure.code;
}

imm_err imm_segmenter_finish(imm_segmenter *g, int64_t *size, imm_error *err)
{
    int64_t n = 0;
    imm_err e = imm_segmenter_check(g, err);
    if (e)
        return e;
    if (!g->playlist)
        return imm_error_set(err, IMM_EINTERNAL, "The segmenter wrote no playlist for %s.",
                             g->plan->uri);
    if ((e = imm_io_finish_output(g->st, g->playlist, &n, err)))
        return e;
    *size = g->size + n;
    return IMM_OK;
}

imm_err imm_segmenter_commit(imm_segmenter *g, imm_error *err)
{
    imm_err e = imm_io_commit_output(g->st, g->playlist, g->plan->owner, NULL, err);
    if (!e)
        g->done = 1;
    return e;
}

void imm_segmenter_free(imm_segmenter *g)
{
    if (!g)
        return;
    for (int i = 0; i < 8; i++) {
        imm_io_close_output(g->st, &g->open[i].pb);
        free(g->open[i].uri);
    }
    imm_io_close_output(g->st, &g->playlist);
    for (int i = 0; i < g->ncommitted; i++) {
        imm_error ignored;
        if (!g->done)
            g->st->ops->remove(g->st, g->committed[i], &ignored);
        free(g->committed[i]);
    }
    free(g->committed);
    av_dict_free(&g->options);
    free(g);
}
