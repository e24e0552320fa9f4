/*
 * sign.h - request signing for OSS and S3-compatible stores: OSS V1 (HMAC-SHA1), and one V4 signer
 * parameterised for OSS V4 (OSS4-HMAC-SHA256) and AWS SigV4 (AWS4-HMAC-SHA256), and MNS's V1-like
 * signature. Ours, on OpenSSL,
 * because Debian 12's libcurl SigV4 neither sorts the query nor can produce OSS V4.
 */
#ifndef IMMERGE_NET_SIGN_H
#define IMMERGE_NET_SIGN_H

#include <stddef.h>
#include <time.h>

typedef struct imm_kv {
    const char *key;
    const char *value; /* "" or NULL: no value */
} imm_kv;

/* The value of the first of kv[0, n) named `key` ("" for one without a value), or NULL; names
 * compared in any case when `any_case` (HTTP headers). */
const char *imm_kv_find(const imm_kv *kv, size_t n, const char *key, int any_case);

/* A string that grows as it is added to: zero-initialised it is empty (s NULL); once an
 * allocation fails it stays failed (oom) and takes nothing more. s is NUL-terminated. */
typedef struct imm_text {
    char *s;
    size_t len, cap;
    int oom;
} imm_text;
void imm_text_put(imm_text *t, const char *s, size_t n);
void imm_text_add(imm_text *t, const char *s);

typedef enum imm_v4_flavor { IMM_V4_OSS, IMM_V4_AWS } imm_v4_flavor;

typedef struct imm_v4_request {
    imm_v4_flavor flavor;
    const char *method;
    const char *path;          /* not encoded; OSS: always "/bucket/key" (bucket even when vhost) */
    const imm_kv *query;       /* raw, not encoded */
    size_t nquery;
    const imm_kv *headers;     /* as they will be sent; which are signed follows the flavor */
    size_t nheaders;
    const char *const *additional; /* OSS: AdditionalHeaders to sign too (any case) */
    size_t nadditional;
    const char *region;        /* "cn-hangzhou" */
    time_t when;               /* the x-oss-date / x-amz-date the request carries */
    const char *access_key_id;
    const char *access_key_secret;
    const char *payload_hash;  /* "UNSIGNED-PAYLOAD" or hex SHA-256 */
} imm_v4_request;

/* s percent-encoded as RFC 3986 says (unreserved kept, '/' too when keep_slash, all else %XX in
 * upper case): the encoding of V4 canonical requests and of the URLs we send. malloc'd. */
char *imm_rfc3986_encode(const char *s, int keep_slash);

/* "YYYYMMDDTHHMMSSZ" for when: the value of x-oss-date / x-amz-date. */
void imm_sign_v4_date(time_t when, char out[17]);
/* The Authorization header value; *canonical (if not NULL) gets the canonical request. Both are
 * malloc'd; NULL on out of memory. */
char *imm_sign_v4(const imm_v4_request *req, char **canonical);

/* Base64(HMAC-SHA1(secret, string_to_sign)) into out (at least 29 bytes). */
void imm_sign_v1_signature(const char *secret, const char *string_to_sign, char out[29]);
/* The V1 string to sign: VERB, Content-MD5, Content-Type, Date, the x-oss-* headers (lower-cased,
 * sorted) and the canonical resource ("/bucket/key?subresources"). malloc'd. */
char *imm_sign_v1_string(const char *method, const char *content_md5, const char *content_type,
                         const char *date, const imm_kv *headers, size_t nheaders,
                         const char *resource);

/* The same string with another header prefix: "x-mns-" gives MNS's (Authorization: MNS id:sig,
 * signed like V1). */
char *imm_sign_hmac1_string(const char *prefix, const char *method, const char *content_md5,
                            const char *content_type, const char *date, const imm_kv *headers,
                            size_t nheaders, const char *resource);

#endif
