/*
 * tasks.c - the face of tasks.h: picks the implementation a `where` names, and shapes the
 * answers both give (GetTask's and ListTasks' JSON), so that the two answer alike.
 */
#include "tasks_internal.h"

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

int imm_tasks_shared(const imm_tasks *t)
{
    return t && t->shared;
}

double imm_tasks_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void imm_tasks_wait(pthread_cond_t *cond, pthread_mutex_t *lock, double seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long long ns = until.tv_nsec + (long long)(seconds * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    pthread_cond_timedwait(cond, lock, &until);
}

/* ---- records ---------------------------------------------------------------------------------- */

/* The stored JSON with this answer's RequestId, and without TaskRequestDefinition unless asked. */
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
    return o;
}

imm_err imm_tasks_get(imm_tasks *t, const char *project, const char *task_id, char **json,
                      imm_error *err)
{
    char *stored = NULL;
    *json = NULL;
    imm_err e = t->ops->get(t, project, task_id, &stored, err);
    if (e)
        return e;
    if (!stored)
        return imm_error_set(err, IMM_ENOTFOUND, "The specified resource TaskId %s is not "
                             "found%s%s.", task_id, project ? " in project " : "",
                             project ? project : "");
    cJSON *o = answer_task(stored, 1);
    free(stored);
    *json = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    return *json ? IMM_OK : imm_error_set(err, IMM_EINTERNAL, "out of memory");
}

typedef struct page {
    cJSON *tasks;
    int n, max;
    long long last;
    char next[32];
} page;

static void add_to_page(void *opaque, long long seq, const char *stored)
{
    page *p = opaque;
    if (p->n == p->max) { /* the one more that tells a next page exists */
        snprintf(p->next, sizeof(p->next), "%lld", p->last);
        return;
    }
    p->last = seq;
    p->n++;
    cJSON *task = answer_task(stored, 0);
    if (task) {
        cJSON_DeleteItemFromObject(task, "RequestId");
        cJSON_AddItemToArray(p->tasks, task);
    }
}

imm_err imm_tasks_list(imm_tasks *t, const imm_list_query *q, char **json, imm_error *err)
{
    char rid[37];
    long long after = 0;
    *json = NULL;
    if (q->next_token && *q->next_token) {
        char *end;
        after = strtoll(q->next_token, &end, 10);
        if (*end || after <= 0)
            return imm_error_set(err, IMM_EARG, "The parameter NextToken %s is not one this "
                                 "server gave.", q->next_token);
    }
    page p = {.tasks = cJSON_CreateArray(),
              .max = q->max > 0 && q->max <= IMM_TASKS_MAX_LIST ? q->max : IMM_TASKS_MAX_LIST};
    imm_err e = t->ops->list(t, q, after, p.max, add_to_page, &p, err);
    cJSON *o = cJSON_CreateObject();
    imm_request_id_new(rid);
    cJSON_AddStringToObject(o, "RequestId", rid);
    if (q->project)
        cJSON_AddStringToObject(o, "ProjectName", q->project);
    cJSON_AddStringToObject(o, "NextToken", p.next);
    cJSON_AddItemToObject(o, "Tasks", p.tasks);
    if (!e && !(*json = cJSON_Print(o)))
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
    cJSON_Delete(o);
    return e;
}

imm_err imm_task_row(const imm_task *task, task_row *row, imm_error *err)
{
    memset(row, 0, sizeof(*row));
    row->json = imm_task_to_json(task);
    row->parsed = row->json ? cJSON_Parse(row->json) : NULL;
    if (!row->parsed) {
        imm_task_row_clear(row);
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    const char *fields[] = {"TaskId", "ProjectName", "Status", "StartTime"};
    const char **columns[] = {&row->task_id, &row->project, &row->status, &row->start};
    for (int i = 0; i < 4; i++) {
        *columns[i] = cJSON_GetStringValue(cJSON_GetObjectItem(row->parsed, fields[i]));
        if (!*columns[i])
            *columns[i] = "";
    }
    cJSON *tags = cJSON_GetObjectItem(row->parsed, "Tags");
    row->tags = tags ? cJSON_PrintUnformatted(tags) : NULL;
    return IMM_OK;
}

void imm_task_row_clear(task_row *row)
{
    free(row->json);
    cJSON_Delete(row->parsed);
    free(row->tags);
    memset(row, 0, sizeof(*row));
}

char *imm_task_interrupted(const char *stored, const char *who, int queued, const char **status)
{
    char end[32], msg[300];
    cJSON *o = cJSON_Parse(stored);
    if (!o)
        return NULL;
    imm_now_rfc3339(end);
    if (queued)
        snprintf(msg, sizeof(msg), "The %s holding this task stopped before the task started; "
                 "submit it again.", who);
    else
        snprintf(msg, sizeof(msg), "The %s running this task stopped before the task "
                 "finished; no output was committed by it after that.", who);
    *status = queued ? "Cancelled" : "Failed";
    cJSON_ReplaceItemInObject(o, "Status", cJSON_CreateString(*status));
    cJSON_ReplaceItemInObject(o, "Code", cJSON_CreateString(queued ? "NotStarted"
                                                                   : "TaskInterrupted"));
    cJSON_ReplaceItemInObject(o, "Message", cJSON_CreateString(msg));
    cJSON_DeleteItemFromObject(o, "EndTime");
    cJSON_AddStringToObject(o, "EndTime", end);
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

/* ---- running a task --------------------------------------------------------------------------- */

imm_claim *imm_claim_new(imm_task *task, imm_request *req, int owns)
{
    imm_claim *c = calloc(1, sizeof(*c));
    if (c) {
        c->task = task;
        c->req = req;
        c->owns = owns;
        c->attempt = 1;
    } else if (owns) {
        imm_task_free(task);
        imm_request_free(req);
    }
    return c;
}

void imm_claim_free(imm_claim *c)
{
    if (!c)
        return;
    if (c->owns) {
        imm_task_free(c->task);
        imm_request_free(c->req);
    }
    free(c->project);
    free(c);
}

imm_task *imm_claim_task(const imm_claim *c)
{
    return c->task;
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

imm_err imm_tasks_fence(imm_tasks *t, imm_claim *c, imm_error *err)
{
    return t->ops->fence(t, c, err);
}

imm_err imm_tasks_finish(imm_tasks *t, imm_claim *c, int *won, imm_error *err)
{
    *won = 0;
    return c->lost ? IMM_OK : t->ops->finish(t, c, won, err);
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
