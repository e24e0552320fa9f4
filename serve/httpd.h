/*
 * httpd.h - the HTTP/1.1 server under `immerge serve`: it takes calls and hands each to the
 * caller's handler, and refuses what is not a call it can hand over (a request line or headers
 * past their bound, a malformed request, a body too large, too many connections) through the
 * caller's refusal function, so that every answer is in the service's JSON shape.
 */
#ifndef IMMERGE_SERVE_HTTPD_H
#define IMMERGE_SERVE_HTTPD_H

#include "immerge.h"
#include "net/sign.h"

#include <netinet/in.h>
#include <stddef.h>

#define IMM_HTTP_MAX_HEAD (8u << 20) /* a request line and headers: the SDKs put every parameter
                                        in the query (11 long UTF-8 source names pass 32 KiB) */
#define IMM_HTTP_MAX_BODY (1u << 20)

typedef struct imm_httpd_request {
    const char *method;
    const char *path;      /* percent-decoded, without the query */
    const imm_kv *query;   /* the query's parameters, decoded as a form's ('+' is a space) */
    size_t nquery;
    const imm_kv *headers; /* as received; names in any case */
    size_t nheaders;
    const char *body;      /* NUL-terminated; chunked bodies arrive joined */
    size_t body_len;
    /* The authority the call names: an absolute-form target's, else its Host header's (RFC 9112,
     * 3.2.2); NULL when it names none (HTTP/1.0 without Host). */
    const char *host;
    /* The address the call arrived at (sin_family 0 when not an IPv4 socket). */
    struct sockaddr_in local;
} imm_httpd_request;

/* Answers a call: sets *status and returns the body (malloc'd; the server frees it; NULL is an
 * empty JSON object). The body is JSON unless the handler sets *type to its media type. */
typedef char *(*imm_httpd_handler)(void *opaque, const imm_httpd_request *req, unsigned *status,
                                  const char **type);
/* The body of a refusal the server makes itself: the service's error shape with this Code and
 * message (malloc'd, or NULL). */
typedef char *(*imm_httpd_refusal)(void *opaque, const char *code, const char *message);

typedef struct imm_httpd imm_httpd;

/* Listens on addr (port 0: a free one) and serves until imm_httpd_stop. */
imm_err imm_httpd_start(const struct sockaddr_in *addr, imm_httpd_handler handle,
                        imm_httpd_refusal refuse, void *opaque, imm_httpd **out, imm_error *err);
int imm_httpd_port(const imm_httpd *d);
/* Takes no more calls, lets the ones being answered finish, closes every connection, frees. */
void imm_httpd_stop(imm_httpd *d);

/* Serves the calls of one connection already open on fd, on this thread, as the server serves
 * each of its connections; closes fd. For tests and fuzzing (tests/fuzz/fuzz_http.c). */
void imm_httpd_serve_fd(int fd, imm_httpd_handler handle, imm_httpd_refusal refuse, void *opaque);

/* Decodes a form's (or a query's) part in place: '+' is a space, %XX a byte. -1 when that gives
 * a NUL byte, which would cut the value short. */
int imm_httpd_form_decode(char *s);

#endif
