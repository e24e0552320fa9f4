/*
 * keyless.c - the marks of a web page's call, refused by a server without keys (keyless.h).
 *
 * The Host rule is the one Docker's and Jupyter's local servers use against DNS rebinding: a page
 * that rebinds its own name to 127.0.0.1 reaches the port, but its calls still carry its name.
 * Only the address the call arrived at (as a literal) and "localhost", which browsers never
 * resolve through DNS, name this server.
 */
#include "serve/keyless.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOW_TO_OPEN "a server without keys answers programs on this host only (start it with " \
                    "--access-key-id and --access-key-secret to take calls from elsewhere)"

__attribute__((format(printf, 4, 5))) static int refuse(imm_refusal *why, unsigned status,
                                                        const char *code, const char *fmt, ...)
{
    va_list ap;
    why->status = status;
    why->code = code;
    va_start(ap, fmt);
    vsnprintf(why->message, sizeof(why->message), fmt, ap);
    va_end(ap);
    return 1;
}

/* Whether host ("NAME[:PORT]") names the address local. */
static int names_local(const char *host, const struct sockaddr_in *local)
{
    char ip[INET_ADDRSTRLEN];
    if (local->sin_family != AF_INET || !inet_ntop(AF_INET, &local->sin_addr, ip, sizeof(ip)))
        return 0;
    const char *colon = strchr(host, ':');
    size_t n = colon ? (size_t)(colon - host) : strlen(host);
    int port = ntohs(local->sin_port);
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || *end || p != port)
            return 0;
    } else if (port != 80) {
        return 0;
    }
    int loopback = (ntohl(local->sin_addr.s_addr) >> 24) == 127;
    return (n == strlen(ip) && !strncmp(host, ip, n)) ||
           (loopback && n == 9 && !strncasecmp(host, "localhost", 9));
}

int imm_keyless_refuses(const imm_httpd_request *r, int changes_state, imm_refusal *why)
{
    const char *origin = imm_kv_find(r->headers, r->nheaders, "Origin", 1);
    const char *site = imm_kv_find(r->headers, r->nheaders, "Sec-Fetch-Site", 1);
    if (!r->host || !names_local(r->host, &r->local))
        return refuse(why, 403, "Forbidden", "The call's Host (%.80s) does not name this server's "
                      "address: another name that leads here is a page's (DNS rebinding), and %s.",
                      r->host ? r->host : "none", HOW_TO_OPEN);
    if (origin)
        return refuse(why, 403, "Forbidden", "The call carries Origin (%.80s), as a web page's "
                      "calls do; %s.", origin, HOW_TO_OPEN);
    if (site && strcasecmp(site, "none"))
        return refuse(why, 403, "Forbidden", "The call carries Sec-Fetch-Site: %.40s, as a call "
                      "from a web page does; %s.", site, HOW_TO_OPEN);
    if (changes_state && !strcmp(r->method, "GET"))
        return refuse(why, 405, "MethodNotAllowed", "This action changes state: a server without "
                      "keys takes it by POST only, so that a link or an image on a web page "
                      "cannot send it.");
    return 0;
}
