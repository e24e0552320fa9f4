/*
 * mp4_gapless.c - the iTunes gapless item (iTunSMPB) added to an MP4's moov.
 *
 * Apple's encoders write an AAC track's priming, end padding and length twice: in the edit list
 * and in a freeform metadata item (moov/udta/meta/ilst/----, mean "com.apple.iTunes", name
 * "iTunSMPB"), which players of the iTunes era read instead of the edit list. FFmpeg 5.1's muxer
 * writes only the edit list and has no way to write a freeform item, so the sink (sink.c) keeps
 * the moov as the muxer writes it, last in the file, and writes it again with the item added.
 * Growing the moov moves nothing else: it is the last box, and the chunk offsets point before it.
 *
 * Pure: bytes in, bytes out.
 */
#include "engine/sink/sink.h"

#include <inttypes.h>
#include <libavutil/intreadwrite.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct box {
    size_t at;   /* its header */
    size_t body; /* its payload (a full box's children start 4 bytes further) */
    size_t end;
} box;

/* The last box of type among the boxes in b[from, to): 1, 0 when there is none, -1 when a box
 * overruns what holds it. */
static int find_child(const uint8_t *b, size_t from, size_t to, const char *type, box *out)
{
    int found = 0;
    for (size_t p = from; p < to;) {
        if (to - p < 8)
            return -1;
        uint64_t size = AV_RB32(b + p);
        size_t head = 8;
        if (size == 1) {
            if (to - p < 16)
                return -1;
            size = AV_RB64(b + p + 8);
            head = 16;
        } else if (size == 0) {
            size = to - p;
        }
        if (size < head || size > to - p)
            return -1;
        if (!memcmp(b + p + 4, type, 4)) {
            *out = (box){p, p + head, p + (size_t)size};
            found = 1;
        }
        p += (size_t)size;
    }
    return found;
}

static uint8_t *put_header(uint8_t *p, size_t size, const char *type)
{
    AV_WB32(p, (uint32_t)size);
    memcpy(p + 4, type, 4);
    return p + 8;
}

/* A full box (version 0, no flags) holding a string without its terminator. */
static uint8_t *put_text_box(uint8_t *p, const char *type, const char *text)
{
    size_t n = strlen(text);
    p = put_header(p, 12 + n, type);
    AV_WB32(p, 0);
    memcpy(p + 4, text, n);
    return p + 4 + n;
}

/* The metadata handler an ilst needs in its meta, as iTunes writes it. */
#define HDLR_SIZE 33
static uint8_t *put_hdlr(uint8_t *p)
{
    p = put_header(p, HDLR_SIZE, "hdlr");
    memset(p, 0, HDLR_SIZE - 8);
    memcpy(p + 8, "mdir", 4);
    memcpy(p + 12, "appl", 4);
    return p + HDLR_SIZE - 8;
}

imm_err imm_mp4_add_gapless(const uint8_t *moov, size_t len, int64_t delay, int64_t padding,
                            int64_t samples, uint8_t **out, size_t *out_len, imm_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (delay < 0 || delay > UINT32_MAX || padding < 0 || padding > UINT32_MAX || samples < 0)
        return imm_error_set(err, IMM_EINTERNAL, "iTunSMPB: delay %" PRId64 ", padding %" PRId64
                             " or length %" PRId64 " out of range", delay, padding, samples);
    box top;
    if (len < 8 || AV_RB32(moov) != len || memcmp(moov + 4, "moov", 4))
        return imm_error_set(err, IMM_EINTERNAL, "iTunSMPB: the muxer's last box is not its moov");
    top = (box){0, 8, len};

    /* Apple's layout: a leading space before each of twelve hexadecimal fields, of which the
     * second to fourth are the priming, the end padding and the samples between them. */
    char text[160];
    snprintf(text, sizeof(text),
             " 00000000 %08" PRIX32 " %08" PRIX32 " %016" PRIX64
             " 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000",
             (uint32_t)delay, (uint32_t)padding, (uint64_t)samples);
    size_t data_size = 16 + strlen(text);
    size_t item_size = 8 + 12 + strlen("com.apple.iTunes") + 12 + strlen("iTunSMPB") + data_size;

    /* The deepest of udta, meta and ilst there is; what is missing is written around the item. */
    box ancestors[4] = {top};
    int depth = 1, r;
    static const char *const path[] = {"udta", "meta", "ilst"};
    for (; depth < 4; depth++) {
        const box *parent = &ancestors[depth - 1];
        size_t from = parent->body + (!memcmp(moov + parent->at + 4, "meta", 4) ? 4 : 0);
        if (from > parent->end)
            return imm_error_set(err, IMM_EINTERNAL, "iTunSMPB: a meta box without its header");
        if ((r = find_child(moov, from, parent->end, path[depth - 1], &ancestors[depth])) < 0)
            return imm_error_set(err, IMM_EINTERNAL, "iTunSMPB: a box of the moov overruns it");
        if (!r)
            break;
        if (ancestors[depth].body - ancestors[depth].at != 8)
            return imm_error_set(err, IMM_EINTERNAL, "iTunSMPB: a %s with a 64-bit size",
                                 path[depth - 1]);
    }
    size_t ilst_size = 8 + item_size, meta_size = 12 + HDLR_SIZE + ilst_size;
    size_t add = depth == 4 ? item_size : depth == 3 ? ilst_size
                                      : depth == 2 ? meta_size
                                                   : 8 + meta_size;
    for (int i = 0; i < depth; i++)
        if (ancestors[i].end - ancestors[i].at + add > UINT32_MAX)
            return imm_error_set(err, IMM_EINTERNAL, "iTunSMPB: the moov grows past 4 GiB");

    size_t at = ancestors[depth - 1].end;
    uint8_t *buf = malloc(len + add);
    if (!buf)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    memcpy(buf, moov, at);
    uint8_t *p = buf + at;
    if (depth < 2)
        p = put_header(p, 8 + meta_size, "udta");
    if (depth < 3) {
        p = put_header(p, meta_size, "meta");
        AV_WB32(p, 0);
        p = put_hdlr(p + 4);
    }
    if (depth < 4)
        p = put_header(p, ilst_size, "ilst");
    p = put_header(p, item_size, "----");
    p = put_text_box(p, "mean", "com.apple.iTunes");
    p = put_text_box(p, "name", "iTunSMPB");
    p = put_header(p, data_size, "data");
    AV_WB32(p, 1); /* well-known type 1: UTF-8 */
    AV_WB32(p + 4, 0); /* no locale */
    memcpy(p + 8, text, strlen(text));
    memcpy(buf + at + add, moov + at, len - at);
    for (int i = 0; i < depth; i++)
        AV_WB32(buf + ancestors[i].at, (uint32_t)(ancestors[i].end - ancestors[i].at + add));
    *out = buf;
    *out_len = len + add;
    return IMM_OK;
}
