/*
 * sign.c - OSS V1, OSS V4 and AWS SigV4 signatures (see sign.h and ../shared/spec/oss-mns.md).
 *
 * The two V4 flavours differ only in constants and canonicalisation details (empty query values,
 * which headers are signed, the SignedHeaders line, the header's layout); everything else is one
 * code path so a fix to one is a fix to both.
 */
#include "net/sign.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *imm_kv_find(const imm_kv *kv, size_t n, const char *key, int any_case)
{
    for (size_t i = 0; i < n; i++)
        if (any_case ? !strcasecmp(kv[i].key, key) : !strcmp(kv[i].key, key))
            return kv[i].value ? kv[i].value : "";
    return NULL;
}

void imm_text_put(imm_text *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void imm_text_add(imm_text *b, const char *s)
{
    imm_text_put(b, s, strlen(s));
}

static char *finish(imm_text *b)
{
    if (b->oom || !b->s) {
        free(b->s);
        return b->oom ? NULL : strdup("");
    }
    return b->s;
}

/* RFC 3986: unreserved kept, '/' kept when keep_slash, all else %XX upper-case. */
static void put_encoded(imm_text *b, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
            (keep_slash && *p == '/')) {
            imm_text_put(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            imm_text_put(b, e, 3);
        }
    }
}

char *imm_rfc3986_encode(const char *s, int keep_slash)
{
    imm_text b = {0};
    put_encoded(&b, s ? s : "", keep_slash);
    return finish(&b);
}

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void hmac256(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len);
}

void imm_sign_v4_date(time_t when, char out[17])
{
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

typedef struct pair {
    char *k, *v;
} pair;

static int cmp_pair(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

static void canonical_query(imm_text *b, const imm_v4_request *r)
{
    pair *q = calloc(r->nquery ? r->nquery : 1, sizeof(*q));
    if (!q) {
        b->oom = 1;
        return;
    }
    for (size_t i = 0; i < r->nquery; i++) {
        q[i].k = imm_rfc3986_encode(r->query[i].key, 0);
        q[i].v = imm_rfc3986_encode(r->query[i].value, 0);
    }
    qsort(q, r->nquery, sizeof(*q), cmp_pair);
    for (size_t i = 0; i < r->nquery; i++) {
        if (i)
            imm_text_add(b, "&");
        imm_text_add(b, q[i].k ? q[i].k : "");
        if ((q[i].v && *q[i].v) || r->flavor == IMM_V4_AWS) {
            imm_text_add(b, "=");
            imm_text_add(b, q[i].v ? q[i].v : "");
        }
        free(q[i].k);
        free(q[i].v);
    }
    free(q);
}

static int is_additional(const imm_v4_request *r, const char *lname)
{
    for (size_t i = 0; i < r->nadditional; i++)
        if (!strcasecmp(r->additional[i], lname))
            return 1;
    return 0;
}

static int signed_header(const imm_v4_request *r, const char *lname)
{
    if (!strcmp(lname, "content-type") || !strcmp(lname, "content-md5"))
        return 1;
    if (r->flavor == IMM_V4_OSS)
        return !strncmp(lname, "x-oss-", 6) || is_additional(r, lname);
    return !strcmp(lname, "host") || !strncmp(lname, "x-amz-", 6);
}

static char *trimmed(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return strndup(v, n);
}

/* The signed headers, lower-cased and sorted, the date header included. */
static size_t signed_headers(const imm_v4_request *r, const char *date, pair *out)
{
    size_t n = 0;
    const char *date_name = r->flavor == IMM_V4_OSS ? "x-oss-date" : "x-amz-date";
    int have_date = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        char *l = strdup(r->headers[i].key);
        for (char *p = l; p && *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!l || !signed_header(r, l)) {
            free(l);
            continue;
        }
        have_date |= !strcmp(l, date_name);
        out[n].k = l;
        out[n++].v = trimmed(r->headers[i].value ? r->headers[i].value : "");
    }
    if (!have_date) {
        out[n].k = strdup(date_name);
        out[n++].v = strdup(date);
    }
    qsort(out, n, sizeof(*out), cmp_pair);
    return n;
}

char *imm_sign_v4(const imm_v4_request *r, char **canonical_out)
{
    int oss = r->flavor == IMM_V4_OSS;
    char date[17], day[9], scope[128], digest_hex[65], sig_hex[65];
    unsigned char digest[32], k[32];
    imm_text c = {0}, names = {0}, sts = {0}, auth = {0};
    pair *h = calloc(r->nheaders + 1, sizeof(*h));
    if (!h)
        return NULL;
    imm_sign_v4_date(r->when, date);
    memcpy(day, date, 8);
    day[8] = '\0';
    size_t nh = signed_headers(r, date, h);

    imm_text_add(&c, r->method);
    imm_text_add(&c, "\n");
    put_encoded(&c, r->path, 1);
    imm_text_add(&c, "\n");
    canonical_query(&c, r);
    imm_text_add(&c, "\n");
    for (size_t i = 0; i < nh; i++) {
        imm_text_add(&c, h[i].k);
        imm_text_add(&c, ":");
        imm_text_add(&c, h[i].v ? h[i].v : "");
        imm_text_add(&c, "\n");
        if (oss && !is_additional(r, h[i].k))
            continue; /* OSS lists only the AdditionalHeaders; AWS lists every signed one */
        if (names.len)
            imm_text_add(&names, ";");
        imm_text_add(&names, h[i].k);
    }
    imm_text_add(&c, "\n");
    imm_text_add(&c, names.s ? names.s : "");
    imm_text_add(&c, "\n");
    imm_text_add(&c, r->payload_hash);

    snprintf(scope, sizeof(scope), "%s/%s/%s/%s", day, r->region, oss ? "oss" : "s3",
             oss ? "aliyun_v4_request" : "aws4_request");
    SHA256((const unsigned char *)(c.s ? c.s : ""), c.len, digest);
    hex(digest, 32, digest_hex);
    imm_text_add(&sts, oss ? "OSS4-HMAC-SHA256\n" : "AWS4-HMAC-SHA256\n");
    imm_text_add(&sts, date);
    imm_text_add(&sts, "\n");
    imm_text_add(&sts, scope);
    imm_text_add(&sts, "\n");
    imm_text_add(&sts, digest_hex);

    imm_text key = {0};
    imm_text_add(&key, oss ? "aliyun_v4" : "AWS4");
    imm_text_add(&key, r->access_key_secret);
    hmac256(key.s ? key.s : "", key.len, day, k);
    hmac256(k, 32, r->region, k);
    hmac256(k, 32, oss ? "oss" : "s3", k);
    hmac256(k, 32, oss ? "aliyun_v4_request" : "aws4_request", k);
    hmac256(k, 32, sts.s ? sts.s : "", digest);
    hex(digest, 32, sig_hex);
    if (key.s)
        OPENSSL_cleanse(key.s, key.len);
    OPENSSL_cleanse(k, sizeof(k));

    imm_text_add(&auth, oss ? "OSS4-HMAC-SHA256 Credential=" : "AWS4-HMAC-SHA256 Credential=");
    imm_text_add(&auth, r->access_key_id);
    imm_text_add(&auth, "/");
    imm_text_add(&auth, scope);
    if (names.len) {
        imm_text_add(&auth, oss ? ",AdditionalHeaders=" : ", SignedHeaders=");
        imm_text_add(&auth, names.s);
    }
    imm_text_add(&auth, oss ? ",Signature=" : ", Signature=");
    imm_text_add(&auth, sig_hex);

    for (size_t i = 0; i < nh; i++) {
        free(h[i].k);
        free(h[i].v);
    }
    free(h);
    free(key.s);
    free(names.s);
    free(sts.s);
    int oom = c.oom || names.oom || sts.oom || auth.oom;
    if (canonical_out)
        *canonical_out = oom ? NULL : finish(&c);
    else
        free(c.s);
    if (oom) {
        free(auth.s);
        return NULL;
    }
    return finish(&auth);
}

void imm_sign_v1_signature(const char *secret, const char *string_to_sign, char out[29])
{
    unsigned char mac[20];
    unsigned int len = sizeof(mac);
    HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)string_to_sign,
         strlen(string_to_sign), mac, &len);
    EVP_EncodeBlock((unsigned char *)out, mac, (int)len);
}

char *imm_sign_v1_string(const char *method, const char *content_md5, const char *content_type,
                         const char *date, const imm_kv *headers, size_t nheaders,
                         const char *resource)
{
    return imm_sign_hmac1_string("x-oss-", method, content_md5, content_type, date, headers,
                                 nheaders, resource);
}

char *imm_sign_hmac1_string(const char *prefix, const char *method, const char *content_md5,
                            const char *content_type, const char *date, const imm_kv *headers,
                            size_t nheaders, const char *resource)
{
    size_t plen = strlen(prefix);
    imm_text b = {0};
    pair *h = calloc(nheaders + 1, sizeof(*h));
    size_t n = 0;
    if (!h)
        return NULL;
    for (size_t i = 0; i < nheaders; i++) {
        if (strncasecmp(headers[i].key, prefix, plen))
            continue;
        h[n].k = strdup(headers[i].key);
        for (char *p = h[n].k; p && *p; p++)
            *p = (char)tolower((unsigned char)*p);
        h[n++].v = trimmed(headers[i].value ? headers[i].value : "");
    }
    qsort(h, n, sizeof(*h), cmp_pair);
    const char *fields[] = {method, content_md5, content_type, date};
    for (int i = 0; i < 4; i++) {
        imm_text_add(&b, fields[i] ? fields[i] : "");
        imm_text_add(&b, "\n");
    }
    for (size_t i = 0; i < n; i++) {
        imm_text_add(&b, h[i].k ? h[i].k : "");
        imm_text_add(&b, ":");
        imm_text_add(&b, h[i].v ? h[i].v : "");
        imm_text_add(&b, "\n");
        free(h[i].k);
        free(h[i].v);
    }
    free(h);
    imm_text_add(&b, resource);
    return finish(&b);
}
