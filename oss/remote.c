/*
 * remote.c - the store behind a real OSS or S3-compatible endpoint (see oss.h).
 *
 * Reading: open does a HeadObject for the size and ETag; reads are served from two windows
 * filled by ranged GETs, so a demuxer that peeks at the end of a file (ID3v1, an MP4 index) and
 * comes back does not fetch the start again. Window fetches grow while reading is sequential and
 * shrink after a seek, so memory stays at a few MiB per open object whatever its size. Every GET
 * must answer the ETag the HEAD saw: an object replaced mid-read fails the read rather than
 * splicing two versions.
 *
 * Writing: the encoder writes a temporary local file (muxers seek back to finish headers, which an
 * upload stream could not take). Commit uploads it: one PutObject up to the part size, else a
 * multipart upload that is aborted if any step fails, so a failed task leaves neither an object
 * nor a dangling upload. Every body carries Content-MD5: the store refuses a corrupted upload.
 * A commit for an owner (a task) tags the object (x-oss-meta- or x-amz-meta-immerge-task) and
 * writes it with the store's own condition, so that two runs of one task write it once.
 *
 * Every request is signed afresh on each attempt (the date moves); network failures, 5xx and 429
 * are retried with exponential backoff within the configured count and time. What retrying cannot
 * cure (a TLS certificate refused, a malformed URL, a 4xx) fails at once.
 */
#include "oss/oss.h"
#include "net/http.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define WINDOW_MIN (128 * 1024)
#define WINDOW_MAX (2 * 1024 * 1024)
#define MAX_PARTS 10000
#define MAX_HEADERS 16

typedef struct remote {
    imm_storage base;
    imm_storage *local; /* file:// URIs and paths */
    imm_oss_config cfg;
    imm_http_pool *pool;
    char scheme[8];
    char host[256]; /* host[:port] */
    int vhost;
} remote;

typedef struct window {
    uint8_t *data;
    size_t cap, len;
    int64_t start;
    uint64_t used; /* for least-recently-used replacement */
} window;

struct imm_object {
    remote *rs;
    imm_object *local; /* a local file's object, served by rs->local */
    imm_http *http;
    char *uri, *bucket, *key;
    int writing;
    /* reading */
    int64_t size, pos;
    char etag[128];
    window win[2];
    uint64_t clock;
    int64_t next_seq; /* where the last fetch ended: a fetch from here is sequential */
    size_t chunk;
    imm_error failure; /* why the last read failed */
    /* writing */
    int fd;
    int committed;
};

/* One request as the store API sees it; send() turns it into signed HTTP. */
typedef struct call {
    const char *op; /* for messages: "HeadObject", ... */
    const char *method;
    const imm_kv *query;
    size_t nquery;
    const char *content_type;
    const char *content_md5;
    int64_t range_start, range_end; /* inclusive; range_end < 0: no Range */
    const char *body;
    int body_fd;
    int64_t body_offset, body_len;
    uint8_t *sink;
    size_t sink_cap;
    /* A write for an owner (commit_owned): the object's tag, and its condition. */
    const char *owner;
    int if_absent;        /* only if no object is there */
    const char *if_match; /* only if the object there has this ETag (S3 only) */
} call;

/* ---- requests -------------------------------------------------------------------------------- */

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const imm_kv *)a)->key, ((const imm_kv *)b)->key);
}

/* V1's CanonicalizedResource: "/bucket/key" with the sub-resources sorted. */
static void v1_resource(const char *bucket, const char *key, const call *c, char *out, size_t cap)
{
    imm_kv q[8];
    size_t n = c->nquery < 8 ? c->nquery : 8;
    if (n)
        memcpy(q, c->query, n * sizeof(*q));
    qsort(q, n, sizeof(*q), cmp_kv);
    size_t len = (size_t)snprintf(out, cap, "/%s/%s", bucket, key);
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%c%s%s%s", i ? '&' : '?', q[i].key,
                                q[i].value && *q[i].value ? "=" : "",
                                q[i].value ? q[i].value : "");
}

/* The URL and the path as AWS signs it. */
static int build_url(const remote *rs, const char *bucket, const char *key, const call *c,
                     char *url, size_t cap, char *aws_path, size_t pcap)
{
    char *k = imm_rfc3986_encode(key, 1);
    if (!k)
        return -1;
    size_t len;
    if (rs->vhost) {
        len = (size_t)snprintf(url, cap, "%s://%s.%s/%s", rs->scheme, bucket, rs->host, k);
        snprintf(aws_path, pcap, "/%s", key);
    } else {
        len = (size_t)snprintf(url, cap, "%s://%s/%s/%s", rs->scheme, rs->host, bucket, k);
        snprintf(aws_path, pcap, "/%s/%s", bucket, key);
    }
    free(k);
    for (size_t i = 0; i < c->nquery && len < cap; i++) {
        char *qk = imm_rfc3986_encode(c->query[i].key, 0);
        char *qv = imm_rfc3986_encode(c->query[i].value, 0);
        if (qk && qv)
            len += (size_t)snprintf(url + len, cap - len, "%c%s%s%s", i ? '&' : '?', qk,
                                    *qv ? "=" : "", qv);
        free(qk);
        free(qv);
        if (!qk || !qv)
            return -1;
    }
    return len < cap ? 0 : -1;
}

/* The headers of one attempt, signed for the configured scheme. *auth is malloc'd. */
static size_t build_headers(const remote *rs, const char *bucket, const char *key, const call *c,
                            const char *aws_path, imm_kv *h, char dates[2][40], char *range,
                            size_t range_cap, char *host, size_t host_cap, char **auth)
{
    const imm_oss_config *cfg = &rs->cfg;
    int aws = cfg->signature == IMM_OSS_SIGN_S3V4;
    time_t now = time(NULL);
    size_t n = 0;
    *auth = NULL;

    if (rs->vhost)
        snprintf(host, host_cap, "%s.%s", bucket, rs->host);
    else
        snprintf(host, host_cap, "%s", rs->host);
    h[n++] = (imm_kv){"Host", host};
    imm_http_date(now, dates[0]);
    h[n++] = (imm_kv){"Date", dates[0]};
    if (cfg->signature != IMM_OSS_SIGN_V1) {
        imm_sign_v4_date(now, dates[1]);
        h[n++] = (imm_kv){aws ? "x-amz-date" : "x-oss-date", dates[1]};
        h[n++] = (imm_kv){aws ? "x-amz-content-sha256" : "x-oss-content-sha256",
                          "UNSIGNED-PAYLOAD"};
    }
    if (cfg->session_token)
        h[n++] = (imm_kv){aws ? "x-amz-security-token" : "x-oss-security-token",
                          cfg->session_token};
    if (c->content_type)
        h[n++] = (imm_kv){"Content-Type", c->content_type};
    if (c->content_md5)
        h[n++] = (imm_kv){"Content-MD5", c->content_md5};
    if (c->range_end >= 0) {
        snprintf(range, range_cap, "bytes=%lld-%lld", (long long)c->range_start,
                 (long long)c->range_end);
        h[n++] = (imm_kv){"Range", range};
        /* Without it OSS answers a range past the end with 200 and the whole object. */
        if (!aws)
            h[n++] = (imm_kv){"x-oss-range-behavior", "standard"};
    }
    if (c->owner)
        h[n++] = (imm_kv){aws ? "x-amz-meta-immerge-task" : "x-oss-meta-immerge-task", c->owner};
    if (c->if_absent)
        h[n++] = aws ? (imm_kv){"If-None-Match", "*"} : (imm_kv){"x-oss-forbid-overwrite", "true"};
    if (c->if_match)
        h[n++] = (imm_kv){"If-Match", c->if_match};
    if (!cfg->access_key_id)
        return n; /* anonymous */

    if (cfg->signature == IMM_OSS_SIGN_V1) {
        char resource[4096], sig[29];
        v1_resource(bucket, key, c, resource, sizeof(resource));
        char *sts = imm_sign_v1_string(c->method, c->content_md5, c->content_type, dates[0], h, n,
                                       resource);
        if (!sts)
            return n;
        imm_sign_v1_signature(cfg->access_key_secret, sts, sig);
        free(sts);
        size_t len = strlen(cfg->access_key_id) + strlen(sig) + 6;
        if ((*auth = malloc(len)))
            snprintf(*auth, len, "OSS %s:%s", cfg->access_key_id, sig);
    } else {
        char path[4096];
        snprintf(path, sizeof(path), "/%s/%s", bucket, key);
        imm_v4_request r = {
            .flavor = aws ? IMM_V4_AWS : IMM_V4_OSS,
            .method = c->method,
            .path = aws ? aws_path : path,
            .query = c->query,
            .nquery = c->nquery,
            .headers = h,
            .nheaders = n,
            .region = cfg->region,
            .when = now,
            .access_key_id = cfg->access_key_id,
            .access_key_secret = cfg->access_key_secret,
            .payload_hash = "UNSIGNED-PAYLOAD",
        };
        *auth = imm_sign_v4(&r, NULL);
    }
    if (*auth)
        h[n++] = (imm_kv){"Authorization", *auth};
    return n;
}

/* The service's error for a store's refusal: what failed, where, and the store's own words. */
static imm_err refusal(const char *uri, const call *c, const imm_http_response *r, imm_error *err)
{
    char code[64], msg[256], rid[80], decoded[1600] = "";
    const char *xml = r->body;
    size_t elen = strlen(r->oss_err);
    /* A HEAD answer has no body: OSS puts the error XML, base64, in x-oss-err instead. */
    if (!xml && elen && elen / 4 * 3 < sizeof(decoded)) {
        int n = EVP_DecodeBlock((unsigned char *)decoded, (const unsigned char *)r->oss_err,
                                (int)elen);
        decoded[n > 0 ? n : 0] = '\0';
        xml = decoded;
    }
    imm_xml_text(xml, "Code", code, sizeof(code));
    imm_xml_text(xml, "Message", msg, sizeof(msg));
    snprintf(rid, sizeof(rid), "%s", r->request_id);
    if (!rid[0])
        imm_xml_text(xml, "RequestId", rid, sizeof(rid));
    char detail[512];
    snprintf(detail, sizeof(detail), "%s %s answered HTTP %ld%s%s%s%s%s%s", c->op, uri, r->status,
             code[0] ? " " : "", code, msg[0] ? ": " : "", msg, rid[0] ? " RequestId " : "", rid);
    if (r->status == 404 || !strcmp(code, "NoSuchKey") || !strcmp(code, "NoSuchBucket") ||
        !strcmp(code, "NoSuchUpload"))
        return imm_error_set(err, IMM_ENOTFOUND, "The specified resource %s is not found (%s).",
                             uri, detail);
    if (r->status == 403 || r->status == 401 || !strcmp(code, "AccessDenied") ||
        !strcmp(code, "SignatureDoesNotMatch") || !strcmp(code, "InvalidAccessKeyId"))
        return imm_error_set(err, IMM_EFORBIDDEN, "Access to %s is denied (%s).", uri, detail);
    return imm_error_set(err, IMM_EIO, "Storage refused the request (%s).", detail);
}

/* Sends c, retrying what may pass; IMM_OK only for a 2xx answer received in full. */
static imm_err send(remote *rs, imm_http *http, const char *bucket, const char *key,
                    const char *uri, const call *c, imm_http_response *resp, imm_error *err)
{
    const imm_oss_config *cfg = &rs->cfg;
    char url[8192], aws_path[4096], dates[2][40], range[64], host[512];
    imm_kv h[MAX_HEADERS];
    imm_http_retry retry;
    imm_http_retry_start(&retry, cfg->retries, cfg->retry_seconds);
    if (build_url(rs, bucket, key, c, url, sizeof(url), aws_path, sizeof(aws_path)))
        return imm_error_set(err, IMM_EARG, "The URI %s is too long.", uri);
    for (;;) {
        char *auth = NULL;
        size_t n = build_headers(rs, bucket, key, c, aws_path, h, dates, range, sizeof(range),
                                 host, sizeof(host), &auth);
        if (cfg->access_key_id && !auth)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        imm_http_request q = {
            .method = c->method, .url = url, .headers = h, .nheaders = n, .body = c->body,
            .body_fd = c->body ? -1 : c->body_fd, .body_offset = c->body_offset,
            .body_len = c->body_len, .sink = c->sink, .sink_cap = c->sink_cap,
            .stall_timeout = cfg->stall_seconds};
        int rc = imm_http_perform(http, &q, resp);
        free(auth);
        if (!rc && resp->status / 100 == 2)
            return IMM_OK;
        int passing = imm_http_retryable(rc, resp);
        if (!passing && rc)
            return imm_error_set(err, IMM_EIO, "%s %s failed: %s", c->op, uri, resp->reason);
        if (!passing)
            return refusal(uri, c, resp, err);
        if (!imm_http_retry_again(&retry)) {
            char what[300];
            if (rc)
                snprintf(what, sizeof(what), "%s", resp->reason);
            else
                snprintf(what, sizeof(what), "HTTP %ld", resp->status);
            return imm_error_set(err, IMM_EIO, "%s %s failed after %d attempt%s in %.1f s: %s",
                                 c->op, uri, retry.attempt + 1, retry.attempt ? "s" : "",
                                 imm_http_retry_elapsed(&retry), what);
        }
    }
}

static imm_err obj_send(imm_object *o, const call *c, imm_http_response *resp, imm_error *err)
{
    return send(o->rs, o->http, o->bucket, o->key, o->uri, c, resp, err);
}

/* ---- objects --------------------------------------------------------------------------------- */

static void obj_free(imm_object *o)
{
    if (!o)
        return;
    if (o->fd >= 0)
        close(o->fd);
    for (int i = 0; i < 2; i++)
        free(o->win[i].data);
    imm_http_free(o->http);
    free(o->uri);
    free(o->bucket);
    free(o->key);
    free(o);
}

/* A fresh object for uri: the local store's for local paths, else ours with an HTTP handle. */
static imm_err obj_new(remote *rs, const char *uri, int writing, imm_object **out,
                       imm_error *err)
{
    imm_uri u;
    imm_err e = imm_uri_parse(uri, &u, err);
    if (e)
        return e;
    imm_object *o = calloc(1, sizeof(*o));
    if (!o)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    o->rs = rs;
    o->fd = -1;
    o->writing = writing;
    if (!u.is_oss) {
        e = writing ? rs->local->ops->open_write(rs->local, uri, &o->local, err)
                    : rs->local->ops->open_read(rs->local, uri, &o->local, err);
        if (e) {
            free(o);
            return e;
        }
        *out = o;
        return IMM_OK;
    }
    o->uri = strdup(uri);
    o->bucket = strdup(u.bucket);
    o->key = strdup(u.key);
    o->http = imm_http_new(rs->pool);
    if (!o->uri || !o->bucket || !o->key || !o->http) {
        obj_free(o);
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    *out = o;
    return IMM_OK;
}

static imm_err remote_open_read(imm_storage *st, const char *uri, imm_object **out,
                                imm_error *err)
{
    imm_object *o = NULL;
    imm_http_response r = {0};
    imm_err e = obj_new((remote *)st, uri, 0, &o, err);
    if (e || o->local) {
        *out = o;
        return e;
    }
    call c = {.op = "HeadObject", .method = "HEAD", .range_end = -1, .body_fd = -1};
    if (!(e = obj_send(o, &c, &r, err))) {
        if (r.content_length < 0)
            e = imm_error_set(err, IMM_EIO, "HeadObject %s gave no Content-Length.", uri);
        o->size = r.content_length;
        snprintf(o->etag, sizeof(o->etag), "%s", r.etag);
        o->chunk = WINDOW_MIN;
    }
    imm_http_response_clear(&r);
    if (e) {
        obj_free(o);
        return e;
    }
    *out = o;
    return IMM_OK;
}

/* Fills the least recently used window with the bytes from pos on. */
static window *fetch(imm_object *o, int64_t pos)
{
    window *w = o->win[0].used <= o->win[1].used ? &o->win[0] : &o->win[1];
    o->chunk = pos == o->next_seq ? (o->chunk * 2 > WINDOW_MAX ? WINDOW_MAX : o->chunk * 2)
                                  : WINDOW_MIN;
    size_t len = (size_t)(o->size - pos < (int64_t)o->chunk ? o->size - pos : (int64_t)o->chunk);
    if (w->cap < len) {
        uint8_t *p = realloc(w->data, len);
        if (!p) {
            errno = ENOMEM;
            return NULL;
        }
        w->data = p;
        w->cap = len;
    }
    imm_http_response r = {0};
    imm_error *err = &o->failure;
    call c = {.op = "GetObject", .method = "GET", .range_start = pos,
              .range_end = pos + (int64_t)len - 1, .body_fd = -1, .sink = w->data,
              .sink_cap = len};
    w->len = 0;
    imm_err e = obj_send(o, &c, &r, err);
    if (!e && r.sink_len != len)
        e = imm_error_set(err, IMM_EIO, "GetObject %s returned %zu bytes for a range of %zu.",
                          o->uri, r.sink_len, len);
    if (!e && o->etag[0] && r.etag[0] && strcmp(o->etag, r.etag))
        e = imm_error_set(err, IMM_EIO, "%s changed while it was being read.", o->uri);
    imm_http_response_clear(&r);
    if (e) {
        errno = e == IMM_ENOTFOUND ? ENOENT : e == IMM_EFORBIDDEN ? EACCES : EIO;
        return NULL;
    }
    w->start = pos;
    w->len = len;
    o->next_seq = pos + (int64_t)len;
    return w;
}

static int64_t remote_read(imm_object *o, uint8_t *buf, size_t len)
{
    if (o->local)
        return o->rs->local->ops->read(o->local, buf, len);
    if (o->writing) {
        errno = EBADF;
        return -1;
    }
    if (o->pos >= o->size || len == 0)
        return 0;
    window *w = NULL;
    for (int i = 0; i < 2; i++)
        if (o->win[i].len && o->pos >= o->win[i].start &&
            o->pos < o->win[i].start + (int64_t)o->win[i].len)
            w = &o->win[i];
    if (!w && !(w = fetch(o, o->pos)))
        return -1;
    w->used = ++o->clock;
    size_t off = (size_t)(o->pos - w->start), n = w->len - off;
    if (n > len)
        n = len;
    memcpy(buf, w->data + off, n);
    o->pos += (int64_t)n;
    return (int64_t)n;
}

static int64_t remote_seek(imm_object *o, int64_t offset, int whence)
{
    if (o->local)
        return o->rs->local->ops->seek(o->local, offset, whence);
    if (o->writing) {
        if (whence == IMM_SEEK_SIZE) {
            off_t cur = lseek(o->fd, 0, SEEK_CUR), end = lseek(o->fd, 0, SEEK_END);
            lseek(o->fd, cur, SEEK_SET);
            return end;
        }
        return lseek(o->fd, offset, whence);
    }
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? o->pos : o->size;
    if (whence == IMM_SEEK_SIZE)
        return o->size;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) {
        errno = EINVAL;
        return -1;
    }
    if (base + offset < 0) {
        errno = EINVAL;
        return -1;
    }
    o->pos = base + offset;
    return o->pos;
}

/* ---- writing --------------------------------------------------------------------------------- */

static imm_err remote_open_write(imm_storage *st, const char *uri, imm_object **out,
                                 imm_error *err)
{
    remote *rs = (remote *)st;
    imm_object *o = NULL;
    imm_err e = obj_new(rs, uri, 1, &o, err);
    if (e || o->local) {
        *out = o;
        return e;
    }
    if (!o->key[0] || o->key[strlen(o->key) - 1] == '/') {
        obj_free(o);
        return imm_error_set(err, IMM_EARG, "The target %s has no object name.", uri);
    }
    if ((o->fd = imm_temp_file(rs->cfg.temp_dir)) < 0) {
        e = imm_error_set(err, IMM_EIO, "Cannot create a temporary file for %s in %s: %s", uri,
                          rs->cfg.temp_dir ? rs->cfg.temp_dir : "$TMPDIR", strerror(errno));
        obj_free(o);
        return e;
    }
    *out = o;
    return IMM_OK;
}

static int64_t remote_write(imm_object *o, const uint8_t *buf, size_t len)
{
    if (o->local)
        return o->rs->local->ops->write(o->local, buf, len);
    for (size_t done = 0; done < len;) {
        ssize_t n = write(o->fd, buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)n;
    }
    return (int64_t)len;
}

/* Base64 MD5 of len bytes of fd from offset, for Content-MD5. */
static int file_md5(int fd, int64_t offset, int64_t len, char out[25])
{
    unsigned char digest[16], buf[65536];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
    while (ok && len > 0) {
        ssize_t n = pread(fd, buf, len < (int64_t)sizeof(buf) ? (size_t)len : sizeof(buf), offset);
        if (n <= 0)
            ok = 0;
        else {
            ok = EVP_DigestUpdate(ctx, buf, (size_t)n);
            offset += n;
            len -= n;
        }
    }
    unsigned int dlen = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, digest, &dlen);
    EVP_MD_CTX_free(ctx);
    if (ok)
        EVP_EncodeBlock((unsigned char *)out, digest, 16);
    return ok ? 0 : -1;
}

static const char *content_type(const char *key)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"mp3", "audio/mpeg"},  {"aac", "audio/aac"},     {"m4a", "audio/mp4"},
        {"mp4", "audio/mp4"},   {"flac", "audio/flac"},   {"ogg", "audio/ogg"},
        {"oga", "audio/ogg"},   {"opus", "audio/ogg"},    {"wav", "audio/wav"},
        {"ac3", "audio/ac3"},   {"amr", "audio/amr"},     {"ts", "video/mp2t"},
        {"mkv", "audio/x-matroska"}, {"mka", "audio/x-matroska"}, {"webm", "audio/webm"},
        {"wma", "audio/x-ms-wma"}, {"asf", "video/x-ms-asf"}, {"mov", "video/quicktime"},
        {"flv", "video/x-flv"}, {"avi", "video/x-msvideo"}, {"mxf", "application/mxf"},
        {"m3u8", "application/vnd.apple.mpegurl"}, {"json", "application/json"},
    };
    const char *dot = strrchr(key, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof(types) / sizeof(*types); i++)
            if (!strcasecmp(dot + 1, types[i].ext))
                return types[i].type;
    return "application/octet-stream";
}

/* How an upload is tagged and conditioned (commit_owned); all zero for a plain commit. */
typedef struct terms {
    const char *owner;
    int if_absent;
    const char *if_match;
} terms;

/* A store's answer that the write's condition did not hold: OSS's FileAlreadyExists (409), S3's
 * PreconditionFailed (412) or ConditionalRequestConflict (409, a concurrent write won). */
static int condition_failed(const terms *t, const imm_http_response *r)
{
    return (t->if_absent || t->if_match) && (r->status == 412 || r->status == 409);
}

static imm_err put_object(imm_object *o, int64_t size, const terms *t, int *refused,
                          imm_error *err)
{
    char md5[25];
    imm_http_response r = {0};
    if (file_md5(o->fd, 0, size, md5))
        return imm_error_set(err, IMM_EIO, "Cannot read back the output for %s.", o->uri);
    call c = {.op = "PutObject", .method = "PUT", .content_type = content_type(o->key),
              .content_md5 = md5, .range_end = -1, .body_fd = o->fd, .body_len = size,
              .owner = t->owner, .if_absent = t->if_absent, .if_match = t->if_match};
    imm_err e = obj_send(o, &c, &r, err);
    *refused = e && condition_failed(t, &r);
    imm_http_response_clear(&r);
    return e;
}

static void abort_upload(imm_object *o, const char *upload_id)
{
    imm_http_response r = {0};
    imm_error ignored;
    imm_kv q[] = {{"uploadId", upload_id}};
    call c = {.op = "AbortMultipartUpload", .method = "DELETE", .query = q, .nquery = 1,
              .range_end = -1, .body_fd = -1};
    obj_send(o, &c, &r, &ignored);
    imm_http_response_clear(&r);
}

static imm_err upload_parts(imm_object *o, const char *upload_id, int64_t size, char **xml,
                            imm_error *err)
{
    int64_t part = o->rs->cfg.part_size;
    int nparts = (int)((size + part - 1) / part);
    size_t cap = 128 + (size_t)nparts * 200, len = 0;
    imm_err e = IMM_OK;
    if (nparts > MAX_PARTS)
        return imm_error_set(err, IMM_ELIMIT, "%s would need %d parts (at most %d): raise "
                             "--oss-part-size.", o->uri, nparts, MAX_PARTS);
    if (!(*xml = malloc(cap)))
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    len += (size_t)snprintf(*xml + len, cap - len, "<CompleteMultipartUpload>");
    for (int i = 0; i < nparts && !e; i++) {
        char num[16], md5[25];
        imm_http_response r = {0};
        int64_t off = (int64_t)i * part, plen = size - off < part ? size - off : part;
        snprintf(num, sizeof(num), "%d", i + 1);
        if (file_md5(o->fd, off, plen, md5))
            return imm_error_set(err, IMM_EIO, "Cannot read back the output for %s.", o->uri);
        imm_kv q[] = {{"partNumber", num}, {"uploadId", upload_id}};
        call c = {.op = "UploadPart", .method = "PUT", .query = q, .nquery = 2,
                  .content_md5 = md5, .range_end = -1, .body_fd = o->fd, .body_offset = off,
                  .body_len = plen};
        if (!(e = obj_send(o, &c, &r, err)) && !r.etag[0])
            e = imm_error_set(err, IMM_EIO, "UploadPart %s gave no ETag.", o->uri);
        if (!e)
            len += (size_t)snprintf(*xml + len, cap - len,
                                    "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
                                    i + 1, r.etag);
        imm_http_response_clear(&r);
    }
    snprintf(*xml + len, cap - len, "</CompleteMultipartUpload>");
    return e;
}

/* The tag goes with the initiation, the condition with the completion, which is when the object
 * appears. */
static imm_err multipart_upload(imm_object *o, int64_t size, const terms *t, int *refused,
                                imm_error *err)
{
    char upload_id[256], *xml = NULL;
    imm_http_response r = {0};
    imm_kv init_q[] = {{"uploads", ""}};
    call init = {.op = "InitiateMultipartUpload", .method = "POST", .query = init_q, .nquery = 1,
                 .content_type = content_type(o->key), .range_end = -1, .body_fd = -1,
                 .body = "", .owner = t->owner};
    imm_err e = obj_send(o, &init, &r, err);
    if (!e) {
        imm_xml_text(r.body, "UploadId", upload_id, sizeof(upload_id));
        if (!upload_id[0])
            e = imm_error_set(err, IMM_EIO, "InitiateMultipartUpload %s gave no UploadId.",
                              o->uri);
    }
    imm_http_response_clear(&r);
    if (e)
        return e;
    if (!(e = upload_parts(o, upload_id, size, &xml, err))) {
        imm_kv q[] = {{"uploadId", upload_id}};
        call done = {.op = "CompleteMultipartUpload", .method = "POST", .query = q, .nquery = 1,
                     .content_type = "application/xml", .range_end = -1, .body_fd = -1,
                     .body = xml, .body_len = (int64_t)strlen(xml),
                     .if_absent = t->if_absent, .if_match = t->if_match};
        e = obj_send(o, &done, &r, err);
        *refused = e && condition_failed(t, &r);
        /* S3 may answer 200 and still fail the completion in the body. */
        if (!e && r.body && strstr(r.body, "<Error>"))
            e = refusal(o->uri, &done, &r, err);
        imm_http_response_clear(&r);
    }
    free(xml);
    if (e)
        abort_upload(o, upload_id);
    return e;
}

static imm_err upload(imm_object *o, const terms *t, int *refused, imm_error *err)
{
    *refused = 0;
    if (!o->writing || o->committed)
        return imm_error_set(err, IMM_EINTERNAL, "commit of an object not open for writing");
    off_t size = lseek(o->fd, 0, SEEK_END);
    if (size < 0)
        return imm_error_set(err, IMM_EIO, "Cannot size the output for %s: %s", o->uri,
                             strerror(errno));
    imm_err e = size <= o->rs->cfg.part_size ? put_object(o, size, t, refused, err)
                                             : multipart_upload(o, size, t, refused, err);
    if (!e)
        o->committed = 1;
    return e;
}

static imm_err remote_commit(imm_object *o, imm_error *err)
{
    int refused;
    if (o->local)
        return o->rs->local->ops->commit(o->local, err);
    return upload(o, &(terms){0}, &refused, err);
}

/* Who wrote the object at bucket/key, and its ETag: *there is 0 when there is none. */
static imm_err head_owner(remote *rs, imm_http *http, const imm_uri *u, const char *uri,
                          int *there, char *owner, size_t cap, char etag[128], imm_error *err)
{
    imm_http_response r = {0};
    call c = {.op = "HeadObject", .method = "HEAD", .range_end = -1, .body_fd = -1};
    imm_err e = send(rs, http, u->bucket, u->key, uri, &c, &r, err);
    *there = !e;
    if (!e) {
        snprintf(owner, cap, "%s", r.owner);
        snprintf(etag, 128, "%s", r.etag);
    }
    imm_http_response_clear(&r);
    return e == IMM_ENOTFOUND ? IMM_OK : e;
}

/* The first version of an object is written only if none is there: OSS's forbid-overwrite, S3's
 * If-None-Match. A replacement of another task's object is conditional on its ETag on S3
 * (If-Match); OSS has no condition for it, so there two runs of one task replacing an object of
 * another may both write it (docs/serve.md, "Many servers"). */
static imm_err remote_commit_owned(imm_object *o, const char *owner, int *already,
                                   imm_error *err)
{
    char found[128], etag[128];
    int there, refused;
    imm_uri u = {.is_oss = 1, .key = o->key};
    *already = 0;
    if (o->local)
        return o->rs->local->ops->commit_owned(o->local, owner, already, err);
    snprintf(u.bucket, sizeof(u.bucket), "%s", o->bucket);
    int aws = o->rs->cfg.signature == IMM_OSS_SIGN_S3V4;
    for (int turn = 0;; turn++) { /* a second turn only after a refused first */
        imm_err e = head_owner(o->rs, o->http, &u, o->uri, &there, found, sizeof(found), etag,
                               err);
        if (e)
            return e;
        if (there && !strcmp(found, owner)) {
            *already = 1;
            return IMM_OK;
        }
        /* After a refusal, another task's write came in between: replace it, as commit. */
        terms t = {.owner = owner, .if_absent = !there && !turn,
                   .if_match = there && aws && !turn && etag[0] ? etag : NULL};
        if ((e = upload(o, &t, &refused, err)) == IMM_OK || !refused || turn)
            return e;
    }
}

static imm_err remote_owner_of(imm_storage *st, const char *uri, char *owner, size_t cap,
                               imm_error *err)
{
    remote *rs = (remote *)st;
    imm_uri u;
    char etag[128];
    int there = 0;
    imm_err e = imm_uri_parse(uri, &u, err);
    if (e)
        return e;
    if (!u.is_oss)
        return rs->local->ops->owner_of(rs->local, uri, owner, cap, err);
    imm_http *http = imm_http_new(rs->pool);
    if (!http)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    e = head_owner(rs, http, &u, uri, &there, owner, cap, etag, err);
    imm_http_free(http);
    if (!e && !there)
        e = imm_error_set(err, IMM_ENOTFOUND, "The specified resource %s is not found.", uri);
    return e;
}

static imm_err remote_last_error(imm_object *o, imm_error *err)
{
    if (o->local)
        return o->rs->local->ops->last_error ? o->rs->local->ops->last_error(o->local, err)
                                              : IMM_OK;
    if (o->failure.code)
        *err = o->failure;
    return o->failure.code;
}

static void remote_close(imm_object *o)
{
    if (o && o->local)
        o->rs->local->ops->close(o->local);
    obj_free(o);
}

/* Objects of the endpoint are all served; local paths as the local store judges them. */
static imm_err remote_admits(imm_storage *st, const char *uri, imm_error *err)
{
    remote *rs = (remote *)st;
    imm_uri u;
    imm_err e = imm_uri_parse(uri, &u, err);
    if (e || u.is_oss)
        return e;
    return rs->local->ops->admits(rs->local, uri, err);
}

static imm_err remote_remove(imm_storage *st, const char *uri, imm_error *err)
{
    remote *rs = (remote *)st;
    imm_uri u;
    imm_err e = imm_uri_parse(uri, &u, err);
    if (e)
        return e;
    if (!u.is_oss)
        return rs->local->ops->remove(rs->local, uri, err);
    imm_http *http = imm_http_new(rs->pool);
    if (!http)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    imm_http_response r = {0};
    call c = {.op = "DeleteObject", .method = "DELETE", .range_end = -1, .body_fd = -1};
    e = send(rs, http, u.bucket, u.key, uri, &c, &r, err);
    if (e == IMM_ENOTFOUND)
        e = IMM_OK;
    imm_http_response_clear(&r);
    imm_http_free(http);
    return e;
}

static void remote_free(imm_storage *st)
{
    remote *rs = (remote *)st;
    imm_storage_free(rs->local);
    imm_http_pool_free(rs->pool);
    imm_oss_config_clear(&rs->cfg);
    free(rs);
}

static const imm_storage_ops remote_ops = {
    .admits = remote_admits,
    .open_read = remote_open_read,
    .open_write = remote_open_write,
    .read = remote_read,
    .write = remote_write,
    .seek = remote_seek,
    .commit = remote_commit,
    .commit_owned = remote_commit_owned,
    .owner_of = remote_owner_of,
    .last_error = remote_last_error,
    .close = remote_close,
    .remove = remote_remove,
    .free = remote_free,
};

/* ---- configuration --------------------------------------------------------------------------- */

/* "oss-cn-hangzhou.aliyuncs.com", "oss-cn-hangzhou-internal...", "s3.oss-cn-hangzhou..." */
static void region_from_host(const char *host, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = strstr(host, "oss-");
    const char *end = strstr(host, ".aliyuncs.com");
    if (!p || !end || p > end)
        return;
    p += 4;
    size_t n = (size_t)(end - p);
    if (n >= 9 && !strncmp(end - 9, "-internal", 9))
        n -= 9;
    if (n && n < cap) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* The remote store's configuration is its own: config.c fills one in, this frees it. */
void imm_oss_config_clear(imm_oss_config *c)
{
    char *secret[] = {c->access_key_id, c->access_key_secret, c->session_token};
    for (size_t i = 0; i < sizeof(secret) / sizeof(*secret); i++)
        if (secret[i])
            memset(secret[i], 0, strlen(secret[i]));
    free(c->endpoint);
    free(c->region);
    free(c->access_key_id);
    free(c->access_key_secret);
    free(c->session_token);
    free(c->temp_dir);
    memset(c, 0, sizeof(*c));
}

imm_err imm_oss_remote_new(const imm_oss_config *cfg, imm_storage **out, imm_error *err)
{
    const char *ep = cfg->endpoint, *rest;
    char derived[64];
    imm_err e;
    if (!ep || !*ep)
        return imm_error_set(err, IMM_EARG, "No OSS endpoint is configured.");
    remote *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    rs->base.ops = &remote_ops;
    if (!strncmp(ep, "https://", 8)) {
        snprintf(rs->scheme, sizeof(rs->scheme), "https");
        rest = ep + 8;
    } else if (!strncmp(ep, "http://", 7)) {
        snprintf(rs->scheme, sizeof(rs->scheme), "http");
        rest = ep + 7;
    } else if (strstr(ep, "://")) {
        free(rs);
        return imm_error_set(err, IMM_EARG, "The OSS endpoint %s is not http:// or https://.", ep);
    } else {
        snprintf(rs->scheme, sizeof(rs->scheme), "https");
        rest = ep;
    }
    size_t hl = strcspn(rest, "/");
    if (!hl || hl >= sizeof(rs->host) || (rest[hl] && strcmp(rest + hl, "/")) ||
        strpbrk(rest, "@?#")) {
        free(rs);
        return imm_error_set(err, IMM_EARG, "The OSS endpoint %s must be scheme://host[:port] "
                             "with no path.", ep);
    }
    memcpy(rs->host, rest, hl);
    rs->host[hl] = '\0';
    rs->cfg = *cfg;
    rs->cfg.endpoint = dup_or_null(ep);
    rs->cfg.region = dup_or_null(cfg->region);
    rs->cfg.access_key_id = dup_or_null(cfg->access_key_id);
    rs->cfg.access_key_secret = dup_or_null(cfg->access_key_secret);
    rs->cfg.session_token = dup_or_null(cfg->session_token);
    rs->cfg.temp_dir = dup_or_null(cfg->temp_dir);

    int aliyun = strlen(rs->host) > 13 && !strcmp(rs->host + strlen(rs->host) - 13,
                                                  ".aliyuncs.com");
    rs->vhost = cfg->addressing == IMM_OSS_ADDR_VIRTUAL ||
                (cfg->addressing == IMM_OSS_ADDR_AUTO && aliyun);
    region_from_host(rs->host, derived, sizeof(derived));
    if (!rs->cfg.region && derived[0])
        rs->cfg.region = strdup(derived);
    if (!rs->cfg.region && cfg->signature == IMM_OSS_SIGN_S3V4)
        rs->cfg.region = strdup("us-east-1");

    if (!rs->cfg.access_key_id != !rs->cfg.access_key_secret)
        e = imm_error_set(err, IMM_EARG, "The OSS credentials are incomplete: an access key id "
                          "needs its secret and a secret its id.");
    else if (cfg->signature == IMM_OSS_SIGN_V4 && rs->cfg.access_key_id && !rs->cfg.region)
        e = imm_error_set(err, IMM_EARG, "OSS V4 signatures need a region: pass --oss-region "
                          "(e.g. cn-hangzhou) or set OSS_REGION.");
    else if (!(rs->pool = imm_http_pool_new()))
        e = imm_error_set(err, IMM_EINTERNAL, "Cannot start libcurl.");
    else
        e = imm_oss_local_new(NULL, &cfg->local_paths, &rs->local, err);
    if (e) {
        remote_free(&rs->base);
        return e;
    }
    *out = &rs->base;
    return IMM_OK;
}
