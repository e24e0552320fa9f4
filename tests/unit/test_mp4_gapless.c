/* Unit tests of the iTunes gapless item added to a moov (engine/sink/mp4_gapless.c): where it goes in
 * each layout a muxer may leave (ilst there, only udta, nothing), that every size above it grows
 * by what was added and nothing else moves, the item's exact bytes, and refusals of a moov that
 * is not well formed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sink/sink.h"

#include <libavutil/intreadwrite.h>

/* A box of type around the payload body[0, n): written at p, returns the end. */
static uint8_t *box(uint8_t *p, const char *type, const void *body, size_t n)
{
    AV_WB32(p, (uint32_t)(8 + n));
    memcpy(p + 4, type, 4);
    memcpy(p + 8, body, n);
    return p + 8 + n;
}

static size_t put(uint8_t *buf, uint8_t *end)
{
    return (size_t)(end - buf);
}

/* The one box of type at path below b[from, to); its payload start and end, or 0. */
static size_t find(const uint8_t *b, size_t from, size_t to, const char *const *path,
                   size_t *end)
{
    for (size_t p = from; p + 8 <= to; p += AV_RB32(b + p))
        if (!memcmp(b + p + 4, *path, 4)) {
            size_t body = p + 8 + (!strcmp(*path, "meta") ? 4 : 0);
            *end = p + AV_RB32(b + p);
            return path[1] ? find(b, body, *end, path + 1, end) : p + 8;
        }
    return 0;
}

static const char smpb[] = " 00000000 00000400 000003B1 000000000000AC4F 00000000 00000000 "
                           "00000000 00000000 00000000 00000000 00000000 00000000";

/* out holds a ----/mean/name/data item at moov/udta/meta/ilst saying smpb, and every box from
 * moov down to it ends where its parent does or before. */
static void expect_item(const uint8_t *out, size_t len)
{
    assert_int_equal(AV_RB32(out), len);
    size_t end = 0;
    size_t item = find(out, 8, len, (const char *const[]){"udta", "meta", "ilst", "----", NULL},
                       &end);
    assert_true(item > 0);
    assert_int_equal(end - item, 28 + 20 + 16 + strlen(smpb));
    assert_memory_equal(out + item, "\0\0\0\x1cmean\0\0\0\0com.apple.iTunes", 28);
    assert_memory_equal(out + item + 28, "\0\0\0\x14name\0\0\0\0iTunSMPB", 20);
    assert_int_equal(AV_RB32(out + item + 48), 16 + strlen(smpb));
    assert_memory_equal(out + item + 52, "data\0\0\0\x01\0\0\0\0", 12);
    assert_memory_equal(out + item + 64, smpb, strlen(smpb));
}

static void add(const uint8_t *moov, size_t len, uint8_t **out, size_t *out_len)
{
    imm_error err = {0};
    assert_int_equal(imm_mp4_add_gapless(moov, len, 1024, 945, 44111, out, out_len, &err), IMM_OK);
}

static void the_item_joins_an_ilst_there(void **state)
{
    (void)state;
    uint8_t ilst[64], meta[128], udta[160], body[256], moov[300], *out;
    uint8_t *p;
    size_t n_ilst = put(ilst, box(ilst, "\xa9too", "Lavf", 4));
    uint8_t hdlr_meta[128] = {0}; /* version and flags, then an hdlr, then the ilst */
    p = box(hdlr_meta + 4, "hdlr", "\0\0\0\0\0\0\0\0mdirappl\0\0\0\0\0\0\0\0\0", 25);
    p = box(p, "ilst", ilst, n_ilst);
    size_t n_meta = put(meta, box(meta, "meta", hdlr_meta, put(hdlr_meta, p)));
    size_t n_udta = put(udta, box(udta, "udta", meta, n_meta));
    p = box(body, "mvhd", "0123456789", 10);
    memcpy(p, udta, n_udta);
    p += n_udta;
    p = box(p, "free", "", 0); /* a box after udta stays after it */
    size_t len = put(moov, box(moov, "moov", body, put(body, p))), out_len;
    add(moov, len, &out, &out_len);
    size_t item = 8 + 28 + 20 + 16 + strlen(smpb);
    assert_int_equal(out_len, len + item);
    expect_item(out, out_len);
    /* the ©too item stays first in the ilst, the free box last in the moov */
    size_t end = 0, at = find(out, 8, out_len, (const char *const[]){"udta", "meta", "ilst", NULL},
                              &end);
    assert_memory_equal(out + at + 4, "\xa9too", 4);
    assert_memory_equal(out + out_len - 8, "\0\0\0\x08" "free", 8);
    assert_memory_equal(out + 8, moov + 8, 18); /* mvhd untouched */
    free(out);
}

static void a_meta_is_made_in_a_udta_without_one(void **state)
{
    (void)state;
    uint8_t body[128], moov[160], *out, *p = box(body, "mvhd", "0123", 4);
    uint8_t chpl[16];
    size_t n = put(chpl, box(chpl, "chpl", "\0\0\0\0\0", 5));
    p = box(p, "udta", chpl, n);
    size_t len = put(moov, box(moov, "moov", body, put(body, p))), out_len;
    add(moov, len, &out, &out_len);
    assert_int_equal(out_len, len + 12 + 33 + 8 + 8 + 28 + 20 + 16 + strlen(smpb));
    expect_item(out, out_len);
    size_t end = 0, hdlr = find(out, 8, out_len, (const char *const[]){"udta", "meta", "hdlr", NULL},
                                &end);
    assert_memory_equal(out + hdlr + 8, "mdirappl", 8);
    free(out);
}

static void a_udta_is_made_in_a_bare_moov(void **state)
{
    (void)state;
    uint8_t body[32], moov[64], *out;
    size_t len = put(moov, box(moov, "moov", body, put(body, box(body, "mvhd", "0", 1)))), out_len;
    add(moov, len, &out, &out_len);
    assert_int_equal(out_len, len + 8 + 12 + 33 + 8 + 8 + 28 + 20 + 16 + strlen(smpb));
    expect_item(out, out_len);
    free(out);
}

static void a_malformed_moov_is_refused(void **state)
{
    (void)state;
    uint8_t body[32], moov[64], *out = (uint8_t *)"untouched";
    size_t out_len = 1;
    imm_error err = {0};
    size_t len = put(moov, box(moov, "moov", body, put(body, box(body, "mvhd", "0123", 4))));
    AV_WB32(moov + 8, 200); /* the mvhd overruns the moov */
    assert_int_equal(imm_mp4_add_gapless(moov, len, 1024, 0, 1, &out, &out_len, &err),
                     IMM_EINTERNAL);
    assert_null(out);
    assert_int_equal(out_len, 0);
    AV_WB32(moov + 8, 12);
    memcpy(moov + 4, "free", 4); /* not a moov */
    assert_int_equal(imm_mp4_add_gapless(moov, len, 1024, 0, 1, &out, &out_len, &err),
                     IMM_EINTERNAL);
    memcpy(moov + 4, "moov", 4);
    assert_int_equal(imm_mp4_add_gapless(moov, len - 1, 1024, 0, 1, &out, &out_len, &err),
                     IMM_EINTERNAL); /* its size is not what it is given */
    assert_int_equal(imm_mp4_add_gapless(moov, len, -1, 0, 1, &out, &out_len, &err),
                     IMM_EINTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_item_joins_an_ilst_there),
        cmocka_unit_test(a_meta_is_made_in_a_udta_without_one),
        cmocka_unit_test(a_udta_is_made_in_a_bare_moov),
        cmocka_unit_test(a_malformed_moov_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
