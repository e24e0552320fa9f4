/*
 * fuzz_http.c - libFuzzer target: any bytes as what a peer sends on one connection of `immerge
 * serve`'s HTTP layer (serve/httpd.c): request lines, headers, chunked and counted bodies,
 * pipelined calls. The server must never crash, leak or read out of bounds, and must answer each
 * call it hands over or refuses with a body its caller made (JSON here).
 */
#include "serve/httpd.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char *handle(void *opaque, const imm_httpd_request *req, unsigned *status,
                    const char **type)
{
    size_t n = 0;
    (void)opaque, (void)type;
    for (size_t i = 0; i < req->nquery; i++) /* touch every byte handed over */
        n += strlen(req->query[i].key) + strlen(req->query[i].value);
    for (size_t i = 0; i < req->nheaders; i++)
        n += strlen(req->headers[i].key) + strlen(req->headers[i].value);
    n += strlen(req->method) + strlen(req->path) + (req->body_len ? (size_t)req->body[0] : 0);
    *status = n % 2 ? 200 : 400;
    return strdup("{\"Code\":\"Fuzz\"}");
}

static char *refuse(void *opaque, const char *code, const char *message)
{
    (void)opaque;
    size_t n = strlen(code) + strlen(message) + 32;
    char *json = malloc(n);
    if (json)
        snprintf(json, n, "{\"Code\":\"%s\",\"Message\":\"%s\"}", code, message);
    return json;
}

/* What the server answers is read and dropped, so that it never waits on a full socket. */
static void *drain(void *opaque)
{
    int fd = *(int *)opaque;
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    pthread_t t;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        return 0;
    int big = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    pthread_create(&t, NULL, drain, &sv[0]);
    for (size_t done = 0; done < size;) { /* it all fits: the server reads only after */
        ssize_t n = send(sv[0], data + done, size - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    shutdown(sv[0], SHUT_WR);
    imm_httpd_serve_fd(sv[1], handle, refuse, NULL);
    pthread_join(t, NULL);
    close(sv[0]);
    return 0;
}
