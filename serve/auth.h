/*
 * auth.h - checking the signatures Alibaba Cloud's official clients put on OpenAPI calls:
 * ACS3-HMAC-SHA256 or ACS3-HMAC-SM3 in the Authorization header (today's clients), and the older RPC style with
 * Signature, SignatureMethod=HMAC-SHA1, SignatureNonce and Timestamp in the query. A call must be
 * fresh (its time within 15 minutes) and its nonce unused in that window: a replayed call fails.
 */
#ifndef IMMERGE_SERVE_AUTH_H
#define IMMERGE_SERVE_AUTH_H

#include "net/sign.h"

#include <stddef.h>

typedef struct imm_auth imm_auth;

typedef struct imm_auth_call {
    const char *method;
    const char *path;
    const imm_kv *params; /* the query parameters, decoded */
    size_t nparams;
    const imm_kv *headers; /* as received; names in any case */
    size_t nheaders;
    const char *body;
    size_t body_len;
} imm_auth_call;

imm_auth *imm_auth_new(const char *access_key_id, const char *access_key_secret);
void imm_auth_free(imm_auth *a);

/* 0 when the call is signed by the key and fresh; else -1 with the service's Code and a message
 * (never the secret). Thread-safe. */
int imm_auth_check(imm_auth *a, const imm_auth_call *call, char code[64], char message[256]);
/* The HTTP status the service's gateway answers a refusal's Code with: 404 for an unknown
 * AccessKeyId, 500 for our own failure, else 400. */
unsigned imm_auth_status(const char *code);

#endif
