/* Unit tests of each target's parameters (engine/plan/plan.c): what the AlignmentIndex source gives
 * by default, what the request sets, the *Option rules (fixed, adaptive, fall) for the sample
 * rate and the bitrate, the codec's own limits, and where each value came from (what `immerge
 * plan` reports). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/plan/plan.h"

/* The primary source: rate Hz, channels, bit_rate bit/s (0: unknown), 16-bit. */
static imm_source_info source(int rate, int channels, int64_t bit_rate)
{
    imm_source_info s = {.sample_rate = rate, .channels = channels, .bit_rate = bit_rate,
                         .sample_fmt = AV_SAMPLE_FMT_S16};
    av_channel_layout_default(&s.layout, channels);
    return s;
}

/* Plans the one target of a request whose target is `container` with TranscodeAudio `audio`. */
static imm_err plan(const char *container, const char *audio, const imm_source_info *primary,
                    imm_target_plan *out, imm_error *err)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://bkt/a.wav\"}],\"Targets\":"
             "[{\"URI\":\"oss://bkt/o.{autoext}\",\"Container\":\"%s\",\"Audio\":"
             "{\"TranscodeAudio\":{%s}}}]}",
             container, audio);
    imm_request *req = NULL;
    imm_error perr = {0};
    if (imm_request_parse(json, strlen(json), &req, &perr))
        fail_msg("%s: %s", json, perr.message);
    memset(out, 0, sizeof(*out));
    imm_err e = imm_plan_target(&req->targets[0], 0, primary, out, err);
    imm_request_free(req);
    return e;
}

static void the_primary_gives_the_defaults(void **state)
{
    (void)state;
    imm_source_info s = source(22050, 1, 96000);
    imm_target_plan p;
    imm_error err = {0};
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\"", &s, &p, &err), IMM_OK);
    assert_int_equal(p.sample_rate, 22050);
    assert_int_equal(p.layout.nb_channels, 1);
    assert_int_equal(p.bitrate, 96000);
    assert_string_equal(p.rate_from, "AlignmentIndex source");
    assert_string_equal(p.bitrate_from, "AlignmentIndex source");
    assert_string_equal(p.uri, "oss://bkt/o.mp3");
    imm_plan_clear(&p);
    /* A WAV's 1411 kbit/s is more than MP3 takes: its highest. An unknown one: the default. */
    s = source(44100, 2, 1411200);
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\"", &s, &p, &err), IMM_OK);
    assert_int_equal(p.bitrate, 320000);
    assert_string_equal(p.bitrate_from, "AlignmentIndex source, lowered to the codec's highest");
    imm_plan_clear(&p);
    s = source(44100, 2, 0);
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\"", &s, &p, &err), IMM_OK);
    assert_int_equal(p.bitrate, 128000);
    imm_plan_clear(&p);
    /* Lossless: no bitrate; BitsPerSample 24 writes 32-bit samples to the encoder. */
    assert_int_equal(plan("flac", "\"Codec\":\"flac\",\"BitsPerSample\":24", &s, &p, &err),
                     IMM_OK);
    assert_int_equal(p.bitrate, 0);
    assert_int_equal(p.bits_per_sample, 24);
    assert_int_equal(p.sample_fmt, AV_SAMPLE_FMT_S32);
    imm_plan_clear(&p);
}

static void sample_rate_options(void **state)
{
    (void)state;
    imm_source_info s = source(44100, 2, 128000);
    imm_target_plan p;
    imm_error err = {0};
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\",\"SampleRate\":48000", &s, &p, &err), IMM_OK);
    assert_int_equal(p.sample_rate, 48000); /* fixed, the default: as asked, above the source */
    assert_non_null(strstr(p.rate_from, "SampleRateOption fixed"));
    imm_plan_clear(&p);
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\",\"SampleRate\":22050", &s, &p, &err), IMM_OK);
    assert_int_equal(p.sample_rate, 22050);
    assert_string_equal(p.rate_from, "request");
    imm_plan_clear(&p);
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\",\"SampleRate\":48000,"
                                 "\"SampleRateOption\":\"adaptive\"", &s, &p, &err), IMM_OK);
    assert_int_equal(p.sample_rate, 44100); /* the source's, lower than asked */
    imm_plan_clear(&p);
    /* Adaptive into a codec that does not take the source's rate: the next below it that it
     * takes (Opus: 8, 12, 16, 24 and 48 kHz). */
    assert_int_equal(plan("opus", "\"Codec\":\"opus\",\"SampleRate\":48000,"
                                  "\"SampleRateOption\":\"adaptive\"", &s, &p, &err), IMM_OK);
    assert_int_equal(p.sample_rate, 24000);
    imm_plan_clear(&p);
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\",\"SampleRate\":48000,"
                                 "\"SampleRateOption\":\"fall\"", &s, &p, &err), IMM_EARG);
    assert_non_null(strstr(err.message, "Targets[0].Audio.TranscodeAudio.SampleRate"));
    assert_non_null(strstr(err.message, "SampleRateOption is fall"));
    imm_plan_clear(&p);
    /* No SampleRate, and the source's is not one Opus takes: refused, asking for one. */
    assert_int_equal(plan("opus", "\"Codec\":\"opus\"", &s, &p, &err), IMM_EARG);
    assert_non_null(strstr(err.message, "set SampleRate"));
    imm_plan_clear(&p);
}

static void bitrate_options(void **state)
{
    (void)state;
    imm_source_info s = source(44100, 2, 64000);
    imm_target_plan p;
    imm_error err = {0};
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\",\"Bitrate\":192000", &s, &p, &err), IMM_OK);
    assert_int_equal(p.bitrate, 192000);
    assert_string_equal(p.bitrate_from, "request");
    imm_plan_clear(&p);
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\",\"Bitrate\":192000,"
                                 "\"BitrateOption\":\"adaptive\"", &s, &p, &err), IMM_OK);
    assert_int_equal(p.bitrate, 64000);
    imm_plan_clear(&p);
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\",\"Bitrate\":32000,"
                                 "\"BitrateOption\":\"fall\"", &s, &p, &err), IMM_OK);
    assert_int_equal(p.bitrate, 32000); /* below the source: fall does not apply */
    imm_plan_clear(&p);
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\",\"Bitrate\":192000,"
                                 "\"BitrateOption\":\"fall\"", &s, &p, &err), IMM_EARG);
    assert_non_null(strstr(err.message, "Targets[0].Audio.TranscodeAudio.Bitrate"));
    imm_plan_clear(&p);
    /* Quality instead: VBR, no bitrate. */
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\",\"Quality\":80", &s, &p, &err), IMM_OK);
    assert_int_equal(p.bitrate, 0);
    assert_true(p.qscale > 0);
    assert_int_equal(p.quality, 80);
    assert_string_equal(p.bitrate_from, "Quality");
    imm_plan_clear(&p);
}

static void channels_follow_the_codec(void **state)
{
    (void)state;
    imm_source_info s = source(48000, 6, 384000);
    imm_target_plan p;
    imm_error err = {0};
    /* Six channels into MP3, which takes two: refused unless Channel says how many. */
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\"", &s, &p, &err), IMM_EARG);
    assert_non_null(strstr(err.message, "Targets[0].Audio.TranscodeAudio.Channel"));
    imm_plan_clear(&p);
    assert_int_equal(plan("mp3", "\"Codec\":\"mp3\",\"Channel\":2", &s, &p, &err), IMM_OK);
    assert_int_equal(p.layout.nb_channels, 2);
    assert_string_equal(p.channels_from, "request");
    imm_plan_clear(&p);
    assert_int_equal(plan("ac3", "\"Codec\":\"ac3\"", &s, &p, &err), IMM_OK); /* 5.1 */
    assert_int_equal(p.layout.nb_channels, 6);
    assert_string_equal(p.channels_from, "AlignmentIndex source");
    imm_plan_clear(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_primary_gives_the_defaults),
        cmocka_unit_test(sample_rate_options),
        cmocka_unit_test(bitrate_options),
        cmocka_unit_test(channels_follow_the_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
