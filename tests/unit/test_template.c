/* Unit tests of TargetURI templates (engine/request/template.c) beyond what test_request covers: the
 * task's creation time, the file variables of the AlignmentIndex source (not the first), {key},
 * {basename}, {index} and {streamindex}, a segmented target's {autoext}, and the refusals: a
 * variable immerge cannot resolve (named, with why) and an unmatched brace (with where). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/request/request.h"

#define CREATED 1700000000 /* 2023-11-14T22:13:20Z */

/* Resolves Targets[0].URI = uri for a request of two sources, the second the AlignmentIndex;
 * NULL with err on refusal. extra goes into the target (",\"Segment\":{...}"). */
static char *resolve(const char *uri, const char *extra, imm_error *err)
{
    char json[768];
    snprintf(json, sizeof(json),
             "{\"ProjectName\":\"p\",\"AlignmentIndex\":1,\"Sources\":[{\"URI\":"
             "\"oss://first/x/one.wav\"},{\"URI\":\"oss://lectures/2023/week-7/talk.final.flac\"}],"
             "\"Targets\":[{\"URI\":\"oss://out/o.{autoext}\",\"Container\":\"%s\",\"Audio\":"
             "{\"TranscodeAudio\":{\"Codec\":\"%s\"}}%s}]}",
             extra ? "ts" : "mp3", extra ? "aac" : "mp3", extra ? extra : "");
    imm_request *req = NULL;
    imm_error perr = {0};
    if (imm_request_parse(json, strlen(json), &req, &perr))
        fail_msg("%s", perr.message);
    free(req->targets[0].uri);
    req->targets[0].uri = strdup(uri);
    char *got = imm_target_uri_resolve(req, 0, CREATED, err);
    imm_request_free(req);
    return got;
}

static void expect(const char *uri, const char *extra, const char *want)
{
    imm_error err = {0};
    char *got = resolve(uri, extra, &err);
    if (!got)
        fail_msg("%s: %s", uri, err.message);
    assert_string_equal(got, want);
    free(got);
}

static void variables_resolve(void **state)
{
    (void)state;
    expect("oss://out/{t_year}/{t_mon}/{t_day}/{t_hour}{t_min}{t_sec}.{autoext}", NULL,
           "oss://out/2023/11/14/221320.mp3");
    expect("oss://out/{bucket}/{dirname}/{barename}.{ext}.{autoext}", NULL,
           "oss://out/lectures/2023/week-7/talk.final.flac.mp3");
    expect("oss://out/{key}-{index}-{streamindex}.{autoext}", NULL,
           "oss://out/2023/week-7/talk.final.flac-1-0.mp3");
    /* The resolved name has an extension already (the source's), so none is added. */
    expect("oss://out/{basename}", NULL, "oss://out/talk.final.flac");
    expect("oss://out/{{literal}}/x.{autoext}", NULL, "oss://out/{literal}/x.mp3");
    expect("oss://out/hls/{barename}.{autoext}", ",\"Segment\":{\"Format\":\"hls\"}",
           "oss://out/hls/talk.final.m3u8");
}

static void refusals_say_what_and_where(void **state)
{
    (void)state;
    static const struct {
        const char *uri, *extra, *want[2];
    } cases[] = {
        {"oss://out/{nope}.{autoext}", NULL, {"Targets[0].URI uses {nope}", "not a TargetURI variable"}},
        {"oss://out/{year}.{autoext}", NULL, {"{year}", "{t_year}"}},
        {"oss://out/{resolution}.{autoext}", NULL, {"{resolution}", "audio only"}},
        {"oss://out/hls/{index}.{autoext}", ",\"Segment\":{\"Format\":\"hls\"}",
         {"{index}", "segments after its playlist"}},
        {"oss://out/{barename.{autoext}", NULL, {"unmatched '{'", "at character 21"}},
        {"oss://out/a}b.{autoext}", NULL, {"unmatched '}'", "at character 12"}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        imm_error err = {0};
        char *got = resolve(cases[i].uri, cases[i].extra, &err);
        if (got)
            fail_msg("%s: resolved to %s", cases[i].uri, got);
        assert_int_equal(err.code, IMM_EARG);
        for (int k = 0; k < 2; k++)
            if (!strstr(err.message, cases[i].want[k]))
                fail_msg("%s: want \"%s\" in: %s", cases[i].uri, cases[i].want[k], err.message);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(variables_resolve),
        cmocka_unit_test(refusals_say_what_and_where),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
