/*
 * records.c - every task's record, kept in SQLite (DIR/tasks.db) so that GetTask and ListTasks
 * answer for tasks run by `immerge run` and by the server alike, across restarts.
 *
 * A record is the task's JSON as the service reports it (imm_task_to_json), plus the columns a
 * query filters on. Several processes may write at once: WAL mode and a busy timeout serialise
 * them. Each Running or Queued record names its process (pid and start time, so a reused pid is
 * not mistaken for it); opening the records marks the Running tasks of a process that is gone as
 * Failed with Code TaskInterrupted, and its Queued ones Cancelled with Code NotStarted, so a crash
 * never leaves a task Running or Queued forever.
 */
#include "internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 100

struct imm_records {
    sqlite3 *db;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS tasks ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " task_id TEXT UNIQUE NOT NULL,"
    " project TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " start_time TEXT,"
    " owner_pid INTEGER,"
    " owner_start INTEGER,"
    " tags TEXT,"
    " json TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS tasks_project ON tasks(project, seq);";

static imm_err db_error(imm_records *r, imm_error *err, const char *what)
{
    return imm_error_set(err, IMM_EIO, "Task records: %s failed: %s", what, sqlite3_errmsg(r->db));
}

/* The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat); 0 when it
 * does not exist. With the pid it names a process even after the pid is reused. */
static long long process_start(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    long long start = 0;
    for (int field = 2; p && *p; p++)
        if (*p == ' ' && ++field == 22) {
            start = strtoll(p + 1, NULL, 10);
            break;
        }
    return start;
}

/* Marks one interrupted task in its JSON and its columns: Failed if it was running, Cancelled
 * (never started) if it was queued. */
static void mark_interrupted(imm_records *r, sqlite3_int64 seq, const char *json, long pid,
                             int queued)
{
    char end[32], msg[200];
    cJSON *o = cJSON_Parse(json);
    if (!o)
        return;
    imm_now_rfc3339(end);
    if (queued)
        snprintf(msg, sizeof(msg), "The immerge process (pid %ld) holding this task stopped "
                 "before the task started; submit it again.", pid);
    else
        snprintf(msg, sizeof(msg), "The immerge process (pid %ld) running this task stopped "
                 "before the task finished; no output was committed by it after that.", pid);
    const char *status = queued ? "Cancelled" : "Failed";
    cJSON_ReplaceItemInObject(o, "Status", cJSON_CreateString(status));
    cJSON_ReplaceItemInObject(o, "Code", cJSON_CreateString(queued ? "NotStarted"
                                                                   : "TaskInterrupted"));
    cJSON_ReplaceItemInObject(o, "Message", cJSON_CreateString(msg));
    cJSON_DeleteItemFromObject(o, "EndTime");
    cJSON_AddStringToObject(o, "EndTime", end);
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    sqlite3_stmt *st = NULL;
    if (out && sqlite3_prepare_v2(r->db, "UPDATE tasks SET status=?3, json=?1, owner_pid=NULL "
                                  "WHERE seq=?2 AND status IN ('Running', 'Queued')",
                                  -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, out, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    free(out);
}

static void recover(imm_records *r)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT seq, owner_pid, owner_start, json, status FROM tasks "
                           "WHERE status IN ('Running', 'Queued')", -1, &st, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        long pid = (long)sqlite3_column_int64(st, 1);
        long long start = sqlite3_column_int64(st, 2);
        if (pid > 0 && process_start(pid) == start && start != 0)
            continue; /* its process is alive */
        mark_interrupted(r, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 3),
                         pid, !strcmp((const char *)sqlite3_column_text(st, 4), "Queued"));
    }
    sqlite3_finalize(st);
}

static int mkdirs(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
        return -1;
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0700) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(path, 0700) && errno != EEXIST ? -1 : 0;
}

imm_err imm_records_open(const char *dir, imm_records **out, imm_error *err)
{
    char path[4096];
    if (mkdirs(dir))
        return imm_error_set(err, IMM_EIO, "Cannot create the state folder %s: %s", dir,
                             strerror(errno));
    if (snprintf(path, sizeof(path), "%s/tasks.db", dir) >= (int)sizeof(path))
        return imm_error_set(err, IMM_EARG, "The state folder's path is too long.");
    imm_records *r = calloc(1, sizeof(*r));
    if (!r)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    imm_err e = IMM_OK;
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK)
        e = imm_error_set(err, IMM_EIO, "Cannot open the task records %s: %s", path,
                          r->db ? sqlite3_errmsg(r->db) : "out of memory");
    else if (sqlite3_busy_timeout(r->db, 10000) != SQLITE_OK ||
             sqlite3_exec(r->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
             sqlite3_exec(r->db, schema, NULL, NULL, NULL) != SQLITE_OK)
        e = db_error(r, err, "setting up");
    if (e) {
        imm_records_close(r);
        return e;
    }
    recover(r);
    *out = r;
    return IMM_OK;
}

void imm_records_close(imm_records *r)
{
    if (!r)
        return;
    sqlite3_close(r->db);
    free(r);
}

imm_err imm_records_save(imm_records *r, const imm_task *task, imm_error *err)
{
    char *json = imm_task_to_json(task);
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    if (!o) {
        free(json);
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(o, "TaskId"));
    const char *project = cJSON_GetStringValue(cJSON_GetObjectItem(o, "ProjectName"));
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItem(o, "Status"));
    const char *start = cJSON_GetStringValue(cJSON_GetObjectItem(o, "StartTime"));
    cJSON *tags = cJSON_GetObjectItem(o, "Tags");
    char *tags_json = tags ? cJSON_PrintUnformatted(tags) : NULL;
    int running = status && (!strcmp(status, "Running") || !strcmp(status, "Queued"));
    sqlite3_stmt *st = NULL;
    imm_err e = IMM_OK;
    if (sqlite3_prepare_v2(r->db,
                           "INSERT INTO tasks (task_id, project, status, start_time, owner_pid, "
                           "owner_start, tags, json) VALUES (?1,?2,?3,?4,?5,?6,?7,?8) "
                           "ON CONFLICT(task_id) DO UPDATE SET status=excluded.status, "
                           "owner_pid=excluded.owner_pid, owner_start=excluded.owner_start, "
                           "json=excluded.json", -1, &st, NULL) != SQLITE_OK) {
        e = db_error(r, err, "saving a task");
    } else {
        sqlite3_bind_text(st, 1, id ? id : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, project ? project : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, status ? status : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, start ? start : "", -1, SQLITE_STATIC);
        if (running) {
            sqlite3_bind_int64(st, 5, getpid());
            sqlite3_bind_int64(st, 6, process_start(getpid()));
        }
        if (tags_json)
            sqlite3_bind_text(st, 7, tags_json, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, json, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            e = db_error(r, err, "saving a task");
    }
    sqlite3_finalize(st);
    free(tags_json);
    cJSON_Delete(o);
    free(json);
    return e;
}

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

imm_err imm_records_get(imm_records *r, const char *project, const char *task_id, char **json,
                        imm_error *err)
{
    sqlite3_stmt *st = NULL;
    imm_err e = IMM_OK;
    *json = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT json FROM tasks WHERE task_id=?1 AND "
                           "(?2 IS NULL OR project=?2)", -1, &st, NULL) != SQLITE_OK)
        return db_error(r, err, "reading a task");
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    if (project)
        sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        cJSON *o = answer_task((const char *)sqlite3_column_text(st, 0), 1);
        *json = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
        if (!*json)
            e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
    } else if (rc == SQLITE_DONE) {
        e = imm_error_set(err, IMM_ENOTFOUND, "The specified resource TaskId %s is not found%s%s.",
                          task_id, project ? " in project " : "", project ? project : "");
    } else {
        e = db_error(r, err, "reading a task");
    }
    sqlite3_finalize(st);
    return e;
}

imm_err imm_records_list(imm_records *r, const imm_list_query *q, char **json, imm_error *err)
{
    sqlite3_stmt *st = NULL;
    char rid[37], next[32] = "";
    int max = q->max > 0 && q->max <= MAX_LIST ? q->max : MAX_LIST;
    long long after = 0;
    *json = NULL;
    if (q->next_token && *q->next_token) {
        char *end;
        after = strtoll(q->next_token, &end, 10);
        if (*end || after <= 0)
            return imm_error_set(err, IMM_EARG, "The parameter NextToken %s is not one this "
                                 "server gave.", q->next_token);
    }
    char tag_path[300] = "";
    if (q->tag_key)
        snprintf(tag_path, sizeof(tag_path), "$.\"%s\"", q->tag_key);
    if (sqlite3_prepare_v2(r->db,
                           "SELECT seq, json FROM tasks WHERE seq > ?1 "
                           "AND (?2 IS NULL OR project=?2) AND (?3 IS NULL OR status=?3) "
                           "AND (?4 IS NULL OR json_extract(tags, ?4) = ?5) "
                           "ORDER BY seq LIMIT ?6", -1, &st, NULL) != SQLITE_OK)
        return db_error(r, err, "listing tasks");
    sqlite3_bind_int64(st, 1, after);
    if (q->project)
        sqlite3_bind_text(st, 2, q->project, -1, SQLITE_STATIC);
    if (q->status)
        sqlite3_bind_text(st, 3, q->status, -1, SQLITE_STATIC);
    if (q->tag_key) {
        sqlite3_bind_text(st, 4, tag_path, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, q->tag_value ? q->tag_value : "", -1, SQLITE_STATIC);
    }
    sqlite3_bind_int(st, 6, max + 1); /* one more tells whether a next page exists */
    cJSON *o = cJSON_CreateObject(), *tasks = cJSON_CreateArray();
    int n = 0, rc;
    long long last = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == max) {
            snprintf(next, sizeof(next), "%lld", last);
            break;
        }
        last = sqlite3_column_int64(st, 0);
        cJSON *t = answer_task((const char *)sqlite3_column_text(st, 1), 0);
        if (t) {
            cJSON_DeleteItemFromObject(t, "RequestId");
            cJSON_AddItemToArray(tasks, t);
        }
        n++;
    }
    imm_err e = rc == SQLITE_ROW || rc == SQLITE_DONE ? IMM_OK : db_error(r, err, "listing tasks");
    sqlite3_finalize(st);
    imm_request_id_new(rid);
    cJSON_AddStringToObject(o, "RequestId", rid);
    if (q->project)
        cJSON_AddStringToObject(o, "ProjectName", q->project);
    cJSON_AddStringToObject(o, "NextToken", next);
    cJSON_AddItemToObject(o, "Tasks", tasks);
    if (!e && !(*json = cJSON_Print(o)))
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
    cJSON_Delete(o);
    return e;
}
