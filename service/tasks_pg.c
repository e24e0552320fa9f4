/*
 * tasks_pg.c - tasks.h on PostgreSQL: every server and run pointed at one database is one
 * service.
 *
 * One table, immerge_tasks, is records and queue at once: a row per task with its JSON (as
 * imm_task_to_json makes it, TaskRequestDefinition included, so any server can run it) and the
 * columns the queue and the queries need. The method is pg-boss's, River's, solid_queue's:
 *
 * - Create inserts a Queued row and NOTIFYs; the bound on waiting rows is checked under a
 *   transaction-level advisory lock, so it holds across servers.
 * - A worker claims the next row with SELECT ... FOR UPDATE SKIP LOCKED inside one UPDATE that
 *   sets it Running, names this server as owner, bumps `attempt` and sets `lease_until`. Workers
 *   never wait on each other's locks, and no two claim one row.
 * - A heartbeat thread renews the leases of this process's claims every third of a lease. A row
 *   Running with an expired lease is claimable again: its server died, was killed or lost the
 *   database, and the task runs again from the start, up to MAX_ATTEMPTS runs.
 * - Every write of a run is conditional on (task_id, attempt): a run that was taken over writes
 *   nothing, and learns it (its claim is lost). The commit of the outputs is fenced by renewing
 *   the lease just before it, and the end is recorded only by the run holding the row.
 * - Tasks that `immerge run` recorded (not runnable by servers) whose lease expires are marked
 *   Failed/TaskInterrupted by whichever server sweeps them.
 *
 * The schema is created and migrated here, under an advisory lock, versioned in immerge_schema.
 * A lost connection is reset and the statement tried again; a database that is down is waited
 * out by the workers and answered as ServiceUnavailable by the API meanwhile.
 */
#include "tasks_internal.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ATTEMPTS 3
#define LOCK_SCHEMA 0x696d6d31 /* advisory lock keys: "imm1", "imm2" */
#define LOCK_QUEUE 0x696d6d32
#define CHANNEL "immerge_tasks"

typedef struct pg_tasks {
    imm_tasks base;
    char *uri;
    double lease;
    int quiet;
    char owner[160]; /* this process: host, pid, a random tag */
    pthread_mutex_t lock;
    pthread_cond_t freed; /* a pooled connection came back */
    pthread_cond_t wake;  /* a task was queued (NOTIFY), or the tasks close */
    pthread_cond_t beat;  /* the tasks close: the heartbeat ends */
    unsigned long wakes;
    PGconn **pool;
    int *busy, npool;
    imm_claim *claims; /* this process's live claims, renewed by the heartbeat */
    int closing, down;
    int opened; /* past imm_tasks_pg_open: a lost database is waited for, and said so */
    double swept;
    pthread_t heart, listener;
    int threads;
} pg_tasks;

/* ---- connections ------------------------------------------------------------------------------ */

static void ignore_notice(void *opaque, const char *message)
{
    (void)opaque, (void)message; /* "already exists, skipping" and the like */
}

static PGconn *connect_db(const pg_tasks *p)
{
    /* Our defaults first: whatever the URI says overrides them. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *values[] = {"5", "immerge", p->uri, NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (conn)
        PQsetNoticeProcessor(conn, ignore_notice, NULL);
    return conn;
}

static PGconn *acquire(pg_tasks *p)
{
    pthread_mutex_lock(&p->lock);
    int i;
    for (;;) {
        for (i = 0; i < p->npool && p->busy[i]; i++)
            ;
        if (i < p->npool)
            break;
        pthread_cond_wait(&p->freed, &p->lock);
    }
    p->busy[i] = 1;
    pthread_mutex_unlock(&p->lock);
    if (!p->pool[i])
        p->pool[i] = connect_db(p);
    else if (PQstatus(p->pool[i]) != CONNECTION_OK)
        PQreset(p->pool[i]);
    return p->pool[i];
}

static void give_back(pg_tasks *p, PGconn *conn)
{
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->npool; i++)
        if (p->pool[i] == conn)
            p->busy[i] = 0;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

/* Says once that the database is down, and once that it is back. */
static void note_db(pg_tasks *p, int down, const char *why)
{
    pthread_mutex_lock(&p->lock);
    int changed = p->down != down;
    p->down = down;
    pthread_mutex_unlock(&p->lock);
    if (changed && p->opened && !p->quiet)
        fprintf(stderr, down ? "immerge: warning: the task database is unreachable (%s); "
                               "waiting for it\n" : "immerge: the task database is back%s\n",
                down ? why : "");
}

static imm_err pg_error(pg_tasks *p, PGconn *conn, const PGresult *r, const char *what,
                        imm_error *err)
{
    const char *msg = r ? PQresultErrorMessage(r) : "";
    if (!*msg)
        msg = conn ? PQerrorMessage(conn) : "out of memory";
    char clean[300];
    snprintf(clean, sizeof(clean), "%s", msg);
    clean[strcspn(clean, "\n")] = '\0';
    if (!conn || PQstatus(conn) != CONNECTION_OK)
        note_db(p, 1, clean);
    return imm_error_set(err, IMM_EIO, "Task records (PostgreSQL): %s failed: %s", what, clean);
}

/* One statement with text parameters on conn; the result when its status is the wanted one
 * (PGRES_TUPLES_OK or PGRES_COMMAND_OK), else NULL with err set. */
static PGresult *run(pg_tasks *p, PGconn *conn, const char *what, const char *sql, int n,
                     const char *const *values, imm_error *err)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    pg_error(p, conn, r, what, err);
    PQclear(r);
    return NULL;
}

/* One statement on a pooled connection, tried again once on the same connection reset when the
 * connection was lost: a pooled connection may have died unseen while the database restarted.
 * Every statement run this way may safely run twice. */
static PGresult *exec1(pg_tasks *p, const char *what, const char *sql, int n,
                       const char *const *values, imm_error *err)
{
    PGresult *r = NULL;
    PGconn *conn = acquire(p);
    for (int tries = 0; tries < 2 && !r; tries++) {
        if (tries)
            PQreset(conn);
        if (PQstatus(conn) == CONNECTION_OK)
            r = run(p, conn, what, sql, n, values, err);
        else
            pg_error(p, conn, NULL, what, err);
        if (PQstatus(conn) == CONNECTION_OK)
            break;
    }
    give_back(p, conn);
    if (r)
        note_db(p, 0, NULL);
    return r;
}

/* Like exec1, tried again every second for up to `seconds` while the database is unreachable:
 * for the writes a run cannot do without (its end, its fence). */
static PGresult *exec_patiently(pg_tasks *p, double seconds, const char *what, const char *sql,
                                int n, const char *const *values, imm_error *err)
{
    double until = imm_tasks_clock() + seconds;
    for (;;) {
        PGresult *r = exec1(p, what, sql, n, values, err);
        pthread_mutex_lock(&p->lock);
        int down = p->down;
        pthread_mutex_unlock(&p->lock);
        if (r || !down || imm_tasks_clock() >= until || p->closing)
            return r;
        sleep(1);
    }
}

/* ---- the schema ------------------------------------------------------------------------------- */

/* Each version's statements, applied in order, once. */
static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE immerge_tasks ("
    " seq bigserial PRIMARY KEY,"
    " task_id text NOT NULL UNIQUE,"
    " project text NOT NULL,"
    " status text NOT NULL,"
    " start_time text NOT NULL DEFAULT '',"
    " tags jsonb,"
    " json text NOT NULL,"
    " runnable boolean NOT NULL DEFAULT false," /* queued by a server: any server may run it */
    " owner text,"                              /* the process running it now */
    " attempt integer NOT NULL DEFAULT 0,"      /* runs so far; every write names its run */
    " lease_until timestamptz,"
    " created timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX immerge_tasks_project ON immerge_tasks (project, seq);"
    "CREATE INDEX immerge_tasks_waiting ON immerge_tasks (seq) WHERE status = 'Queued';"
    "CREATE INDEX immerge_tasks_leased ON immerge_tasks (lease_until) WHERE status = 'Running';",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(*migrations)))

static imm_err migrate(pg_tasks *p, imm_error *err)
{
    char lock[64];
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_lock(%d)", LOCK_SCHEMA);
    PGconn *conn = acquire(p);
    imm_err e = IMM_OK;
    PGresult *r = NULL;
    if (PQstatus(conn) != CONNECTION_OK) {
        e = pg_error(p, conn, NULL, "connecting", err);
        give_back(p, conn);
        return e;
    }
    const char *setup[] = {lock, "CREATE TABLE IF NOT EXISTS immerge_schema (version integer "
                           "NOT NULL)", NULL};
    for (int i = 0; setup[i] && !e; i++) {
        if (!(r = run(p, conn, "setting up the schema", setup[i], 0, NULL, err)))
            e = IMM_EIO;
        PQclear(r);
    }
    int version = 0;
    if (!e && (r = run(p, conn, "reading the schema version", "SELECT coalesce(max(version), 0) "
                       "FROM immerge_schema", 0, NULL, err))) {
        version = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
    } else {
        e = IMM_EIO;
    }
    if (!e && version > SCHEMA_VERSION)
        e = imm_error_set(err, IMM_EARG, "The task database's schema is version %d, newer than "
                          "this immerge's (%d): upgrade immerge.", version, SCHEMA_VERSION);
    for (int v = version + 1; !e && v <= SCHEMA_VERSION; v++) {
        char record[80];
        snprintf(record, sizeof(record), "INSERT INTO immerge_schema VALUES (%d)", v);
        const char *steps[] = {"BEGIN", migrations[v - 1], record, "COMMIT"};
        for (int i = 0; i < 4 && !e; i++) {
            PGresult *m = PQexec(conn, steps[i]);
            if (PQresultStatus(m) != PGRES_COMMAND_OK)
                e = pg_error(p, conn, m, "migrating the schema", err);
            PQclear(m);
        }
        if (e)
            PQclear(PQexec(conn, "ROLLBACK"));
    }
    PQclear(PQexec(conn, "SELECT pg_advisory_unlock_all()"));
    give_back(p, conn);
    return e;
}

/* ---- the heartbeat and the wake-ups ----------------------------------------------------------- */

static int claim_held(pg_tasks *p, const imm_claim *c)
{
    for (const imm_claim *x = p->claims; x; x = x->next)
        if (x == c)
            return 1;
    return 0;
}

/* Another run has the task: this one stops, and says so once. Called with p->lock held. */
static void lose_locked(const pg_tasks *p, imm_claim *c)
{
    if (!c->lost && !p->quiet)
        fprintf(stderr, "immerge: warning: task %s was taken over by another server (this run's "
                "lease ran out); this run stops\n", c->task_id);
    c->lost = 1;
}

/* The same, from the claim's own run. */
static void lose(pg_tasks *p, imm_claim *c)
{
    pthread_mutex_lock(&p->lock);
    lose_locked(p, c);
    pthread_mutex_unlock(&p->lock);
}

/* Renews c's lease: 1 when it holds, 0 when another run has the task, -1 when the database
 * cannot say. */
static int renew(pg_tasks *p, imm_claim *c, double patience, imm_error *err)
{
    char attempt[24], lease[32];
    snprintf(attempt, sizeof(attempt), "%lld", c->attempt);
    snprintf(lease, sizeof(lease), "%.3f", p->lease);
    const char *v[] = {c->task_id, attempt, lease};
    PGresult *r = exec_patiently(p, patience, "renewing a lease",
                                 "UPDATE immerge_tasks SET lease_until = now() + "
                                 "make_interval(secs => $3::float8) WHERE task_id = $1 AND "
                                 "attempt = $2::int AND status = 'Running'", 3, v, err);
    if (!r)
        return -1;
    int held = atoi(PQcmdTuples(r)) == 1;
    PQclear(r);
    return held;
}

static void *heartbeat(void *opaque)
{
    pg_tasks *p = opaque;
    double every = p->lease / 3 < 0.5 ? 0.5 : p->lease / 3;
    pthread_mutex_lock(&p->lock);
    while (!p->closing) {
        imm_tasks_wait(&p->beat, &p->lock, every);
        /* The claims may go while a renewal is under way: each is looked up again after it. */
        for (int i = 0; !p->closing; i++) {
            imm_claim *c = p->claims;
            for (int k = 0; c && k < i; k++)
                c = c->next;
            if (!c)
                break;
            if (c->ending)
                continue; /* not Running any more, by its own hand */
            imm_claim copy = *c;
            imm_error err = {0};
            pthread_mutex_unlock(&p->lock);
            int held = renew(p, &copy, 0, &err);
            pthread_mutex_lock(&p->lock);
            /* The same run (not a claim that came to live at the same address since) that has
             * not begun to record its end. */
            if (held == 0 && claim_held(p, c) && c->attempt == copy.attempt &&
                !strcmp(c->task_id, copy.task_id) && !c->ending) {
                lose_locked(p, c);
            }
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void wake_all(pg_tasks *p)
{
    pthread_mutex_lock(&p->lock);
    p->wakes++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

/* LISTENs for queued tasks on a connection of its own, so that idle workers start at once. */
static void *listener(void *opaque)
{
    pg_tasks *p = opaque;
    PGconn *conn = NULL;
    while (!p->closing) {
        if (!conn || PQstatus(conn) != CONNECTION_OK) {
            PQfinish(conn);
            conn = connect_db(p);
            PGresult *r = PQstatus(conn) == CONNECTION_OK ? PQexec(conn, "LISTEN " CHANNEL) : NULL;
            int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (!ok) {
                for (int i = 0; i < 4 && !p->closing; i++)
                    usleep(250 * 1000);
                continue;
            }
            wake_all(p); /* what was queued while we were not listening */
        }
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
        if (poll(&pfd, 1, 250) > 0 && !PQconsumeInput(conn))
            continue; /* lost: reconnect */
        PGnotify *n;
        int any = 0;
        while ((n = PQnotifies(conn))) {
            PQfreemem(n);
            any = 1;
        }
        if (any)
            wake_all(p);
    }
    PQfinish(conn);
    return NULL;
}

/* ---- records ---------------------------------------------------------------------------------- */

static imm_err get(imm_tasks *t, const char *project, const char *task_id, char **stored,
                   imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    const char *v[] = {task_id, project};
    PGresult *r = exec1(p, "reading a task", "SELECT json FROM immerge_tasks WHERE task_id = $1 "
                        "AND ($2::text IS NULL OR project = $2)", 2, v, err);
    if (!r)
        return IMM_EIO;
    imm_err e = IMM_OK;
    if (PQntuples(r) && !(*stored = strdup(PQgetvalue(r, 0, 0))))
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
    PQclear(r);
    return e;
}

static imm_err list(imm_tasks *t, const imm_list_query *q, const imm_list_cursor *after,
                    int max, void (*add)(void *opaque, long long seq, const char *key,
                                         const char *stored),
                    void *opaque, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    char a[24], m[16], sql[1400];
    const char *start = "COALESCE(json::jsonb ->> 'StartTime', '')";
    const char *end = "COALESCE(json::jsonb ->> 'EndTime', '')";
    const char *key = imm_list_key_sql(q, start, end);
    snprintf(a, sizeof(a), "%lld", after->seq);
    snprintf(m, sizeof(m), "%d", max + 1);
    const char *v[] = {a, q->project, q->status, q->tag_key,
                       q->tag_key ? (q->tag_value ? q->tag_value : "") : NULL, m, after->key,
                       imm_list_bound(q->start_from), imm_list_bound(q->start_to),
                       imm_list_bound(q->end_from), imm_list_bound(q->end_to), q->status_also};
    /* COLLATE "C": the order of the bytes, as SQLite's, whatever the database's locale. */
    snprintf(sql, sizeof(sql),
             "SELECT seq, json, %s FROM immerge_tasks WHERE ($1::bigint = 0 OR (%s COLLATE \"C\", "
             "seq) %s ($7::text COLLATE \"C\", $1::bigint)) AND ($2::text IS NULL OR project = $2) "
             "AND ($3::text IS NULL OR status = $3 OR status = $12::text) "
             "AND ($4::text IS NULL OR tags ->> $4 = $5) "
             "AND ($8::text IS NULL OR (%s <> '' AND %s >= $8)) "
             "AND ($9::text IS NULL OR (%s <> '' AND %s <= $9)) "
             "AND ($10::text IS NULL OR (%s <> '' AND %s >= $10)) "
             "AND ($11::text IS NULL OR (%s <> '' AND %s <= $11)) "
             "ORDER BY %s COLLATE \"C\" %s, seq %s LIMIT $6::int",
             key, key, imm_list_after_sql(q), start, start, start, start, end, end, end, end, key,
             imm_list_order_sql(q), imm_list_order_sql(q));
    PGresult *r = exec1(p, "listing tasks", sql, 12, v, err);
    if (!r)
        return IMM_EIO;
    for (int i = 0; i < PQntuples(r); i++)
        add(opaque, strtoll(PQgetvalue(r, i, 0), NULL, 10), PQgetvalue(r, i, 2),
            PQgetvalue(r, i, 1));
    PQclear(r);
    return IMM_OK;
}

/* ---- running a task --------------------------------------------------------------------------- */

static void hold(pg_tasks *p, imm_claim *c)
{
    pthread_mutex_lock(&p->lock);
    c->next = p->claims;
    p->claims = c;
    pthread_mutex_unlock(&p->lock);
}

/* A write of the claim's run: (task_id, attempt) and the row's status, JSON and tags. With
 * running_only, nothing is written (and *skipped set) once the task has ended: its end is
 * finish's to record, conditionally. */
static PGresult *write_row(pg_tasks *p, imm_claim *c, double patience, const char *what,
                           const char *sql, int running_only, int *skipped, imm_error *err)
{
    task_row row;
    char attempt[24];
    if (imm_task_row(c->task, &row, err))
        return NULL;
    if (running_only && strcmp(row.status, "Running")) {
        *skipped = 1;
        imm_task_row_clear(&row);
        return NULL;
    }
    snprintf(attempt, sizeof(attempt), "%lld", c->attempt);
    const char *v[] = {row.task_id, attempt, row.status, row.json, row.tags};
    PGresult *r = exec_patiently(p, patience, what, sql, 5, v, err);
    imm_task_row_clear(&row);
    return r;
}

static imm_err start(imm_tasks *t, imm_claim *c, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    task_row row;
    char lease[32];
    imm_err e = imm_task_row(c->task, &row, err);
    if (e)
        return e;
    snprintf(c->task_id, sizeof(c->task_id), "%s", row.task_id);
    snprintf(lease, sizeof(lease), "%.3f", p->lease);
    const char *v[] = {row.task_id, row.project, row.status, row.start, row.tags, row.json,
                       p->owner, lease};
    PGresult *r = exec1(p, "recording a task", "INSERT INTO immerge_tasks (task_id, project, "
                        "status, start_time, tags, json, runnable, owner, attempt, lease_until) "
                        "VALUES ($1, $2, $3, $4, $5::jsonb, $6, false, $7, 1, now() + "
                        "make_interval(secs => $8::float8))", 8, v, err);
    imm_task_row_clear(&row);
    if (!r)
        return IMM_EIO;
    PQclear(r);
    hold(p, c);
    return IMM_OK;
}

/* The insert of a queued task, in a transaction of its own on conn. */
static imm_err queue_row(pg_tasks *p, PGconn *conn, const char *const *v, const char *lock,
                         int *full, imm_error *err)
{
    imm_err e = IMM_OK;
    PGresult *r = NULL;
    if (PQstatus(conn) != CONNECTION_OK)
        return pg_error(p, conn, NULL, "queueing a task", err);
    /* The lock makes count-then-insert one step across servers: the bound holds. */
    const char *steps[] = {"BEGIN", lock, NULL};
    for (int i = 0; steps[i] && !e; i++) {
        if (!(r = run(p, conn, "queueing a task", steps[i], 0, NULL, err)))
            e = IMM_EIO;
        PQclear(r);
    }
    if (!e && (r = run(p, conn, "queueing a task", "INSERT INTO immerge_tasks (task_id, "
                       "project, status, start_time, tags, json, runnable) SELECT $1, $2, "
                       "'Queued', $3, $4::jsonb, $5, true WHERE (SELECT count(*) FROM "
                       "immerge_tasks WHERE status = 'Queued') < $6::int", 6, v, err))) {
        *full = atoi(PQcmdTuples(r)) == 0;
        PQclear(r);
    } else {
        e = IMM_EIO;
    }
    if (!e && !*full) {
        if ((r = run(p, conn, "queueing a task", "NOTIFY " CHANNEL, 0, NULL, err)))
            PQclear(r);
        else
            e = IMM_EIO;
    }
    r = PQexec(conn, e ? "ROLLBACK" : "COMMIT");
    if (!e && PQresultStatus(r) != PGRES_COMMAND_OK)
        e = pg_error(p, conn, r, "queueing a task", err);
    PQclear(r);
    return e;
}

static imm_err enqueue(imm_tasks *t, imm_claim *c, int queue, int *full, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    task_row row;
    char cap[16], lock[64];
    imm_err e = imm_task_row(c->task, &row, err);
    if (e) {
        imm_claim_free(c);
        return e;
    }
    snprintf(cap, sizeof(cap), "%d", queue);
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%d)", LOCK_QUEUE);
    const char *v[] = {row.task_id, row.project, row.start, row.tags, row.json, cap};
    PGconn *conn = acquire(p);
    for (int tries = 0; tries < 2; tries++) {
        if (tries)
            PQreset(conn); /* it died unseen while the database restarted: once more */
        e = queue_row(p, conn, v, lock, full, err);
        if (!e || PQstatus(conn) == CONNECTION_OK)
            break;
    }
    give_back(p, conn);
    if (!e)
        note_db(p, 0, NULL);
    imm_task_row_clear(&row);
    imm_claim_free(c);
    return e;
}

/* Tasks whose run is gone for good: `immerge run`'s (no server may run them again) and those
 * that have had MAX_ATTEMPTS runs, once their lease has run out. */
static void sweep(pg_tasks *p)
{
    imm_error err = {0};
    char max[16];
    snprintf(max, sizeof(max), "%d", MAX_ATTEMPTS);
    const char *v[] = {max};
    PGresult *r = exec1(p, "sweeping tasks", "SELECT seq, attempt, json, coalesce(owner, ''), "
                        "runnable FROM immerge_tasks WHERE status = 'Running' AND lease_until < "
                        "now() AND (NOT runnable OR attempt >= $1::int) LIMIT 50", 1, v, &err);
    for (int i = 0; r && i < PQntuples(r); i++) {
        char who[256];
        const char *status;
        int runnable = !strcmp(PQgetvalue(r, i, 4), "t");
        if (runnable)
            snprintf(who, sizeof(who), "immerge servers (%d runs, the last by %s)", MAX_ATTEMPTS,
                     PQgetvalue(r, i, 3));
        else
            snprintf(who, sizeof(who), "immerge process %s", PQgetvalue(r, i, 3));
        char *json = imm_task_interrupted(PQgetvalue(r, i, 2), who, 0, &status);
        const char *u[] = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), status, json};
        PGresult *w = json ? exec1(p, "sweeping tasks", "UPDATE immerge_tasks SET status = $3, "
                                   "json = $4, owner = NULL, lease_until = NULL WHERE seq = "
                                   "$1::bigint AND attempt = $2::int AND status = 'Running' AND "
                                   "lease_until < now()", 4, u, &err) : NULL;
        PQclear(w);
        free(json);
    }
    PQclear(r);
}

/* The claimed row as a task to run: its request parsed again from TaskRequestDefinition. A row
 * that cannot be (it was valid when queued) is recorded Failed, and NULL returned. */
static imm_claim *take_up(pg_tasks *p, const PGresult *r)
{
    const char *stored = PQgetvalue(r, 0, 2);
    cJSON *o = cJSON_Parse(stored);
    const char *def = cJSON_GetStringValue(cJSON_GetObjectItem(o, "TaskRequestDefinition"));
    imm_request *req = NULL;
    imm_task *task = NULL;
    imm_error why = {0};
    if (def && !imm_request_parse(def, strlen(def), &req, &why))
        task = imm_task_restore(req, stored);
    cJSON_Delete(o);
    imm_claim *c = task ? imm_claim_new(task, req, 1) : NULL;
    if (c) {
        snprintf(c->task_id, sizeof(c->task_id), "%s", PQgetvalue(r, 0, 0));
        c->attempt = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        c->project = strdup(PQgetvalue(r, 0, 3));
        return c;
    }
    if (!task)
        imm_request_free(req);
    const char *status;
    char *json = imm_task_interrupted(stored, "immerge server", 0, &status);
    const char *v[] = {PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), json};
    imm_error err;
    PQclear(json ? exec1(p, "recording a task", "UPDATE immerge_tasks SET status = 'Failed', "
                         "json = $3, owner = NULL, lease_until = NULL WHERE task_id = $1 AND "
                         "attempt = $2::int", 3, v, &err) : NULL);
    free(json);
    return NULL;
}

static imm_err claim(imm_tasks *t, const volatile int *stop, imm_claim **out, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    char lease[32], max[16];
    snprintf(lease, sizeof(lease), "%.3f", p->lease);
    snprintf(max, sizeof(max), "%d", MAX_ATTEMPTS);
    const char *v[] = {p->owner, lease, max};
    (void)err;
    while (!*stop && !p->closing) {
        pthread_mutex_lock(&p->lock);
        unsigned long seen = p->wakes;
        int due = imm_tasks_clock() - p->swept >= 2;
        if (due)
            p->swept = imm_tasks_clock();
        pthread_mutex_unlock(&p->lock);
        if (due)
            sweep(p);
        imm_error e = {0};
        /* The fairness rule of tasks.h: fewest running first, then oldest. */
        PGresult *r = exec1(p, "claiming a task",
            "WITH busy AS (SELECT project, count(*) AS n FROM immerge_tasks WHERE status = "
            "'Running' AND lease_until > now() GROUP BY project), "
            "next AS (SELECT t.seq FROM immerge_tasks t LEFT JOIN busy b ON b.project = t.project "
            "WHERE t.runnable AND t.attempt < $3::int AND (t.status = 'Queued' OR (t.status = "
            "'Running' AND t.lease_until < now())) ORDER BY coalesce(b.n, 0), t.seq LIMIT 1 "
            "FOR UPDATE OF t SKIP LOCKED) "
            "UPDATE immerge_tasks u SET status = 'Running', owner = $1, attempt = u.attempt + 1, "
            "lease_until = now() + make_interval(secs => $2::float8) FROM next WHERE u.seq = "
            "next.seq RETURNING u.task_id, u.attempt, u.json, u.project", 3, v, &e);
        if (r && PQntuples(r) == 1) {
            imm_claim *c = take_up(p, r);
            PQclear(r);
            if (!c)
                continue;
            hold(p, c);
            imm_error ignored;
            imm_tasks_progress(t, c, &ignored); /* Running, from now */
            *out = c;
            return IMM_OK;
        }
        PQclear(r);
        /* Nothing to take (or no database): wait for a NOTIFY, a lease to run out, or *stop. */
        pthread_mutex_lock(&p->lock);
        for (int i = 0; i < 4 && p->wakes == seen && !*stop && !p->closing; i++)
            imm_tasks_wait(&p->wake, &p->lock, 0.25);
        pthread_mutex_unlock(&p->lock);
    }
    return IMM_OK;
}

static imm_err progress(imm_tasks *t, imm_claim *c, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    int skipped = 0;
    PGresult *r = write_row(p, c, 0, "recording progress", "UPDATE immerge_tasks SET status = "
                            "$3, json = $4, tags = $5::jsonb WHERE task_id = $1 AND attempt = "
                            "$2::int AND status = 'Running'", 1, &skipped, err);
    if (!r)
        return skipped ? IMM_OK : err->code;
    if (atoi(PQcmdTuples(r)) == 0)
        lose(p, c);
    PQclear(r);
    return IMM_OK;
}

/* How long a run waits for a database that is down before it gives up on its fence or its end:
 * a minute at least, so that a restart of the database costs no run. */
static double patience(const pg_tasks *p)
{
    return p->lease > 30 ? 2 * p->lease : 60;
}

static imm_err fence(imm_tasks *t, imm_claim *c, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    int held = renew(p, c, patience(p), err);
    if (held < 0)
        return err->code;
    if (!held) {
        lose(p, c);
        return imm_error_set(err, IMM_ECANCELED, "Another immerge server took this task over "
                             "(this run's lease of %g s ran out); this run's outputs were "
                             "discarded.", p->lease);
    }
    return IMM_OK;
}

static imm_err finish(imm_tasks *t, imm_claim *c, int *won, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    pthread_mutex_lock(&p->lock);
    c->ending = 1;
    pthread_mutex_unlock(&p->lock);
    /* A run that cannot record its end leaves the task to be run again once the database is
     * back. The owner stays, naming the run that ended it. */
    PGresult *r = write_row(p, c, patience(p), "recording a task's end",
                            "UPDATE immerge_tasks SET status = $3, json = $4, tags = $5::jsonb, "
                            "lease_until = NULL WHERE task_id = $1 AND attempt = $2::int AND "
                            "status = 'Running'", 0, NULL, err);
    if (!r)
        return err->code;
    *won = atoi(PQcmdTuples(r)) == 1;
    if (!*won)
        lose(p, c);
    PQclear(r);
    return IMM_OK;
}

static imm_err annotate(imm_tasks *t, imm_claim *c, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    PGresult *r = write_row(p, c, p->lease, "recording completion messages", "UPDATE "
                            "immerge_tasks SET status = $3, json = $4, tags = $5::jsonb WHERE "
                            "task_id = $1 AND attempt = $2::int", 0, NULL, err);
    PQclear(r);
    return r ? IMM_OK : err->code;
}

static void release(imm_tasks *t, imm_claim *c)
{
    pg_tasks *p = (pg_tasks *)t;
    pthread_mutex_lock(&p->lock);
    for (imm_claim **x = &p->claims; *x; x = &(*x)->next)
        if (*x == c) {
            *x = c->next;
            break;
        }
    pthread_mutex_unlock(&p->lock);
}

static void drain(imm_tasks *t)
{
    (void)t; /* the queued tasks are the other servers' to run */
}

static void close_tasks(imm_tasks *t)
{
    pg_tasks *p = (pg_tasks *)t;
    pthread_mutex_lock(&p->lock);
    p->closing = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_cond_broadcast(&p->beat);
    pthread_mutex_unlock(&p->lock);
    if (p->threads) {
        pthread_join(p->heart, NULL);
        pthread_join(p->listener, NULL);
    }
    for (int i = 0; i < p->npool; i++)
        PQfinish(p->pool[i]);
    free(p->pool);
    free(p->busy);
    free(p->uri);
    pthread_cond_destroy(&p->freed);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->beat);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static const tasks_ops pg_ops = {
    .get = get, .list = list, .start = start, .enqueue = enqueue, .claim = claim,
    .progress = progress, .fence = fence, .finish = finish, .annotate = annotate,
    .release = release, .drain = drain, .close = close_tasks,
};

imm_err imm_tasks_pg_open(const char *uri, const imm_tasks_options *opt, imm_tasks **out,
                          imm_error *err)
{
    pg_tasks *p = calloc(1, sizeof(*p));
    char host[64] = "";
    char tag[37];
    if (!p)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    p->base.ops = &pg_ops;
    p->base.shared = 1;
    p->lease = opt->lease_seconds > 0 ? opt->lease_seconds : 30;
    p->quiet = opt->quiet;
    p->npool = opt->connections > 0 ? opt->connections : 8;
    gethostname(host, sizeof(host) - 1);
    imm_request_id_new(tag);
    snprintf(p->owner, sizeof(p->owner), "%s/%ld/%.8s", host, (long)getpid(), tag);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->freed, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->beat, NULL);
    p->uri = strdup(uri);
    p->pool = calloc((size_t)p->npool, sizeof(*p->pool));
    p->busy = calloc((size_t)p->npool, sizeof(*p->busy));
    imm_err e = !p->uri || !p->pool || !p->busy
                    ? imm_error_set(err, IMM_EINTERNAL, "out of memory") : migrate(p, err);
    if (!e) {
        p->opened = 1; /* before the threads that read it */
        if (pthread_create(&p->heart, NULL, heartbeat, p))
            e = imm_error_set(err, IMM_EINTERNAL, "Cannot start the lease heartbeat.");
        else if (pthread_create(&p->listener, NULL, listener, p)) {
            p->closing = 1;
            pthread_cond_broadcast(&p->beat);
            pthread_join(p->heart, NULL);
            e = imm_error_set(err, IMM_EINTERNAL, "Cannot start the queue listener.");
        } else {
            p->threads = 1;
        }
    }
    if (e) {
        close_tasks(&p->base);
        return e;
    }
    sweep(p); /* as the SQLite records recover on open: get-task sees a dead run as such */
    *out = &p->base;
    return IMM_OK;
}
