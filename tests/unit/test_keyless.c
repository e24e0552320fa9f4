/* Unit tests of what a keyless server refuses (serve/keyless.c): the marks of a web page's
 * call, judged on calls built here as httpd.c hands them over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <string.h>

#include "serve/keyless.h"

/* A call that arrived at 127.0.0.1:8080 naming host, with up to two more headers. */
static imm_httpd_request call(const char *method, const char *host, const imm_kv *extra, size_t n)
{
    static imm_kv headers[3];
    imm_httpd_request r = {.method = method, .path = "/", .host = host, .headers = headers};
    r.local.sin_family = AF_INET;
    r.local.sin_port = htons(8080);
    inet_pton(AF_INET, "127.0.0.1", &r.local.sin_addr);
    for (size_t i = 0; i < n; i++)
        headers[r.nheaders++] = extra[i];
    return r;
}

static void this_hosts_names_are_taken(void **state)
{
    (void)state;
    imm_refusal why;
    const char *hosts[] = {"127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"};
    for (size_t i = 0; i < 3; i++) {
        imm_httpd_request r = call("POST", hosts[i], NULL, 0);
        assert_int_equal(imm_keyless_refuses(&r, 1, &why), 0);
    }
    imm_kv none = {"Sec-Fetch-Site", "none"}; /* typed by the user, not sent by a page */
    imm_httpd_request r = call("GET", "127.0.0.1:8080", &none, 1);
    assert_int_equal(imm_keyless_refuses(&r, 0, &why), 0);
}

static void other_names_are_refused(void **state)
{
    (void)state;
    imm_refusal why;
    const char *hosts[] = {"attacker.example:8080", "127.0.0.1:8081", "127.0.0.1", "127.0.0.2:8080",
                           "localhost.attacker.example:8080", "127.0.0.1:8080x", "localhost",
                           "127.0.0.1:", NULL};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(*hosts); i++) {
        imm_httpd_request r = call("POST", hosts[i], NULL, 0);
        assert_int_not_equal(imm_keyless_refuses(&r, 0, &why), 0);
        assert_int_equal(why.status, 403);
        assert_string_equal(why.code, "Forbidden");
        assert_non_null(strstr(why.message, "Host"));
    }
    /* An address that is not known (not an IPv4 socket) names nothing. */
    imm_httpd_request r = call("POST", "127.0.0.1:8080", NULL, 0);
    memset(&r.local, 0, sizeof(r.local));
    assert_int_not_equal(imm_keyless_refuses(&r, 0, &why), 0);
}

static void port_80_may_be_left_out(void **state)
{
    (void)state;
    imm_refusal why;
    imm_httpd_request r = call("POST", "127.0.0.1", NULL, 0);
    r.local.sin_port = htons(80);
    assert_int_equal(imm_keyless_refuses(&r, 0, &why), 0);
}

static void a_pages_marks_are_refused(void **state)
{
    (void)state;
    imm_refusal why;
    const imm_kv marks[] = {{"Origin", "http://attacker.example"}, {"origin", "null"},
                            {"Sec-Fetch-Site", "cross-site"}, {"Sec-Fetch-Site", "same-site"},
                            {"sec-fetch-site", "same-origin"}};
    for (size_t i = 0; i < sizeof(marks) / sizeof(*marks); i++) {
        imm_httpd_request r = call("POST", "127.0.0.1:8080", &marks[i], 1);
        assert_int_not_equal(imm_keyless_refuses(&r, 0, &why), 0);
        assert_int_equal(why.status, 403);
        assert_non_null(strcasestr(why.message, marks[i].key));
    }
}

static void nothing_is_created_by_get(void **state)
{
    (void)state;
    imm_refusal why;
    imm_httpd_request r = call("GET", "127.0.0.1:8080", NULL, 0);
    assert_int_not_equal(imm_keyless_refuses(&r, 1, &why), 0);
    assert_int_equal(why.status, 405);
    assert_string_equal(why.code, "MethodNotAllowed");
    assert_int_equal(imm_keyless_refuses(&r, 0, &why), 0); /* reading by GET is fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(this_hosts_names_are_taken),
        cmocka_unit_test(other_names_are_refused),
        cmocka_unit_test(port_80_may_be_left_out),
        cmocka_unit_test(a_pages_marks_are_refused),
        cmocka_unit_test(nothing_is_created_by_get),
    };
    return cmocka_run_group_tests_name("keyless", tests, NULL, NULL);
}
