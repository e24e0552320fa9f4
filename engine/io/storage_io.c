/*
 * storage_io.c - FFmpeg I/O over the imm_storage interface.
 *
 * Sources are demuxed from an AVIOContext whose reads and seeks go to storage, never from a path
 * FFmpeg opens itself, so every byte the engine reads has passed the storage's containment rules.
 * HLS playlists open their segments through io_open: a segment URI is resolved relative to the
 * playlist and must stay in the playlist's bucket (or, for local files, its folder).
 *
 * FFmpeg sees a source under a path-like name ("/bucket/dir/list.m3u8" for oss://bucket/dir/...):
 * its HLS demuxer only follows "file" or "http" URLs, and a path keeps relative resolution working.
 */
#include "engine/io/io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/avstring.h>

#define IO_BUFFER_SIZE (64 * 1024)

typedef struct io_handle {
    imm_storage *st;
    imm_object *obj;
    imm_error *failure; /* inputs: where the store's reason for a failed read goes */
    int64_t served;     /* bytes read since the last seek to the start */
    int playlist;       /* it starts with #EXTM3U */
    int ended;          /* the playlist's end, and ENDLIST after it, has been read */
    int64_t pos;        /* outputs: where the next write lands */
    int64_t capture_from;   /* outputs: writes from here on are kept in captured (-1: none) */
    uint8_t *captured;
    size_t ncaptured;
    unsigned capacity; /* av_fast_realloc's */
    int capture_failed; /* out of memory while keeping them */
} io_handle;

/* Appended to every playlist: without it FFmpeg takes a list for a live one and, having read
 * every segment, waits a target duration or the last segment's length for it to grow, however
 * long that is (a fuzzed list waited 167 s). A merge takes what a list holds when it is read. */
static const char endlist[] = "\n#EXT-X-ENDLIST\n";

/* What io_open needs to map FFmpeg's segment URLs back to storage URIs. */
typedef struct io_scope {
    imm_storage *st;
    int is_oss;
    char prefix[4096]; /* "oss:/" + "/bucket" (oss) or the playlist's folder (local) */
    imm_error refusal; /* why a segment could not be opened or a read failed; IMM_OK if none */
} io_scope;

void imm_storage_free(imm_storage *st)
{
    if (st)
        st->ops->free(st);
}

static int io_read(void *opaque, uint8_t *buf, int size)
{
    io_handle *h = opaque;
    int64_t n = h->st->ops->read(h->obj, buf, (size_t)size);
    if (n < 0) {
        int e = errno ? errno : EIO;
        /* FFmpeg keeps only an errno; the store knows more (its answer, the retries spent). */
        if (h->failure && !h->failure->code && h->st->ops->last_error)
            h->st->ops->last_error(h->obj, h->failure);
        return AVERROR(e);
    }
    if (h->served == 0 && n >= 7 && !memcmp(buf, "#EXTM3U", 7))
        h->playlist = 1;
    h->served += n;
    if (n == 0 && h->playlist && !h->ended && size >= (int)sizeof(endlist) - 1) {
        h->ended = 1;
        memcpy(buf, endlist, sizeof(endlist) - 1);
        return (int)sizeof(endlist) - 1;
    }
    return n == 0 ? AVERROR_EOF : (int)n;
}

/* Keeps the part of a write at h->pos from capture_from on, where it lands: the muxer seeks back
 * to patch box sizes, so writes need not come in order. */
static void capture(io_handle *h, const uint8_t *buf, size_t size)
{
    size_t skip = h->pos < h->capture_from ? (size_t)(h->capture_from - h->pos) : 0;
    if (h->capture_failed || skip >= size)
        return;
    size_t at = (size_t)(h->pos + (int64_t)skip - h->capture_from), end = at + size - skip;
    uint8_t *grown = av_fast_realloc(h->captured, &h->capacity, end);
    if (!grown) {
        h->capture_failed = 1;
        return;
    }
    h->captured = grown;
    if (at > h->ncaptured)
        memset(h->captured + h->ncaptured, 0, at - h->ncaptured);
    memcpy(h->captured + at, buf + skip, size - skip);
    if (end > h->ncaptured)
        h->ncaptured = end;
}

static int io_write(void *opaque, uint8_t *buf, int size)
{
    io_handle *h = opaque;
    if (h->st->ops->write(h->obj, buf, (size_t)size) < 0)
        return AVERROR(errno ? errno : EIO);
    if (h->capture_from >= 0)
        capture(h, buf, (size_t)size);
    h->pos += size;
    return size;
}

static int64_t io_seek(void *opaque, int64_t offset, int whence)
{
    io_handle *h = opaque;
    int64_t r;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) {
        r = h->st->ops->seek(h->obj, 0, IMM_SEEK_SIZE);
    } else {
        r = h->st->ops->seek(h->obj, offset, whence);
        if (r >= 0) { /* from the start again: a playlist is told apart, and ended, anew */
            h->served = r;
            h->ended = 0;
            h->pos = r;
        }
    }
    return r < 0 ? AVERROR(errno ? errno : EIO) : r;
}

static AVIOContext *io_wrap(imm_storage *st, imm_object *obj, imm_error *failure, int writable)
{
    io_handle *h = av_mallocz(sizeof(*h));
    uint8_t *buf = av_malloc(IO_BUFFER_SIZE);
    AVIOContext *pb = NULL;
    if (h && buf) {
        h->st = st;
        h->obj = obj;
        h->failure = failure;
        h->capture_from = -1;
        pb = avio_alloc_context(buf, IO_BUFFER_SIZE, writable, h, writable ? NULL : io_read,
                                writable ? io_write : NULL, io_seek);
    }
    if (!pb) {
        av_free(h);
        av_free(buf);
    }
    return pb;
}

/* Frees the AVIOContext and its handle; returns the object, which the caller closes or commits. */
static imm_object *io_unwrap(AVIOContext **pb)
{
    if (!*pb)
        return NULL;
    io_handle *h = (*pb)->opaque;
    imm_object *obj = h->obj;
    av_free(h->captured);
    av_freep(&(*pb)->buffer);
    av_free(h);
    avio_context_free(pb);
    return obj;
}

static void io_close_read(imm_storage *st, AVIOContext **pb)
{
    imm_object *obj = io_unwrap(pb);
    if (obj)
        st->ops->close(obj);
}

static int io_open_segment(AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
                           AVDictionary **options)
{
    io_scope *scope = s->opaque;
    char uri[4096];
    imm_object *obj = NULL;
    (void)options;
    if (flags & AVIO_FLAG_WRITE)
        return AVERROR(EPERM);
    /* url is absolute and normalised by FFmpeg ("/bucket/dir/seg.ts"); it must stay in scope. */
    size_t plen = strlen(scope->prefix) - (scope->is_oss ? 5 : 0);
    const char *scoped = scope->prefix + (scope->is_oss ? 5 : 0);
    if (strncmp(url, scoped, plen) || url[plen] != '/') {
        imm_error_set(&scope->refusal, IMM_EFORBIDDEN, "The playlist entry %s leaves the "
                      "playlist's %s.", url, scope->is_oss ? "bucket" : "folder");
        return AVERROR(EPERM);
    }
    snprintf(uri, sizeof(uri), "%s%s", scope->is_oss ? "oss:/" : "", url);
    imm_err e = scope->st->ops->open_read(scope->st, uri, &obj, &scope->refusal);
    if (e == IMM_EARG) /* a ".." the demuxer left in: the entry would leave its bucket */
        imm_error_set(&scope->refusal, IMM_EFORBIDDEN, "The playlist entry %s leaves the "
                      "playlist's bucket.", uri);
    if (e)
        return AVERROR(e == IMM_ENOTFOUND ? ENOENT : EPERM);
    *pb = io_wrap(scope->st, obj, &scope->refusal, 0);
    if (!*pb) {
        scope->st->ops->close(obj);
        return AVERROR(ENOMEM);
    }
    return 0;
}

static int io_close_segment(AVFormatContext *s, AVIOContext *pb)
{
    io_scope *scope = s->opaque;
    io_close_read(scope->st, &pb);
    return 0;
}

/* The path-like name FFmpeg sees, and the scope segments must stay in. */
static void ffmpeg_name(const imm_uri *u, io_scope *scope, char *name, size_t len)
{
    if (u->is_oss) {
        snprintf(name, len, "/%s/%s", u->bucket, u->key);
        snprintf(scope->prefix, sizeof(scope->prefix), "oss://%s", u->bucket);
        scope->is_oss = 1;
        return;
    }
    snprintf(name, len, "%s", u->path);
    const char *slash = strrchr(u->path, '/');
    size_t dl = slash ? (size_t)(slash - u->path) : 0;
    if (dl >= sizeof(scope->prefix))
        dl = sizeof(scope->prefix) - 1; /* longer than any path: no segment can match it */
    memcpy(scope->prefix, u->path, dl);
    scope->prefix[dl] = '\0';
}

imm_err imm_io_open_input(imm_storage *st, const char *uri, AVFormatContext **out, imm_error *err)
{
    imm_uri u;
    imm_object *obj = NULL;
    AVFormatContext *fmt = NULL;
    io_scope *scope = NULL;
    char name[4096];
    int ret;
    imm_err e = imm_uri_parse(uri, &u, err);
    if (e)
        return e;
    if ((e = st->ops->open_read(st, uri, &obj, err)))
        return e;
    fmt = avformat_alloc_context();
    scope = av_mallocz(sizeof(*scope));
    AVIOContext *pb = fmt && scope ? io_wrap(st, obj, &scope->refusal, 0) : NULL;
    if (!pb) {
        st->ops->close(obj);
        avformat_free_context(fmt);
        av_free(scope);
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    scope->st = st;
    ffmpeg_name(&u, scope, name, sizeof(name));
    fmt->pb = pb;
    fmt->opaque = scope;
    fmt->io_open = io_open_segment;
    fmt->io_close2 = io_close_segment;
    fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    /* A playlist without #EXT-X-ENDLIST looks live to FFmpeg, which would start near its end
     * and reload it for new segments up to 1000 times, a target duration apart (measured: 150 s
     * and a third of the audio lost for a 3-segment list). A merge takes all it lists, now. */
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "live_start_index", "0", 0);
    av_dict_set(&opts, "m3u8_hold_counters", "2", 0);
    ret = avformat_open_input(&fmt, name, NULL, &opts);
    av_dict_free(&opts);
    if (ret < 0) {
        /* avformat_open_input frees fmt on failure but leaves a custom pb to us. */
        io_close_read(st, &pb);
        if (scope->refusal.code)
            e = imm_error_set(err, scope->refusal.code, "%s: %s", uri, scope->refusal.message);
        else
            e = imm_error_set(err, IMM_EMEDIA, "%s is not a media file FFmpeg can read: %s",
                              uri, av_err2str(ret));
        av_free(scope);
        return e;
    }
    if ((ret = avformat_find_stream_info(fmt, NULL)) < 0) {
        e = imm_io_input_error(fmt, IMM_EMEDIA, err, "Cannot read the streams of %s: %s", uri,
                               av_err2str(ret));
        imm_io_close_input(st, &fmt);
        return e;
    }
    *out = fmt;
    return IMM_OK;
}

imm_err imm_io_input_check(AVFormatContext *fmt, imm_error *err)
{
    io_scope *scope = fmt->opaque;
    if (scope && scope->refusal.code)
        return imm_error_set(err, scope->refusal.code, "%s", scope->refusal.message);
    return IMM_OK;
}

imm_err imm_io_input_error(AVFormatContext *fmt, imm_err code, imm_error *err, const char *msg,
                           ...)
{
    imm_err e = imm_io_input_check(fmt, err);
    if (e)
        return e;
    va_list ap;
    va_start(ap, msg);
    imm_error_vset(err, code, msg, ap);
    va_end(ap);
    return code;
}

void imm_io_close_input(imm_storage *st, AVFormatContext **fmt)
{
    if (!*fmt)
        return;
    AVIOContext *pb = (*fmt)->pb;
    void *scope = (*fmt)->opaque;
    avformat_close_input(fmt);
    io_close_read(st, &pb);
    av_free(scope);
}

imm_err imm_io_open_output(imm_storage *st, const char *uri, AVIOContext **pb, imm_error *err)
{
    imm_object *obj = NULL;
    imm_err e = st->ops->open_write(st, uri, &obj, err);
    if (e)
        return e;
    *pb = io_wrap(st, obj, NULL, 1);
    if (!*pb) {
        st->ops->close(obj);
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    return IMM_OK;
}

imm_err imm_io_finish_output(imm_storage *st, AVIOContext *pb, int64_t *size, imm_error *err)
{
    io_handle *h = pb->opaque;
    avio_flush(pb);
    if (pb->error < 0)
        return imm_error_set(err, IMM_EIO, "Writing the output failed: %s", av_err2str(pb->error));
    *size = st->ops->seek(h->obj, 0, IMM_SEEK_SIZE);
    return IMM_OK;
}

imm_err imm_io_commit_output(imm_storage *st, AVIOContext *pb, const char *owner, int *already,
                             imm_error *err)
{
    io_handle *h = pb->opaque;
    int was = 0;
    if (already)
        *already = 0;
    if (!owner || !st->ops->commit_owned)
        return st->ops->commit(h->obj, err);
    imm_err e = st->ops->commit_owned(h->obj, owner, &was, err);
    if (already)
        *already = was;
    return e;
}

void imm_io_capture(AVIOContext *pb, int64_t offset)
{
    io_handle *h = pb->opaque;
    h->capture_from = offset;
    h->ncaptured = 0;
}

const uint8_t *imm_io_captured(AVIOContext *pb, size_t *len)
{
    io_handle *h = pb->opaque;
    *len = h->capture_failed ? 0 : h->ncaptured;
    return h->capture_failed ? NULL : h->captured;
}

void imm_io_close_output(imm_storage *st, AVIOContext **pb)
{
    imm_object *obj = io_unwrap(pb);
    if (obj)
        st->ops->close(obj);
}
