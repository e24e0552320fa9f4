/*
 * uri.c - the one place that decides what a source or target URI names.
 *
 * Every storage implementation maps keys through imm_uri_parse, so the rule that a key cannot walk
 * out of its bucket is enforced once, lexically, before any storage is touched.
 */
#include "engine/request/request.h"

#include <string.h>

static int bucket_ok(const char *b, size_t n)
{
    if (n < 3 || n > 63 || b[0] == '-' || b[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = b[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'))
            return 0;
        if (ch == '.' && i + 1 < n && b[i + 1] == '.')
            return 0;
    }
    return 1;
}

static int key_ok(const char *k)
{
    if (!*k || strlen(k) > 1023)
        return 0;
    for (const char *seg = k;;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return 0;
        if (memchr(seg, '\\', n))
            return 0;
        if (!end)
            return 1;
        seg = end + 1;
    }
}

imm_err imm_uri_parse(const char *uri, imm_uri *out, imm_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!uri || !*uri)
        return imm_error_set(err, IMM_EARG, "The URI is empty.");
    if (!strncmp(uri, "oss://", 6)) {
        const char *b = uri + 6, *slash = strchr(b, '/');
        size_t bn = slash ? (size_t)(slash - b) : strlen(b);
        if (!bucket_ok(b, bn))
            return imm_error_set(err, IMM_EARG,
                                 "The URI %s does not name a valid bucket (3-63 of a-z 0-9 - .).",
                                 uri);
        if (!slash || !key_ok(slash + 1))
            return imm_error_set(err, IMM_EARG,
                                 "The URI %s does not name a valid object: a key cannot be empty, "
                                 "contain empty, '.' or '..' segments, or exceed 1023 bytes.", uri);
        out->is_oss = 1;
        memcpy(out->bucket, b, bn);
        out->key = slash + 1;
        return IMM_OK;
    }
    if (!strncmp(uri, "file://", 7)) {
        if (uri[7] != '/')
            return imm_error_set(err, IMM_EARG, "The URI %s must be file:///absolute/path.", uri);
        out->path = uri + 7;
        return IMM_OK;
    }
    if (strstr(uri, "://"))
        return imm_error_set(err, IMM_EARG,
                             "The URI %s has a scheme this engine does not read (oss://, file://).",
                             uri);
    out->path = uri;
    return IMM_OK;
}
