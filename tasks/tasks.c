/*
 * tasks.c - the face of tasks.h: picks the implementation a `where` names, and shapes the
 * answers both give (GetTask's and ListTasks' JSON), so that the two answer alike.
 */
#include "tasks/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

imm_err imm_tasks_open(const char *where, const imm_tasks_options *opt, imm_tasks **out,
                       imm_error *err)
{
    static const imm_tasks_options defaults = {0};
    char path[4096];
    struct stat st;
    if (!opt)
        opt = &defaults;
    *out = NULL;
    if (!where || !*where)
        return imm_error_set(err, IMM_EARG, "No task records named: pass --tasks or --state.");
    if (!strncasecmp(where, "postgres://", 11) || !strncasecmp(where, "postgresql://", 13))
        return imm_tasks_pg_open(where, opt, out, err);
    /* A folder holds tasks.db; anything else is the SQLite file itself. */
    size_t len = strlen(where);
    int folder = !stat(where, &st) ? S_ISDIR(st.st_mode)
                                   : !(len > 3 && !strcmp(where + len - 3, ".db"));
    if (snprintf(path, sizeof(path), folder ? "%s/tasks.db" : "%s", where) >= (int)sizeof(path))
        return imm_error_set(err, IMM_EARG, "The task records' path is too long.");
    return imm_tasks_sqlite_open(path, opt, out, err);
}

void imm_tasks_close(imm_tasks *t)
{
    if (t)
        t->ops->close(t);
}

imm_err imm_tasks_stats_read(imm_tasks *t, imm_tasks_stats *s, imm_error *err)
{
    memset(s, 0, sizeof(*s));
    return t->ops->stats(t, s, err);
}

void imm_tasks_stats_clear(imm_tasks_stats *s)
{
    free(s->queued);
    memset(s, 0, sizeof(*s));
}

imm_err imm_tasks_ping(imm_tasks *t, imm_error *err)
{
    return t->ops->ping(t, err);
}

void imm_tasks_abandon(imm_tasks *t)
{
    t->ops->abandon(t);
}

int imm_tasks_shared(const imm_tasks *t)
{
    return t && t->shared;
}

/* ---- records ---------------------------------------------------------------------------------- */

/* The stored JSON as the service answers it: this answer's RequestId, a state the service
 * does not have reported as one it has (see tasks.h), TaskRequestDefinition only when asked. */
static cJSON *answer_task(const char *stored, int with_request)
{
    char rid[37];
    cJSON *o = cJSON_Parse(stored);
    if (!o)
        return NULL;
    imm_request_id_new(rid);
    cJSON_ReplaceItemInObject(o, "RequestId", cJSON_CreateString(rid));
    if (!with_request)
        cJSON_DeleteItemFromObject(o, "TaskRequestDefinition");
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItem(o, "Status"));
    const char *as = !status ? NULL : !strcmp(status, "Queued") ? "Running"
                                    : !strcmp(status, "Cancelled") ? "Failed" : NULL;
    if (as) {
        cJSON_AddStringToObject(o, "ImmergeStatus", status);
        cJSON_ReplaceItemInObject(o, "Status", cJSON_CreateString(as));
    }
    return o;
}

static int our_type(const char *type)
{
    return !type || !*type || !strcmp(type, "MediaConvert");
}

imm_err imm_tasks_get(imm_tasks *t, const char *project, const char *task_id,
                      const char *task_type, int with_request, char **json, imm_error *err)
{
    char *stored = NULL;
    *json = NULL;
    imm_err e = our_type(task_type) ? t->ops->get(t, project, task_id, &stored, err) : IMM_OK;
    if (e)
        return e;
    if (!stored)
        return imm_error_set(err, IMM_ENOTFOUND, "The specified resource TaskId %s is not "
                             "found%s%s%s%s.", task_id, project ? " in project " : "",
                             project ? project : "", our_type(task_type) ? "" : " as a ",
                             our_type(task_type) ? "" : task_type);
    cJSON *o = answer_task(stored, with_request);
    free(stored);
    *json = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    return *json ? IMM_OK : imm_error_set(err, IMM_EINTERNAL, "out of memory");
}

/* An RFC 3339 time ("2020-11-11T06:51:17Z", with or without a fraction, Z or +hh:mm) as the
 * records write it (UTC, milliseconds), so that times compare as text. */
static int normalise_time(const char *in, char out[32])
{
    struct tm tm = {0};
    const char *p = strptime(in, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    long ms = 0, scale = 100;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            ms += (*p - '0') * scale;
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int h, m;
        if (sscanf(p + 1, "%2d:%2d", &h, &m) != 2)
            return -1;
        offset = (*p == '+' ? 1 : -1) * (h * 3600L + m * 60L);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    time_t t = timegm(&tm) - offset;
    struct tm utc;
    gmtime_r(&t, &utc);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(out + strlen(out), 32 - strlen(out), ".%03ldZ", ms);
    return 0;
}

/* TimeRange {"Start", "End"}, a JSON string as the SDKs send it. */
static imm_err set_range(const char *name, const char *value, char from[32], char to[32],
                         imm_error *err)
{
    cJSON *o = cJSON_Parse(value);
    imm_err e = IMM_OK;
    if (!cJSON_IsObject(o)) {
        e = imm_error_set(err, IMM_EARG, "The parameter %s must be a JSON object {\"Start\": "
                          "TIME, \"End\": TIME} (RFC 3339 times).", name);
    } else {
        const char *keys[] = {"Start", "End"};
        char *outs[] = {from, to};
        for (int i = 0; i < 2 && !e; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
            outs[i][0] = '\0';
            if (v && !cJSON_IsNull(v) &&
                (!cJSON_IsString(v) || normalise_time(v->valuestring, outs[i])))
                e = imm_error_set(err, IMM_EARG, "The parameter %s.%s must be an RFC 3339 time "
                                  "(2020-11-11T06:51:17Z).", name, keys[i]);
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, o) {
            if (!e && strcmp(item->string, "Start") && strcmp(item->string, "End"))
                e = imm_error_set(err, IMM_EARG, "The parameter %s.%s is not a field of "
                                  "TimeRange (Start, End).", name, item->string);
        }
    }
    cJSON_Delete(o);
    return e;
}

/* TaskTypes: a JSON array of type names; one that is not ours (MediaConvert) finds nothing. */
static imm_err set_types(imm_list_query *q, const char *value, imm_error *err)
{
    cJSON *a = cJSON_Parse(value);
    imm_err e = IMM_OK;
    int ours = 0, n = 0;
    const cJSON *item;
    if (!cJSON_IsArray(a))
        e = imm_error_set(err, IMM_EARG, "The parameter TaskTypes must be a JSON array of task "
                          "types ([\"MediaConvert\"]).");
    cJSON_ArrayForEach(item, a) {
        if (!cJSON_IsString(item)) {
            e = imm_error_set(err, IMM_EARG, "The parameter TaskTypes must hold strings.");
            break;
        }
        n++;
        ours |= !strcmp(item->valuestring, "MediaConvert");
    }
    q->none = !e && n > 0 && !ours;
    cJSON_Delete(a);
    return e;
}

static int parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !*v)
        *out = 0;
    else
        return -1;
    return 0;
}

imm_err imm_list_query_set(imm_list_query *q, const char *name, const char *value,
                           imm_error *err)
{
    if (!strcmp(name, "Status")) {
        q->status = *value ? value : NULL;
    } else if (!strcmp(name, "NextToken")) {
        q->next_token = value;
    } else if (!strcmp(name, "MaxResults")) {
        char *end;
        long v = strtol(value, &end, 10);
        if (*end || v < 1 || v > IMM_TASKS_MAX_LIST)
            return imm_error_set(err, IMM_EARG, "The parameter MaxResults must be from 1 to %d.",
                                 IMM_TASKS_MAX_LIST);
        q->max = (int)v;
    } else if (!strcmp(name, "TagSelector")) {
        if (!*value)
            return IMM_OK;
        snprintf(q->tag, sizeof(q->tag), "%s", value);
        char *eq = strchr(q->tag, '=');
        if (!eq)
            return imm_error_set(err, IMM_EARG, "The parameter TagSelector must be KEY=VALUE.");
        *eq = '\0';
        q->tag_key = q->tag;
        q->tag_value = eq + 1;
    } else if (!strcmp(name, "Sort")) {
        static const char *const sorts[] = {"TaskId", "StartTime", "EndTime"};
        static const imm_list_sort as[] = {IMM_SORT_TASK_ID, IMM_SORT_START_TIME,
                                           IMM_SORT_END_TIME};
        size_t i = 0;
        while (i < 3 && strcmp(value, sorts[i]))
            i++;
        if (i == 3)
            return imm_error_set(err, IMM_EARG, "The parameter Sort must be TaskId, StartTime "
                                 "or EndTime.");
        q->sort = as[i];
    } else if (!strcmp(name, "Order")) {
        if (strcasecmp(value, "asc") && strcasecmp(value, "desc"))
            return imm_error_set(err, IMM_EARG, "The parameter Order must be asc or desc.");
        q->descending = !strcasecmp(value, "desc");
    } else if (!strcmp(name, "TaskTypes")) {
        return set_types(q, value, err);
    } else if (!strcmp(name, "StartTimeRange")) {
        return set_range(name, value, q->start_from, q->start_to, err);
    } else if (!strcmp(name, "EndTimeRange")) {
        return set_range(name, value, q->end_from, q->end_to, err);
    } else if (!strcmp(name, "RequestDefinition")) {
        if (parse_bool(value, &q->with_request))
            return imm_error_set(err, IMM_EARG, "The parameter RequestDefinition must be true "
                                 "or false.");
    } else {
        return imm_error_set(err, IMM_EARG, "The parameter %s is not one of ListTasks.", name);
    }
    return IMM_OK;
}

typedef struct page {
    cJSON *tasks;
    int n, max, with_request;
    long long last;
    char last_key[64];
    char next[200];
    const imm_list_query *q;
} page;

/* NextToken: "SEQ" in submission order; "SO:SEQ:HEXKEY" otherwise (S the sort, O a or d), so
 * that a token is only taken back for the order that gave it. */
static void make_token(const page *p, char *out, size_t len)
{
    if (p->q->sort == IMM_SORT_SUBMITTED && !p->q->descending) {
        snprintf(out, len, "%lld", p->last);
        return;
    }
    int n = snprintf(out, len, "%c%c:%lld:", "OTSE"[p->q->sort], p->q->descending ? 'd' : 'a',
                     p->last);
    for (const char *k = p->last_key; *k && n + 3 < (int)len; k++)
        n += snprintf(out + n, len - (size_t)n, "%02x", (unsigned char)*k);
}

static imm_err read_token(const imm_list_query *q, imm_list_cursor *c, imm_error *err)
{
    const char *tok = q->next_token;
    char *end;
    memset(c, 0, sizeof(*c));
    if (!tok || !*tok)
        return IMM_OK;
    if (q->sort == IMM_SORT_SUBMITTED && !q->descending) {
        c->seq = strtoll(tok, &end, 10);
        if (!*end && c->seq > 0)
            return IMM_OK;
    } else if (tok[0] == "OTSE"[q->sort] && tok[1] == (q->descending ? 'd' : 'a') &&
               tok[2] == ':') {
        c->seq = strtoll(tok + 3, &end, 10);
        size_t n = 0;
        if (*end == ':' && c->seq > 0) {
            const char *h = end + 1;
            unsigned v;
            while (h[0] && h[1] && n + 1 < sizeof(c->key) && sscanf(h, "%2x", &v) == 1) {
                c->key[n++] = (char)v;
                h += 2;
            }
            if (!*h)
                return IMM_OK;
        }
    }
    return imm_error_set(err, IMM_EARG, "The parameter NextToken %s is not one this server "
                         "gave for this Sort and Order.", tok);
}

static void add_to_page(void *opaque, long long seq, const char *key, const char *stored)
{
    page *p = opaque;
    if (p->n == p->max) { /* the one more that tells a next page exists */
        make_token(p, p->next, sizeof(p->next));
        return;
    }
    p->last = seq;
    snprintf(p->last_key, sizeof(p->last_key), "%s", key ? key : "");
    p->n++;
    cJSON *task = answer_task(stored, p->with_request);
    if (task) {
        cJSON_DeleteItemFromObject(task, "RequestId");
        cJSON_AddItemToArray(p->tasks, task);
    }
}

imm_err imm_tasks_list(imm_tasks *t, const imm_list_query *query, char **json, imm_error *err)
{
    char rid[37];
    imm_list_cursor after;
    imm_list_query q = *query;
    *json = NULL;
    imm_err e = read_token(&q, &after, err);
    if (e)
        return e;
    /* The states GetTask reports as another (answer_task) are found under it. */
    q.status_also = !q.status ? NULL : !strcmp(q.status, "Running") ? "Queued"
                                     : !strcmp(q.status, "Failed") ? "Cancelled" : NULL;
    page p = {.tasks = cJSON_CreateArray(), .with_request = q.with_request, .q = &q,
              .max = q.max > 0 && q.max <= IMM_TASKS_MAX_LIST ? q.max : IMM_TASKS_MAX_LIST};
    if (!q.none)
        e = t->ops->list(t, &q, &after, p.max, add_to_page, &p, err);
    cJSON *o = cJSON_CreateObject();
    imm_request_id_new(rid);
    cJSON_AddStringToObject(o, "RequestId", rid);
    if (q.project)
        cJSON_AddStringToObject(o, "ProjectName", q.project);
    char max[16]; /* a string, as the SDKs' ListTasksResponseBody models it */
    snprintf(max, sizeof(max), "%d", p.max);
    cJSON_AddStringToObject(o, "MaxResults", max);
    if (*p.next)
        cJSON_AddStringToObject(o, "NextToken", p.next);
    cJSON_AddItemToObject(o, "Tasks", p.tasks);
    if (!e && !(*json = cJSON_Print(o)))
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
    cJSON_Delete(o);
    return e;
}

/* ---- running a task --------------------------------------------------------------------------- */

imm_task *imm_claim_task(const imm_claim *c)
{
    return c->task;
}

const char *imm_claim_task_id(const imm_claim *c)
{
    return c->task_id;
}

const char *imm_claim_committing(const imm_claim *c)
{
    return c->committing;
}

const imm_request *imm_claim_request(const imm_claim *c)
{
    return c->req;
}

const volatile int *imm_claim_lost(const imm_claim *c)
{
    return &c->lost;
}

imm_err imm_tasks_start(imm_tasks *t, imm_task *task, const imm_request *req, imm_claim **out,
                        imm_error *err)
{
    imm_claim *c = imm_claim_new(task, (imm_request *)req, 0);
    *out = NULL;
    if (!c)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    imm_err e = t->ops->start(t, c, err);
    if (e)
        imm_claim_free(c);
    else
        *out = c;
    return e;
}

imm_err imm_tasks_enqueue(imm_tasks *t, imm_task *task, imm_request *req, int queue, int *full,
                          imm_error *err)
{
    imm_claim *c = imm_claim_new(task, req, 1);
    *full = 0;
    if (!c)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    imm_task_set_queued(task);
    return t->ops->enqueue(t, c, queue, full, err); /* it owns c from here */
}

imm_err imm_tasks_claim(imm_tasks *t, const volatile int *stop, imm_claim **out,
                        imm_error *err)
{
    *out = NULL;
    return t->ops->claim(t, stop, out, err);
}

imm_err imm_tasks_progress(imm_tasks *t, imm_claim *c, imm_error *err)
{
    return c->lost ? IMM_OK : t->ops->progress(t, c, err);
}

imm_err imm_tasks_fence(imm_tasks *t, imm_claim *c, const char *committing, imm_error *err)
{
    return t->ops->fence(t, c, committing, err);
}

imm_err imm_tasks_finish(imm_tasks *t, imm_claim *c, const imm_message *m, int n,
                         long long *ids, int *won, imm_error *err)
{
    *won = 0;
    for (int i = 0; i < n; i++)
        ids[i] = 0;
    return c->lost ? IMM_OK : t->ops->finish(t, c, m, n, ids, won, err);
}

void imm_tasks_message_done(imm_tasks *t, long long id, int delivered, const char *why)
{
    if (id > 0)
        t->ops->message_done(t, id, delivered, why ? why : "");
}

imm_err imm_tasks_messages_due(imm_tasks *t, int max, imm_message **out, long long *ids, int *n,
                               imm_error *err)
{
    *out = NULL;
    *n = 0;
    return t->ops->messages_due(t, max, out, ids, n, err);
}

imm_err imm_tasks_annotate(imm_tasks *t, imm_claim *c, imm_error *err)
{
    return t->ops->annotate(t, c, err);
}

void imm_tasks_release(imm_tasks *t, imm_claim *c)
{
    if (!c)
        return;
    if (t)
        t->ops->release(t, c);
    imm_claim_free(c);
}

void imm_tasks_drain(imm_tasks *t)
{
    t->ops->drain(t);
}
