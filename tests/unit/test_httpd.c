/* Unit tests of serve's HTTP/1.1 layer (serve/httpd.c) through imm_httpd_serve_fd on one end of
 * a socket pair: what a handler is given (method, decoded path and query, headers, body, Host),
 * what goes back (status line, Content-Type, Content-Length), pipelined calls answered in order,
 * a chunked body joined, and what the layer refuses itself going through the refusal function. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve/httpd.h"

/* What the handler saw of the last call, and how many calls it had. */
typedef struct seen {
    int calls;
    char method[16], path[256], host[128], body[256], query[512], header[128];
    size_t body_len;
} seen;

static char *handle(void *opaque, const imm_httpd_request *req, unsigned *status,
                    const char **type)
{
    seen *s = opaque;
    s->calls++;
    snprintf(s->method, sizeof(s->method), "%s", req->method);
    snprintf(s->path, sizeof(s->path), "%s", req->path);
    snprintf(s->host, sizeof(s->host), "%s", req->host ? req->host : "(none)");
    snprintf(s->body, sizeof(s->body), "%s", req->body ? req->body : "");
    s->body_len = req->body_len;
    s->query[0] = '\0';
    for (size_t i = 0; i < req->nquery; i++)
        snprintf(s->query + strlen(s->query), sizeof(s->query) - strlen(s->query), "%s[%s]=[%s]",
                 i ? "," : "", req->query[i].key, req->query[i].value ? req->query[i].value : "");
    const char *h = imm_kv_find(req->headers, req->nheaders, "x-test", 1);
    snprintf(s->header, sizeof(s->header), "%s", h ? h : "(none)");
    if (!strcmp(req->path, "/metrics"))
        *type = "text/plain; version=0.0.4";
    *status = !strcmp(req->path, "/missing") ? 404 : 200;
    char *body = malloc(64);
    snprintf(body, 64, "{\"n\":%d}", s->calls);
    return body;
}

static char *refuse(void *opaque, const char *code, const char *message)
{
    (void)opaque;
    char *body = malloc(strlen(code) + strlen(message) + 32);
    sprintf(body, "{\"Code\":\"%s\",\"Message\":\"%s\"}", code, message);
    return body;
}

/* Sends raw, serves the connection until the client's end is shut, returns all that came back. */
static char *exchange(const char *raw, seen *s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    size_t n = strlen(raw);
    assert_int_equal(write(sv[0], raw, n), (ssize_t)n);
    shutdown(sv[0], SHUT_WR);
    imm_httpd_serve_fd(sv[1], handle, refuse, s); /* closes sv[1] */
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    ssize_t got;
    while ((got = read(sv[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)got;
    out[len] = '\0';
    close(sv[0]);
    return out;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void a_call_reaches_the_handler_decoded(void **state)
{
    (void)state;
    seen s = {0};
    char *out = exchange("GET /a%20b?Action=GetTask&Name=x+y%2Bz&Empty=&Flag HTTP/1.1\r\n"
                         "Host: 127.0.0.1:9000\r\nX-Test:  spaced \r\nConnection: close\r\n\r\n",
                         &s);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.method, "GET");
    assert_string_equal(s.path, "/a b");
    assert_string_equal(s.query, "[Action]=[GetTask],[Name]=[x y+z],[Empty]=[],[Flag]=[]");
    assert_string_equal(s.host, "127.0.0.1:9000");
    assert_string_equal(s.header, "spaced");
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "Content-Type: application/json"));
    assert_non_null(strstr(out, "Content-Length: 7\r\n"));
    assert_non_null(strstr(out, "\r\n\r\n{\"n\":1}"));
    free(out);
}

static void bodies_by_length_and_by_chunks(void **state)
{
    (void)state;
    seen s = {0};
    char *out = exchange("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
                         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
                         &s);
    assert_int_equal(s.calls, 2); /* pipelined: both answered, in order */
    assert_string_equal(s.body, "hello world");
    assert_int_equal(s.body_len, 11);
    assert_int_equal(count(out, "HTTP/1.1 200 OK"), 2);
    const char *first = strstr(out, "{\"n\":1}"), *second = strstr(out, "{\"n\":2}");
    assert_non_null(first);
    assert_non_null(second);
    assert_true(first < second);
    free(out);
}

static void the_handler_chooses_status_and_type(void **state)
{
    (void)state;
    seen s = {0};
    char *out = exchange("GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n"
                         "GET /missing HTTP/1.0\r\nHost: h\r\n\r\n",
                         &s);
    assert_non_null(strstr(out, "Content-Type: text/plain; version=0.0.4\r\n"));
    assert_non_null(strstr(out, "HTTP/1.1 404 Not Found\r\n"));
    assert_int_equal(s.calls, 2);
    free(out);
}

static void what_is_not_a_call_is_refused_in_the_service_shape(void **state)
{
    (void)state;
    static const struct {
        const char *raw, *status, *code;
    } cases[] = {
        {"NOT HTTP AT ALL\r\n\r\n", "400", "MalformedRequest"},
        {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", "505", "HttpVersionNotSupported"},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", "400", "MalformedRequest"},
        {"GET /?a=%00 HTTP/1.1\r\nHost: h\r\n\r\n", "400", "MalformedRequest"},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400", "MalformedRequest"},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n", "413",
         "RequestTooLarge"},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400",
         "MalformedRequest"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        seen s = {0};
        char *out = exchange(cases[i].raw, &s);
        char line[64], code[64];
        snprintf(line, sizeof(line), "HTTP/1.1 %s ", cases[i].status);
        snprintf(code, sizeof(code), "\"Code\":\"%s\"", cases[i].code);
        if (!strstr(out, line) || !strstr(out, code))
            fail_msg("case %zu: want %s %s, got: %.200s", i, cases[i].status, cases[i].code, out);
        assert_int_equal(s.calls, 0);
        assert_non_null(strstr(out, "Content-Type: application/json"));
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_call_reaches_the_handler_decoded),
        cmocka_unit_test(bodies_by_length_and_by_chunks),
        cmocka_unit_test(the_handler_chooses_status_and_type),
        cmocka_unit_test(what_is_not_a_call_is_refused_in_the_service_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
