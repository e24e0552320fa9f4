/*
 * http.h - one HTTP exchange over libcurl, for the storage client (and later the notifier).
 *
 * The caller builds every header itself, signature included, and the layer sends exactly those:
 * libcurl's own additions that a signature could cover (Content-Type on POST, Expect, Accept) are
 * suppressed. Connections are reused across handles that share one imm_http_pool.
 * Nothing here logs; error texts carry curl's reason, never a header value.
 */
#ifndef IMMERGE_NET_HTTP_H
#define IMMERGE_NET_HTTP_H

#include "net/sign.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct imm_http_pool imm_http_pool;
typedef struct imm_http imm_http;

typedef struct imm_http_request {
    const char *method; /* GET, HEAD, PUT, POST, DELETE */
    const char *url;
    const imm_kv *headers; /* sent as given; a NULL or "" value sends an empty header */
    size_t nheaders;
    /* The body: memory (body, body_len), or body_len bytes of body_fd from body_offset. */
    const char *body;
    int body_fd; /* -1: the body is in memory */
    int64_t body_offset;
    int64_t body_len;
    /* A 2xx body goes here (a range of an object); other bodies go to response.body. */
    uint8_t *sink;
    size_t sink_cap;
    long connect_timeout; /* seconds */
    long stall_timeout;   /* seconds without a byte in either direction that end the exchange */
} imm_http_request;

typedef struct imm_http_response {
    long status;            /* 0 when no HTTP answer arrived */
    int transport_failed;   /* the connection failed or broke mid-transfer */
    int transient;          /* ... in a way that trying again may cure (not a TLS or URL error) */
    char reason[256];       /* curl's description of a transport failure */
    size_t sink_len;        /* bytes written to request.sink */
    char *body;             /* any other body, NUL-terminated (at most 1 MiB); free with clear */
    size_t body_len;
    int64_t content_length; /* -1 when absent */
    char etag[128];
    char request_id[80]; /* x-oss-request-id or x-amz-request-id */
    char content_range[80];
    char oss_err[2048]; /* x-oss-err: OSS's error XML, base64, on answers without a body (HEAD) */
    char owner[128];    /* x-oss-meta-immerge-task or x-amz-meta-immerge-task: who wrote it */
} imm_http_response;

imm_http_pool *imm_http_pool_new(void);
void imm_http_pool_free(imm_http_pool *pool);

/* A handle for one sequence of exchanges; not to be shared between threads. */
imm_http *imm_http_new(imm_http_pool *pool);
void imm_http_free(imm_http *h);

/* Performs the exchange; 0 when an HTTP answer arrived in full (any status), -1 otherwise
 * (transport_failed set, reason filled). resp is cleared first. */
int imm_http_perform(imm_http *h, const imm_http_request *req, imm_http_response *resp);
void imm_http_response_clear(imm_http_response *resp);

/* The text of the first <tag>...</tag> in an answer's XML body into out ("" when absent): the
 * Code, Message and ids of OSS, S3 and MNS answers. body may be NULL. */
void imm_xml_text(const char *body, const char *tag, char *out, size_t cap);

/* The RFC 1123 GMT date of t, as the Date header carries it: "Thu, 09 Jul 2015 03:01:34 GMT". */
void imm_http_date(time_t t, char out[40]);

/* A retry budget: at most `retries` attempts after the first, within `seconds` of the start,
 * waiting 0.2 s doubling to at most 5 s between them, with jitter so that many clients do not
 * retry in step. */
typedef struct imm_http_retry {
    int retries;
    double seconds;
    double start, delay;
    int attempt; /* attempts made so far, minus one */
} imm_http_retry;

void imm_http_retry_start(imm_http_retry *r, int retries, double seconds);
/* Whether the outcome of an attempt (imm_http_perform's return and response) may pass on retry:
 * a transient transport failure, a 5xx or a 429. */
int imm_http_retryable(int rc, const imm_http_response *resp);
/* After a failed attempt: waits and returns 1 when another attempt fits the budget, else 0. */
int imm_http_retry_again(imm_http_retry *r);
double imm_http_retry_elapsed(const imm_http_retry *r);

#endif
