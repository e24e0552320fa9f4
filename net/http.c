/*
 * http.c - one HTTP exchange over libcurl (see http.h).
 *
 * A pool is a curl share of the connection cache and DNS, locked for use from several threads,
 * so every handle of a store reuses the same kept-alive connections.
 */
#include "net/http.h"

#include "immerge.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MAX_BODY (1 << 20)

struct imm_http_pool {
    CURLSH *share;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
};

struct imm_http {
    CURL *curl;
};

typedef struct exchange {
    const imm_http_request *req;
    imm_http_response *resp;
    int64_t sent;     /* body bytes given to curl */
    int sink_overflow;
    int body_oom;
} exchange;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void pool_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *opaque)
{
    (void)h;
    (void)access;
    pthread_mutex_lock(&((imm_http_pool *)opaque)->locks[data]);
}

static void pool_unlock(CURL *h, curl_lock_data data, void *opaque)
{
    (void)h;
    pthread_mutex_unlock(&((imm_http_pool *)opaque)->locks[data]);
}

imm_http_pool *imm_http_pool_new(void)
{
    pthread_once(&global_once, global_init);
    imm_http_pool *p = calloc(1, sizeof(*p));
    if (!p || !(p->share = curl_share_init())) {
        free(p);
        return NULL;
    }
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&p->locks[i], NULL);
    curl_share_setopt(p->share, CURLSHOPT_LOCKFUNC, pool_lock);
    curl_share_setopt(p->share, CURLSHOPT_UNLOCKFUNC, pool_unlock);
    curl_share_setopt(p->share, CURLSHOPT_USERDATA, p);
    curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    return p;
}

void imm_http_pool_free(imm_http_pool *p)
{
    if (!p)
        return;
    curl_share_cleanup(p->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&p->locks[i]);
    free(p);
}

imm_http *imm_http_new(imm_http_pool *pool)
{
    imm_http *h = calloc(1, sizeof(*h));
    if (!h || !(h->curl = curl_easy_init())) {
        free(h);
        return NULL;
    }
    if (pool)
        curl_easy_setopt(h->curl, CURLOPT_SHARE, pool->share);
    return h;
}

void imm_http_free(imm_http *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    free(h);
}

void imm_http_response_clear(imm_http_response *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
    resp->content_length = -1;
}

static size_t on_body(char *data, size_t size, size_t n, void *opaque)
{
    exchange *x = opaque;
    imm_http_response *r = x->resp;
    size_t len = size * n;
    if (x->req->sink && r->status / 100 == 2) {
        if (r->sink_len + len > x->req->sink_cap) {
            x->sink_overflow = 1;
            return 0;
        }
        memcpy(x->req->sink + r->sink_len, data, len);
        r->sink_len += len;
        return len;
    }
    if (r->body_len + len > MAX_BODY)
        return len; /* an error body that long says nothing more: keep its start */
    char *p = realloc(r->body, r->body_len + len + 1);
    if (!p) {
        x->body_oom = 1;
        return 0;
    }
    memcpy(p + r->body_len, data, len);
    r->body = p;
    r->body_len += len;
    p[r->body_len] = '\0';
    return len;
}

/* Copies a header's value (trimmed) into out when line is "name: value". */
static void header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) || line[nl] != ':')
        return;
    const char *v = line + nl + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t n = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

static size_t on_header(char *data, size_t size, size_t n, void *opaque)
{
    exchange *x = opaque;
    imm_http_response *r = x->resp;
    size_t len = size * n;
    char num[32] = "";
    if (len > 5 && !strncmp(data, "HTTP/", 5)) {
        /* A new response (after 100 Continue or a redirect): forget the previous one's headers. */
        long status = 0;
        const char *sp = memchr(data, ' ', len);
        if (sp)
            status = strtol(sp + 1, NULL, 10);
        r->status = status;
        r->etag[0] = r->request_id[0] = r->content_range[0] = r->oss_err[0] = r->owner[0] = '\0';
        r->content_length = -1;
        return len;
    }
    header_value(data, len, "ETag", r->etag, sizeof(r->etag));
    header_value(data, len, "x-oss-request-id", r->request_id, sizeof(r->request_id));
    header_value(data, len, "x-amz-request-id", r->request_id, sizeof(r->request_id));
    header_value(data, len, "Content-Range", r->content_range, sizeof(r->content_range));
    header_value(data, len, "x-oss-err", r->oss_err, sizeof(r->oss_err));
    header_value(data, len, "x-oss-meta-immerge-task", r->owner, sizeof(r->owner));
    header_value(data, len, "x-amz-meta-immerge-task", r->owner, sizeof(r->owner));
    header_value(data, len, "Content-Length", num, sizeof(num));
    if (num[0])
        r->content_length = strtoll(num, NULL, 10);
    return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *opaque)
{
    exchange *x = opaque;
    const imm_http_request *q = x->req;
    int64_t left = q->body_len - x->sent;
    size_t want = size * n;
    if (left <= 0)
        return 0;
    if ((int64_t)want > left)
        want = (size_t)left;
    if (q->body_fd < 0) {
        memcpy(buf, q->body + x->sent, want);
    } else {
        ssize_t got = pread(q->body_fd, buf, want, q->body_offset + x->sent);
        if (got <= 0)
            return CURL_READFUNC_ABORT;
        want = (size_t)got;
    }
    x->sent += (int64_t)want;
    return want;
}

/* libcurl rewinds the body when it must send it again (a redirect, an auth retry). */
static int on_seek(void *opaque, curl_off_t offset, int origin)
{
    exchange *x = opaque;
    if (origin != SEEK_SET || offset < 0 || offset > x->req->body_len)
        return CURL_SEEKFUNC_FAIL;
    x->sent = offset;
    return CURL_SEEKFUNC_OK;
}

int imm_http_perform(imm_http *h, const imm_http_request *q, imm_http_response *r)
{
    CURL *c = h->curl;
    exchange x = {.req = q, .resp = r};
    struct curl_slist *hl = NULL;
    char line[8192];
    int ok = 1;

    imm_http_response_clear(r);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, q->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, q->connect_timeout > 0 ? q->connect_timeout : 10L);
    if (q->stall_timeout > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, q->stall_timeout);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->reason);

    if (!strcmp(q->method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(q->method, "PUT") || !strcmp(q->method, "POST")) {
        /* UPLOAD sends exactly body_len bytes from on_read, for PUT and (with the custom method)
         * POST alike, and unlike POSTFIELDS adds no Content-Type of its own. */
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &x);
        curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, &x);
        if (strcmp(q->method, "PUT"))
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    } else if (strcmp(q->method, "GET")) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    }

    /* Exactly the caller's headers: also blank out what libcurl would add on its own. */
    static const char *const suppressed[] = {"Expect:", "Accept:", "Content-Type:"};
    for (size_t i = 0; i < sizeof(suppressed) / sizeof(*suppressed); i++) {
        int overridden = 0;
        for (size_t j = 0; j < q->nheaders; j++)
            overridden |= !strncasecmp(q->headers[j].key, suppressed[i],
                                       strlen(suppressed[i]) - 1) &&
                          strlen(q->headers[j].key) == strlen(suppressed[i]) - 1;
        struct curl_slist *n = overridden ? hl : curl_slist_append(hl, suppressed[i]);
        if (!n)
            ok = 0;
        else
            hl = n;
    }
    for (size_t i = 0; ok && i < q->nheaders; i++) {
        const char *v = q->headers[i].value;
        /* "Name;" is curl's way of sending a header with an empty value. */
        if (v && *v)
            snprintf(line, sizeof(line), "%s: %s", q->headers[i].key, v);
        else
            snprintf(line, sizeof(line), "%s;", q->headers[i].key);
        struct curl_slist *n = curl_slist_append(hl, line);
        if (!n)
            ok = 0;
        else
            hl = n;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    if (!ok) {
        curl_slist_free_all(hl);
        r->transport_failed = 1;
        snprintf(r->reason, sizeof(r->reason), "out of memory");
        return -1;
    }

    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hl);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (rc == CURLE_OK && !x.sink_overflow && !x.body_oom)
        return 0;
    r->transport_failed = 1;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        r->transient = 1;
        break;
    default:
        break;
    }
    if (x.sink_overflow)
        snprintf(r->reason, sizeof(r->reason), "the server sent more than was asked for");
    else if (x.body_oom)
        snprintf(r->reason, sizeof(r->reason), "out of memory");
    else if (!r->reason[0])
        snprintf(r->reason, sizeof(r->reason), "%s", curl_easy_strerror(rc));
    return -1;
}

void imm_http_retry_start(imm_http_retry *r, int retries, double seconds)
{
    *r = (imm_http_retry){.retries = retries, .seconds = seconds, .start = imm_clock_seconds(IMM_CLOCK_MONOTONIC),
                          .delay = 0.2};
}

int imm_http_retryable(int rc, const imm_http_response *resp)
{
    return rc ? resp->transient : resp->status >= 500 || resp->status == 429;
}

int imm_http_retry_again(imm_http_retry *r)
{
    uint32_t j = 0;
    if (getrandom(&j, sizeof(j), 0) < 0)
        j = 0x80000000u;
    double wait = r->delay * (0.5 + 0.5 * (j / 4294967296.0));
    if (r->attempt >= r->retries || imm_clock_seconds(IMM_CLOCK_MONOTONIC) + wait - r->start > r->seconds)
        return 0;
    struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
    r->delay = r->delay * 2 > 5 ? 5 : r->delay * 2;
    r->attempt++;
    return 1;
}

double imm_http_retry_elapsed(const imm_http_retry *r)
{
    return imm_clock_seconds(IMM_CLOCK_MONOTONIC) - r->start;
}

void imm_http_date(time_t t, char out[40])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void imm_xml_text(const char *body, const char *tag, char *out, size_t cap)
{
    char open[64], close[64];
    out[0] = '\0';
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = body ? strstr(body, open) : NULL, *b = a ? strstr(a, close) : NULL;
    if (!b)
        return;
    a += strlen(open);
    size_t n = (size_t)(b - a) < cap - 1 ? (size_t)(b - a) : cap - 1;
    memcpy(out, a, n);
    out[n] = '\0';
}
