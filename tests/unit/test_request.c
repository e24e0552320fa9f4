/* Unit tests of request parsing and validation (engine/request/request.c) and of {autoext}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oss/oss.h"
#include "engine/request/request.h"

#define TARGET_MP3 \
    "\"Targets\":[{\"URI\":\"oss://b-1/out/x.{autoext}\",\"Container\":\"mp3\"," \
    "\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\",\"Bitrate\":128000}}}]"
#define ONE_SOURCE "\"Sources\":[{\"URI\":\"oss://b-1/a.mp3\"}]"

static imm_err parse(const char *json, imm_request **req, imm_error *err)
{
    return imm_request_parse(json, strlen(json), req, err);
}

/* Parses json expecting failure with code, and a message that names field. */
static void expect_refused(const char *json, imm_err code, const char *field)
{
    imm_request *req = NULL;
    imm_error err = {0};
    assert_int_equal(parse(json, &req, &err), code);
    assert_null(req);
    if (!strstr(err.message, field))
        fail_msg("message \"%s\" does not name %s", err.message, field);
}

static void valid_request_is_modelled(void **state)
{
    (void)state;
    imm_request *req = NULL;
    imm_error err = {0};
    const char *json = "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://b-1/a.mp3\","
                       "\"StartTime\":1.5,\"Duration\":2},{\"URI\":\"oss://b-1/b.mp3\"}],"
                       "\"AlignmentIndex\":1,\"UserData\":\"u\",\"Tags\":{\"k\":\"v\"},"
                       TARGET_MP3 "}";
    assert_int_equal(parse(json, &req, &err), IMM_OK);
    assert_int_equal(req->nsources, 2);
    assert_int_equal(req->alignment_index, 1);
    assert_true(req->sources[0].start_time == 1.5);
    assert_true(req->sources[0].duration == 2.0);
    assert_int_equal(req->ntargets, 1);
    assert_string_equal(req->targets[0].codec, "mp3");
    assert_string_equal(req->targets[0].container, "mp3");
    assert_int_equal(req->targets[0].bitrate, 128000);
    assert_int_equal(req->targets[0].sample_rate, 0);
    assert_string_equal(req->user_data, "u");
    imm_request_free(req);
}

static void malformed_json_is_invalid_json(void **state)
{
    (void)state;
    expect_refused("{\"ProjectName\":", IMM_EJSON, "JSON");
    expect_refused("[1,2]", IMM_EJSON, "object");
}

static void required_fields_are_named(void **state)
{
    (void)state;
    expect_refused("{" ONE_SOURCE "," TARGET_MP3 "}", IMM_EARG, "ProjectName");
    expect_refused("{\"ProjectName\":\"p\"," TARGET_MP3 "}", IMM_EARG, "Sources");
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE "}", IMM_EARG, "Targets");
    expect_refused("{\"ProjectName\":\"p\",\"Sources\":[{}]," TARGET_MP3 "}", IMM_EARG,
                   "Sources[0].URI");
}

static void more_than_eleven_sources_exceed_the_limit(void **state)
{
    (void)state;
    char json[2048] = "{\"ProjectName\":\"p\",\"Sources\":[";
    for (int i = 0; i < 12; i++)
        strcat(json, i ? ",{\"URI\":\"oss://b-1/a.mp3\"}" : "{\"URI\":\"oss://b-1/a.mp3\"}");
    strcat(json, "]," TARGET_MP3 "}");
    expect_refused(json, IMM_ELIMIT, "Sources");
}

static void alignment_index_must_name_a_source(void **state)
{
    (void)state;
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE ",\"AlignmentIndex\":1," TARGET_MP3 "}",
                   IMM_EARG, "AlignmentIndex");
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE ",\"AlignmentIndex\":-1," TARGET_MP3 "}",
                   IMM_EARG, "AlignmentIndex");
}

#define WITH_AUDIO(container, audio)                                                         \
    "{\"ProjectName\":\"p\"," ONE_SOURCE ",\"Targets\":[{\"URI\":\"oss://b-1/o.{autoext}\"," \
    "\"Container\":\"" container "\",\"Audio\":{\"TranscodeAudio\":" audio "}}]}"

static void codec_rules_follow_the_service(void **state)
{
    (void)state;
    expect_refused(WITH_AUDIO("mp3", "{\"Codec\":\"copy\"}"), IMM_EARG, "Codec");
    expect_refused(WITH_AUDIO("mp3", "{\"Codec\":\"wav\"}"), IMM_EARG, "Codec");
    expect_refused(WITH_AUDIO("mp3", "{\"Codec\":\"aac\"}"), IMM_EARG, "Codec");
    expect_refused(WITH_AUDIO("mp3", "{\"Codec\":\"mp3\",\"SampleRate\":96000}"), IMM_EARG,
                   "SampleRate");
    expect_refused(WITH_AUDIO("aac", "{\"Codec\":\"aac\",\"SampleRate\":44000}"), IMM_EARG,
                   "SampleRate");
    expect_refused(WITH_AUDIO("opus", "{\"Codec\":\"opus\",\"SampleRate\":44100}"), IMM_EARG,
                   "SampleRate");
    expect_refused(WITH_AUDIO("mp3", "{\"Codec\":\"mp3\",\"Channel\":3}"), IMM_EARG, "Channel");
    expect_refused(WITH_AUDIO("ac3", "{\"Codec\":\"ac3\",\"Channel\":8}"), IMM_EARG, "Channel");
    expect_refused(WITH_AUDIO("aac", "{\"Codec\":\"aac\",\"Channel\":9}"), IMM_EARG, "Channel");
    expect_refused(WITH_AUDIO("mp3", "{\"Codec\":\"mp3\",\"Bitrate\":999}"), IMM_EARG, "Bitrate");
    expect_refused(WITH_AUDIO("mp3", "{\"Codec\":\"mp3\",\"Bitrate\":128000,\"Quality\":50}"),
                   IMM_EARG, "Quality");
    expect_refused(WITH_AUDIO("flac", "{\"Codec\":\"flac\",\"BitsPerSample\":20}"), IMM_EARG,
                   "BitsPerSample");
    expect_refused(WITH_AUDIO("mp3", "{\"Codec\":\"mp3\",\"BitrateOption\":\"sometimes\"}"),
                   IMM_EARG, "BitrateOption");
    expect_refused(WITH_AUDIO("wav", "{\"Codec\":\"flac\"}"), IMM_EARG, "Container");
}

static void uris_cannot_leave_their_bucket(void **state)
{
    (void)state;
    expect_refused("{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://b-1/a/../../x\"}],"
                   TARGET_MP3 "}", IMM_EARG, "Sources[0].URI");
    expect_refused("{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://b-1//etc/passwd\"}],"
                   TARGET_MP3 "}", IMM_EARG, "Sources[0].URI");
    expect_refused("{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"http://example/a.mp3\"}],"
                   TARGET_MP3 "}", IMM_EARG, "Sources[0].URI");
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE ",\"Targets\":[{\"URI\":\"oss://b-1/"
                   "..\",\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":"
                   "\"mp3\"}}}]}", IMM_EARG, "Targets[0].URI");
}

static void a_nul_character_is_refused(void **state)
{
    (void)state;
    /* cJSON would cut the URI at the NUL and read a different object */
    expect_refused("{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://b-1/a.mp3\\u0000/../x\"}],"
                   TARGET_MP3 "}", IMM_EARG, "NUL");
    /* an escaped backslash followed by u0000 is text, not a NUL */
    imm_request *req = NULL;
    imm_error err = {0};
    assert_int_equal(parse("{\"ProjectName\":\"p\",\"UserData\":\"\\\\u0000\"," ONE_SOURCE ","
                           TARGET_MP3 "}", &req, &err), IMM_OK);
    imm_request_free(req);
}

static void a_target_never_overwrites_a_source(void **state)
{
    (void)state;
    expect_refused("{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://b-1/o.mp3\"}],"
                   "\"Targets\":[{\"URI\":\"oss://b-1/o.{autoext}\",\"Container\":\"mp3\","
                   "\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}",
                   IMM_EARG, "Targets[0].URI");
}

static void targets_must_select_the_same_streams(void **state)
{
    (void)state;
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE ",\"Targets\":["
                   "{\"URI\":\"oss://b-1/x.mp3\",\"Audio\":{\"Stream\":[0],"
                   "\"TranscodeAudio\":{\"Codec\":\"mp3\"}}},"
                   "{\"URI\":\"oss://b-1/y.mp3\",\"Audio\":{\"Stream\":[1],"
                   "\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}",
                   IMM_EARG, "Targets[1].Audio.Stream");
}

static void uri_parse_splits_bucket_and_key(void **state)
{
    (void)state;
    imm_uri u;
    assert_int_equal(imm_uri_parse("oss://my-bucket/a/b.mp3", &u, NULL), IMM_OK);
    assert_true(u.is_oss);
    assert_string_equal(u.bucket, "my-bucket");
    assert_string_equal(u.key, "a/b.mp3");
    assert_int_equal(imm_uri_parse("file:///tmp/x.wav", &u, NULL), IMM_OK);
    assert_false(u.is_oss);
    assert_string_equal(u.path, "/tmp/x.wav");
    assert_int_equal(imm_uri_parse("rel/x.wav", &u, NULL), IMM_OK);
    assert_string_equal(u.path, "rel/x.wav");
    assert_int_equal(imm_uri_parse("oss://UPPER/a", &u, NULL), IMM_EARG);
    assert_int_equal(imm_uri_parse("oss://b-1", &u, NULL), IMM_EARG);
    assert_int_equal(imm_uri_parse("oss://b-1/a/./b", &u, NULL), IMM_EARG);
    assert_int_equal(imm_uri_parse("oss://b-1/a\\..\\b", &u, NULL), IMM_EARG);
    assert_int_equal(imm_uri_parse("file://relative", &u, NULL), IMM_EARG);
}

/* A target URI as the request resolves it (template.c). */
static void autoext_resolves_to_the_container(void **state)
{
    (void)state;
    struct { const char *uri, *container, *want; } cases[] = {
        {"oss://b-1/concat.{autoext}", "aac", "oss://b-1/concat.aac"},
        {"oss://b-1/x/{autoext}/y.{autoext}", "mp3", "oss://b-1/x/mp3/y.mp3"},
        {"oss://b-1/noext", "flac", "oss://b-1/noext.flac"},
        {"oss://b.with.dots/dir/noext", "oga", "oss://b.with.dots/dir/noext.oga"},
        {"oss://b-1/keep.m4a", "mp4", "oss://b-1/keep.m4a"},
        {"oss://b-1/{dirname}/{barename}-{{x}}.{autoext}", "mp3", "oss://b-1/in/a-{x}.mp3"},
        {"oss://b-1/{tags.n}-{tags.on}-{bucket}-{ext}", "mp3", "oss://b-1/7-true-b-1-mp3.mp3"},
    };
    static const char *const codec[] = {"aac", "mp3", "flac", "vorbis", "aac", "mp3", "mp3"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[512];
        imm_request *req = NULL;
        imm_error err = {0};
        snprintf(json, sizeof(json), "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":"
                 "\"oss://b-1/in/a.mp3\"}],\"Tags\":{\"n\":7,\"on\":true},\"Targets\":[{\"URI\":"
                 "\"%s\",\"Container\":\"%s\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"%s\"}}}]}",
                 cases[i].uri, cases[i].container, codec[i]);
        assert_int_equal(parse(json, &req, &err), IMM_OK);
        char *got = imm_target_uri(&req->targets[0]);
        assert_string_equal(got, cases[i].want);
        free(got);
        imm_request_free(req);
    }
}

static void container_is_inferred_from_a_known_extension(void **state)
{
    (void)state;
    imm_request *req = NULL;
    imm_error err = {0};
    const char *json = "{\"ProjectName\":\"p\"," ONE_SOURCE ",\"Targets\":[{\"URI\":"
                       "\"oss://b-1/o.m4a\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"aac\"}}}]}";
    assert_int_equal(parse(json, &req, &err), IMM_OK);
    assert_string_equal(req->targets[0].container, "mp4");
    imm_request_free(req);
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE ",\"Targets\":[{\"URI\":"
                   "\"oss://b-1/o.{autoext}\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"aac\"}}}]}",
                   IMM_EARG, "Container");
}

static void error_body_has_the_service_shape(void **state)
{
    (void)state;
    imm_error err;
    imm_error_set(&err, IMM_EARG, "The parameter %s is bad.", "X");
    char *json = imm_error_to_json(&err, "REQ-1");
    assert_non_null(strstr(json, "\"Code\":\t\"InvalidArgument\""));
    assert_non_null(strstr(json, "\"RequestId\":\t\"REQ-1\""));
    assert_non_null(strstr(json, "\"Message\":\t\"The parameter X is bad.\""));
    free(json);
    assert_true(imm_err_is_request_error(IMM_ELIMIT));
    assert_false(imm_err_is_request_error(IMM_ENOTFOUND));
}

/* Video features are refused by name when they ask for anything (an audio-only answer would differ
 * from the service's); empty ones ask for nothing. Keys outside the SDK's model are refused. */
static void video_fields_are_refused_unless_empty(void **state)
{
    (void)state;
    imm_request *req = NULL;
    imm_error err = {0};
    const char *json = "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://b-1/a.mp4\","
                       "\"DisableVideo\":true,\"Subtitles\":[],\"AlignMode\":\"pad\"}],"
                       "\"Targets\":[{\"URI\":\"oss://b-1/o.mp4\",\"Container\":\"mp4\","
                       "\"Video\":{},\"Image\":{},\"AttachedPicture\":{\"Stream\":[]},"
                       "\"Subtitle\":{},\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"aac\"}}}]}";
    assert_int_equal(parse(json, &req, &err), IMM_OK);
    assert_true(req->sources[0].disable_video);
    imm_request_free(req);
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE ",\"Targets\":[{\"URI\":\"oss://b-1/o.mp3\","
                   "\"Video\":{\"TranscodeVideo\":{\"Codec\":\"h264\"}},"
                   "\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}",
                   IMM_EARG, "Targets[0].Video");
    expect_refused("{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://b-1/a.mp3\","
                   "\"DisableVideo\":\"yes\"}]," TARGET_MP3 "}", IMM_EARG, "Sources[0].DisableVideo");
    expect_refused("{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://b-1/a.mp3\","
                   "\"Subtitles\":[{\"URI\":\"oss://b-1/s.srt\"}]}]," TARGET_MP3 "}", IMM_EARG,
                   "Sources[0].Subtitles");
    expect_refused("{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://b-1/a.mp3\","
                   "\"AlignMode\":\"x\"}]," TARGET_MP3 "}", IMM_EARG, "Sources[0].AlignMode");
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE ",\"Video\":{}," TARGET_MP3 "}", IMM_EARG,
                   "Video is not a field of CreateMediaConvertTask");
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE ",\"Targets\":[{\"URI\":\"oss://b-1/o.mp3\","
                   "\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\",\"bitrate\":1}}}]}", IMM_EARG,
                   "case-sensitive: Bitrate");
}

/* The ExtendedMessageURI receives the task JSON: it may not name a source or a target. */
static void extended_message_uri_never_overwrites_the_request_s_objects(void **state)
{
    (void)state;
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE "," TARGET_MP3 ",\"Notification\":"
                   "{\"ExtendedMessageURI\":\"oss://b-1/a.mp3\"}}", IMM_EARG,
                   "Notification.ExtendedMessageURI names one of the Sources");
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE "," TARGET_MP3 ",\"Notification\":"
                   "{\"ExtendedMessageURI\":\"oss://b-1/out/x.mp3\"}}", IMM_EARG,
                   "Notification.ExtendedMessageURI names one of the Targets");
}

/* Where the message goes, with the field that said so (the SDK's or the legacy one). */
static void notification_fields_are_named(void **state)
{
    (void)state;
    imm_request *req = NULL;
    imm_error err = {0};
    const char *json = "{\"ProjectName\":\"p\"," ONE_SOURCE "," TARGET_MP3 ",\"Notification\":"
                       "{\"MNS\":{\"TopicName\":\"t-1\",\"Endpoint\":\"http://1.mns.x\"}},"
                       "\"NotifyEndpoint\":\"http://ignored\"}";
    assert_int_equal(parse(json, &req, &err), IMM_OK);
    imm_notification n = imm_request_notification(req);
    assert_string_equal(n.topic, "t-1");
    assert_string_equal(n.topic_field, "Notification.MNS.TopicName");
    assert_string_equal(n.endpoint, "http://1.mns.x");
    assert_string_equal(n.endpoint_field, "Notification.MNS.Endpoint");
    assert_false(n.rocketmq);
    imm_request_free(req);
    json = "{\"ProjectName\":\"p\"," ONE_SOURCE "," TARGET_MP3 ",\"NotifyTopicName\":\"t\","
           "\"NotifyEndpoint\":\"https://2.mns.y\"}";
    assert_int_equal(parse(json, &req, &err), IMM_OK);
    n = imm_request_notification(req);
    assert_string_equal(n.topic_field, "NotifyTopicName");
    assert_string_equal(n.endpoint_field, "NotifyEndpoint");
    imm_request_free(req);
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE "," TARGET_MP3 ",\"NotifyEndpoint\":"
                   "\"file:///tmp/x\"}", IMM_EARG, "NotifyEndpoint is not an MNS endpoint");
    expect_refused("{\"ProjectName\":\"p\"," ONE_SOURCE "," TARGET_MP3 ",\"Notification\":"
                   "{\"MNS\":{\"TopicName\":\"a/../b\"}}}", IMM_EARG,
                   "Notification.MNS.TopicName is not an MNS topic name");
}

/* A store that serves only its own objects refuses the request naming the first local URI. */
static void check_storage_names_the_field(void **state)
{
    (void)state;
    imm_request *req = NULL;
    imm_storage *st = NULL;
    imm_error err = {0};
    imm_local_paths none = {.restricted = 1};
    assert_int_equal(imm_oss_local_new("/tmp", &none, &st, &err), IMM_OK);
    const char *cases[][2] = {
        {"{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://b-1/a.mp3\"},{\"URI\":"
         "\"/etc/passwd\"}]," TARGET_MP3 "}", "Sources[1].URI"},
        {"{\"ProjectName\":\"p\"," ONE_SOURCE ",\"Targets\":[{\"URI\":\"file:///tmp/{barename}."
         "{autoext}\",\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}",
         "Targets[0].URI"},
        {"{\"ProjectName\":\"p\"," ONE_SOURCE "," TARGET_MP3 ",\"Notification\":"
         "{\"ExtendedMessageURI\":\"file:///root/.bashrc\"}}", "Notification.ExtendedMessageURI"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        assert_int_equal(parse(cases[i][0], &req, &err), IMM_OK);
        assert_int_equal(imm_request_check_storage(req, st, &err), IMM_EARG);
        if (!strstr(err.message, cases[i][1]))
            fail_msg("message \"%s\" does not name %s", err.message, cases[i][1]);
        imm_request_free(req);
    }
    assert_int_equal(parse("{\"ProjectName\":\"p\"," ONE_SOURCE "," TARGET_MP3 "}", &req, &err),
                     IMM_OK);
    assert_int_equal(imm_request_check_storage(req, st, &err), IMM_OK);
    imm_request_free(req);
    imm_storage_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_request_is_modelled),
        cmocka_unit_test(malformed_json_is_invalid_json),
        cmocka_unit_test(required_fields_are_named),
        cmocka_unit_test(more_than_eleven_sources_exceed_the_limit),
        cmocka_unit_test(alignment_index_must_name_a_source),
        cmocka_unit_test(codec_rules_follow_the_service),
        cmocka_unit_test(uris_cannot_leave_their_bucket),
        cmocka_unit_test(a_nul_character_is_refused),
        cmocka_unit_test(a_target_never_overwrites_a_source),
        cmocka_unit_test(targets_must_select_the_same_streams),
        cmocka_unit_test(video_fields_are_refused_unless_empty),
        cmocka_unit_test(uri_parse_splits_bucket_and_key),
        cmocka_unit_test(autoext_resolves_to_the_container),
        cmocka_unit_test(container_is_inferred_from_a_known_extension),
        cmocka_unit_test(error_body_has_the_service_shape),
        cmocka_unit_test(extended_message_uri_never_overwrites_the_request_s_objects),
        cmocka_unit_test(notification_fields_are_named),
        cmocka_unit_test(check_storage_names_the_field),
    };
    return cmocka_run_group_tests_name("request", tests, NULL, NULL);
}
