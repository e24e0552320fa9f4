/*
 * request.c - the CreateMediaConvertTask request: parse the JSON, judge every field that can be
 * judged without reading a source, and build the imm_request model the rest of the engine uses.
 *
 * Messages name the field by its full path (Targets[0].Audio.TranscodeAudio.SampleRate) because
 * that is what a user has to find in their request. Every object's keys are checked against the
 * official SDK's model: a key it does not have (a typo, a miscased "bitrate") is refused, because
 * an ignored key silently gives a different output than the one asked for. Fields the SDK has but
 * this engine does not implement (video, subtitles, attached streams, TargetGroups) are refused by
 * name for the same reason. Here the root, the Sources and the Notification, and the checks
 * across fields; a target is read by target.c, ImmergeExtensions by extensions.c, every field
 * through fields.c.
 */
#include "engine/request/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define MAX_USER_DATA 2048

static imm_err parse_source(imm_fields *c, const cJSON *js, int i, imm_source_req *src)
{
    static const char *const keys[] = {"URI", "StartTime", "Duration", "DisableAudio",
                                       "DisableVideo", "Attached", "AlignMode", "Subtitles",
                                       NULL};
    imm_err e;
    imm_field_at(c, "%s[%d]", "Sources", i);
    if (!cJSON_IsObject(js))
        return imm_field_bad(c, "must be an object");
    if ((e = imm_field_keys(c, js, keys, "a field of a source")))
        return e;
    imm_field_at(c, "%s[%d]", "Sources", i);
    if ((e = imm_field_refuse_video(c, js, "Subtitles", NULL, "subtitles to be added")))
        return e;
    imm_field_at(c, "%s[%d].URI", "Sources", i);
    if ((e = imm_field_string(c, js, "URI", &src->uri)))
        return e;
    if (!src->uri || !*src->uri)
        return imm_field_bad(c, "is required but not provided");
    if ((e = imm_field_uri(c, src->uri)))
        return e;
    imm_field_at(c, "%s[%d].StartTime", "Sources", i);
    if ((e = imm_field_number(c, js, "StartTime", &src->start_time)))
        return e;
    if (src->start_time < 0)
        return imm_field_bad(c, "must not be negative");
    imm_field_at(c, "%s[%d].Duration", "Sources", i);
    if ((e = imm_field_number(c, js, "Duration", &src->duration)))
        return e;
    if (src->duration < 0)
        return imm_field_bad(c, "must not be negative");
    imm_field_at(c, "%s[%d].DisableAudio", "Sources", i);
    if ((e = imm_field_bool(c, js, "DisableAudio", &src->disable_audio)))
        return e;
    /* DisableVideo: the output is audio only either way; a source that has video must say so
     * to go into a container that could carry it (run.c). */
    imm_field_at(c, "%s[%d].DisableVideo", "Sources", i);
    if ((e = imm_field_bool(c, js, "DisableVideo", &src->disable_video)))
        return e;
    bool attached = false;
    imm_field_at(c, "%s[%d].Attached", "Sources", i);
    if ((e = imm_field_bool(c, js, "Attached", &attached)))
        return e;
    src->attached = attached;
    const cJSON *align = cJSON_GetObjectItemCaseSensitive(js, "AlignMode");
    imm_field_at(c, "%s[%d].AlignMode", "Sources", i);
    if (align && !cJSON_IsNull(align) &&
        (!cJSON_IsString(align) || (strcmp(align->valuestring, "false") &&
                                    strcmp(align->valuestring, "loop") &&
                                    strcmp(align->valuestring, "pad"))))
        return imm_field_bad(c, "must be false, loop or pad");
    return IMM_OK;
}

static imm_err parse_alignment(imm_fields *c, const cJSON *root, imm_request *req)
{
    int64_t v = 0;
    imm_err e;
    snprintf(c->path, sizeof(c->path), "AlignmentIndex");
    if ((e = imm_field_int(c, root, "AlignmentIndex", 0, IMM_MAX_SOURCES - 1, &v)))
        return e;
    if (v >= req->nsources)
        return imm_field_bad(c, "must name one of the Sources (0-based)");
    req->alignment_index = (int)v;
    if (req->sources[v].attached) {
        imm_field_at(c, "%s[%d].Attached", "Sources", (int)v);
        return imm_field_bad(c, "cannot be true on the AlignmentIndex source");
    }
    for (int i = 0; i < req->nsources; i++)
        if (req->sources[i].attached) {
            imm_field_at(c, "%s[%d].Attached", "Sources", i);
            return imm_field_bad(c, "is true: adding a source as a synchronised extra stream is "
                                    "not supported by immerge (it would append it instead); remove "
                                    "Attached to concatenate the source");
        }
    return IMM_OK;
}

/* Notification {MNS {TopicName}, ExtendedMessageURI, RocketMQ}, and the legacy top-level
 * NotifyTopicName. Delivery is notify/'s; here only what was asked. */
static imm_err parse_notification(imm_fields *c, const cJSON *root, imm_request *req)
{
    static const char *const keys[] = {"MNS", "RocketMQ", "ExtendedMessageURI", NULL};
    static const char *const mns_keys[] = {"TopicName", "Endpoint", NULL};
    const cJSON *note, *mns = NULL, *rocket = NULL;
    imm_err e;
    snprintf(c->path, sizeof(c->path), "Notification");
    if ((e = imm_field_object(c, root, "Notification", &note)))
        return e;
    if (note) {
        if ((e = imm_field_keys(c, note, keys, "a field of Notification")))
            return e;
        snprintf(c->path, sizeof(c->path), "Notification.MNS");
        if ((e = imm_field_object(c, note, "MNS", &mns)))
            return e;
        if (mns && (e = imm_field_keys(c, mns, mns_keys, "a field of Notification.MNS")))
            return e;
        snprintf(c->path, sizeof(c->path), "Notification.MNS.TopicName");
        if (mns && (e = imm_field_string(c, mns, "TopicName", &req->notify_topic)))
            return e;
        if (req->notify_topic)
            req->notify_topic_field = "Notification.MNS.TopicName";
        snprintf(c->path, sizeof(c->path), "Notification.MNS.Endpoint");
        if (mns && (e = imm_field_string(c, mns, "Endpoint", &req->notify_endpoint)))
            return e;
        if (req->notify_endpoint)
            req->notify_endpoint_field = "Notification.MNS.Endpoint";
        snprintf(c->path, sizeof(c->path), "Notification.RocketMQ");
        if ((e = imm_field_object(c, note, "RocketMQ", &rocket)))
            return e;
        req->notify_rocketmq = rocket != NULL;
        snprintf(c->path, sizeof(c->path), "Notification.ExtendedMessageURI");
        if ((e = imm_field_string(c, note, "ExtendedMessageURI", &req->notify_extended_uri)))
            return e;
        if (req->notify_extended_uri && (e = imm_field_uri(c, req->notify_extended_uri)))
            return e;
    }
    if (!req->notify_topic) {
        snprintf(c->path, sizeof(c->path), "NotifyTopicName");
        if ((e = imm_field_string(c, root, "NotifyTopicName", &req->notify_topic)))
            return e;
        if (req->notify_topic)
            req->notify_topic_field = "NotifyTopicName";
    }
    if (!req->notify_endpoint) {
        snprintf(c->path, sizeof(c->path), "NotifyEndpoint");
        if ((e = imm_field_string(c, root, "NotifyEndpoint", &req->notify_endpoint)))
            return e;
        if (req->notify_endpoint)
            req->notify_endpoint_field = "NotifyEndpoint";
    }
    if (req->notify_endpoint && !*req->notify_endpoint) {
        free(req->notify_endpoint);
        req->notify_endpoint = NULL;
    }
    if (req->notify_endpoint && strncmp(req->notify_endpoint, "http://", 7) &&
        strncmp(req->notify_endpoint, "https://", 8)) {
        snprintf(c->path, sizeof(c->path), "%s", req->notify_endpoint_field);
        return imm_field_bad(c, "is not an MNS endpoint (http:// or "
                                "https://ACCOUNT.mns.REGION.aliyuncs.com)");
    }
    if (req->notify_topic && !*req->notify_topic) {
        free(req->notify_topic);
        req->notify_topic = NULL;
    }
    /* MNS topic names: letters, digits and '-', starting with a letter, at most 256. */
    if (req->notify_topic) {
        const char *t = req->notify_topic;
        int okname = ((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z')) && strlen(t) <= 256;
        for (; okname && *t; t++)
            okname = (*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') ||
                     (*t >= '0' && *t <= '9') || *t == '-';
        snprintf(c->path, sizeof(c->path), "%s", req->notify_topic_field);
        if (!okname)
            return imm_field_bad(c, "is not an MNS topic name (a letter, then letters, digits and "
                                    "'-')");
    }
    return IMM_OK;
}

static imm_err parse_extras(imm_fields *c, const cJSON *root, imm_request *req)
{
    imm_err e;
    const cJSON *tags;
    snprintf(c->path, sizeof(c->path), "UserData");
    if ((e = imm_field_string(c, root, "UserData", &req->user_data)))
        return e;
    if (req->user_data && strlen(req->user_data) > MAX_USER_DATA)
        return imm_error_set(c->err, IMM_ELIMIT, "The parameter UserData exceeds %d bytes.",
                             MAX_USER_DATA);
    snprintf(c->path, sizeof(c->path), "Tags");
    if ((e = imm_field_object(c, root, "Tags", &tags)))
        return e;
    /* The SDK types Tags map<string, any>: every value is kept as given. */
    if (tags && !(req->tags = cJSON_Duplicate(tags, 1)))
        return imm_error_set(c->err, IMM_EINTERNAL, "out of memory");
    return parse_notification(c, root, req);
}

/* A target (or the ExtendedMessageURI) that overwrote a source, or another target, would lose
 * data the user still has. */
static imm_err check_target_clashes(imm_fields *c, const imm_request *req)
{
    const char *extended = req->notify_extended_uri;
    imm_field_at(c, "Notification.ExtendedMessageURI");
    for (int j = 0; extended && j < req->nsources; j++)
        if (!strcmp(extended, req->sources[j].uri))
            return imm_field_bad(c, "names one of the Sources; the task JSON never overwrites an "
                                    "input");
    for (int j = 0; extended && j < req->ntargets; j++)
        if (!strcmp(extended, req->targets[j].resolved))
            return imm_field_bad(c, "names one of the Targets; the task JSON would replace an "
                                    "output");
    imm_err e = IMM_OK;
    char *uris[IMM_MAX_TARGETS] = {0};
    for (int i = 0; i < req->ntargets && !e; i++) {
        uris[i] = imm_target_uri(&req->targets[i]);
        if (!uris[i]) {
            e = imm_error_set(c->err, IMM_EINTERNAL, "out of memory");
            break;
        }
        imm_field_at(c, "%s[%d].URI", "Targets", i);
        for (int j = 0; j < req->nsources && !e; j++)
            if (!strcmp(uris[i], req->sources[j].uri))
                e = imm_field_bad(c, "names one of the Sources; a merge never overwrites its "
                                     "input");
        for (int j = 0; j < i && !e; j++)
            if (!strcmp(uris[i], uris[j]))
                e = imm_field_bad(c, "names the same object as another target");
    }
    for (int i = 0; i < req->ntargets; i++)
        free(uris[i]);
    return e;
}

/* Each source is decoded once for all targets, so they must select (and mix) the same streams. */
static imm_err check_same_streams(imm_fields *c, const imm_request *req)
{
    const imm_stream_select *s0 = &req->targets[0].select;
    for (int i = 1; i < req->ntargets; i++) {
        const imm_stream_select *s = &req->targets[i].select;
        if (s->n != s0->n || memcmp(s->index, s0->index, sizeof(int) * (size_t)s->n)) {
            imm_field_at(c, "Targets[%d].Audio.Stream", i);
            return imm_field_bad(c, "differs from Targets[0]'s; selecting different streams per "
                                    "target is not supported by this engine yet");
        }
        if (s->mixing != s0->mixing) {
            imm_field_at(c, "Targets[%d].Audio.FilterAudio.Mixing", i);
            return imm_field_bad(c, "differs from Targets[0]'s; mixing for some targets only is "
                                    "not supported by this engine yet");
        }
    }
    return IMM_OK;
}

static imm_err parse_root(imm_fields *c, const cJSON *root, imm_request *req)
{
    imm_err e;
    const cJSON *arr, *item;
    int n, i = 0;

    /* The SDK's CreateMediaConvertTaskRequest, the legacy notification fields and ours. */
    static const char *const keys[] = {"ProjectName", "Sources", "Targets", "TargetGroups",
                                       "AlignmentIndex", "Notification", "Tags", "UserData",
                                       "CredentialConfig", "NotifyTopicName", "NotifyEndpoint",
                                       "ImmergeExtensions", NULL};
    c->path[0] = '\0';
    if ((e = imm_field_keys(c, root, keys, "a field of CreateMediaConvertTask")))
        return e;
    snprintf(c->path, sizeof(c->path), "ProjectName");
    if ((e = imm_field_string(c, root, "ProjectName", &req->project)))
        return e;
    if (!req->project || !*req->project)
        return imm_field_bad(c, "is required but not provided");

    if ((e = imm_parse_max_sources(c, root, req)) ||
        (e = imm_field_array(c, root, "Sources", &arr, &n)))
        return e;
    if (n > req->ext.max_sources)
        return imm_error_set(c->err, IMM_ELIMIT,
                             "The parameter Sources has %d elements; at most %d media files can "
                             "be merged in one task%s.", n, req->ext.max_sources,
                             n <= IMM_MAX_SOURCES ? " (ImmergeExtensions.MaxSources allows more)"
                                                  : "");
    cJSON_ArrayForEach(item, arr) {
        if ((e = parse_source(c, item, i, &req->sources[i])))
            return e;
        i++;
    }
    req->nsources = c->nsources = n;
    if ((e = parse_alignment(c, root, req)))
        return e;

    /* TargetGroups: HLS packaging groups, each with its master playlist. Checked before Targets,
     * which the SDK does not require when groups are given. */
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(root, "TargetGroups");
    snprintf(c->path, sizeof(c->path), "TargetGroups");
    if (groups && !cJSON_IsNull(groups) && !cJSON_IsArray(groups))
        return imm_field_bad(c, "must be an array");
    if (cJSON_GetArraySize(groups) > 0)
        return imm_field_bad(c, "(HLS packaging groups with a master playlist) is not supported by "
                                "immerge; use Targets with Segment {\"Format\": \"hls\"} for one "
                                "HLS output per target");
    if ((e = imm_field_array(c, root, "Targets", &arr, &n)))
        return e;
    if (n > IMM_MAX_TARGETS)
        return imm_error_set(c->err, IMM_ELIMIT,
                             "The parameter Targets has %d elements; at most %d are allowed.", n,
                             IMM_MAX_TARGETS);
    i = 0;
    cJSON_ArrayForEach(item, arr) {
        req->ntargets = i + 1; /* so that imm_request_free sees what was allocated */
        if ((e = imm_parse_target(c, item, i, &req->targets[i])))
            return e;
        i++;
    }
    if ((e = check_same_streams(c, req)) || (e = imm_parse_extensions(c, root, req)) ||
        (e = parse_extras(c, root, req)))
        return e;
    /* Last: a template may name the Tags. */
    req->created = (int64_t)time(NULL);
    for (i = 0; i < req->ntargets; i++) {
        imm_target_req *t = &req->targets[i];
        if (!(t->resolved = imm_target_uri_resolve(req, i, req->created, c->err)))
            return c->err->code;
        imm_field_at(c, "%s[%d].URI", "Targets", i);
        if ((e = imm_field_uri(c, t->resolved)))
            return e;
    }
    return check_target_clashes(c, req);
}

/* Whether the text holds a NUL: a raw byte, or the escape \u0000 that cJSON would turn into
 * one and so silently cut the string there ("a.mp3\u0000/../x" would read as "a.mp3"). */
static int holds_nul(const char *json, size_t len)
{
    if (memchr(json, '\0', len))
        return 1;
    for (size_t i = 0; i + 1 < len; i++)
        if (json[i] == '\\') {
            if (json[i + 1] == 'u' && i + 5 < len && !memcmp(json + i + 2, "0000", 4))
                return 1;
            i++; /* the escaped character */
        }
    return 0;
}

imm_err imm_request_parse(const char *json, size_t len, imm_request **out, imm_error *err)
{
    imm_fields c = {.err = err};
    imm_err e;
    *out = NULL;

    if (holds_nul(json, len))
        return imm_error_set(err, IMM_EARG, "The request holds a NUL character (\\u0000), which "
                             "no field may contain.");

    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return imm_error_set(err, IMM_EJSON, "The request is not valid JSON (near byte %ld).",
                             (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
    imm_request *req = calloc(1, sizeof(*req));
    if (!req) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        e = imm_error_set(err, IMM_EJSON, "The request must be a JSON object.");
        goto out;
    }
    if ((e = parse_root(&c, root, req)))
        goto out;
    req->raw = strndup(json, len);
    if (!req->raw) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto out;
    }
    *out = req;
    req = NULL;
out:
    imm_request_free(req);
    cJSON_Delete(root);
    return e;
}

void imm_request_free(imm_request *req)
{
    if (!req)
        return;
    for (int i = 0; i < IMM_MAX_SOURCES; i++)
        free(req->sources[i].uri);
    for (int i = 0; i < req->ntargets; i++) {
        free(req->targets[i].uri);
        free(req->targets[i].resolved);
        free(req->targets[i].container);
        free(req->targets[i].codec);
    }
    free(req->project);
    free(req->notify_topic);
    free(req->notify_extended_uri);
    free(req->notify_endpoint);
    free(req->user_data);
    free(req->raw);
    cJSON_Delete(req->tags);
    free(req);
}

imm_notification imm_request_notification(const imm_request *req)
{
    return (imm_notification){.topic = req->notify_topic,
                              .topic_field = req->notify_topic_field,
                              .endpoint = req->notify_endpoint,
                              .endpoint_field = req->notify_endpoint_field,
                              .extended_uri = req->notify_extended_uri,
                              .rocketmq = req->notify_rocketmq};
}

imm_err imm_request_check_storage(const imm_request *req, imm_storage *st, imm_error *err)
{
    imm_error why;
    char field[64];
    const char *uri;
    if (!st->ops->admits)
        return IMM_OK;
    for (int i = 0; i < req->nsources + req->ntargets + 1; i++) {
        if (i < req->nsources) {
            snprintf(field, sizeof(field), "Sources[%d].URI", i);
            uri = req->sources[i].uri;
        } else if (i < req->nsources + req->ntargets) {
            snprintf(field, sizeof(field), "Targets[%d].URI", i - req->nsources);
            uri = req->targets[i - req->nsources].resolved;
        } else {
            snprintf(field, sizeof(field), "Notification.ExtendedMessageURI");
            uri = req->notify_extended_uri;
        }
        if (uri && st->ops->admits(st, uri, &why))
            return imm_error_set(err, why.code, "The parameter %s is refused: %s", field,
                                 why.message);
    }
    return IMM_OK;
}
