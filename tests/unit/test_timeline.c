/* Unit tests of the timeline and clip arithmetic (engine/source/timeline.c): runs of one rate, their
 * lengths at an output rate as the converters make them, slices across runs, the run limit, and
 * StartTime/Duration found by time in whichever run holds them, fed in blocks as a decoder
 * gives them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "engine/source/source.h"

static void runs_of_one_rate_merge(void **state)
{
    (void)state;
    imm_timeline t = {0};
    imm_error err = {0};
    assert_int_equal(imm_timeline_add(&t, 44100, 1000, &err), IMM_OK);
    assert_int_equal(imm_timeline_add(&t, 44100, 500, &err), IMM_OK);
    assert_int_equal(imm_timeline_add(&t, 22050, 0, &err), IMM_OK); /* nothing, no run */
    assert_int_equal(imm_timeline_add(&t, 22050, 2205, &err), IMM_OK);
    assert_int_equal(imm_timeline_add(&t, 44100, 1, &err), IMM_OK);
    assert_int_equal(t.n, 3);
    assert_int_equal(t.runs[0].samples, 1500);
    assert_int_equal(t.runs[1].rate, 22050);
    assert_int_equal(imm_timeline_samples(&t), 3706);
    assert_true(imm_timeline_seconds(&t) > 1500.0 / 44100 + 0.1 + 0.5 / 44100);
    assert_true(imm_timeline_seconds(&t) < 1500.0 / 44100 + 0.1 + 1.5 / 44100);
    imm_timeline_clear(&t);
    assert_int_equal(t.n, 0);
    assert_null(t.runs);
}

static void lengths_round_each_run(void **state)
{
    (void)state;
    imm_timeline t = {0};
    imm_error err = {0};
    /* Each run on its own, to the nearest (a half away from zero): 441 samples at 44100 are 480
     * at 48000, and 1 at 32000 is 1.5 -> 2; 3 at 16000 are 1.5 at 8000 -> 2. */
    imm_timeline_add(&t, 44100, 441, &err);
    assert_int_equal(imm_timeline_length(&t, 48000), 480);
    imm_timeline_add(&t, 32000, 1, &err);
    assert_int_equal(imm_timeline_length(&t, 48000), 480 + 2); /* 1.5 -> 2 */
    imm_timeline_clear(&t);
    imm_timeline_add(&t, 16000, 3, &err);
    assert_int_equal(imm_timeline_length(&t, 8000), 2);
    imm_timeline_add(&t, 8000, 3, &err);
    assert_int_equal(imm_timeline_length(&t, 8000), 5);
    assert_int_equal(imm_timeline_length(&t, 16000), 9);
    imm_timeline_clear(&t);
}

static void slices_cross_runs(void **state)
{
    (void)state;
    imm_timeline t = {0}, s = {0};
    imm_error err = {0};
    imm_timeline_add(&t, 8000, 100, &err);
    imm_timeline_add(&t, 16000, 200, &err);
    imm_timeline_add(&t, 8000, 50, &err);
    assert_int_equal(imm_timeline_slice(&t, 90, 320, &s, &err), IMM_OK);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.runs[0].samples, 10);
    assert_int_equal(s.runs[1].samples, 200);
    assert_int_equal(s.runs[2].rate, 8000);
    assert_int_equal(s.runs[2].samples, 20);
    imm_timeline_clear(&s);
    assert_int_equal(imm_timeline_slice(&t, 120, 150, &s, &err), IMM_OK); /* inside one run */
    assert_int_equal(s.n, 1);
    assert_int_equal(s.runs[0].rate, 16000);
    assert_int_equal(s.runs[0].samples, 30);
    imm_timeline_clear(&s);
    assert_int_equal(imm_timeline_slice(&t, 400, 500, &s, &err), IMM_OK); /* past the end */
    assert_int_equal(s.n, 0);
    cJSON *o = cJSON_CreateObject();
    imm_timeline_json(o, &t);
    char *json = cJSON_PrintUnformatted(o);
    assert_string_equal(json, "{\"SampleRateRuns\":[{\"SampleRate\":8000,\"Samples\":100},"
                              "{\"SampleRate\":16000,\"Samples\":200},"
                              "{\"SampleRate\":8000,\"Samples\":50}]}");
    free(json);
    cJSON_Delete(o);
    imm_timeline_clear(&t);
}

static void too_many_runs_are_invalid_media(void **state)
{
    (void)state;
    imm_timeline t = {0};
    imm_error err = {0};
    for (int i = 0; i < IMM_MAX_RUNS; i++)
        assert_int_equal(imm_timeline_add(&t, i % 2 ? 8000 : 16000, 1, &err), IMM_OK);
    assert_int_equal(imm_timeline_add(&t, 8000, 1, &err), IMM_OK); /* continues the last run */
    assert_int_equal(imm_timeline_add(&t, 16000, 1, &err), IMM_EMEDIA);
    assert_non_null(strstr(err.message, "more than 4095 times"));
    imm_timeline_clear(&t);
}

/* Feeds runs (rate, samples) to a clip in blocks of block samples; the samples taken, and where
 * the first was among everything fed. */
static int64_t feed(imm_clip *c, const int (*runs)[2], int nruns, int block, int64_t *first)
{
    int64_t fed = 0, taken = 0;
    *first = -1;
    for (int r = 0; r < nruns; r++)
        for (int64_t left = runs[r][1]; left > 0;) {
            int64_t n = left < block ? left : block, offset = 0;
            int64_t got = imm_clip_take(c, runs[r][0], n, &offset);
            if (got && *first < 0)
                *first = fed + offset;
            taken += got;
            fed += n;
            left -= n;
        }
    return taken;
}

static void a_clip_of_one_rate_is_round_duration_x_rate(void **state)
{
    (void)state;
    const int runs[][2] = {{44100, 44100}};
    for (int block = 1; block <= 4096; block *= 8) {
        imm_clip c;
        int64_t first;
        imm_clip_init(&c, 0.25, 0.1);
        assert_int_equal(feed(&c, runs, 1, block, &first), 4410);
        assert_int_equal(first, 11025);
        imm_clip_init(&c, 0.3, 0);            /* to the end */
        assert_int_equal(feed(&c, runs, 1, block, &first), 44100 - 13230);
        imm_clip_init(&c, 0.9, 5);            /* past the end: stops there */
        assert_int_equal(feed(&c, runs, 1, block, &first), 44100 - 39690);
        imm_clip_init(&c, 2, 1);              /* starts past the end: nothing */
        assert_int_equal(feed(&c, runs, 1, block, &first), 0);
        assert_int_equal(first, -1);
    }
}

static void a_clip_across_a_rate_change_is_found_by_time(void **state)
{
    (void)state;
    /* 0.5 s at 8000 Hz, then 1 s at 16000 Hz. StartTime 0.25 is sample 2000 of the first run;
     * Duration 0.5 ends at 0.75 s, which is 0.25 s into the second run: its sample 4000. */
    const int runs[][2] = {{8000, 4000}, {16000, 16000}};
    imm_clip c;
    int64_t first;
    imm_clip_init(&c, 0.25, 0.5);
    assert_int_equal(feed(&c, runs, 2, 333, &first), 2000 + 4000);
    assert_int_equal(first, 2000);
    /* Starting in the second run: 0.6 s is its sample 1600, and 0.2 s of it 3200 samples. */
    imm_clip_init(&c, 0.6, 0.2);
    assert_int_equal(feed(&c, runs, 2, 1000, &first), 3200);
    assert_int_equal(first, 4000 + 1600);
    assert_true(imm_clip_seconds(&c) > 1.499 && imm_clip_seconds(&c) < 1.501);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(runs_of_one_rate_merge),
        cmocka_unit_test(lengths_round_each_run),
        cmocka_unit_test(slices_cross_runs),
        cmocka_unit_test(too_many_runs_are_invalid_media),
        cmocka_unit_test(a_clip_of_one_rate_is_round_duration_x_rate),
        cmocka_unit_test(a_clip_across_a_rate_change_is_found_by_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
