/*
 * record.c - a task as the service shows it: its ids, status and times, what each source and
 * target gave, and its JSON in GetTask's shape; the record a task is stored as and restored from,
 * the record of the outputs about to be committed (for a run that takes over), and the completion
 * message. The run (run.c) fills it in; the service's records (tasks/) store its JSON.
 */
#include "engine/task/task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

imm_task *imm_task_new(const imm_request *req)
{
    char uuid[37];
    imm_task *t = calloc(1, sizeof(*t));
    if (!t || !(t->sources = calloc((size_t)req->nsources, sizeof(*t->sources)))) {
        free(t);
        return NULL;
    }
    t->req = req;
    t->nsources = req->nsources;
    imm_request_id_new(t->request_id);
    imm_uuid_lower(uuid);
    snprintf(t->task_id, sizeof(t->task_id), "MediaConvert-%s", uuid);
    imm_uuid_lower(uuid);
    snprintf(t->event_id, sizeof(t->event_id), "immerge-%s", uuid);
    t->status = "Running";
    imm_now_rfc3339(t->start);
    return t;
}

imm_task *imm_task_restore(const imm_request *req, const char *record_json)
{
    cJSON *o = cJSON_Parse(record_json);
    const char *ids[3] = {cJSON_GetStringValue(cJSON_GetObjectItem(o, "TaskId")),
                          cJSON_GetStringValue(cJSON_GetObjectItem(o, "RequestId")),
                          cJSON_GetStringValue(cJSON_GetObjectItem(o, "EventId"))};
    imm_task *t = ids[0] && ids[1] && ids[2] ? imm_task_new(req) : NULL;
    if (t) {
        snprintf(t->task_id, sizeof(t->task_id), "%s", ids[0]);
        snprintf(t->request_id, sizeof(t->request_id), "%s", ids[1]);
        snprintf(t->event_id, sizeof(t->event_id), "%s", ids[2]);
        const cJSON *targets = cJSON_GetObjectItem(o, "Targets");
        for (int i = 0; i < req->ntargets && i < cJSON_GetArraySize(targets); i++) {
            const char *uri = cJSON_GetStringValue(
                cJSON_GetObjectItem(cJSON_GetArrayItem(targets, i), "URI"));
            if (uri && strcmp(uri, req->targets[i].resolved))
                t->created_uris[i] = strdup(uri);
        }
    }
    cJSON_Delete(o);
    return t;
}

const char *imm_task_request_id(const imm_task *t)
{
    return t->request_id;
}

/* A source with video going into a container that could carry it: the service would make a
 * video there, immerge makes audio only, so it asks for DisableVideo (the source's, or the
 * target's Video.DisableVideo) rather than differ. */
static void add_source_json(cJSON *arr, const imm_source_req *sr, const source_result *res)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "URI", sr->uri);
    if (sr->disable_audio) {
        cJSON_AddBoolToObject(o, "DisableAudio", 1);
    } else if (res->sample_rate) {
        cJSON_AddNumberToObject(o, "SampleRate", res->sample_rate);
        cJSON_AddNumberToObject(o, "Channel", res->channels);
        cJSON_AddNumberToObject(o, "Samples", (double)imm_timeline_samples(&res->taken));
    }
    cJSON_AddItemToArray(arr, o);
}

static void add_target_json(cJSON *arr, const imm_target_req *treq, const target_result *tr,
                            int done)
{
    const imm_target_plan *p = &tr->plan;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "URI", p->uri ? p->uri : treq->resolved);
    cJSON_AddStringToObject(o, "Container", treq->container);
    cJSON_AddStringToObject(o, "Codec", treq->codec);
    if (done) {
        cJSON_AddNumberToObject(o, "SampleRate", p->sample_rate);
        cJSON_AddNumberToObject(o, "Channel", p->layout.nb_channels);
        if (p->bitrate)
            cJSON_AddNumberToObject(o, "Bitrate", (double)p->bitrate);
        if (p->quality >= 0)
            cJSON_AddNumberToObject(o, "Quality", p->quality);
        if (p->bits_per_sample)
            cJSON_AddNumberToObject(o, "BitsPerSample", p->bits_per_sample);
        cJSON_AddNumberToObject(o, "Samples", (double)tr->samples);
        cJSON_AddNumberToObject(o, "Duration", (double)tr->samples / p->sample_rate);
        cJSON_AddNumberToObject(o, "Size", (double)tr->size);
        /* immerge's own: where the output passes from one chunk's encoder to the next. */
        if (tr->nseams) {
            cJSON *seams = cJSON_AddArrayToObject(o, "Seams");
            for (int i = 0; i < tr->nseams; i++)
                cJSON_AddItemToArray(seams, cJSON_CreateNumber((double)tr->seams[i]));
        }
    }
    cJSON_AddItemToArray(arr, o);
}

static double rounded(double x)
{
    return (double)llround(x * 1e6) / 1e6;
}

/* immerge's own, under a key the service never sends: what each source gave, and each join's
 * position in every target's output with how it measures (joins.c). */
static void add_report_json(cJSON *o, const imm_task *t)
{
    const imm_request *req = t->req;
    cJSON *rep = cJSON_AddObjectToObject(o, "ImmergeReport");
    cJSON *srcs = cJSON_AddArrayToObject(rep, "Sources");
    cJSON *joins = cJSON_AddArrayToObject(rep, "Joins");
    int64_t before[IMM_MAX_TARGETS] = {0}; /* each target's samples before source i */
    for (int i = 0, prev = -1, njoins = 0; i < req->nsources; i++) {
        const source_result *s = &t->sources[i];
        if (!s->merged)
            continue;
        cJSON *so = cJSON_CreateObject();
        cJSON_AddNumberToObject(so, "Index", i);
        cJSON_AddNumberToObject(so, "Samples", (double)imm_timeline_samples(&s->taken));
        cJSON_AddNumberToObject(so, "SampleRate", s->sample_rate);
        if (s->taken.n > 1) /* its rate changed within the clip: each run of one rate */
            imm_timeline_json(so, &s->taken);
        cJSON_AddNumberToObject(so, "ClipStartSample", (double)s->clip_start);
        cJSON_AddNumberToObject(so, "TrimmedStart", (double)s->trimmed_start);
        cJSON_AddNumberToObject(so, "TrimmedEnd", (double)s->trimmed_end);
        if (req->ext.trim) { /* the silence dropped at either edge, in the source's samples */
            cJSON *sil = cJSON_AddObjectToObject(so, "SilenceTrimmed");
            cJSON_AddNumberToObject(sil, "Start", (double)s->silence[0]);
            cJSON_AddNumberToObject(sil, "End", (double)s->silence[1]);
        }
        cJSON_AddItemToArray(srcs, so);
        if (prev >= 0) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "After", prev);
            cJSON_AddNumberToObject(j, "Before", i);
            cJSON *at = cJSON_AddArrayToObject(j, "TargetSamples");
            njoins++; /* each crossfade pulls what follows it back by its overlap */
            for (int k = 0; k < t->ntargets; k++) {
                const imm_target_plan *p = &t->targets[k].plan;
                int64_t pos = before[k] - njoins * p->xfade;
                cJSON_AddItemToArray(at, cJSON_CreateNumber((double)llround(pos / p->speed)));
            }
            if (s->joined) {
                const imm_join_measure *m = &s->join;
                cJSON_AddNumberToObject(j, "Jump", rounded(m->jump));
                cJSON_AddNumberToObject(j, "LocalRms", rounded(m->rms));
                if (m->rms > 0)
                    cJSON_AddNumberToObject(j, "JumpToRms", rounded(m->jump / m->rms));
                if (m->step > 0)
                    cJSON_AddNumberToObject(j, "JumpToStep", rounded(m->jump / m->step));
            }
            cJSON_AddItemToArray(joins, j);
        }
        for (int k = 0; k < t->ntargets; k++)
            before[k] += imm_timeline_length(&s->taken, t->targets[k].plan.sample_rate);
        prev = i;
    }
    if (!req->ext.loudness)
        return;
    cJSON *loud = cJSON_AddArrayToObject(rep, "Loudness");
    for (int k = 0; k < t->ntargets; k++) {
        const imm_normalised *n = &t->targets[k].loudness;
        cJSON *lo = cJSON_CreateObject();
        if (isfinite(n->measured))
            cJSON_AddNumberToObject(lo, "MeasuredLufs", rounded(n->measured));
        if (isfinite(n->peak))
            cJSON_AddNumberToObject(lo, "PeakDbfs", rounded(n->peak));
        cJSON_AddNumberToObject(lo, "GainDb", rounded(n->gain));
        cJSON_AddBoolToObject(lo, "LimitedByMaxPeak", n->limited);
        cJSON_AddItemToArray(loud, lo);
    }
}

/* An adopted record with what is this run's: its end and how its messages went. */
static char *adopted_json(const imm_task *t)
{
    cJSON *o = cJSON_Duplicate(t->adopted, 1);
    if (!o)
        return NULL;
    cJSON_ReplaceItemInObject(o, "EndTime", cJSON_CreateString(t->end));
    cJSON_DeleteItemFromObject(o, "Notifications");
    cJSON *notes = t->notifications ? cJSON_Parse(t->notifications) : NULL;
    if (notes)
        cJSON_AddItemToObject(o, "Notifications", notes);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

char *imm_task_to_json(const imm_task *t)
{
    const imm_request *req = t->req;
    int done = !strcmp(t->status, "Succeeded");
    if (t->adopted)
        return adopted_json(t);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "RequestId", t->request_id);
    cJSON_AddStringToObject(o, "EventId", t->event_id);
    cJSON_AddStringToObject(o, "ProjectName", req->project);
    cJSON_AddStringToObject(o, "TaskType", "MediaConvert");
    cJSON_AddStringToObject(o, "TaskId", t->task_id);
    cJSON_AddStringToObject(o, "Status", t->status);
    int failed = t->error.code != IMM_OK && strcmp(t->status, "Running");
    cJSON_AddStringToObject(o, "Code", t->not_started ? "NotStarted"
                                       : failed ? imm_err_code(t->error.code) : "");
    cJSON_AddStringToObject(o, "Message", failed ? t->error.message : "");
    cJSON_AddStringToObject(o, "StartTime", t->start);
    if (t->end[0])
        cJSON_AddStringToObject(o, "EndTime", t->end);
    cJSON_AddNumberToObject(o, "Progress", t->progress);
    if (req->user_data)
        cJSON_AddStringToObject(o, "UserData", req->user_data);
    if (req->tags)
        cJSON_AddItemToObject(o, "Tags", cJSON_Duplicate(req->tags, 1));
    cJSON *notes = t->notifications ? cJSON_Parse(t->notifications) : NULL;
    if (notes)
        cJSON_AddItemToObject(o, "Notifications", notes);
    cJSON_AddStringToObject(o, "TaskRequestDefinition", req->raw);
    cJSON *sources = cJSON_AddArrayToObject(o, "Sources");
    for (int i = 0; i < req->nsources; i++)
        add_source_json(sources, &req->sources[i], &t->sources[i]);
    cJSON *targets = cJSON_AddArrayToObject(o, "Targets");
    for (int i = 0; i < req->ntargets; i++)
        add_target_json(targets, &req->targets[i], &t->targets[i], done);
    if (done)
        add_report_json(o, t);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

char *imm_task_committing_json(const imm_task *t)
{
    imm_task done = *t;
    done.status = "Succeeded";
    done.progress = 100;
    imm_now_rfc3339(done.end);
    return imm_task_to_json(&done);
}

/* Whether the record is this task's finished one, and every output it names is st's, committed
 * by this task. */
static imm_err outputs_committed(const imm_task *t, const cJSON *rec, imm_storage *st, int *all,
                                 imm_error *err)
{
    const cJSON *targets = cJSON_GetObjectItem(rec, "Targets"), *target;
    *all = 0;
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(rec, "TaskId"));
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItem(rec, "Status"));
    if (!id || strcmp(id, t->task_id) || !status || strcmp(status, "Succeeded") ||
        cJSON_GetArraySize(targets) != t->req->ntargets || !st->ops->owner_of)
        return IMM_OK;
    cJSON_ArrayForEach(target, targets) {
        const char *uri = cJSON_GetStringValue(cJSON_GetObjectItem(target, "URI"));
        char owner[128];
        if (!uri)
            return IMM_OK;
        imm_err e = st->ops->owner_of(st, uri, owner, sizeof(owner), err);
        if (e == IMM_ENOTFOUND || (!e && strcmp(owner, t->task_id)))
            return IMM_OK;
        if (e)
            return e;
    }
    *all = 1;
    return IMM_OK;
}

imm_err imm_task_adopt(imm_task *t, const char *committing_json, imm_storage *st, int *adopted,
                       imm_error *err)
{
    cJSON *rec = committing_json ? cJSON_Parse(committing_json) : NULL;
    int all = 0;
    imm_err e = rec ? outputs_committed(t, rec, st, &all, err) : IMM_OK;
    *adopted = 0;
    if (e || !all) {
        cJSON_Delete(rec);
        return e;
    }
    cJSON_Delete(t->adopted);
    t->adopted = rec;
    t->status = "Succeeded";
    t->progress = 100;
    imm_now_rfc3339(t->end);
    *adopted = 1;
    return IMM_OK;
}

void imm_task_set_queued(imm_task *t)
{
    t->status = "Queued";
}

void imm_task_set_not_started(imm_task *t, const char *why)
{
    t->status = "Cancelled";
    imm_error_set(&t->error, IMM_ECANCELED, "%s", why);
    t->not_started = 1;
    imm_now_rfc3339(t->end);
}

imm_err imm_task_set_notifications(imm_task *t, const char *json_array)
{
    char *copy = json_array ? strdup(json_array) : NULL;
    if (json_array && !copy)
        return IMM_EINTERNAL;
    free(t->notifications);
    t->notifications = copy;
    return IMM_OK;
}

char *imm_task_message(const imm_task *t, const char *region, const char *account_id)
{
    char subject[512], when[32];
    struct timespec ts = imm_clock_after(IMM_CLOCK_WALL, 0);
    snprintf(when, sizeof(when), "%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    snprintf(subject, sizeof(subject), "acs:imm:%s:%s:%s/imm:Task:MediaConvert", region,
             account_id, t->req->project);
    char *task = imm_task_to_json(t);
    cJSON *content = task ? cJSON_Parse(task) : NULL;
    free(task);
    if (!content)
        return NULL;
    /* The message reports the task, not how the message itself was delivered. */
    cJSON_DeleteItemFromObject(content, "Notifications");
    /* Fields the service's message has and an offline run has no value for. */
    cJSON_AddStringToObject(content, "DatasetName", "");
    cJSON_AddStringToObject(content, "EventSourceId", "");
    char *content_str = cJSON_PrintUnformatted(content);
    cJSON_Delete(content);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", t->event_id);
    cJSON_AddStringToObject(o, "source", "acs.imm");
    cJSON_AddStringToObject(o, "type", "imm:Task:MediaConvert");
    cJSON_AddStringToObject(o, "subject", subject);
    cJSON_AddStringToObject(o, "time", when);
    cJSON_AddStringToObject(o, "content", content_str ? content_str : "");
    char *out = content_str ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    free(content_str);
    return out;
}

void imm_task_free(imm_task *t)
{
    if (!t)
        return;
    free(t->notifications);
    cJSON_Delete(t->adopted);
    for (int i = 0; i < t->nsources; i++)
        imm_timeline_clear(&t->sources[i].taken);
    free(t->sources);
    for (int i = 0; i < IMM_MAX_TARGETS; i++) {
        imm_plan_clear(&t->targets[i].plan);
        free(t->created_uris[i]);
    }
    free(t);
}
