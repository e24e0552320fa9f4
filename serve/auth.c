/*
 * auth.c - OpenAPI call signatures (see auth.h).
 *
 * ACS3-HMAC-SHA256: CanonicalRequest = METHOD "\n" path "\n" the query sorted by name, each
 * name=RFC3986(value), "&"-joined "\n" each signed header "name:value\n" (names lower-case,
 * sorted) "\n" the signed names ";"-joined "\n" x-acs-content-sha256; StringToSign =
 * "ACS3-HMAC-SHA256\n" hex(SHA-256(CanonicalRequest)); Signature = hex(HMAC-SHA256(secret, it)).
 * ACS3-HMAC-SM3 is the same with SM3 for SHA-256 (x-acs-content-sha256 then holds the body's SM3,
 * as the SDKs send it).
 *
 * Refusals carry the codes and messages of Alibaba Cloud's API gateway (its common client error
 * codes); the status each takes is the server's to give (imm_auth_status).
 * The headers signed are the ones the caller lists, which must include host and every x-acs-*
 * header sent, and the body must hash to x-acs-content-sha256.
 *
 * RPC (HMAC-SHA1): StringToSign = METHOD "&%2F&" RFC3986(the parameters but Signature, sorted,
 * RFC3986(name)=RFC3986(value), "&"-joined); Signature = Base64(HMAC-SHA1(secret + "&", it)).
 */
#include "serve/auth.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define WINDOW_SECONDS (15 * 60)
#define MAX_NONCES 200000

typedef struct nonce {
    char *value;
    time_t expires;
} nonce;

struct imm_auth {
    char *id, *secret;
    pthread_mutex_t lock;
    nonce *nonces;
    size_t n, cap;
};

imm_auth *imm_auth_new(const char *access_key_id, const char *access_key_secret)
{
    imm_auth *a = calloc(1, sizeof(*a));
    if (!a || !(a->id = strdup(access_key_id)) || !(a->secret = strdup(access_key_secret))) {
        imm_auth_free(a);
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    return a;
}

void imm_auth_free(imm_auth *a)
{
    if (!a)
        return;
    if (a->secret)
        OPENSSL_cleanse(a->secret, strlen(a->secret));
    free(a->id);
    free(a->secret);
    for (size_t i = 0; i < a->n; i++)
        free(a->nonces[i].value);
    free(a->nonces);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static const char *header(const imm_auth_call *c, const char *name)
{
    return imm_kv_find(c->headers, c->nheaders, name, 1);
}

static const char *param(const imm_auth_call *c, const char *name)
{
    return imm_kv_find(c->params, c->nparams, name, 0);
}

/* The call's time, "YYYY-MM-DDTHH:MM:SSZ", within the window of now. */
static int fresh(const char *when)
{
    struct tm tm = {0};
    const char *end = when ? strptime(when, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    if (!end || *end)
        return 0;
    time_t t = timegm(&tm), now = time(NULL);
    return t > now - WINDOW_SECONDS && t < now + WINDOW_SECONDS;
}

/* Records the nonce; 0 when it was not seen within the window. */
static int first_use(imm_auth *a, const char *value)
{
    time_t now = time(NULL);
    int ok = 1;
    pthread_mutex_lock(&a->lock);
    size_t kept = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (a->nonces[i].expires <= now) {
            free(a->nonces[i].value);
            continue;
        }
        if (!strcmp(a->nonces[i].value, value))
            ok = 0;
        a->nonces[kept++] = a->nonces[i];
    }
    a->n = kept;
    if (ok && a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        nonce *grown = cap <= MAX_NONCES ? realloc(a->nonces, cap * sizeof(*grown)) : NULL;
        if (grown) {
            a->nonces = grown;
            a->cap = cap;
        }
    }
    if (ok && a->n < a->cap && (a->nonces[a->n].value = strdup(value)))
        a->nonces[a->n++].expires = now + WINDOW_SECONDS;
    else if (ok)
        ok = 0; /* cannot remember it: refuse rather than allow a replay */
    pthread_mutex_unlock(&a->lock);
    return ok;
}

static int cmp_kv(const void *x, const void *y)
{
    return strcmp(((const imm_kv *)x)->key, ((const imm_kv *)y)->key);
}

static void add_encoded(imm_text *t, const char *s)
{
    char *e = imm_rfc3986_encode(s, 0);
    if (!e)
        t->oom = 1;
    else
        imm_text_add(t, e);
    free(e);
}

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The sorted query, "name=RFC3986(value)" (acs3) or "RFC3986(name)=RFC3986(value)" (rpc). */
static void canonical_query(imm_text *t, const imm_auth_call *c, int rpc)
{
    imm_kv *q = malloc((c->nparams + 1) * sizeof(*q));
    size_t n = 0;
    if (!q) {
        t->oom = 1;
        return;
    }
    for (size_t i = 0; i < c->nparams; i++)
        if (!rpc || strcmp(c->params[i].key, "Signature"))
            q[n++] = c->params[i];
    qsort(q, n, sizeof(*q), cmp_kv);
    for (size_t i = 0; i < n; i++) {
        if (i)
            imm_text_add(t, "&");
        if (rpc)
            add_encoded(t, q[i].key);
        else
            imm_text_add(t, q[i].key);
        imm_text_add(t, "=");
        add_encoded(t, q[i].value ? q[i].value : "");
    }
    free(q);
}

/* hex(digest(data)) with md; 0 on success. */
static int digest_hex(const EVP_MD *md, const void *data, size_t len, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(data, len, d, &n, md, NULL))
        return -1;
    hex(d, n, out);
    return 0;
}

static int check_acs3(imm_auth *a, const imm_auth_call *c, const char *auth, char code[64],
                      char msg[256])
{
    char scheme[32] = "", cred[256] = "", names[1024] = "", sig[129] = "";
    sscanf(auth, "%31s", scheme);
    const EVP_MD *md = !strcmp(scheme, "ACS3-HMAC-SHA256") ? EVP_sha256()
                       : !strcmp(scheme, "ACS3-HMAC-SM3") ? EVP_sm3() : NULL;
    if (!md) {
        snprintf(code, 64, "InvalidSignatureMethod");
        snprintf(msg, 256, "Specified signature method is not valid. (%.40s: this server takes "
                 "ACS3-HMAC-SHA256 and ACS3-HMAC-SM3)", scheme);
        return -1;
    }
    if (sscanf(auth + strlen(scheme),
               " Credential=%255[^,],SignedHeaders=%1023[^,],Signature=%128s", cred, names,
               sig) != 3) {
        snprintf(code, 64, "IncompleteSignature");
        snprintf(msg, 256, "The request signature does not conform to Aliyun standards. (The "
                 "Authorization header is not %s Credential=...,SignedHeaders=...,"
                 "Signature=....)", scheme);
        return -1;
    }
    if (strcmp(cred, a->id)) {
        snprintf(code, 64, "InvalidAccessKeyId.NotFound");
        snprintf(msg, 256, "Specified access key is not found.");
        return -1;
    }
    /* Every x-acs-* header sent, and host, must be among the signed ones. */
    char listed[1100];
    snprintf(listed, sizeof(listed), ";%s;", names);
    for (size_t i = 0; i < c->nheaders; i++) {
        char lower[128], probe[140];
        snprintf(lower, sizeof(lower), "%s", c->headers[i].key);
        for (char *p = lower; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        snprintf(probe, sizeof(probe), ";%s;", lower);
        if ((!strncmp(lower, "x-acs-", 6) || !strcmp(lower, "host")) && !strstr(listed, probe)) {
            snprintf(code, 64, "IncompleteSignature");
            snprintf(msg, 256, "The header %s is sent but not signed.", lower);
            return -1;
        }
    }
    const char *date = header(c, "x-acs-date"), *nonce_v = header(c, "x-acs-signature-nonce");
    const char *payload = header(c, "x-acs-content-sha256");
    if (!fresh(date)) {
        snprintf(code, 64, "InvalidTimeStamp.Expired");
        snprintf(msg, 256, "x-acs-date is missing or more than 15 minutes from the server's time.");
        return -1;
    }
    char body_hex[2 * EVP_MAX_MD_SIZE + 1];
    if (digest_hex(md, c->body ? c->body : "", c->body_len, body_hex) || !payload ||
        strcmp(payload, body_hex)) {
        snprintf(code, 64, "SignatureDoesNotMatch");
        snprintf(msg, 256, "Specified signature is not matched with our calculation. "
                 "(x-acs-content-sha256 is missing or is not the body's hash.)");
        return -1;
    }
    imm_text t = {0};
    imm_text_add(&t, c->method);
    imm_text_add(&t, "\n");
    imm_text_add(&t, c->path);
    imm_text_add(&t, "\n");
    canonical_query(&t, c, 0);
    imm_text_add(&t, "\n");
    char *copy = strdup(names), *save = NULL;
    for (char *n = copy ? strtok_r(copy, ";", &save) : NULL; n; n = strtok_r(NULL, ";", &save)) {
        const char *v = header(c, n);
        char trimmed[4096];
        snprintf(trimmed, sizeof(trimmed), "%s", v ? v : "");
        char *s = trimmed, *e = trimmed + strlen(trimmed);
        while (*s == ' ')
            s++;
        while (e > s && e[-1] == ' ')
            *--e = '\0';
        imm_text_add(&t, n);
        imm_text_add(&t, ":");
        imm_text_add(&t, s);
        imm_text_add(&t, "\n");
    }
    free(copy);
    imm_text_add(&t, "\n");
    imm_text_add(&t, names);
    imm_text_add(&t, "\n");
    imm_text_add(&t, payload);
    if (t.oom || !copy) {
        free(t.s);
        snprintf(code, 64, "InternalError");
        snprintf(msg, 256, "out of memory");
        return -1;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char sts[200], want[2 * EVP_MAX_MD_SIZE + 1];
    int n = snprintf(sts, sizeof(sts), "%s\n", scheme);
    int bad_hash = digest_hex(md, t.s, t.len, sts + n);
    free(t.s);
    if (bad_hash || !HMAC(md, a->secret, (int)strlen(a->secret), (const unsigned char *)sts,
                          strlen(sts), mac, &len)) {
        snprintf(code, 64, "InternalError");
        snprintf(msg, 256, "%s is not available in this build's OpenSSL.", scheme);
        return -1;
    }
    hex(mac, len, want);
    if (strlen(sig) != strlen(want) || CRYPTO_memcmp(want, sig, strlen(want))) {
        snprintf(code, 64, "SignatureDoesNotMatch");
        snprintf(msg, 256, "Specified signature is not matched with our calculation.");
        return -1;
    }
    if (!nonce_v || !*nonce_v || !first_use(a, nonce_v)) {
        snprintf(code, 64, "SignatureNonceUsed");
        snprintf(msg, 256, "The x-acs-signature-nonce is missing or was used already.");
        return -1;
    }
    return 0;
}

static int check_rpc(imm_auth *a, const imm_auth_call *c, const char *sig, char code[64],
                     char msg[256])
{
    const char *id = param(c, "AccessKeyId"), *method = param(c, "SignatureMethod");
    const char *nonce_v = param(c, "SignatureNonce"), *when = param(c, "Timestamp");
    if (!id || strcmp(id, a->id)) {
        snprintf(code, 64, "InvalidAccessKeyId.NotFound");
        snprintf(msg, 256, "Specified access key is not found.");
        return -1;
    }
    if (!method || strcmp(method, "HMAC-SHA1")) {
        snprintf(code, 64, "InvalidSignatureMethod");
        snprintf(msg, 256, "Specified signature method is not valid. (RPC calls: HMAC-SHA1)");
        return -1;
    }
    if (!fresh(when)) {
        snprintf(code, 64, "InvalidTimeStamp.Expired");
        snprintf(msg, 256, "Timestamp is missing or more than 15 minutes from the server's time.");
        return -1;
    }
    imm_text q = {0}, sts = {0};
    canonical_query(&q, c, 1);
    imm_text_add(&sts, c->method);
    imm_text_add(&sts, "&%2F&");
    add_encoded(&sts, q.s ? q.s : "");
    free(q.s);
    char key[512], want[29];
    snprintf(key, sizeof(key), "%s&", a->secret);
    if (sts.oom || q.oom) {
        free(sts.s);
        snprintf(code, 64, "InternalError");
        snprintf(msg, 256, "out of memory");
        return -1;
    }
    imm_sign_v1_signature(key, sts.s, want);
    OPENSSL_cleanse(key, sizeof(key));
    free(sts.s);
    if (strlen(sig) != strlen(want) || CRYPTO_memcmp(sig, want, strlen(want))) {
        snprintf(code, 64, "SignatureDoesNotMatch");
        snprintf(msg, 256, "Specified signature is not matched with our calculation.");
        return -1;
    }
    if (!nonce_v || !*nonce_v || !first_use(a, nonce_v)) {
        snprintf(code, 64, "SignatureNonceUsed");
        snprintf(msg, 256, "The SignatureNonce is missing or was used already.");
        return -1;
    }
    return 0;
}

int imm_auth_check(imm_auth *a, const imm_auth_call *c, char code[64], char message[256])
{
    const char *auth = header(c, "Authorization"), *sig = param(c, "Signature");
    if (auth && !strncmp(auth, "ACS3-", 5))
        return check_acs3(a, c, auth, code, message);
    if (sig)
        return check_rpc(a, c, sig, code, message);
    snprintf(code, 64, "MissingSignature");
    snprintf(message, 256, "This server takes only signed calls (ACS3-HMAC-SHA256, or the RPC "
             "Signature parameters).");
    return -1;
}

unsigned imm_auth_status(const char *code)
{
    if (!strcmp(code, "InternalError"))
        return 500;
    if (!strcmp(code, "InvalidAccessKeyId.NotFound"))
        return 404;
    return 400;
}
