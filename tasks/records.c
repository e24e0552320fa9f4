/*
 * records.c - what the two implementations of tasks.h share (backend.h): the
 * columns a task's record is stored under, a record rewritten for a run that stopped, the
 * keyset paging's SQL words, the outbox's backoff, claims, and the wait on a condition. The
 * interface (tasks.c) calls the implementations and they call this, never the interface back.
 */
#include "tasks/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void imm_tasks_wait(pthread_cond_t *cond, pthread_mutex_t *lock, double seconds)
{
    struct timespec until = imm_clock_after(IMM_CLOCK_WALL, seconds);
    pthread_cond_timedwait(cond, lock, &until);
}

const char *imm_list_key_sql(const imm_list_query *q, const char *start, const char *end)
{
    switch (q->sort) {
    case IMM_SORT_TASK_ID: return "task_id";
    case IMM_SORT_START_TIME: return start;
    case IMM_SORT_END_TIME: return end;
    default: return "''";
    }
}

const char *imm_list_bound(const char *bound)
{
    return *bound ? bound : NULL;
}

const char *imm_list_after_sql(const imm_list_query *q)
{
    return q->descending ? "<" : ">";
}

const char *imm_list_order_sql(const imm_list_query *q)
{
    return q->descending ? "DESC" : "ASC";
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
    const char *fields[] = {"TaskId", "ProjectName", "Status", "StartTime", "EndTime"};
    const char **columns[] = {&row->task_id, &row->project, &row->status, &row->start,
                              &row->end};
    for (int i = 0; i < 5; i++) {
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

double imm_outbox_backoff(int tries)
{
    double wait = 5;
    for (int i = 1; i < tries && wait < 3600; i++)
        wait *= 2;
    return wait < 3600 ? wait : 3600;
}

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
    free(c->committing);
    free(c);
}
