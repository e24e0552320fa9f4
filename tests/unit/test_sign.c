/* The signer (net/sign.c) against the published test vectors in ../shared/spec/oss-mns.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "net/sign.h"

static void expect_v1(const char *secret, const char *sts, const char *want)
{
    char sig[29];
    imm_sign_v1_signature(secret, sts, sig);
    assert_string_equal(sig, want);
}

static void v1_published_vectors(void **state)
{
    (void)state;
    const char *s = "OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV";
    expect_v1(s, "PUT\nODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=\ntext/html\nThu, 17 Nov 2005 "
                 "18:49:58 GMT\nx-oss-magic:abracadabra\nx-oss-meta-author:foo@bar.com\n"
                 "/oss-example/nelson", "26NBxoKdsyly4EDv6inkoDft/yA=");
    expect_v1(s, "PUT\n\n\nThu, 17 Nov 2005 18:49:58 GMT\n/", "PPaaX3Rt4ntpD31O9aqkyCf2pd4=");
    expect_v1(s, "GET\n\n\n1141889120\n/oss-example/oss-api.pdf", "EwaNTn1erJGkimiJ9WmXgwnANLc=");
    const char *d = "PUT\neB5eJF1ptWaXm4bijSPyxw==\ntext/html\nWed, 28 Dec 2022 10:27:41 GMT\n"
                    "x-oss-date:Wed, 28 Dec 2022 10:27:41 GMT\nx-oss-meta-author:alice\n"
                    "x-oss-meta-magic:abracadabra\n/examplebucket/nelson";
    expect_v1("sk", d, "kSHKmLxlyEAKtZPkJhG9bZb5k7M=");
    char e[512];
    strcpy(e, d);
    strcat(e, "?acl");
    expect_v1("sk", e, "/afkugFbmWDQ967j1vr6zygBLQk=");
    expect_v1("sk", "GET\n\n\nWed, 28 Dec 2022 10:27:41 GMT\nx-oss-date:Wed, 28 Dec 2022 10:27:41 "
                    "GMT\n/examplebucket/?resourceGroup", "vkQmfuUDyi1uDi3bKt67oemssIs=");
    expect_v1("sk", "GET\n\n\nWed, 28 Dec 2022 10:27:41 GMT\nx-oss-date:Wed, 28 Dec 2022 10:27:41 "
                    "GMT\n/examplebucket/?acl&resourceGroup", "x3E5TgOvl/i7PN618s5mEvpJDYk=");
    expect_v1("sk", "GET\n\n\n1699807420\n/bucket/key?versionId=versionId",
              "dcLTea+Yh9ApirQ8o8dOPqtvJXQ=");
    expect_v1("sk", "GET\n\n\n1699808204\n/bucket/key+123?security-token=token&versionId=versionId",
              "jzKYRrM5y6Br0dRFPaTGOsbrDhY=");
}

static void v1_string_sorts_and_lowercases_oss_headers(void **state)
{
    (void)state;
    const imm_kv headers[] = {{"X-OSS-Meta-Author", "foo@bar.com"}, {"Host", "x"},
                              {"X-OSS-Magic", " abracadabra"}};
    char *s = imm_sign_v1_string("PUT", "ODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=",
                                 "text/html", "Thu, 17 Nov 2005 18:49:58 GMT", headers, 3,
                                 "/oss-example/nelson");
    char sig[29];
    imm_sign_v1_signature("OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV", s, sig);
    assert_string_equal(sig, "26NBxoKdsyly4EDv6inkoDft/yA=");
    free(s);
}

static const imm_kv v4_query[] = {{"param1", "value1"}, {"+param1", "value3"},
                                  {"|param1", "value4"}, {"+param2", ""},
                                  {"|param2", ""},       {"param2", ""}};
static const imm_kv v4_headers[] = {{"x-oss-head1", "value"}, {"abc", "value"},
                                    {"ZAbc", "value"},        {"XYZ", "value"},
                                    {"content-type", "text/plain"},
                                    {"x-oss-content-sha256", "UNSIGNED-PAYLOAD"},
                                    {"x-oss-security-token", "token"}};

static imm_v4_request v4_base(time_t when, size_t nheaders)
{
    imm_v4_request r = {
        .flavor = IMM_V4_OSS, .method = "PUT", .path = "/bucket/1234+-/123/1.txt",
        .query = v4_query, .nquery = 6, .headers = v4_headers, .nheaders = nheaders,
        .region = "cn-hangzhou", .when = when, .access_key_id = "ak",
        .access_key_secret = "sk", .payload_hash = "UNSIGNED-PAYLOAD"};
    return r;
}

/* Signs r and compares the whole Authorization value. */
static void expect_v4(const imm_v4_request *r, const char *want)
{
    char *auth = imm_sign_v4(r, NULL);
    assert_string_equal(auth, want);
    free(auth);
}

static void v4_a_canonical_request_and_signature(void **state)
{
    (void)state;
    imm_v4_request r = v4_base(1702743657, 6);
    char *canonical = NULL, *auth = imm_sign_v4(&r, &canonical);
    assert_string_equal(canonical,
                        "PUT\n/bucket/1234%2B-/123/1.txt\n"
                        "%2Bparam1=value3&%2Bparam2&%7Cparam1=value4&%7Cparam2&param1=value1&param2\n"
                        "content-type:text/plain\nx-oss-content-sha256:UNSIGNED-PAYLOAD\n"
                        "x-oss-date:20231216T162057Z\nx-oss-head1:value\n\n\nUNSIGNED-PAYLOAD");
    assert_string_equal(auth, "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/"
                              "aliyun_v4_request,Signature=e21d18daa82167720f9b1047ae7e7f1ce7cb77"
                              "a31e8203a7d5f4624fa0284afe");
    free(canonical);
    free(auth);
}

static void v4_b_security_token_is_signed(void **state)
{
    (void)state;
    imm_v4_request r = v4_base(1702784856, 7);
    expect_v4(&r, "OSS4-HMAC-SHA256 Credential=ak/20231217/cn-hangzhou/oss/aliyun_v4_request,"
                  "Signature=b94a3f999cf85bcdc00d332fbd3734ba03e48382c36fa4d5af5df817395bd9ea");
}

static void v4_c_additional_headers(void **state)
{
    (void)state;
    const char *additional[] = {"ZAbc", "abc"};
    imm_v4_request r = v4_base(1702747512, 6);
    r.additional = additional;
    r.nadditional = 2;
    expect_v4(&r, "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,"
                  "AdditionalHeaders=abc;zabc,Signature=4a4183c187c07c8947db7620deb0a6b38d9fbdd3"
                  "4187b6dbaccb316fa251212f");
}

static void v4_d_e_c_sdk_vectors(void **state)
{
    (void)state;
    const imm_kv hd[] = {{"x-oss-head1", "value"}, {"x-oss-date", "20221016T091431Z"},
                         {"Content-Type", "application/octet-stream"},
                         {"x-oss-content-sha256", "UNSIGNED-PAYLOAD"}};
    imm_v4_request r = {
        .flavor = IMM_V4_OSS, .method = "PUT",
        .path = "/oss-bucket-test/test-sign-V4/-!@#$%^&*()/abcdefjhijklmnoqprstuvwxyz/123456789",
        .headers = hd, .nheaders = 4, .region = "cn-hangzhou", .when = 1665911671,
        .access_key_id = "ak", .access_key_secret = "sk", .payload_hash = "UNSIGNED-PAYLOAD"};
    expect_v4(&r, "OSS4-HMAC-SHA256 Credential=ak/20221016/cn-hangzhou/oss/aliyun_v4_request,"
                  "Signature=5028172a0a3806285979896982bee6e36e915cbf428ee7100a809e1f0ff43b64");
    const imm_kv he[] = {{"x-oss-head1", "value"}, {"abc", "value"}, {"ZAbc", "value"},
                         {"XYZ", "value"}, {"x-oss-date", "20221016T040719Z"},
                         {"Content-Type", "application/octet-stream"},
                         {"x-oss-content-sha256", "UNSIGNED-PAYLOAD"}};
    r.headers = he;
    r.nheaders = 7;
    r.when = 1665893239;
    r.query = v4_query;
    r.nquery = 6;
    expect_v4(&r, "OSS4-HMAC-SHA256 Credential=ak/20221016/cn-hangzhou/oss/aliyun_v4_request,"
                  "Signature=16e58322c5aafb55edd82813b02d6521caab8194882c786bf0e77b7987a63979");
}

static void aws_flavor_writes_empty_values_and_signed_headers(void **state)
{
    (void)state;
    const imm_kv q[] = {{"uploads", ""}};
    const imm_kv h[] = {{"Host", "127.0.0.1:9000"}, {"x-amz-content-sha256", "UNSIGNED-PAYLOAD"},
                        {"Range", "bytes=0-1"}};
    imm_v4_request r = {
        .flavor = IMM_V4_AWS, .method = "POST", .path = "/bkt/a b.mp3", .query = q, .nquery = 1,
        .headers = h, .nheaders = 3, .region = "us-east-1", .when = 1702743657,
        .access_key_id = "AK", .access_key_secret = "SK", .payload_hash = "UNSIGNED-PAYLOAD"};
    char *canonical = NULL, *auth = imm_sign_v4(&r, &canonical);
    assert_string_equal(canonical, "POST\n/bkt/a%20b.mp3\nuploads=\nhost:127.0.0.1:9000\n"
                                   "x-amz-content-sha256:UNSIGNED-PAYLOAD\n"
                                   "x-amz-date:20231216T162057Z\n\n"
                                   "host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD");
    assert_non_null(strstr(auth, "AWS4-HMAC-SHA256 Credential=AK/20231216/us-east-1/s3/"
                                 "aws4_request, SignedHeaders=host;x-amz-content-sha256;"
                                 "x-amz-date, Signature="));
    free(canonical);
    free(auth);
}

/* MNS signs like OSS V1 with x-mns-* headers: the spec's two vectors, from the headers. */
static void mns_vectors(void **state)
{
    (void)state;
    const imm_kv a[] = {{"x-mns-version", "2015-06-06"}, {"x-oss-ignored", "x"}};
    char *sts = imm_sign_hmac1_string("x-mns-", "GET", NULL, NULL,
                                      "Thu, 09 Jul 2015 03:01:34 GMT", a, 2, "/MyQueue");
    assert_string_equal(sts, "GET\n\n\nThu, 09 Jul 2015 03:01:34 GMT\nx-mns-version:2015-06-06\n"
                             "/MyQueue");
    expect_v1("TestAccessSecret", sts, "uwx3yeWoILzgmvesW0BQSgfM7b8=");
    free(sts);
    sts = imm_sign_hmac1_string("x-mns-", "POST", NULL, "text/xml;charset=utf-8",
                                "Tue, 08 Dec 2015 06:13:40 GMT", a, 1, "/topics/MyTopic/messages");
    expect_v1("TestAccessSecret", sts, "6YcNwrhbkIPKdB3fRGtiqN8cehg=");
    free(sts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v1_published_vectors),
        cmocka_unit_test(v1_string_sorts_and_lowercases_oss_headers),
        cmocka_unit_test(v4_a_canonical_request_and_signature),
        cmocka_unit_test(v4_b_security_token_is_signed),
        cmocka_unit_test(v4_c_additional_headers),
        cmocka_unit_test(v4_d_e_c_sdk_vectors),
        cmocka_unit_test(aws_flavor_writes_empty_values_and_signed_headers),
        cmocka_unit_test(mns_vectors),
    };
    return cmocka_run_group_tests_name("sign", tests, NULL, NULL);
}
