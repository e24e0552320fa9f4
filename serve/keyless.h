/*
 * keyless.h - what `immerge serve` without keys takes: calls from programs on this host, never a
 * web page's. Without keys anything that can reach the port is trusted, and a browser on this
 * host can reach it: a page can send it calls (cross-site requests) and, by rebinding a name of
 * its own to 127.0.0.1, read the answers. Browsers mark those calls, so they are refused by the
 * marks: a Host that is not the server's address, an Origin, a Sec-Fetch-Site other than "none",
 * and a task created by GET (what a link or an image sends).
 */
#ifndef IMMERGE_SERVE_KEYLESS_H
#define IMMERGE_SERVE_KEYLESS_H

#include "serve/httpd.h"

typedef struct imm_refusal {
    unsigned status; /* HTTP */
    const char *code;
    char message[320];
} imm_refusal;

/* 0 when a keyless server takes call r (changes_state: the action creates something), else
 * non-zero with *why filled. */
int imm_keyless_refuses(const imm_httpd_request *r, int changes_state, imm_refusal *why);

#endif
