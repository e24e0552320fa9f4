/*
 * sqlite.c - tasks.h on one machine: every task's record in a SQLite file (by default
 * STATE/tasks.db), so that GetTask and ListTasks answer for tasks run by `immerge run` and by the
 * server alike, across restarts; a server's queue in the server's memory.
 *
 * A record is the task's JSON as the service reports it (imm_task_to_json), plus the columns a
 * query filters on. Several processes may write at once: WAL mode and a busy timeout serialise
 * them. Each Running or Queued record names its process (pid and start time, so a reused pid is
 * not mistaken for it); opening the records marks the Running tasks of a process that is gone as
 * Failed with Code TaskInterrupted, and its Queued ones Cancelled with Code NotStarted, so a crash
 * never leaves a task Running or Queued forever.
 */
#include "tasks/backend.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct sqlite_tasks {
    imm_tasks base;
    sqlite3 *db;
    /* The server's queue: claims waiting, oldest first, and the ones running (for fairness). */
    pthread_mutex_t lock;
    pthread_cond_t work;
    imm_claim *queued, *running;
    /* The connection is shared by the threads: a transaction (a task's end with its messages)
     * holds this, and so does every other write, so that none lands inside another's. */
    pthread_mutex_t writing;
    long long claims; /* tasks taken up, for imm_tasks_stats */
    double retain_days; /* finished tasks older than this are deleted; 0: kept */
    double purged;      /* when they last were (monotonic seconds) */
} sqlite_tasks;

#define PURGE_EVERY 3600.0

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
    "CREATE INDEX IF NOT EXISTS tasks_project ON tasks(project, seq);"
    /* The retention's: the finished ones by their end, so that a purge reads only what it
     * deletes. */
    "CREATE INDEX IF NOT EXISTS tasks_ended ON tasks(json_extract(json, '$.EndTime'))"
    " WHERE status NOT IN ('Running', 'Queued');"
    /* Completion messages recorded with the task's end, until sent (times: Unix seconds). */
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " task_id TEXT NOT NULL,"
    " destination TEXT NOT NULL,"
    " target TEXT NOT NULL,"
    " endpoint TEXT,"
    " body TEXT NOT NULL,"
    " next_try REAL NOT NULL,"
    " tries INTEGER NOT NULL DEFAULT 0,"
    " sent REAL,"
    " last_error TEXT,"
    " owner_pid INTEGER,"   /* the process that recorded it, which sends it first */
    " owner_start INTEGER);"
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_try) WHERE sent IS NULL;";

/* How long a recorded message is left to the run that recorded it before a sweeper sends it. */
#define OUTBOX_GRACE 60.0

static imm_err db_error(sqlite_tasks *s, imm_error *err, const char *what)
{
    return imm_error_set(err, IMM_EIO, "Task records: %s failed: %s", what, sqlite3_errmsg(s->db));
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

static void mark_interrupted(sqlite_tasks *s, sqlite3_int64 seq, const char *json, long pid,
                             int queued)
{
    char who[64];
    const char *status;
    snprintf(who, sizeof(who), "immerge process (pid %ld)", pid);
    char *out = imm_task_interrupted(json, who, queued, &status);
    sqlite3_stmt *st = NULL;
    if (out && sqlite3_prepare_v2(s->db, "UPDATE tasks SET status=?3, json=?1, owner_pid=NULL "
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

static void recover(sqlite_tasks *s)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT seq, owner_pid, owner_start, json, status FROM tasks "
                           "WHERE status IN ('Running', 'Queued')", -1, &st, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        long pid = (long)sqlite3_column_int64(st, 1);
        long long start = sqlite3_column_int64(st, 2);
        if (pid > 0 && process_start(pid) == start && start != 0)
            continue; /* its process is alive */
        mark_interrupted(s, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 3),
                         pid, !strcmp((const char *)sqlite3_column_text(st, 4), "Queued"));
    }
    sqlite3_finalize(st);
}

/* Finished tasks that ended more than retain_days ago, deleted in batches (each a transaction
 * of its own, so that other processes are not held up); on open and hourly in a server. */
static void purge(sqlite_tasks *s)
{
    char cutoff[32];
    time_t when = time(NULL) - (time_t)(s->retain_days * 86400);
    struct tm tm;
    s->purged = imm_clock_seconds(IMM_CLOCK_MONOTONIC);
    if (s->retain_days <= 0)
        return;
    gmtime_r(&when, &tm);
    strftime(cutoff, sizeof(cutoff), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE "
                           "status NOT IN ('Running', 'Queued') AND json_extract(json, "
                           "'$.EndTime') < ?1 LIMIT 1000)", -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, cutoff, -1, SQLITE_STATIC);
    for (int more = 1; more;) {
        pthread_mutex_lock(&s->writing);
        more = sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(s->db) == 1000;
        sqlite3_reset(st);
        pthread_mutex_unlock(&s->writing);
    }
    sqlite3_finalize(st);
    /* The messages of tasks gone, and the ones sent or given up on as long ago. */
    if (sqlite3_prepare_v2(s->db, "DELETE FROM outbox WHERE task_id NOT IN (SELECT task_id FROM "
                           "tasks) OR coalesce(sent, 0) > 0 AND sent < ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_double(st, 1, (double)when);
        pthread_mutex_lock(&s->writing);
        sqlite3_step(st);
        pthread_mutex_unlock(&s->writing);
    }
    sqlite3_finalize(st);
}

/* Messages whose process died before its first try: due now, not after the grace. */
static void recover_messages(sqlite_tasks *s)
{
    sqlite3_stmt *st = NULL, *due = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT id, owner_pid, owner_start FROM outbox WHERE sent IS "
                           "NULL AND tries = 0 AND next_try > ?1", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(s->db, "UPDATE outbox SET next_try = ?2 WHERE id = ?1", -1, &due,
                           NULL) == SQLITE_OK) {
        double now = imm_clock_seconds(IMM_CLOCK_WALL);
        sqlite3_bind_double(st, 1, now);
        while (sqlite3_step(st) == SQLITE_ROW) {
            long pid = (long)sqlite3_column_int64(st, 1);
            long long start = sqlite3_column_int64(st, 2);
            if (pid > 0 && start != 0 && process_start(pid) == start)
                continue; /* it is alive, and sends them */
            sqlite3_reset(due);
            sqlite3_bind_int64(due, 1, sqlite3_column_int64(st, 0));
            sqlite3_bind_double(due, 2, now);
            sqlite3_step(due);
        }
    }
    sqlite3_finalize(st);
    sqlite3_finalize(due);
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

static imm_err save_locked(sqlite_tasks *s, const imm_task *task, imm_error *err);

/* Saves the task as it is now (a new record, or an update of its own). */
static imm_err save(sqlite_tasks *s, const imm_task *task, imm_error *err)
{
    pthread_mutex_lock(&s->writing);
    imm_err e = save_locked(s, task, err);
    pthread_mutex_unlock(&s->writing);
    return e;
}

static imm_err save_locked(sqlite_tasks *s, const imm_task *task, imm_error *err)
{
    task_row row;
    imm_err e = imm_task_row(task, &row, err);
    if (e)
        return e;
    int running = !strcmp(row.status, "Running") || !strcmp(row.status, "Queued");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO tasks (task_id, project, status, start_time, owner_pid, "
                           "owner_start, tags, json) VALUES (?1,?2,?3,?4,?5,?6,?7,?8) "
                           "ON CONFLICT(task_id) DO UPDATE SET status=excluded.status, "
                           "owner_pid=excluded.owner_pid, owner_start=excluded.owner_start, "
                           "json=excluded.json", -1, &st, NULL) != SQLITE_OK) {
        e = db_error(s, err, "saving a task");
    } else {
        sqlite3_bind_text(st, 1, row.task_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, row.project, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, row.status, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, row.start, -1, SQLITE_STATIC);
        if (running) {
            sqlite3_bind_int64(st, 5, getpid());
            sqlite3_bind_int64(st, 6, process_start(getpid()));
        }
        if (row.tags)
            sqlite3_bind_text(st, 7, row.tags, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, row.json, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            e = db_error(s, err, "saving a task");
    }
    sqlite3_finalize(st);
    imm_task_row_clear(&row);
    return e;
}

static imm_err get(imm_tasks *t, const char *project, const char *task_id, char **stored,
                   imm_error *err)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    sqlite3_stmt *st = NULL;
    imm_err e = IMM_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT json FROM tasks WHERE task_id=?1 AND "
                           "(?2 IS NULL OR project=?2)", -1, &st, NULL) != SQLITE_OK)
        return db_error(s, err, "reading a task");
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    if (project)
        sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (!(*stored = strdup((const char *)sqlite3_column_text(st, 0))))
            e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
    } else if (rc != SQLITE_DONE) {
        e = db_error(s, err, "reading a task");
    }
    sqlite3_finalize(st);
    return e;
}

static imm_err list(imm_tasks *t, const imm_list_query *q, const imm_list_cursor *after,
                    int max, void (*add)(void *opaque, long long seq, const char *key,
                                         const char *stored),
                    void *opaque, imm_error *err)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    sqlite3_stmt *st = NULL;
    char tag_path[300] = "", sql[1400];
    const char *start = "COALESCE(json_extract(json, '$.StartTime'), '')";
    const char *end = "COALESCE(json_extract(json, '$.EndTime'), '')";
    const char *key = imm_list_key_sql(q, start, end);
    if (q->tag_key)
        snprintf(tag_path, sizeof(tag_path), "$.\"%s\"", q->tag_key);
    /* A tag's value compares as text: a number as JSON writes it, true and false as words. */
    snprintf(sql, sizeof(sql),
             "SELECT seq, json, %s FROM tasks WHERE (?1 = 0 OR (%s, seq) %s (?7, ?1)) "
             "AND (?2 IS NULL OR project=?2) AND (?3 IS NULL OR status=?3 OR status=?12) "
             "AND (?4 IS NULL OR (CASE json_type(tags, ?4) WHEN 'true' THEN 'true' "
             "WHEN 'false' THEN 'false' ELSE CAST(json_extract(tags, ?4) AS TEXT) END) = ?5) "
             "AND (?8 IS NULL OR (%s <> '' AND %s >= ?8)) AND (?9 IS NULL OR (%s <> '' AND %s <= ?9)) "
             "AND (?10 IS NULL OR (%s <> '' AND %s >= ?10)) AND (?11 IS NULL OR (%s <> '' AND %s <= ?11)) "
             "ORDER BY %s %s, seq %s LIMIT ?6",
             key, key, imm_list_after_sql(q), start, start, start, start, end, end, end, end, key,
             imm_list_order_sql(q), imm_list_order_sql(q));
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_error(s, err, "listing tasks");
    sqlite3_bind_int64(st, 1, after->seq);
    sqlite3_bind_text(st, 7, after->key, -1, SQLITE_STATIC);
    const struct {
        int at;
        const char *text;
    } texts[] = {{2, q->project}, {3, q->status}, {8, imm_list_bound(q->start_from)},
                 {9, imm_list_bound(q->start_to)}, {10, imm_list_bound(q->end_from)},
                 {11, imm_list_bound(q->end_to)}, {12, q->status_also}};
    for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++)
        if (texts[i].text)
            sqlite3_bind_text(st, texts[i].at, texts[i].text, -1, SQLITE_STATIC);
    if (q->tag_key) {
        sqlite3_bind_text(st, 4, tag_path, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, q->tag_value ? q->tag_value : "", -1, SQLITE_STATIC);
    }
    sqlite3_bind_int(st, 6, max + 1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        add(opaque, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 2),
            (const char *)sqlite3_column_text(st, 1));
    imm_err e = rc == SQLITE_DONE ? IMM_OK : db_error(s, err, "listing tasks");
    sqlite3_finalize(st);
    return e;
}

static imm_err start(imm_tasks *t, imm_claim *c, imm_error *err)
{
    return save((sqlite_tasks *)t, c->task, err);
}

/* The record is written under the queue's lock, so no worker can start the task (and record it
 * Running) before its Queued record is there. */
static imm_err enqueue(imm_tasks *t, imm_claim *c, int queue, int *full, imm_error *err)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    int waiting = 0;
    imm_claim **tail = &s->queued;
    imm_err e = IMM_OK;
    task_row row;
    if ((e = imm_task_row(c->task, &row, err)) || !(c->project = strdup(row.project))) {
        if (!e)
            imm_task_row_clear(&row);
        imm_claim_free(c);
        return e ? e : imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    imm_task_row_clear(&row);
    pthread_mutex_lock(&s->lock);
    for (; *tail; tail = &(*tail)->next)
        waiting++;
    if (waiting >= queue) {
        *full = 1;
    } else if (!(e = save(s, c->task, err))) {
        *tail = c;
        c = NULL;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->lock);
    imm_claim_free(c);
    return e;
}

static int running_in(const sqlite_tasks *s, const char *project)
{
    int n = 0;
    for (const imm_claim *r = s->running; r; r = r->next)
        n += !strcmp(r->project, project);
    return n;
}

/* The fairness rule of tasks.h over the queue in memory. */
static imm_claim *take_next(sqlite_tasks *s)
{
    imm_claim **best = NULL;
    int fewest = 0;
    for (imm_claim **q = &s->queued; *q; q = &(*q)->next) {
        int n = running_in(s, (*q)->project);
        if (!best || n < fewest) {
            best = q;
            fewest = n;
        }
    }
    if (!best)
        return NULL;
    imm_claim *c = *best;
    *best = c->next;
    c->next = s->running;
    s->running = c;
    return c;
}

static imm_err claim(imm_tasks *t, const volatile int *stop, imm_claim **out, imm_error *err)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    (void)err;
    pthread_mutex_lock(&s->lock);
    while (!*stop && !(*out = take_next(s))) {
        if (imm_clock_seconds(IMM_CLOCK_MONOTONIC) - s->purged >= PURGE_EVERY)
            purge(s);
        imm_tasks_wait(&s->work, &s->lock, 0.2); /* a signal handler sets *stop: look again */
    }
    s->claims += *out != NULL;
    pthread_mutex_unlock(&s->lock);
    return IMM_OK;
}

static imm_err progress(imm_tasks *t, imm_claim *c, imm_error *err)
{
    return save((sqlite_tasks *)t, c->task, err);
}

static imm_err fence(imm_tasks *t, imm_claim *c, const char *committing, imm_error *err)
{
    (void)t, (void)c, (void)committing, (void)err;
    /* Nobody else can hold a task of this process, and an interrupted one is not run again. */
    return IMM_OK;
}

/* The end and its messages in one transaction: both or neither. */
static imm_err finish(imm_tasks *t, imm_claim *c, const imm_message *m, int n, long long *ids,
                      int *won, imm_error *err)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    sqlite3_stmt *st = NULL;
    task_row row;
    *won = 1;
    if (imm_task_row(c->task, &row, err))
        return err->code;
    pthread_mutex_lock(&s->writing);
    imm_err e = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK
                    ? db_error(s, err, "recording a task's end") : IMM_OK;
    if (!e)
        e = save_locked(s, c->task, err);
    if (!e && n && sqlite3_prepare_v2(s->db, "INSERT INTO outbox (task_id, destination, target, "
                                      "endpoint, body, next_try, owner_pid, owner_start) VALUES "
                                      "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", -1, &st, NULL) !=
                                      SQLITE_OK)
        e = db_error(s, err, "recording completion messages");
    for (int i = 0; !e && i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, row.task_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, m[i].destination, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, m[i].target, -1, SQLITE_STATIC);
        if (m[i].endpoint)
            sqlite3_bind_text(st, 4, m[i].endpoint, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 4);
        sqlite3_bind_text(st, 5, m[i].body, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6, imm_clock_seconds(IMM_CLOCK_WALL) + OUTBOX_GRACE);
        sqlite3_bind_int64(st, 7, getpid());
        sqlite3_bind_int64(st, 8, process_start(getpid()));
        if (sqlite3_step(st) != SQLITE_DONE)
            e = db_error(s, err, "recording completion messages");
        else
            ids[i] = sqlite3_last_insert_rowid(s->db);
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(s->db, e ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) != SQLITE_OK && !e)
        e = db_error(s, err, "recording a task's end");
    pthread_mutex_unlock(&s->writing);
    imm_task_row_clear(&row);
    for (int i = 0; e && i < n; i++)
        ids[i] = 0;
    return e;
}

static void message_done(imm_tasks *t, long long id, int delivered, const char *why)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&s->writing);
    if (sqlite3_prepare_v2(s->db, delivered ? "UPDATE outbox SET sent = ?2, last_error = NULL "
                           "WHERE id = ?1" : "UPDATE outbox SET tries = tries + 1, "
                           "last_error = ?3, next_try = CASE WHEN tries + 1 >= ?4 THEN 9e18 "
                           "ELSE ?2 + ?5 END WHERE id = ?1", -1, &st, NULL) == SQLITE_OK) {
        int tries = 0;
        sqlite3_stmt *q = NULL;
        if (!delivered && sqlite3_prepare_v2(s->db, "SELECT tries FROM outbox WHERE id = ?1",
                                             -1, &q, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(q, 1, id);
            if (sqlite3_step(q) == SQLITE_ROW)
                tries = sqlite3_column_int(q, 0);
        }
        sqlite3_finalize(q);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_double(st, 2, imm_clock_seconds(IMM_CLOCK_WALL));
        if (!delivered) {
            sqlite3_bind_text(st, 3, why, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 4, OUTBOX_TRIES);
            sqlite3_bind_double(st, 5, imm_outbox_backoff(tries + 1));
        }
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->writing);
}

static imm_err messages_due(imm_tasks *t, int max, imm_message **out, long long *ids, int *n,
                            imm_error *err)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    sqlite3_stmt *st = NULL, *hold = NULL;
    imm_err e = IMM_OK;
    imm_message *m = calloc((size_t)max, sizeof(*m));
    if (!m)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    pthread_mutex_lock(&s->writing);
    double now = imm_clock_seconds(IMM_CLOCK_WALL);
    if (sqlite3_prepare_v2(s->db, "SELECT id, destination, target, endpoint, body FROM outbox "
                           "WHERE sent IS NULL AND next_try <= ?1 ORDER BY next_try LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "UPDATE outbox SET next_try = ?2 WHERE id = ?1", -1, &hold,
                           NULL) != SQLITE_OK) {
        e = db_error(s, err, "reading pending messages");
    } else {
        sqlite3_bind_double(st, 1, now);
        sqlite3_bind_int(st, 2, max);
        while (*n < max && sqlite3_step(st) == SQLITE_ROW) {
            imm_message *x = &m[*n];
            x->destination = imm_notify_destination((const char *)sqlite3_column_text(st, 1));
            x->target = strdup((const char *)sqlite3_column_text(st, 2));
            x->endpoint = sqlite3_column_type(st, 3) == SQLITE_NULL
                              ? NULL : strdup((const char *)sqlite3_column_text(st, 3));
            x->body = strdup((const char *)sqlite3_column_text(st, 4));
            ids[(*n)++] = sqlite3_column_int64(st, 0);
        }
        sqlite3_finalize(st);
        st = NULL;
        /* Held for a while: another process on the same records leaves them be meanwhile. */
        for (int i = 0; i < *n; i++) {
            sqlite3_reset(hold);
            sqlite3_bind_int64(hold, 1, ids[i]);
            sqlite3_bind_double(hold, 2, now + OUTBOX_GRACE * 5);
            sqlite3_step(hold);
        }
    }
    sqlite3_finalize(st);
    sqlite3_finalize(hold);
    pthread_mutex_unlock(&s->writing);
    *out = m;
    return e;
}

static void release(imm_tasks *t, imm_claim *c)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    pthread_mutex_lock(&s->lock);
    for (imm_claim **r = &s->running; *r; r = &(*r)->next)
        if (*r == c) {
            *r = c->next;
            break;
        }
    pthread_mutex_unlock(&s->lock);
}

static void drain(imm_tasks *t)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    pthread_mutex_lock(&s->lock);
    imm_claim *q = s->queued;
    s->queued = NULL;
    pthread_mutex_unlock(&s->lock);
    while (q) {
        imm_claim *next = q->next;
        imm_error ignored;
        imm_task_set_not_started(q->task, "The server stopped before this task started; submit "
                                          "it again.");
        save(s, q->task, &ignored);
        imm_claim_free(q);
        q = next;
    }
}

static imm_err stats(imm_tasks *t, imm_tasks_stats *st, imm_error *err)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    sqlite3_stmt *q = NULL;
    /* The queue is this server's, in memory. */
    pthread_mutex_lock(&s->lock);
    int n = 0;
    for (const imm_claim *c = s->queued; c; c = c->next)
        n++;
    st->queued = calloc((size_t)n + 1, sizeof(*st->queued));
    for (const imm_claim *c = s->queued; st->queued && c; c = c->next) {
        int i = 0;
        while (i < st->nqueued && strcmp(st->queued[i].project, c->project))
            i++;
        if (i == st->nqueued)
            snprintf(st->queued[st->nqueued++].project, sizeof(st->queued->project), "%s",
                     c->project);
        st->queued[i].n++;
    }
    for (const imm_claim *c = s->running; c; c = c->next)
        st->running++;
    st->claims = s->claims;
    pthread_mutex_unlock(&s->lock);
    if (!st->queued)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM outbox WHERE sent IS NULL AND next_try "
                           "< 9e18", -1, &q, NULL) != SQLITE_OK)
        return db_error(s, err, "counting messages");
    if (sqlite3_step(q) == SQLITE_ROW)
        st->outbox_pending = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return IMM_OK;
}

static imm_err ping(imm_tasks *t, imm_error *err)
{
    (void)t, (void)err;
    return IMM_OK; /* a file of this machine's */
}

/* The runs stop (their claims lost, so their ends are not recorded by them) and are recorded
 * Failed/TaskInterrupted: no other server will run them. */
static void abandon_runs(imm_tasks *t)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    pthread_mutex_lock(&s->lock);
    for (imm_claim *c = s->running; c; c = c->next) {
        c->lost = 1;
        task_row row;
        imm_error ignored;
        if (imm_task_row(c->task, &row, &ignored))
            continue;
        const char *status;
        char *out = imm_task_interrupted(row.json, "immerge server (its drain ran out of time)",
                                         0, &status);
        sqlite3_stmt *st = NULL;
        pthread_mutex_lock(&s->writing);
        if (out && sqlite3_prepare_v2(s->db, "UPDATE tasks SET status = ?2, json = ?3, "
                                      "owner_pid = NULL WHERE task_id = ?1", -1, &st, NULL) ==
                       SQLITE_OK) {
            sqlite3_bind_text(st, 1, row.task_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, out, -1, SQLITE_STATIC);
            sqlite3_step(st);
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->writing);
        free(out);
        imm_task_row_clear(&row);
    }
    pthread_mutex_unlock(&s->lock);
}

static void close_tasks(imm_tasks *t)
{
    sqlite_tasks *s = (sqlite_tasks *)t;
    drain(t);
    sqlite3_close(s->db);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->writing);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static const tasks_ops sqlite_ops = {
    .get = get, .list = list, .start = start, .enqueue = enqueue, .claim = claim,
    .progress = progress, .fence = fence, .finish = finish, .message_done = message_done,
    .messages_due = messages_due, .annotate = progress, .release = release, .drain = drain,
    .stats = stats, .ping = ping, .abandon = abandon_runs, .close = close_tasks,
};

imm_err imm_tasks_sqlite_open(const char *path, const imm_tasks_options *opt, imm_tasks **out,
                              imm_error *err)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdirs(dir))
            return imm_error_set(err, IMM_EIO, "Cannot create the state folder %s: %s", dir,
                                 strerror(errno));
    }
    sqlite_tasks *s = calloc(1, sizeof(*s));
    if (!s)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    s->base.ops = &sqlite_ops;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->writing, NULL);
    pthread_cond_init(&s->work, NULL);
    imm_err e = IMM_OK;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK)
        e = imm_error_set(err, IMM_EIO, "Cannot open the task records %s: %s", path,
                          s->db ? sqlite3_errmsg(s->db) : "out of memory");
    else if (sqlite3_busy_timeout(s->db, 10000) != SQLITE_OK ||
             sqlite3_exec(s->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
             sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK)
        e = db_error(s, err, "setting up");
    if (e) {
        close_tasks(&s->base);
        return e;
    }
    recover(s);
    recover_messages(s);
    s->retain_days = opt->retain_days;
    purge(s);
    *out = &s->base;
    return IMM_OK;
}
