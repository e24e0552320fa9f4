/* Unit tests of the OpenAPI signature checks (serve/auth.c). The calls are signed here, by a
 * signer of the test's own written from the ACS3-HMAC-SHA256 and RPC HMAC-SHA1 rules (the
 * canonical request, RFC 3986 encoding, sorted names), so that the check is held to the rule and
 * not to itself: a signed call passes; a changed value, an unsigned x-acs header, a body that is
 * not the hashed one, a stale time, a replayed nonce, an unknown key each fail with the gateway's
 * Code; and the Codes take the gateway's statuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/auth.h"

#define AK "LTAI5tUnitKey"
#define SK "unit-secret-9c1d"

static void hex(const unsigned char *d, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

/* RFC 3986: everything but A-Z a-z 0-9 - _ . ~ as %XX. */
static void enc(const char *s, char *out)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            *out++ = (char)c;
        else
            out += sprintf(out, "%%%02X", c);
    }
    *out = '\0';
}

static void now_iso(char out[32], long offset)
{
    time_t t = time(NULL) + offset;
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
}

typedef struct signed_call {
    imm_kv params[4];
    imm_kv headers[8];
    char date[32], body_hash[65], authorization[512];
    imm_auth_call call;
} signed_call;

/* A POST / with the query Action=GetTask, TaskId=<id> and ProjectName "a b~*", the body, and the
 * headers the SDKs send, signed with secret (names sorted: the query by name, the headers
 * lower-case). */
static void sign_acs3(signed_call *s, const char *secret, const char *nonce, const char *body,
                      long clock_offset)
{
    memset(s, 0, sizeof(*s));
    s->params[0] = (imm_kv){"TaskId", "MediaConvert-1"};
    s->params[1] = (imm_kv){"Action", "GetTask"};
    s->params[2] = (imm_kv){"ProjectName", "a b~*"};
    now_iso(s->date, clock_offset);
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(body, strlen(body), d, &n, EVP_sha256(), NULL);
    hex(d, n, s->body_hash);
    s->headers[0] = (imm_kv){"Host", "127.0.0.1:8080"};
    s->headers[1] = (imm_kv){"x-acs-action", "GetTask"};
    s->headers[2] = (imm_kv){"x-acs-version", "2020-09-30"};
    s->headers[3] = (imm_kv){"x-acs-date", s->date};
    s->headers[4] = (imm_kv){"x-acs-signature-nonce", nonce};
    s->headers[5] = (imm_kv){"x-acs-content-sha256", s->body_hash};
    s->headers[6] = (imm_kv){"Content-Type", "application/json"};
    char project[64], canonical[2048];
    enc("a b~*", project);
    snprintf(canonical, sizeof(canonical),
             "POST\n/\nAction=GetTask&ProjectName=%s&TaskId=MediaConvert-1\n"
             "host:127.0.0.1:8080\nx-acs-action:GetTask\nx-acs-content-sha256:%s\n"
             "x-acs-date:%s\nx-acs-signature-nonce:%s\nx-acs-version:2020-09-30\n\n"
             "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;"
             "x-acs-version\n%s",
             project, s->body_hash, s->date, nonce, s->body_hash);
    char sts[128] = "ACS3-HMAC-SHA256\n", sig[65];
    EVP_Digest(canonical, strlen(canonical), d, &n, EVP_sha256(), NULL);
    hex(d, n, sts + strlen(sts));
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)sts, strlen(sts), d,
         &n);
    hex(d, n, sig);
    snprintf(s->authorization, sizeof(s->authorization),
             "ACS3-HMAC-SHA256 Credential=%s,SignedHeaders=host;x-acs-action;"
             "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=%s",
             AK, sig);
    s->headers[7] = (imm_kv){"Authorization", s->authorization};
    s->call = (imm_auth_call){.method = "POST", .path = "/", .params = s->params, .nparams = 3,
                              .headers = s->headers, .nheaders = 8, .body = body,
                              .body_len = strlen(body)};
}

static void expect(imm_auth *a, const signed_call *s, const char *want)
{
    char code[64] = "", message[256] = "";
    int r = imm_auth_check(a, &s->call, code, message);
    if (!want) {
        assert_int_equal(r, 0);
        return;
    }
    assert_int_equal(r, -1);
    assert_string_equal(code, want);
    assert_null(strstr(message, SK)); /* never the secret */
}

static void a_signed_call_passes_once(void **state)
{
    (void)state;
    imm_auth *a = imm_auth_new(AK, SK);
    signed_call s;
    sign_acs3(&s, SK, "nonce-1", "{}", 0);
    expect(a, &s, NULL);
    expect(a, &s, "SignatureNonceUsed"); /* the same call again: a replay */
    sign_acs3(&s, SK, "nonce-2", "", 0);
    expect(a, &s, NULL);
    imm_auth_free(a);
}

static void what_was_not_signed_fails(void **state)
{
    (void)state;
    imm_auth *a = imm_auth_new(AK, SK);
    signed_call s;
    sign_acs3(&s, "another-secret", "n1", "{}", 0);
    expect(a, &s, "SignatureDoesNotMatch");
    sign_acs3(&s, SK, "n2", "{}", 0);
    s.params[0].value = "MediaConvert-2"; /* a value changed on the way */
    expect(a, &s, "SignatureDoesNotMatch");
    sign_acs3(&s, SK, "n3", "{}", 0);
    s.call.body = "{\"x\":1}"; /* not the body that was hashed */
    s.call.body_len = strlen(s.call.body);
    expect(a, &s, "SignatureDoesNotMatch");
    sign_acs3(&s, SK, "n4", "{}", 0);
    s.headers[6] = (imm_kv){"x-acs-security-token", "t"}; /* sent, not signed */
    expect(a, &s, "IncompleteSignature");
    sign_acs3(&s, SK, "n5", "{}", 0);
    s.params[2].value = "a+b~*"; /* '+' is not a space once decoded: another value */
    expect(a, &s, "SignatureDoesNotMatch");
    imm_auth_free(a);
}

static void time_key_and_scheme(void **state)
{
    (void)state;
    imm_auth *a = imm_auth_new(AK, SK);
    signed_call s;
    sign_acs3(&s, SK, "t1", "{}", -16 * 60);
    expect(a, &s, "InvalidTimeStamp.Expired");
    sign_acs3(&s, SK, "t2", "{}", 16 * 60);
    expect(a, &s, "InvalidTimeStamp.Expired");
    sign_acs3(&s, SK, "t3", "{}", -14 * 60); /* within the window */
    expect(a, &s, NULL);
    imm_auth *other = imm_auth_new("LTAI5tOtherKey", SK);
    sign_acs3(&s, SK, "t4", "{}", 0);
    expect(other, &s, "InvalidAccessKeyId.NotFound");
    imm_auth_free(other);
    sign_acs3(&s, SK, "t5", "{}", 0);
    memcpy(s.authorization, "ACS3-HMAC-MD5   ", 16);
    expect(a, &s, "InvalidSignatureMethod");
    imm_auth_free(a);
}

/* The older RPC style: Signature = Base64(HMAC-SHA1(secret + "&", METHOD&%2F&encoded query)). */
static void an_rpc_signature_passes_and_a_changed_one_fails(void **state)
{
    (void)state;
    imm_auth *a = imm_auth_new(AK, SK);
    char stamp[32], query[1024], sts[4096], eq[3072];
    now_iso(stamp, 0);
    imm_kv params[9] = {
        {"AccessKeyId", AK}, {"Action", "ListTasks"}, {"Format", "JSON"},
        {"ProjectName", "p q"}, {"SignatureMethod", "HMAC-SHA1"}, {"SignatureNonce", "rpc-1"},
        {"SignatureVersion", "1.0"}, {"Timestamp", stamp}, {"Signature", NULL},
    };
    char *p = query;
    for (int i = 0; i < 8; i++) { /* already in order */
        char k[64], v[256];
        enc(params[i].key, k);
        enc(params[i].value, v);
        p += sprintf(p, "%s%s=%s", i ? "&" : "", k, v);
    }
    enc(query, eq);
    snprintf(sts, sizeof(sts), "GET&%%2F&%s", eq);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    HMAC(EVP_sha1(), SK "&", (int)strlen(SK "&"), (const unsigned char *)sts, strlen(sts), mac,
         &n);
    char sig[64];
    EVP_EncodeBlock((unsigned char *)sig, mac, (int)n);
    params[8].value = sig;
    imm_kv headers[1] = {{"Host", "127.0.0.1:8080"}};
    imm_auth_call call = {.method = "GET", .path = "/", .params = params, .nparams = 9,
                          .headers = headers, .nheaders = 1, .body = "", .body_len = 0};
    char code[64] = "", message[256] = "";
    assert_int_equal(imm_auth_check(a, &call, code, message), 0);
    params[5].value = "rpc-2";
    assert_int_equal(imm_auth_check(a, &call, code, message), -1);
    assert_string_equal(code, "SignatureDoesNotMatch");
    imm_auth_free(a);
}

static void codes_take_the_gateway_statuses(void **state)
{
    (void)state;
    assert_int_equal(imm_auth_status("InvalidAccessKeyId.NotFound"), 404);
    assert_int_equal(imm_auth_status("InternalError"), 500);
    assert_int_equal(imm_auth_status("SignatureDoesNotMatch"), 400);
    assert_int_equal(imm_auth_status("SignatureNonceUsed"), 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_signed_call_passes_once),
        cmocka_unit_test(what_was_not_signed_fails),
        cmocka_unit_test(time_key_and_scheme),
        cmocka_unit_test(an_rpc_signature_passes_and_a_changed_one_fails),
        cmocka_unit_test(codes_take_the_gateway_statuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
