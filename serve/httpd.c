/*
 * httpd.c - the HTTP/1.1 server under `immerge serve` (httpd.h).
 *
 * Why our own: libmicrohttpd answers what it refuses by itself (a request line or headers past
 * its pool, a malformed request, a missing Host) with HTML pages it has no hook for, and a client
 * written for the service parses every answer as the service's JSON. Here each answer is the
 * caller's: its handler's, or its refusal shape for the refusals made here.
 *
 * A thread per connection, at most MAX_CONNS (past that a call is refused 503 at once). Reads and
 * writes time out after 30 s without a byte, and a call must arrive within 120 s in all (a
 * trickle cannot hold a thread for ever). Connections persist (HTTP/1.1 unless "Connection: close", 1.0 only
 * with "keep-alive"), and pipelined calls are answered in order. A call's head may take up to
 * IMM_HTTP_MAX_HEAD, and all connections together hold at most HEAD_BUDGET of heads, so memory
 * stays bounded however many large calls come at once. Bodies come with Content-Length or
 * chunked, up to IMM_HTTP_MAX_BODY; "Expect: 100-continue" is answered before the body is read.
 */
#include "serve/httpd.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define HEAD_BUDGET (64u << 20)
#define IO_TIMEOUT 30 /* seconds without a byte, either way */
#define CALL_TIME 120 /* seconds a call's head and body may take to arrive in all */
#define MAX_LINE 4096 /* a chunk-size line or a trailer */

typedef struct conn conn;

struct imm_httpd {
    int fd;
    int port;
    imm_httpd_handler handle;
    imm_httpd_refusal refuse;
    void *opaque;
    pthread_t acceptor;
    pthread_mutex_t lock;
    pthread_cond_t gone; /* a connection has closed */
    conn *conns;         /* open ones */
    int nconns;
    int stopping;
    size_t held;         /* bytes of heads the connections hold */
};

struct conn {
    imm_httpd *d;
    int fd;
    int busy;            /* answering a call: stopping lets it finish */
    conn *next, *prev;
    char *buf;           /* read and not yet taken */
    size_t len, cap;
    double deadline;     /* the call being read must have arrived by then (monotonic s) */
    struct sockaddr_in local; /* the address the peer connected to */
};

/* ---- reading ---------------------------------------------------------------------------------- */

/* Makes room for `more` bytes, up to `limit` held in all; 0, or -1 past the limit or the budget
 * (*budget set for the latter). */
static int room(conn *c, size_t more, size_t limit, int *budget)
{
    *budget = 0;
    if (c->len + more <= c->cap)
        return 0;
    if (c->len + more > limit)
        return -1;
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + more)
        cap *= 2;
    cap = cap > limit ? limit : cap;
    pthread_mutex_lock(&c->d->lock);
    int ok = c->d->held + (cap - c->cap) <= HEAD_BUDGET;
    if (ok)
        c->d->held += cap - c->cap;
    pthread_mutex_unlock(&c->d->lock);
    char *grown = ok ? realloc(c->buf, cap) : NULL;
    if (!grown) {
        if (ok) {
            pthread_mutex_lock(&c->d->lock);
            c->d->held -= cap - c->cap;
            pthread_mutex_unlock(&c->d->lock);
        }
        *budget = 1;
        return -1;
    }
    c->buf = grown;
    c->cap = cap;
    return 0;
}

/* Gives the buffer back once a call is answered (a large head's memory is not kept). */
static void shrink(conn *c)
{
    if (c->cap <= 65536 || c->len > 4096)
        return;
    char *small = malloc(4096);
    if (!small)
        return;
    memcpy(small, c->buf, c->len);
    free(c->buf);
    pthread_mutex_lock(&c->d->lock);
    c->d->held -= c->cap - 4096;
    pthread_mutex_unlock(&c->d->lock);
    c->buf = small;
    c->cap = 4096;
}

static int late(const conn *c)
{
    return imm_clock_seconds(IMM_CLOCK_MONOTONIC) > c->deadline;
}

/* Reads what the peer has sent into the buffer: bytes read, 0 when it closed, -1 on an error,
 * the timeout, or a call that trickles in past its deadline. */
static ssize_t fill(conn *c)
{
    if (late(c))
        return -1;
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0)
            c->len += (size_t)n;
        return n;
    }
}

/* Takes the first n bytes of the buffer. */
static void consume(conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Reads exactly n bytes of body into out (the buffer's first). 0, or -1. */
static int take(conn *c, char *out, size_t n)
{
    size_t have = c->len < n ? c->len : n;
    memcpy(out, c->buf, have);
    consume(c, have);
    while (have < n) {
        if (late(c))
            return -1;
        ssize_t got = recv(c->fd, out + have, n - have, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        have += (size_t)got;
    }
    return 0;
}

/* The end of the line at the start of the buffer (its length with CRLF or LF), reading as needed;
 * 0 on EOF, an error or a line over MAX_LINE. */
static size_t line(conn *c)
{
    int budget;
    for (size_t scan = 0;;) {
        char *nl = memchr(c->buf + scan, '\n', c->len - scan);
        if (nl)
            return (size_t)(nl - c->buf) + 1;
        scan = c->len;
        if (c->len >= MAX_LINE || room(c, MAX_LINE, IMM_HTTP_MAX_HEAD, &budget) || fill(c) <= 0)
            return 0;
    }
}

/* ---- writing ---------------------------------------------------------------------------------- */

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static const char *reason(unsigned status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

/* Sends an answer with its body (taken; JSON unless type says otherwise); 0, or -1 when the
 * peer is gone. */
static int answer(conn *c, unsigned status, char *json, const char *type, int keep,
                  int head_only)
{
    char head[512], date[64];
    const char *body = json ? json : "{}";
    size_t len = strlen(body);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %u %s\r\nDate: %s\r\n"
                     "Content-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: %s\r\n\r\n", status, reason(status), date,
                     type ? type : "application/json;charset=utf-8", len,
                     keep ? "keep-alive" : "close");
    int e = send_all(c->fd, head, (size_t)n);
    if (!e && !head_only)
        e = send_all(c->fd, body, len);
    free(json);
    return e;
}

/* Refuses a call the server cannot hand over, in the caller's error shape, and ends the
 * connection. What the peer is still sending is read for a second and dropped first: closing on
 * unread data would reset the connection, and the peer could lose the answer. */
static void refuse(conn *c, unsigned status, const char *code, const char *message)
{
    char sink[16384];
    struct timeval tv = {1, 0};
    if (answer(c, status, c->d->refuse(c->d->opaque, code, message), NULL, 0, 0))
        return;
    shutdown(c->fd, SHUT_WR);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (size_t left = IMM_HTTP_MAX_HEAD; left;) {
        ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        left = (size_t)n < left ? left - (size_t)n : 0;
    }
}

/* ---- parsing ---------------------------------------------------------------------------------- */

static int hex(int ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
         : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* %XX escapes in place (and '+' as a space when `plus`); -1 when one is a NUL byte. */
static int decode(char *s, int plus)
{
    char *out = s;
    for (; *s; s++) {
        int hi, lo;
        if (*s == '%' && (hi = hex(s[1])) >= 0 && (lo = hex(s[2])) >= 0) {
            if (!(*out++ = (char)(hi * 16 + lo)))
                return -1;
            s += 2;
        } else {
            *out++ = plus && *s == '+' ? ' ' : *s;
        }
    }
    *out = '\0';
    return 0;
}

int imm_httpd_form_decode(char *s)
{
    return decode(s, 1);
}

static int is_tchar(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

/* One call's head, parsed in its own copy (the buffer moves while the body is read). */
typedef struct head {
    char *text;
    char *method, *target, *version;
    imm_kv *headers, *query;
    size_t nheaders, nquery;
    int minor;           /* HTTP/1.minor */
    char *authority;     /* an absolute-form target's host[:port] */
} head;

static void head_free(head *h)
{
    free(h->text);
    free(h->authority);
    free(h->headers);
    free(h->query);
}

static const char *header(const head *h, const char *name)
{
    return imm_kv_find(h->headers, h->nheaders, name, 1);
}

/* Does a comma-separated header value list `token`? */
static int lists(const char *value, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = value; p && *p;) {
        p += strspn(p, " \t,");
        if (!strncasecmp(p, token, n) && strchr(" \t,", p[n]))
            return 1;
        p = strchr(p, ',');
    }
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

/* The query's parameters, decoded. -1 when one holds a NUL byte. */
static int parse_query(head *h, char *query)
{
    size_t n = 1;
    for (const char *p = query; *p; p++)
        n += *p == '&';
    if (!(h->query = calloc(n, sizeof(*h->query))))
        return -1;
    char *save = NULL;
    for (char *pair = strtok_r(query, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(pair, '=');
        if (eq)
            *eq++ = '\0';
        if (decode(pair, 1) || (eq && decode(eq, 1)))
            return -1;
        h->query[h->nquery++] = (imm_kv){pair, eq ? eq : ""};
    }
    return 0;
}

/* Parses text (the head, NUL-terminated, without its blank line). Returns 0, or the status to
 * refuse it with, *why saying what is wrong. */
static unsigned parse_head(head *h, const char **why)
{
    char *save = NULL, *l = strtok_r(h->text, "\n", &save);
    char *sp1 = l ? strchr(l, ' ') : NULL, *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    *why = "The request line is not METHOD TARGET HTTP-VERSION.";
    if (!sp2)
        return 400;
    *sp1 = *sp2 = '\0';
    h->method = l;
    h->target = sp1 + 1;
    h->version = trim(sp2 + 1);
    if (!is_token(h->method) || !*h->target || strchr(h->target, ' '))
        return 400;
    if (strncmp(h->version, "HTTP/", 5) || strlen(h->version) != 8 || h->version[6] != '.')
        return 400;
    *why = "This server speaks HTTP/1.0 and HTTP/1.1.";
    if (h->version[5] != '1' || (h->version[7] != '0' && h->version[7] != '1'))
        return 505;
    h->minor = h->version[7] - '0';
    size_t n = 0;
    for (const char *p = save; p && *p; p++)
        n += *p == '\n';
    if (!(h->headers = calloc(n + 1, sizeof(*h->headers))))
        return 503;
    *why = "A header line is not NAME: VALUE.";
    while ((l = strtok_r(NULL, "\n", &save))) {
        char *colon = strchr(l, ':');
        if (!colon)
            return *trim(l) ? 400 : 0; /* the blank line ends it */
        *colon = '\0';
        if (!is_token(l)) /* no space before the colon, no folded line */
            return 400;
        h->headers[h->nheaders++] = (imm_kv){l, trim(colon + 1)};
    }
    return 0;
}

/* The target's path and query: origin-form (/path?query) or absolute-form (http://host/path?query,
 * where the path may be left out). */
static unsigned split_target(head *h, const char **path, const char **why)
{
    char *t = h->target;
    int rooted = 1;
    if (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8)) {
        t = strstr(t, "//") + 2;
        size_t n = strcspn(t, "/?#");
        *why = "out of memory";
        if (!(h->authority = strndup(t, n)))
            return 503;
        t += n;
        rooted = *t == '/';
    }
    *why = "The request target is not a path.";
    if (rooted && *t != '/')
        return 400;
    char *q = strchr(t, '?');
    if (q)
        *q++ = '\0';
    char *hash = strchr(q ? q : t, '#');
    if (hash)
        *hash = '\0';
    *why = "The path or a parameter of the query holds a NUL byte (%00).";
    if ((rooted && decode(t, 0)) || (q && parse_query(h, q)))
        return 400;
    *path = rooted ? t : "/";
    return 0;
}

/* The authority the call names (see imm_httpd_request.host): 0, or 400 for a Host missing from an
 * HTTP/1.1 call, or given more than once (RFC 9112, 3.2: two could name two hosts to two
 * readers). */
static unsigned call_host(const head *h, const char **host, const char **why)
{
    size_t n = 0;
    *host = h->authority;
    for (size_t i = 0; i < h->nheaders; i++)
        if (!strcasecmp(h->headers[i].key, "Host") && n++ == 0 && !h->authority)
            *host = h->headers[i].value;
    *why = n > 1 ? "The call carries Host more than once." : "An HTTP/1.1 call must carry Host.";
    return n > 1 || (h->minor == 1 && !n) ? 400 : 0;
}

/* ---- one call --------------------------------------------------------------------------------- */

/* Reads the next call's head into h. 1 with a head, 0 when the connection is to close (the peer
 * closed, the server stops, or the call was refused). */
static int read_head(conn *c, head *h)
{
    size_t scan = 0;
    int budget;
    c->deadline = imm_clock_seconds(IMM_CLOCK_MONOTONIC) + CALL_TIME;
    for (;;) {
        char *end = NULL;
        /* Blank lines before a request line are allowed (RFC 9112, 2.2). */
        for (; c->len && (c->buf[0] == '\r' || c->buf[0] == '\n'); scan = 0)
            consume(c, 1);
        for (char *p = c->buf + scan; (p = memchr(p, '\n', c->len - (size_t)(p - c->buf)));) {
            /* a blank line: "\n\n" or "\n\r\n" */
            if (p + 1 < c->buf + c->len && p[1] == '\n') {
                end = p + 2;
                break;
            }
            if (p + 2 < c->buf + c->len && p[1] == '\r' && p[2] == '\n') {
                end = p + 3;
                break;
            }
            p++;
        }
        if (end) {
            size_t n = (size_t)(end - c->buf);
            if (!(h->text = malloc(n + 1)))
                return 0;
            memcpy(h->text, c->buf, n);
            h->text[n] = '\0';
            consume(c, n);
            return 1;
        }
        scan = c->len > 2 ? c->len - 2 : 0;
        if (room(c, 65536, IMM_HTTP_MAX_HEAD, &budget)) {
            if (budget)
                refuse(c, 503, "ServiceUnavailable", "Too many large calls at once; try again.");
            else if (!memchr(c->buf, '\n', c->len))
                refuse(c, 414, "RequestLineTooLong", "The request line is over 8 MiB.");
            else
                refuse(c, 431, "RequestHeaderFieldsTooLarge",
                       "The request line and headers are over 8 MiB.");
            return 0;
        }
        if (fill(c) <= 0)
            return 0;
    }
}

/* A chunked body into *body; 0, or the status to refuse it with. */
static unsigned read_chunked(conn *c, char **body, size_t *len)
{
    size_t n;
    for (;;) {
        if (!(n = line(c)))
            return 400;
        char *end;
        unsigned long long size = strtoull(c->buf, &end, 16);
        if (end == c->buf || !strchr(";\r\n \t", *end))
            return 400;
        consume(c, n);
        if (size == 0)
            break;
        if (size > IMM_HTTP_MAX_BODY - *len)
            return 413;
        char *grown = realloc(*body, *len + (size_t)size + 1);
        if (!grown)
            return 503;
        *body = grown;
        if (take(c, *body + *len, (size_t)size))
            return 400;
        *len += (size_t)size;
        if (!(n = line(c)) || n > 2)
            return 400; /* the CRLF after the data */
        consume(c, n);
    }
    while ((n = line(c)) > 2) /* trailers: read and left */
        consume(c, n);
    if (!n)
        return 400;
    consume(c, n);
    return 0;
}

/* The call's body into *body (NUL-terminated); 0, or the status to refuse it with. */
static unsigned read_body(conn *c, const head *h, char **body, size_t *len, const char **why)
{
    const char *te = header(h, "Transfer-Encoding"), *cl = header(h, "Content-Length");
    const char *expect = header(h, "Expect");
    unsigned long long size = 0;
    *why = "The request body is over 1 MiB.";
    if (te) {
        *why = "Only the chunked transfer coding is supported, and not with Content-Length.";
        if (strcasecmp(te, "chunked") || cl)
            return strcasecmp(te, "chunked") ? 501 : 400;
    } else if (cl) {
        char *end;
        size = strtoull(cl, &end, 10);
        *why = "Content-Length is not a number.";
        if (end == cl || *end || *cl == '-')
            return 400;
        *why = "The request body is over 1 MiB.";
        if (size > IMM_HTTP_MAX_BODY)
            return 413;
    }
    if (expect && !strcasecmp(expect, "100-continue") && h->minor == 1 && (te || size) &&
        send_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25))
        return 400;
    if (!(*body = malloc((size_t)size + 1)))
        return 503;
    *why = "The request body ended early or is malformed.";
    unsigned status = te ? read_chunked(c, body, len)
                         : take(c, *body, (size_t)size) ? 400 : (*len = (size_t)size, 0);
    if (status == 413)
        *why = "The request body is over 1 MiB.";
    if (!status)
        (*body)[*len] = '\0';
    return status;
}

/* Answers one call whose head is read; returns whether the connection stays open. */
static int serve_call(conn *c, head *h)
{
    const char *why = NULL, *path = NULL, *host = NULL;
    char *body = NULL;
    size_t len = 0;
    unsigned status = parse_head(h, &why);
    if (!status)
        status = split_target(h, &path, &why);
    if (!status)
        status = call_host(h, &host, &why);
    if (!status)
        status = read_body(c, h, &body, &len, &why);
    if (status) {
        static const struct { unsigned status; const char *code; } codes[] = {
            {413, "RequestTooLarge"}, {501, "NotImplemented"}, {503, "ServiceUnavailable"},
            {505, "HttpVersionNotSupported"}};
        const char *code = "MalformedRequest";
        for (size_t i = 0; i < sizeof(codes) / sizeof(*codes); i++)
            if (codes[i].status == status)
                code = codes[i].code;
        refuse(c, status, code, why);
        free(body);
        return 0;
    }
    const char *connection = header(h, "Connection");
    int keep = h->minor == 1 ? !(connection && lists(connection, "close"))
                             : connection && lists(connection, "keep-alive");
    imm_httpd_request req = {.method = h->method, .path = path, .query = h->query,
                            .nquery = h->nquery, .headers = h->headers, .nheaders = h->nheaders,
                            .body = body, .body_len = len, .host = host, .local = c->local};
    unsigned answered = 200;
    const char *type = NULL;
    char *json = c->d->handle(c->d->opaque, &req, &answered, &type);
    int sent = answer(c, answered, json, type, keep, !strcmp(h->method, "HEAD"));
    free(body);
    return keep && !sent;
}

/* ---- connections ------------------------------------------------------------------------------ */

static void close_conn(conn *c)
{
    imm_httpd *d = c->d;
    pthread_mutex_lock(&d->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    d->nconns--;
    d->held -= c->cap;
    pthread_cond_broadcast(&d->gone);
    pthread_mutex_unlock(&d->lock);
    close(c->fd);
    free(c->buf);
    free(c);
}

/* Marks the connection busy unless the server stops; returns whether it may go on. */
static int set_busy(conn *c, int busy)
{
    pthread_mutex_lock(&c->d->lock);
    int stopping = c->d->stopping;
    c->busy = busy && !stopping;
    pthread_mutex_unlock(&c->d->lock);
    return !stopping;
}

static void *connection(void *opaque)
{
    conn *c = opaque;
    int budget;
    socklen_t alen = sizeof(c->local);
    if (getsockname(c->fd, (struct sockaddr *)&c->local, &alen) || alen != sizeof(c->local) ||
        c->local.sin_family != AF_INET)
        memset(&c->local, 0, sizeof(c->local));
    if (room(c, 4096, IMM_HTTP_MAX_HEAD, &budget)) { /* the buffer is never NULL from here */
        refuse(c, 503, "ServiceUnavailable", "Too many large calls at once; try again.");
        close_conn(c);
        return NULL;
    }
    for (;;) {
        head h = {0};
        int open = read_head(c, &h) && set_busy(c, 1);
        if (open)
            open = serve_call(c, &h);
        head_free(&h);
        shrink(c);
        if (!set_busy(c, 0) || !open)
            break;
    }
    close_conn(c);
    return NULL;
}

static void *acceptor(void *opaque)
{
    imm_httpd *d = opaque;
    struct timeval tv = {IO_TIMEOUT, 0};
    for (;;) {
        int fd = accept(d->fd, NULL, NULL);
        if (fd < 0) {
            int why = errno;
            pthread_mutex_lock(&d->lock);
            int stopping = d->stopping;
            pthread_mutex_unlock(&d->lock);
            if (stopping)
                return NULL; /* the listening socket was shut down */
            if (why != EINTR && why != ECONNABORTED)
                usleep(10 * 1000); /* out of descriptors, say: let some close */
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        conn *c = calloc(1, sizeof(*c));
        pthread_mutex_lock(&d->lock);
        int full = d->nconns >= MAX_CONNS || d->stopping || !c;
        if (!full) {
            c->d = d;
            c->fd = fd;
            c->next = d->conns;
            if (d->conns)
                d->conns->prev = c;
            d->conns = c;
            d->nconns++;
        }
        pthread_mutex_unlock(&d->lock);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (!full && pthread_create(&t, &attr, connection, c)) {
            c->fd = -1;
            close_conn(c);
            full = 1;
            c = NULL;
        }
        pthread_attr_destroy(&attr);
        if (full) {
            conn refused = {.d = d, .fd = fd};
            refuse(&refused, 503, "ServiceUnavailable", "Too many connections; try again.");
            close(fd);
            free(c);
        }
    }
}

imm_err imm_httpd_start(const struct sockaddr_in *addr, imm_httpd_handler handle,
                        imm_httpd_refusal refuse_shape, void *opaque, imm_httpd **out,
                        imm_error *err)
{
    imm_httpd *d = calloc(1, sizeof(*d));
    int one = 1;
    struct sockaddr_in bound;
    socklen_t blen = sizeof(bound);
    if (!d)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    *d = (imm_httpd){.handle = handle, .refuse = refuse_shape, .opaque = opaque};
    d->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (d->fd < 0 || setsockopt(d->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(d->fd, (const struct sockaddr *)addr, sizeof(*addr)) || listen(d->fd, 128) ||
        getsockname(d->fd, (struct sockaddr *)&bound, &blen)) {
        int why = errno;
        if (d->fd >= 0)
            close(d->fd);
        free(d);
        return imm_error_set(err, IMM_EIO, "Cannot listen: %s.", strerror(why));
    }
    d->port = ntohs(bound.sin_port);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->gone, NULL);
    if (pthread_create(&d->acceptor, NULL, acceptor, d)) {
        close(d->fd);
        pthread_mutex_destroy(&d->lock);
        pthread_cond_destroy(&d->gone);
        free(d);
        return imm_error_set(err, IMM_EINTERNAL, "Cannot start a thread.");
    }
    *out = d;
    return IMM_OK;
}

void imm_httpd_serve_fd(int fd, imm_httpd_handler handle, imm_httpd_refusal refuse_shape,
                        void *opaque)
{
    imm_httpd d = {.fd = -1, .handle = handle, .refuse = refuse_shape, .opaque = opaque};
    conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    *c = (conn){.d = &d, .fd = fd};
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.gone, NULL);
    d.conns = c;
    d.nconns = 1;
    connection(c);
    pthread_mutex_destroy(&d.lock);
    pthread_cond_destroy(&d.gone);
}

int imm_httpd_port(const imm_httpd *d)
{
    return d->port;
}

void imm_httpd_stop(imm_httpd *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->stopping = 1;
    pthread_mutex_unlock(&d->lock);
    shutdown(d->fd, SHUT_RDWR); /* wakes accept() */
    pthread_join(d->acceptor, NULL);
    close(d->fd);
    pthread_mutex_lock(&d->lock);
    for (;;) {
        /* Connections waiting for a call are woken and close; a call being answered finishes. */
        for (conn *c = d->conns; c; c = c->next)
            if (!c->busy)
                shutdown(c->fd, SHUT_RDWR);
        if (!d->nconns)
            break;
        pthread_cond_wait(&d->gone, &d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->gone);
    free(d);
}
