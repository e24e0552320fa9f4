/*
 * pg.c - tasks.h on PostgreSQL: every server and run pointed at one database is one
 * service.
 *
 * One table, immerge_tasks, is records and queue at once: a row per task with its JSON (as
 * imm_task_to_json makes it, TaskRequestDefinition included, so any server can run it) and the
 * columns the queue and the queries need. The method is pg-boss's, River's, solid_queue's:
 *
 * - Create inserts a Queued row in one statement that first locks the queue's depth row (kept
 *   by triggers, which also NOTIFY), so the bound on waiting rows holds across servers.
 * - A worker claims with SELECT ... FOR UPDATE SKIP LOCKED inside one UPDATE that sets the row
 *   Running, names this server as owner, bumps `attempt`, sets `lease_until` and a claim token.
 *   It looks only at each project's oldest waiting row (a skip scan), then applies fairness.
 *   Workers never wait on each other's locks, and no two claim one row.
 * - A heartbeat thread renews the leases of this process's claims every third of a lease. A run
 *   whose lease expired (its server died, was killed or lost the database) is queued again by
 *   the maintenance leader, after a backoff, up to MAX_ATTEMPTS runs.
 * - Every write of a run is conditional on (task_id, attempt): a run that was taken over writes
 *   nothing, and learns it (its claim is lost). The commit of the outputs is fenced by renewing
 *   the lease just before it, which also records the record the run will have (`committing`):
 *   a later run that finds every output committed by the task takes it up instead of encoding
 *   again. The end is recorded only by the run holding the row, with its completion messages
 *   (the outbox) in the same statement.
 * - One server at a time (the holder of the immerge_leader row's lease) does the maintenance:
 *   requeueing silent runs, recording `immerge run`'s dead ones Failed/TaskInterrupted, deleting
 *   tasks past the retention. The outbox is swept by any server (job.c), SKIP LOCKED.
 *
 * The schema is created and migrated here, in one transaction under a transaction-level advisory
 * lock, versioned in immerge_schema.
 *
 * Every statement has a deadline of ours (see CALL_SECONDS): libpq has none for an answer, and a
 * frozen database (a hung disk, a partition) would hold a caller for as long as it stays frozen.
 * The API's calls, the workers and the heartbeat have connections of their own, so that no kind
 * of work can starve another. A broken pooled connection is replaced and the statement tried once
 * more; a database that is down is waited out by the workers and answered as ServiceUnavailable
 * by the API meanwhile.
 */
#include "tasks/backend.h"

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
#define LOCK_SCHEMA 0x696d6d31 /* the migration's advisory lock: "imm1" */
#define CHANNEL "immerge_tasks"

/* Time bounds. A call of the API gets its answer within CALL_SECONDS whatever the database does
 * (the SDKs' clients give up on a server silent for 3 s): at most POOL_WAIT of it waiting for a
 * connection, the rest for connecting and the statement, past which the statement is cancelled
 * and its connection dropped. A worker's statement gets WORK_SECONDS; a lease renewal a third of
 * a lease. */
#define CALL_SECONDS 2.0
#define POOL_WAIT 1.0
#define WORK_SECONDS 10.0
#define MIGRATE_SECONDS 600.0

/* Retention: finished tasks are deleted PURGE_BATCH at a time, every PURGE_EVERY seconds. */
#define PURGE_BATCH 1000
#define PURGE_EVERY 10.0

#define DOUBTFUL_MAX 64

/* The listener's probe of its own notifications: one every PROBE_EVERY seconds, lost when not
 * back within PROBE_WAIT; then idle workers poll every POLL_FAST seconds. */
#define PROBE_EVERY 10.0
#define PROBE_WAIT 5.0
#define POLL_FAST 0.25

/* Connections for one kind of work, so that one kind cannot take another's: the API's calls,
 * the workers' claims and writes. The heartbeat and the listener have one each besides. */
typedef struct pg_pool {
    const char *name;
    PGconn **conns;
    int *busy, n;
    double wait; /* the longest a caller waits for a free one; 0: until one is free */
    pthread_cond_t freed;
} pg_pool;

typedef struct pg_tasks {
    imm_tasks base;
    char *uri;
    double lease;
    int quiet;
    char owner[160]; /* this process: host, pid, a random tag */
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* a task was queued (NOTIFY), or the tasks close */
    int idle, tokens;     /* workers waiting for a task; wake-ups for them not taken yet */
    int polling;          /* the notifications do not arrive: idle workers poll faster */
    long long claimed, takeovers, lease_losses, timeouts; /* for imm_tasks_stats */
    pthread_cond_t beat;  /* the tasks close: the heartbeat ends */
    pg_pool api, work;
    PGconn *beat_conn;  /* the heartbeat's own */
    imm_claim *claims; /* this process's live claims, renewed by the heartbeat */
    int closing, down;
    int opened; /* past imm_tasks_pg_open: a lost database is waited for, and said so */
    double retain_days; /* finished tasks older than this are deleted; 0: kept */
    double maintained, purged; /* when this process last did its maintenance turn, a purge */
    char doubtful[DOUBTFUL_MAX][37]; /* TaskIds of Creates answered 503 that may exist */
    int ndoubtful;
    pthread_t heart, listener;
    int threads;
} pg_tasks;

/* ---- connections ------------------------------------------------------------------------------ */

static void ignore_notice(void *opaque, const char *message)
{
    (void)opaque, (void)message; /* "already exists, skipping" and the like */
}

/* A new connection, made by `until` (monotonic seconds): NULL when that passed first, else one
 * whose status says whether it worked. TCP keepalives and tcp_user_timeout find a peer that is
 * gone (a cable, a host) within seconds; a peer that is there but silent (a frozen database) is
 * what the deadlines are for, which libpq's own connect_timeout (whole seconds, at least 2, per
 * address) cannot keep. */
static PGconn *connect_until(const pg_tasks *p, double until)
{
    /* Our defaults first: whatever the URI says overrides them. */
    const char *keys[] = {"application_name", "keepalives", "keepalives_idle",
                          "keepalives_interval", "keepalives_count", "tcp_user_timeout", "dbname",
                          NULL};
    const char *values[] = {"immerge", "1", "5", "2", "3", "10000", p->uri, NULL};
    PGconn *conn = PQconnectStartParams(keys, values, 1);
    if (!conn || PQstatus(conn) == CONNECTION_BAD)
        return conn;
    PQsetNoticeProcessor(conn, ignore_notice, NULL);
    for (PostgresPollingStatusType st = PGRES_POLLING_WRITING;;) {
        if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED)
            return conn;
        double left = until - imm_clock_seconds(IMM_CLOCK_MONOTONIC);
        if (left <= 0) {
            PQfinish(conn);
            return NULL;
        }
        struct pollfd pfd = {.fd = PQsocket(conn),
                             .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        if (poll(&pfd, 1, (int)(left * 1000) + 1) < 0 && errno != EINTR) {
            PQfinish(conn);
            return NULL;
        }
        st = PQconnectPoll(conn);
    }
}

/* *slot connected (made anew when it is not), by `until`; 0, or -1 with err set. */
static int ensure_connected(pg_tasks *p, PGconn **slot, double until, const char *what,
                            imm_error *err);

static int pool_init(pg_pool *pool, const char *name, int n, double wait)
{
    pool->name = name;
    pool->n = n;
    pool->wait = wait;
    pthread_cond_init(&pool->freed, NULL);
    pool->conns = calloc((size_t)n, sizeof(*pool->conns));
    pool->busy = calloc((size_t)n, sizeof(*pool->busy));
    return pool->conns && pool->busy ? 0 : -1;
}

static void pool_clear(pg_pool *pool)
{
    for (int i = 0; pool->conns && i < pool->n; i++)
        PQfinish(pool->conns[i]);
    free(pool->conns);
    free(pool->busy);
    pthread_cond_destroy(&pool->freed);
}

/* A connection slot of pool for this caller alone, waiting at most pool->wait (and until `until`)
 * for one to come free; NULL with err set past that. The statement connects it if need be. */
static PGconn **acquire(pg_tasks *p, pg_pool *pool, double until, imm_error *err)
{
    double give_up = pool->wait > 0 ? imm_clock_seconds(IMM_CLOCK_MONOTONIC) + pool->wait : until;
    if (give_up > until)
        give_up = until;
    pthread_mutex_lock(&p->lock);
    int i;
    for (;;) {
        for (i = 0; i < pool->n && pool->busy[i]; i++)
            ;
        if (i < pool->n)
            break;
        double left = give_up - imm_clock_seconds(IMM_CLOCK_MONOTONIC);
        if (left <= 0) {
            pthread_mutex_unlock(&p->lock);
            imm_error_set(err, IMM_EIO, "Task records (PostgreSQL): no connection for %s came "
                          "free within %.0f s (all %d busy); try again.", pool->name,
                          pool->wait > 0 ? pool->wait : left, pool->n);
            return NULL;
        }
        imm_tasks_wait(&pool->freed, &p->lock, left);
    }
    pool->busy[i] = 1;
    pthread_mutex_unlock(&p->lock);
    return &pool->conns[i];
}

static void give_back(pg_tasks *p, pg_pool *pool, PGconn **slot)
{
    pthread_mutex_lock(&p->lock);
    pool->busy[slot - pool->conns] = 0;
    pthread_cond_signal(&pool->freed);
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

static int ensure_connected(pg_tasks *p, PGconn **slot, double until, const char *what,
                            imm_error *err)
{
    if (*slot && PQstatus(*slot) == CONNECTION_OK)
        return 0;
    PQfinish(*slot);
    *slot = connect_until(p, until);
    if (*slot && PQstatus(*slot) == CONNECTION_OK)
        return 0;
    if (*slot) {
        pg_error(p, *slot, NULL, what, err);
        PQfinish(*slot);
        *slot = NULL;
        return -1;
    }
    note_db(p, 1, "no connection in time");
    imm_error_set(err, IMM_EIO, "Task records (PostgreSQL): %s failed: the database did not "
                  "take a connection in time (it is hung, overloaded or unreachable).", what);
    return -1;
}

/* Sends a statement's cancel from a thread of its own: to a database that is frozen the cancel
 * waits as long as the database does, and nobody waits for it. */
static void *send_cancel(void *opaque)
{
    char why[256];
    PQcancel(opaque, why, sizeof(why));
    PQfreeCancel(opaque);
    return NULL;
}

/* A statement that overran its deadline: cancelled (so that a database that is only slow stops
 * working on it) and its connection dropped, to be made anew by the next caller. */
static void abandon(PGconn **slot)
{
    PGcancel *cancel = PQgetCancel(*slot);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (cancel && pthread_create(&t, &attr, send_cancel, cancel))
        PQfreeCancel(cancel);
    pthread_attr_destroy(&attr);
    PQfinish(*slot);
    *slot = NULL;
}

/* One statement on *slot, answered by `until` (monotonic seconds), with text parameters (n of
 * values; n 0 and values NULL: SQL of one or more statements without any). The result when every
 * statement's status is the wanted one (PGRES_TUPLES_OK or PGRES_COMMAND_OK), else NULL with err
 * set; past the deadline the statement is abandoned and *slot is NULL. *timed_out (may be NULL)
 * says which. */
static PGresult *run_until(pg_tasks *p, PGconn **slot, double until, const char *what,
                           const char *sql, int n, const char *const *values, int *timed_out,
                           imm_error *err)
{
    PGresult *last = NULL, *failed = NULL;
    if (timed_out)
        *timed_out = 0;
    if (ensure_connected(p, slot, until, what, err))
        return NULL;
    PGconn *conn = *slot;
    PQsetnonblocking(conn, 1);
    int sent = !n && !values ? PQsendQuery(conn, sql)
                             : PQsendQueryParams(conn, sql, n, NULL, values, NULL, NULL, 0);
    if (!sent) {
        pg_error(p, conn, NULL, what, err);
        return NULL;
    }
    for (;;) {
        int flushing = PQflush(conn);
        if (flushing < 0 || !PQconsumeInput(conn))
            goto broken;
        while (!flushing && !PQisBusy(conn)) {
            PGresult *r = PQgetResult(conn);
            if (!r)
                goto answered;
            ExecStatusType st = PQresultStatus(r);
            if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && !failed) {
                failed = r;
                continue;
            }
            if (r == failed)
                continue;
            PQclear(last);
            last = r;
        }
        double left = until - imm_clock_seconds(IMM_CLOCK_MONOTONIC);
        if (left <= 0) {
            PQclear(last);
            PQclear(failed);
            abandon(slot);
            if (timed_out)
                *timed_out = 1;
            pthread_mutex_lock(&p->lock);
            p->timeouts++;
            pthread_mutex_unlock(&p->lock);
            note_db(p, 1, "a statement went unanswered");
            imm_error_set(err, IMM_EIO, "Task records (PostgreSQL): %s did not answer in time "
                          "(the database is hung or overloaded); the statement was cancelled.",
                          what);
            return NULL;
        }
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN | (flushing ? POLLOUT : 0)};
        int ms = left > 1e6 ? 1000000000 : (int)(left * 1000) + 1;
        if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
            goto broken;
    }
answered:
    if (failed) {
        pg_error(p, conn, failed, what, err);
        PQclear(failed);
        PQclear(last);
        return NULL;
    }
    return last;
broken:
    PQclear(last);
    PQclear(failed);
    pg_error(p, conn, NULL, what, err);
    return NULL;
}

/* One statement on a connection of pool, answered within `seconds`, tried up to `tries` times:
 * again only on a new connection after a pooled one was lost (it may have died unseen while the
 * database restarted) and while time remains; not when connecting failed, nor when the database
 * was too slow. */
static PGresult *execute(pg_tasks *p, pg_pool *pool, double seconds, int tries, const char *what,
                         const char *sql, int n, const char *const *values, imm_error *err)
{
    double until = imm_clock_seconds(IMM_CLOCK_MONOTONIC) + seconds;
    PGresult *r = NULL;
    PGconn **slot = acquire(p, pool, until, err);
    if (!slot)
        return NULL;
    for (int i = 0; i < tries && !r; i++) {
        int timed_out = 0, pooled = *slot && PQstatus(*slot) == CONNECTION_OK;
        r = run_until(p, slot, until, what, sql, n, values, &timed_out, err);
        if (r || timed_out || !pooled || (*slot && PQstatus(*slot) == CONNECTION_OK))
            break;
        PQfinish(*slot);
        *slot = NULL;
    }
    give_back(p, pool, slot);
    if (r)
        note_db(p, 0, NULL);
    return r;
}

/* A statement that may safely run twice: tried again after a lost pooled connection. */
static PGresult *exec1(pg_tasks *p, pg_pool *pool, double seconds, const char *what,
                       const char *sql, int n, const char *const *values, imm_error *err)
{
    return execute(p, pool, seconds, 2, what, sql, n, values, err);
}

/* One that may not (whether a lost answer's statement took effect is for the caller to find
 * out). */
static PGresult *exec_once(pg_tasks *p, pg_pool *pool, double seconds, const char *what,
                           const char *sql, int n, const char *const *values, imm_error *err)
{
    return execute(p, pool, seconds, 1, what, sql, n, values, err);
}

/* Like exec1, tried again every second for up to `seconds` while the database is unreachable:
 * for the writes a run cannot do without (its end, its fence). */
static PGresult *exec_patiently(pg_tasks *p, double seconds, const char *what, const char *sql,
                                int n, const char *const *values, imm_error *err)
{
    double until = imm_clock_seconds(IMM_CLOCK_MONOTONIC) + seconds;
    for (;;) {
        PGresult *r = exec1(p, &p->work, WORK_SECONDS, what, sql, n, values, err);
        pthread_mutex_lock(&p->lock);
        int down = p->down;
        pthread_mutex_unlock(&p->lock);
        if (r || !down || imm_clock_seconds(IMM_CLOCK_MONOTONIC) >= until || p->closing)
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
    /* 2: what ListTasks sorts and filters on as columns of their own, indexed (in the order of
     * the bytes, as SQLite's); the waiting tasks by project, for a claim that looks at each
     * project's oldest only; a rerun's earliest start (backoff); the end, for retention; the
     * queue's depth kept by triggers, so that a Create locks one row instead of counting the
     * backlog; the maintenance leader's lease; a claim's own token, by which a claim whose answer
     * was lost is found again. */
    "ALTER TABLE immerge_tasks ALTER COLUMN task_id TYPE text COLLATE \"C\","
    " ALTER COLUMN start_time TYPE text COLLATE \"C\","
    " ADD COLUMN end_time text COLLATE \"C\" NOT NULL DEFAULT '',"
    " ADD COLUMN not_before timestamptz NOT NULL DEFAULT '-infinity',"
    " ADD COLUMN claim_token text,"
    " ADD COLUMN ended timestamptz;"
    "UPDATE immerge_tasks SET start_time = coalesce(json::jsonb ->> 'StartTime', ''),"
    " end_time = coalesce(json::jsonb ->> 'EndTime', ''),"
    " ended = CASE WHEN status NOT IN ('Queued', 'Running') THEN now() END;"
    "DROP INDEX immerge_tasks_waiting;"
    "CREATE INDEX immerge_tasks_waiting ON immerge_tasks (project, seq)"
    " WHERE status = 'Queued' AND runnable;"
    "CREATE INDEX immerge_tasks_by_status ON immerge_tasks (project, status, seq);"
    "CREATE INDEX immerge_tasks_by_id ON immerge_tasks (project, task_id);"
    "CREATE INDEX immerge_tasks_by_start ON immerge_tasks (project, start_time, seq);"
    "CREATE INDEX immerge_tasks_by_end ON immerge_tasks (project, end_time, seq);"
    "CREATE INDEX immerge_tasks_tags ON immerge_tasks USING gin (tags jsonb_path_ops);"
    "CREATE INDEX immerge_tasks_ended ON immerge_tasks (ended) WHERE ended IS NOT NULL;"
    "CREATE TABLE immerge_queue (one boolean PRIMARY KEY DEFAULT true CHECK (one),"
    " depth bigint NOT NULL);"
    "INSERT INTO immerge_queue (depth) SELECT count(*) FROM immerge_tasks WHERE status = 'Queued';"
    "CREATE FUNCTION immerge_queue_depth() RETURNS trigger LANGUAGE plpgsql AS $$"
    " DECLARE d bigint := 0; BEGIN"
    "  IF TG_OP IN ('INSERT', 'UPDATE') THEN"
    "   d := d + (SELECT count(*) FROM new_rows WHERE status = 'Queued'); END IF;"
    "  IF TG_OP IN ('DELETE', 'UPDATE') THEN"
    "   d := d - (SELECT count(*) FROM old_rows WHERE status = 'Queued'); END IF;"
    "  IF d <> 0 THEN UPDATE immerge_queue SET depth = depth + d; END IF;"
    "  IF d > 0 THEN PERFORM pg_notify('" CHANNEL "', ''); END IF;"
    "  RETURN NULL; END $$;"
    "CREATE TRIGGER immerge_queue_insert AFTER INSERT ON immerge_tasks"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION immerge_queue_depth();"
    "CREATE TRIGGER immerge_queue_update AFTER UPDATE ON immerge_tasks"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION immerge_queue_depth();"
    "CREATE TRIGGER immerge_queue_delete AFTER DELETE ON immerge_tasks"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION immerge_queue_depth();"
    "CREATE TABLE immerge_leader (name text PRIMARY KEY, owner text,"
    " until timestamptz NOT NULL DEFAULT '-infinity');"
    "INSERT INTO immerge_leader (name) VALUES ('maintenance');",
    /* 3: the outbox of completion messages, recorded with the task's end, until sent. */
    "CREATE TABLE immerge_outbox (id bigserial PRIMARY KEY,"
    " task_id text NOT NULL REFERENCES immerge_tasks (task_id) ON DELETE CASCADE,"
    " destination text NOT NULL, target text NOT NULL, endpoint text, body text NOT NULL,"
    " created timestamptz NOT NULL DEFAULT now(), next_try timestamptz NOT NULL,"
    " tries integer NOT NULL DEFAULT 0, sent timestamptz, last_error text);"
    "CREATE INDEX immerge_outbox_due ON immerge_outbox (next_try) WHERE sent IS NULL;"
    "CREATE INDEX immerge_outbox_task ON immerge_outbox (task_id);",
    /* 4: the record a run will have once its outputs are committed, written at its fence: a
     * later run that finds them committed takes it up instead of encoding again. */
    "ALTER TABLE immerge_tasks ADD COLUMN committing text;",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(*migrations)))

/* One transaction that takes the schema's lock first, so that servers starting at once migrate
 * one after the other: a transaction-level lock, which a pooler in transaction mode (PgBouncer)
 * keeps on one server connection, where a session's lock could be taken on one and released on
 * another. */
static imm_err migrate(pg_tasks *p, imm_error *err)
{
    char lock[64];
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%d)", LOCK_SCHEMA);
    double until = imm_clock_seconds(IMM_CLOCK_MONOTONIC) + MIGRATE_SECONDS;
    PGconn **slot = acquire(p, &p->work, until, err);
    if (!slot)
        return IMM_EIO;
    imm_err e = IMM_OK;
    PGresult *r = NULL;
    const char *setup[] = {"BEGIN", lock, "CREATE TABLE IF NOT EXISTS immerge_schema (version "
                           "integer NOT NULL)", NULL};
    for (int i = 0; setup[i] && !e; i++) {
        if (!(r = run_until(p, slot, until, "setting up the schema", setup[i], 0, NULL, NULL,
                            err)))
            e = IMM_EIO;
        PQclear(r);
    }
    int version = 0;
    if (!e && (r = run_until(p, slot, until, "reading the schema version", "SELECT "
                             "coalesce(max(version), 0) FROM immerge_schema", 0, NULL, NULL,
                             err))) {
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
        const char *steps[] = {migrations[v - 1], record};
        for (int i = 0; i < 2 && !e; i++) {
            if (!(r = run_until(p, slot, until, "migrating the schema", steps[i], 0, NULL, NULL,
                                err)))
                e = IMM_EIO;
            PQclear(r);
        }
    }
    if (*slot) {
        imm_error ignored;
        r = run_until(p, slot, until, "migrating the schema", e ? "ROLLBACK" : "COMMIT", 0, NULL,
                      NULL, e ? &ignored : err);
        if (!r && !e)
            e = IMM_EIO;
        PQclear(r);
    }
    give_back(p, &p->work, slot);
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
static void lose_locked(pg_tasks *p, imm_claim *c)
{
    p->lease_losses += !c->lost;
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

static const char renew_sql[] =
    "UPDATE immerge_tasks SET lease_until = now() + make_interval(secs => $3::float8) WHERE "
    "task_id = $1 AND attempt = $2::int AND status = 'Running'";

/* What a renewal's result says: 1 the lease holds, 0 another run has the task, -1 the database
 * did not say. */
static int renewed(PGresult *r)
{
    int held = r ? atoi(PQcmdTuples(r)) == 1 : -1;
    PQclear(r);
    return held;
}

/* The heartbeat's renewal, on its own connection: however busy the API's and the workers'
 * connections are, the leases of the runs under way are renewed, each within a third of a
 * lease. */
static int beat(pg_tasks *p, const imm_claim *c, imm_error *err)
{
    char attempt[24], lease[32];
    snprintf(attempt, sizeof(attempt), "%lld", c->attempt);
    snprintf(lease, sizeof(lease), "%.3f", p->lease);
    const char *v[] = {c->task_id, attempt, lease};
    double until = imm_clock_seconds(IMM_CLOCK_MONOTONIC) + (p->lease / 3 < 1 ? 1 : p->lease / 3);
    PGresult *r = run_until(p, &p->beat_conn, until, "renewing a lease", renew_sql, 3, v, NULL,
                            err);
    if (r)
        note_db(p, 0, NULL);
    return renewed(r);
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
            int held = beat(p, &copy, &err);
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

/* A task was queued: one idle worker of this process is woken, not all of them (the others
 * would only find nothing to claim). `all`: every idle one (what was queued unheard). */
static void wake(pg_tasks *p, int all)
{
    pthread_mutex_lock(&p->lock);
    p->tokens = all ? p->idle : p->tokens < p->idle ? p->tokens + 1 : p->tokens;
    if (all)
        pthread_cond_broadcast(&p->wake);
    else
        pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

/* Sends a probe through the workers' connections, which the listener must hear back within
 * PROBE_WAIT: a pooler in transaction mode (PgBouncer) takes LISTEN without complaint and then
 * loses what it should deliver. */
static void probe(pg_tasks *p, char *sent, size_t len)
{
    static unsigned long n;
    char payload[200];
    snprintf(payload, sizeof(payload), "probe %s %lu", p->owner, ++n);
    const char *v[] = {payload};
    imm_error ignored;
    PGresult *r = exec1(p, &p->work, WORK_SECONDS, "probing the notifications", "SELECT "
                        "pg_notify('" CHANNEL "', $1)", 1, v, &ignored);
    snprintf(sent, len, "%s", r ? payload : "");
    PQclear(r);
}

/* The notifications work (polled: 0) or not (1), said once each way. */
static void set_polling(pg_tasks *p, int polling)
{
    pthread_mutex_lock(&p->lock);
    int changed = p->polling != polling;
    p->polling = polling;
    pthread_mutex_unlock(&p->lock);
    if (changed && polling && !p->quiet)
        fprintf(stderr, "immerge: warning: the task database's notifications do not arrive "
                "(LISTEN through a pooler in transaction mode?); idle workers poll every %.2f s "
                "instead\n", POLL_FAST);
    else if (changed && !p->quiet)
        fprintf(stderr, "immerge: the task database's notifications arrive again\n");
}

/* LISTENs for queued tasks on a connection of its own, so that idle workers start at once, and
 * checks now and then that what it listens for arrives. */
static void *listener(void *opaque)
{
    pg_tasks *p = opaque;
    PGconn *conn = NULL;
    char pending[200] = "";
    double probed = 0;
    while (!p->closing) {
        if (!conn || PQstatus(conn) != CONNECTION_OK) {
            imm_error ignored;
            PGresult *r = run_until(p, &conn, imm_clock_seconds(IMM_CLOCK_MONOTONIC) + WORK_SECONDS, "listening",
                                    "LISTEN " CHANNEL, 0, NULL, NULL, &ignored);
            int ok = r != NULL;
            PQclear(r);
            if (!ok) {
                for (int i = 0; i < 4 && !p->closing; i++)
                    usleep(250 * 1000);
                continue;
            }
            wake(p, 1); /* what was queued while we were not listening */
            probed = 0;
        }
        double now = imm_clock_seconds(IMM_CLOCK_MONOTONIC);
        if (*pending && now - probed > PROBE_WAIT) {
            set_polling(p, 1); /* the last probe never came back */
            *pending = '\0';
        }
        if (!*pending && now - probed > PROBE_EVERY) {
            probed = now;
            probe(p, pending, sizeof(pending));
        }
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
        if (poll(&pfd, 1, 250) > 0 && !PQconsumeInput(conn))
            continue; /* lost: reconnect */
        PGnotify *n;
        while ((n = PQnotifies(conn))) {
            if (*pending && !strcmp(n->extra, pending)) {
                *pending = '\0';
                set_polling(p, 0);
            } else if (strncmp(n->extra, "probe ", 6)) {
                wake(p, 0); /* a task was queued; other servers' probes are not */
            }
            PQfreemem(n);
        }
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
    PGresult *r = exec1(p, &p->api, CALL_SECONDS, "reading a task", "SELECT json FROM "
                        "immerge_tasks WHERE task_id = $1 "
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
    const char *key = imm_list_key_sql(q, "start_time", "end_time");
    char after_sql[160];
    /* In submission order the key is "" throughout (as $7 is): the cursor is seq alone, which
     * the index (project, seq) holds; a row comparison with a constant would not use it. */
    if (!strcmp(key, "''"))
        snprintf(after_sql, sizeof(after_sql), "seq %s $1::bigint AND $7::text = ''",
                 imm_list_after_sql(q));
    else
        snprintf(after_sql, sizeof(after_sql), "(%s, seq) %s ($7::text, $1::bigint)", key,
                 imm_list_after_sql(q));
    snprintf(a, sizeof(a), "%lld", after->seq);
    snprintf(m, sizeof(m), "%d", max + 1);
    const char *v[] = {a, q->project, q->status, q->tag_key,
                       q->tag_key ? (q->tag_value ? q->tag_value : "") : NULL, m, after->key,
                       imm_list_bound(q->start_from), imm_list_bound(q->start_to),
                       imm_list_bound(q->end_from), imm_list_bound(q->end_to), q->status_also};
    /* Keyset paging on (key, seq), which the indexes of schema 2 hold in this order for each
     * project: a page costs the same however far in. The columns are COLLATE "C": the order of
     * the bytes, as SQLite's, whatever the database's locale. The parameters are constants to
     * the planner (an unnamed statement is planned with its values), so the tests of the ones
     * not given fold away. */
    snprintf(sql, sizeof(sql),
             "SELECT seq, json, %s FROM immerge_tasks WHERE ($1::bigint = 0 OR (%s)) "
             "AND ($2::text IS NULL OR project = $2) "
             "AND ($3::text IS NULL OR status = $3 OR status = $12::text) "
             "AND ($4::text IS NULL OR tags @> jsonb_build_object($4::text, $5::text)) "
             "AND ($8::text IS NULL OR (start_time <> '' AND start_time >= $8)) "
             "AND ($9::text IS NULL OR (start_time <> '' AND start_time <= $9)) "
             "AND ($10::text IS NULL OR (end_time <> '' AND end_time >= $10)) "
             "AND ($11::text IS NULL OR (end_time <> '' AND end_time <= $11)) "
             "ORDER BY %s %s, seq %s LIMIT $6::int",
             key, after_sql, !strcmp(key, "''") ? "seq" : key, imm_list_order_sql(q),
             imm_list_order_sql(q));
    PGresult *r = exec1(p, &p->api, CALL_SECONDS, "listing tasks", sql, 12, v, err);
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

/* A write of the claim's run: (task_id, attempt) and the row's status, JSON, tags, StartTime
 * and EndTime ($1 to $7). With
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
    const char *v[] = {row.task_id, attempt, row.status, row.json, row.tags, row.start, row.end};
    PGresult *r = exec_patiently(p, patience, what, sql, 7, v, err);
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
    PGresult *r = exec1(p, &p->work, WORK_SECONDS, "recording a task", "INSERT INTO "
                        "immerge_tasks (task_id, project, "
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

/* A Create answered 503 whose insert may yet have been committed (its answer was lost, or came
 * after the deadline): remembered, to be deleted while still waiting, since its caller was told
 * it was not created. */
static void doubt(pg_tasks *p, const char *task_id)
{
    pthread_mutex_lock(&p->lock);
    if (p->ndoubtful < DOUBTFUL_MAX)
        snprintf(p->doubtful[p->ndoubtful++], sizeof(*p->doubtful), "%s", task_id);
    pthread_mutex_unlock(&p->lock);
}

/* Deletes the doubtful Creates' tasks that were created after all and have not started. */
static void undo_doubtful(pg_tasks *p)
{
    char list[DOUBTFUL_MAX * 40 + 8] = "{";
    pthread_mutex_lock(&p->lock);
    int n = p->ndoubtful;
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "," : "",
                 p->doubtful[i]);
    pthread_mutex_unlock(&p->lock);
    if (!n)
        return;
    strcat(list, "}");
    imm_error err = {0};
    const char *v[] = {list};
    PGresult *r = exec1(p, &p->work, WORK_SECONDS, "withdrawing refused Creates", "DELETE FROM "
                        "immerge_tasks WHERE task_id = ANY($1::text[]) AND status = 'Queued' "
                        "AND attempt = 0", 1, v, &err);
    if (!r)
        return;
    if (atoi(PQcmdTuples(r)) && !p->quiet)
        fprintf(stderr, "immerge: warning: %s task(s) created by calls answered 503 were "
                "withdrawn\n", PQcmdTuples(r));
    PQclear(r);
    pthread_mutex_lock(&p->lock);
    memmove(p->doubtful, p->doubtful + n, (size_t)(p->ndoubtful - n) * sizeof(*p->doubtful));
    p->ndoubtful -= n;
    pthread_mutex_unlock(&p->lock);
}

/* The insert of a queued task, answered by `until`: one statement, which locks the queue's depth
 * row first, so that the bound holds across servers at the cost of one row lock (the triggers
 * of schema 2 keep the depth and NOTIFY). It inserts nothing once the call's deadline ($7, wall
 * clock) has passed: a database that froze with the statement unread, then woke, does not
 * create a task whose caller was told 503. A second try (the first one's connection was lost,
 * maybe after its commit) first looks for the row: the TaskId is ours, so a task the first try
 * created is not created twice. */
static imm_err queue_row(pg_tasks *p, PGconn **slot, double until, const char *const *v,
                         int again, int *full, imm_error *err)
{
    static const char what[] = "queueing a task";
    PGresult *r;
    *full = 0;
    if (again) {
        if (!(r = run_until(p, slot, until, what, "SELECT 1 FROM immerge_tasks WHERE "
                            "task_id = $1", 1, v, NULL, err)))
            return IMM_EIO;
        int there = PQntuples(r) == 1;
        PQclear(r);
        if (there)
            return IMM_OK;
    }
    if (!(r = run_until(p, slot, until, what, "WITH q AS (SELECT depth FROM immerge_queue FOR "
                        "UPDATE) INSERT INTO immerge_tasks (task_id, project, status, "
                        "start_time, tags, json, runnable) SELECT $1, $2, 'Queued', $3, "
                        "$4::jsonb, $5, true FROM q WHERE q.depth < $6::int AND "
                        "clock_timestamp() < to_timestamp($7::float8)", 7, v, NULL, err)))
        return IMM_EIO;
    *full = atoi(PQcmdTuples(r)) == 0;
    PQclear(r);
    return IMM_OK;
}

static imm_err enqueue(imm_tasks *t, imm_claim *c, int queue, int *full, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    task_row row;
    char cap[16];
    double until = imm_clock_seconds(IMM_CLOCK_MONOTONIC) + CALL_SECONDS;
    imm_err e = imm_task_row(c->task, &row, err);
    if (e) {
        imm_claim_free(c);
        return e;
    }
    snprintf(cap, sizeof(cap), "%d", queue);
    char deadline[32];
    snprintf(deadline, sizeof(deadline), "%.3f", imm_clock_seconds(IMM_CLOCK_WALL) + CALL_SECONDS);
    const char *v[] = {row.task_id, row.project, row.start, row.tags, row.json, cap, deadline};
    PGconn **slot = acquire(p, &p->api, until, err);
    e = slot ? IMM_OK : IMM_EIO;
    for (int tries = 0; slot && tries < 2; tries++) {
        /* A pooled connection that died unseen while the database restarted: once more. */
        int pooled = *slot && PQstatus(*slot) == CONNECTION_OK;
        e = queue_row(p, slot, until, v, tries, full, err);
        if (!e || !pooled || !*slot || PQstatus(*slot) == CONNECTION_OK)
            break;
        PQfinish(*slot);
        *slot = NULL;
    }
    if (slot)
        give_back(p, &p->api, slot);
    if (!e)
        note_db(p, 0, NULL);
    else if (slot)
        doubt(p, row.task_id);
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
    PGresult *r = exec1(p, &p->work, WORK_SECONDS, "sweeping tasks", "SELECT seq, attempt, "
                        "json, coalesce(owner, ''), runnable FROM immerge_tasks WHERE status = "
                        "'Running' AND lease_until < now() AND (NOT runnable OR attempt >= "
                        "$1::int) LIMIT 50", 1, v, &err);
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
        PGresult *w = json ? exec1(p, &p->work, WORK_SECONDS, "sweeping tasks", "UPDATE "
                                   "immerge_tasks SET status = $3, json = $4, owner = NULL, "
                                   "lease_until = NULL, ended = now() WHERE seq = $1::bigint AND "
                                   "attempt = $2::int AND status = 'Running' AND lease_until < "
                                   "now()", 4, u, &err) : NULL;
        PQclear(w);
        free(json);
    }
    PQclear(r);
}

/* How long a task whose run went silent waits before its next run: a quarter of a lease after
 * the first, four times longer after each one more, so that a task that kills its server (a
 * poison task) does not take the servers down one after the other at once. */
static double backoff(const pg_tasks *p, long long attempt)
{
    double wait = p->lease / 4;
    for (long long i = 1; i < attempt; i++)
        wait *= 4;
    return wait;
}

/* Runs whose lease ran out, of tasks that may run again: queued again, to start after their
 * backoff. */
static void rescue(pg_tasks *p)
{
    imm_error err = {0};
    char max[16], base[32];
    snprintf(max, sizeof(max), "%d", MAX_ATTEMPTS);
    snprintf(base, sizeof(base), "%.3f", backoff(p, 1));
    const char *v[] = {max, base};
    PGresult *r = exec1(p, &p->work, WORK_SECONDS, "queueing silent runs' tasks again",
                        "UPDATE immerge_tasks SET status = 'Queued', lease_until = NULL, "
                        "not_before = now() + make_interval(secs => $2::float8 * power(4, "
                        "attempt - 1)) WHERE status = 'Running' AND runnable AND lease_until < "
                        "now() AND attempt < $1::int RETURNING task_id, attempt, "
                        "coalesce(owner, '')", 2, v, &err);
    pthread_mutex_lock(&p->lock);
    p->takeovers += r ? PQntuples(r) : 0;
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; r && !p->quiet && i < PQntuples(r); i++) {
        long long attempt = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        fprintf(stderr, "immerge: warning: task %s: run %lld (by %s) went silent past its "
                "lease; it runs again in %.1f s\n", PQgetvalue(r, i, 0), attempt,
                PQgetvalue(r, i, 2), backoff(p, attempt));
    }
    PQclear(r);
}

/* Finished tasks older than the retention, deleted in batches, a few per turn, so that neither
 * the table nor one statement grows without bound. */
static void purge(pg_tasks *p)
{
    imm_error err = {0};
    char days[32], batch[16];
    snprintf(days, sizeof(days), "%.6f", p->retain_days);
    snprintf(batch, sizeof(batch), "%d", PURGE_BATCH);
    const char *v[] = {days, batch};
    for (int batch = 0; batch < 10 && !p->closing; batch++) {
        PGresult *r = exec1(p, &p->work, WORK_SECONDS, "deleting old tasks", "DELETE FROM "
                            "immerge_tasks WHERE seq IN (SELECT seq FROM immerge_tasks WHERE "
                            "ended < now() - make_interval(secs => $1::float8 * 86400) ORDER BY "
                            "ended LIMIT $2::int)", 2, v, &err);
        int n = r ? atoi(PQcmdTuples(r)) : 0;
        PQclear(r);
        if (n < PURGE_BATCH)
            break;
    }
}

/* The maintenance (sweeping, rescuing, purging) is one server's at a time: the one holding the
 * leader row's lease, which it renews while it lives; any other takes over once that lapses. */
static void maintain(pg_tasks *p)
{
    imm_error err = {0};
    char lease[32];
    snprintf(lease, sizeof(lease), "%.3f", p->lease);
    const char *v[] = {p->owner, lease};
    undo_doubtful(p); /* this server's own, leader or not */
    PGresult *r = exec1(p, &p->work, WORK_SECONDS, "leading the maintenance", "UPDATE "
                        "immerge_leader SET owner = $1, until = now() + make_interval(secs => "
                        "$2::float8) WHERE name = 'maintenance' AND (owner = $1 OR until < "
                        "now())", 2, v, &err);
    int leader = r && atoi(PQcmdTuples(r)) == 1;
    PQclear(r);
    if (!leader)
        return;
    sweep(p);
    rescue(p);
    if (p->retain_days > 0 && imm_clock_seconds(IMM_CLOCK_MONOTONIC) - p->purged >= PURGE_EVERY) {
        p->purged = imm_clock_seconds(IMM_CLOCK_MONOTONIC);
        purge(p);
    }
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
        if (!PQgetisnull(r, 0, 4))
            c->committing = strdup(PQgetvalue(r, 0, 4));
        return c;
    }
    if (!task)
        imm_request_free(req);
    const char *status;
    char *json = imm_task_interrupted(stored, "immerge server", 0, &status);
    const char *v[] = {PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), json};
    imm_error err;
    PQclear(json ? exec1(p, &p->work, WORK_SECONDS, "recording a task", "UPDATE immerge_tasks "
                         "SET status = 'Failed', "
                         "json = $3, owner = NULL, lease_until = NULL, ended = now() WHERE "
                         "task_id = $1 AND attempt = $2::int", 3, v, &err) : NULL);
    free(json);
    return NULL;
}

static imm_err progress(imm_tasks *t, imm_claim *c, imm_error *err);

static imm_err claim(imm_tasks *t, const volatile int *stop, imm_claim **out, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    char lease[32];
    snprintf(lease, sizeof(lease), "%.3f", p->lease);
    char token[37] = "";
    const char *v[] = {p->owner, lease, token};
    (void)err;
    while (!*stop && !p->closing) {
        pthread_mutex_lock(&p->lock);
        int due = imm_clock_seconds(IMM_CLOCK_MONOTONIC) - p->maintained >= 1;
        if (due)
            p->maintained = imm_clock_seconds(IMM_CLOCK_MONOTONIC);
        pthread_mutex_unlock(&p->lock);
        if (due)
            maintain(p);
        imm_error e = {0};
        PGresult *r = NULL;
        /* The last claim's answer was lost: it may have taken a task all the same, which is
         * ours then, not an orphan left to its lease. */
        const char *mine[] = {token, p->owner};
        if (*token && (r = exec1(p, &p->work, WORK_SECONDS, "claiming a task", "SELECT "
                                 "task_id, attempt, json, project, committing FROM immerge_tasks WHERE "
                                 "claim_token = $1 AND owner = $2 AND status = 'Running'", 2,
                                 mine, &e)) && PQntuples(r) != 1) {
            PQclear(r);
            r = NULL;
        }
        if (!r && e.code)
            goto wait; /* the database is still away: the token is kept for the next turn */
        if (!r) {
            imm_request_id_new(token);
            /* The fairness rule of tasks.h (fewest running first, then oldest) over each project's
         * oldest waiting task only, found by a skip scan of the waiting index: the cost grows
         * with the projects waiting, not with the backlog. */
        r = exec_once(p, &p->work, WORK_SECONDS, "claiming a task",
            "WITH RECURSIVE waiting(project) AS ("
            " (SELECT project FROM immerge_tasks WHERE status = 'Queued' AND runnable"
            "  ORDER BY project LIMIT 1)"
            " UNION ALL SELECT (SELECT t.project FROM immerge_tasks t WHERE t.status = 'Queued'"
            "  AND t.runnable AND t.project > w.project ORDER BY t.project LIMIT 1)"
            " FROM waiting w WHERE w.project IS NOT NULL), "
            "heads AS (SELECT w.project, (SELECT t.seq FROM immerge_tasks t WHERE t.status ="
            " 'Queued' AND t.runnable AND t.project = w.project AND t.not_before <= now()"
            " ORDER BY t.seq LIMIT 1) AS seq FROM waiting w WHERE w.project IS NOT NULL), "
            "busy AS (SELECT project, count(*) AS n FROM immerge_tasks WHERE status = 'Running'"
            " AND lease_until > now() GROUP BY project), "
            "next AS (SELECT t.seq FROM heads h JOIN immerge_tasks t ON t.seq = h.seq"
            " LEFT JOIN busy b ON b.project = h.project WHERE t.status = 'Queued'"
            " ORDER BY coalesce(b.n, 0), t.seq LIMIT 1 FOR UPDATE OF t SKIP LOCKED) "
            "UPDATE immerge_tasks u SET status = 'Running', owner = $1, attempt = u.attempt + 1,"
            " lease_until = now() + make_interval(secs => $2::float8), claim_token = $3 FROM"
            " next WHERE u.seq = next.seq RETURNING u.task_id, u.attempt, u.json, u.project,"
            " u.committing",
            3, v, &e);
            if (r)
                *token = '\0'; /* answered: nothing to look for */
        }
        if (r && PQntuples(r) == 1) {
            *token = '\0';
            pthread_mutex_lock(&p->lock);
            p->claimed++;
            pthread_mutex_unlock(&p->lock);
            imm_claim *c = take_up(p, r);
            PQclear(r);
            if (!c)
                continue;
            hold(p, c);
            imm_error ignored;
            progress(t, c, &ignored); /* Running, from now */
            *out = c;
            return IMM_OK;
        }
        PQclear(r);
    wait:
        /* Nothing to take (or no database): wait for a NOTIFY (a token of the listener's), a
         * backoff or lease to run out (polled every second), or *stop. */
        pthread_mutex_lock(&p->lock);
        p->idle++;
        int turns = p->polling ? 1 : 4;
        for (int i = 0; i < turns && !p->tokens && !*stop && !p->closing; i++)
            imm_tasks_wait(&p->wake, &p->lock, p->polling ? POLL_FAST : 0.25);
        if (p->tokens)
            p->tokens--;
        p->idle--;
        pthread_mutex_unlock(&p->lock);
    }
    return IMM_OK;
}

static imm_err progress(imm_tasks *t, imm_claim *c, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    int skipped = 0;
    PGresult *r = write_row(p, c, 0, "recording progress", "UPDATE immerge_tasks SET status = "
                            "$3, json = $4, tags = $5::jsonb, start_time = $6, end_time = $7 "
                            "WHERE task_id = $1 AND attempt = $2::int AND status = 'Running'",
                            1, &skipped, err);
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

static imm_err fence(imm_tasks *t, imm_claim *c, const char *committing, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    char attempt[24], lease[32];
    snprintf(attempt, sizeof(attempt), "%lld", c->attempt);
    snprintf(lease, sizeof(lease), "%.3f", p->lease);
    const char *v[] = {c->task_id, attempt, lease, committing};
    int held = renewed(exec_patiently(p, patience(p), "fencing a commit", "UPDATE immerge_tasks "
                                      "SET lease_until = now() + make_interval(secs => "
                                      "$3::float8), committing = $4 WHERE task_id = $1 AND "
                                      "attempt = $2::int AND status = 'Running'", 4, v, err));
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

/* The messages as the finish statement takes them: a JSON array of {d, t, e, b}. */
static char *messages_json(const imm_message *m, int n)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "d", m[i].destination);
        cJSON_AddStringToObject(o, "t", m[i].target);
        if (m[i].endpoint)
            cJSON_AddStringToObject(o, "e", m[i].endpoint);
        cJSON_AddStringToObject(o, "b", m[i].body);
        cJSON_AddItemToArray(arr, o);
    }
    char *out = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    return out;
}

/* How long a recorded message is left to the run that recorded it before a sweeper sends it. */
static double outbox_grace(const pg_tasks *p)
{
    return p->lease * 2 > 10 ? p->lease * 2 : 10;
}

static imm_err finish(imm_tasks *t, imm_claim *c, const imm_message *m, int n, long long *ids,
                      int *won, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    task_row row;
    char attempt[24], grace[32];
    pthread_mutex_lock(&p->lock);
    c->ending = 1;
    pthread_mutex_unlock(&p->lock);
    if (imm_task_row(c->task, &row, err))
        return err->code;
    char *msgs = messages_json(m, n);
    if (!msgs) {
        imm_task_row_clear(&row);
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    snprintf(attempt, sizeof(attempt), "%lld", c->attempt);
    snprintf(grace, sizeof(grace), "%.3f", outbox_grace(p));
    const char *v[] = {row.task_id, attempt, row.status, row.json, row.tags, row.start, row.end,
                       msgs, grace};
    /* The end and its messages in one statement, so in one transaction (River's JobCompleteTx):
     * both or neither. A run that cannot record its end leaves the task to be run again once
     * the database is back. The owner stays, naming the run that ended it. */
    PGresult *r = exec_patiently(p, patience(p), "recording a task's end",
        "WITH done AS (UPDATE immerge_tasks SET status = $3, json = $4, tags = $5::jsonb, "
        "start_time = $6, end_time = $7, lease_until = NULL, ended = now(), committing = NULL "
        "WHERE task_id = $1 AND attempt = $2::int AND status = 'Running' RETURNING task_id), "
        "sent AS (INSERT INTO immerge_outbox (task_id, destination, target, endpoint, body, "
        "next_try) SELECT done.task_id, m.x ->> 'd', m.x ->> 't', m.x ->> 'e', m.x ->> 'b', "
        "now() + make_interval(secs => $9::float8) FROM done, jsonb_array_elements($8::jsonb) "
        "WITH ORDINALITY AS m(x, i) ORDER BY m.i RETURNING id) "
        "SELECT (SELECT count(*) FROM done), coalesce((SELECT string_agg(id::text, ',' ORDER "
        "BY id) FROM sent), '')", 9, v, err);
    imm_task_row_clear(&row);
    free(msgs);
    if (!r)
        return err->code;
    *won = atoi(PQgetvalue(r, 0, 0)) == 1;
    const char *list = PQgetvalue(r, 0, 1);
    for (int i = 0; *won && i < n && *list; i++) {
        char *end;
        ids[i] = strtoll(list, &end, 10);
        list = *end == ',' ? end + 1 : end;
    }
    if (!*won)
        lose(p, c);
    PQclear(r);
    return IMM_OK;
}

/* The mark of a message sent may run twice, and waits out a lost database: a message sent just
 * before an outage and left unmarked would be sent again by a sweeper once the database is back
 * (delivery is at least once, but needlessly twice). */
static void message_done(imm_tasks *t, long long id, int delivered, const char *why)
{
    pg_tasks *p = (pg_tasks *)t;
    char sid[24], tries[16], wait[32];
    imm_error err = {0};
    snprintf(sid, sizeof(sid), "%lld", id);
    if (delivered) {
        const char *v[] = {sid};
        PQclear(exec_patiently(p, patience(p), "recording a message sent", "UPDATE "
                               "immerge_outbox SET sent = now(), last_error = NULL WHERE id = "
                               "$1::bigint", 1, v, &err));
        return;
    }
    /* The wait after each failure: by the tries so far, read in the statement itself. */
    snprintf(tries, sizeof(tries), "%d", OUTBOX_TRIES);
    snprintf(wait, sizeof(wait), "%.3f", imm_outbox_backoff(1));
    const char *v[] = {sid, why, tries, wait};
    PQclear(exec1(p, &p->work, WORK_SECONDS, "recording a message not sent", "UPDATE "
                  "immerge_outbox SET tries = tries + 1, last_error = $2, next_try = CASE WHEN "
                  "tries + 1 >= $3::int THEN 'infinity' ELSE now() + make_interval(secs => "
                  "least($4::float8 * power(2, tries), 3600)) END WHERE id = $1::bigint", 4, v,
                  &err));
}

static imm_err messages_due(imm_tasks *t, int max, imm_message **out, long long *ids, int *n,
                            imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    char smax[16], hold[32];
    snprintf(smax, sizeof(smax), "%d", max);
    snprintf(hold, sizeof(hold), "%.3f", outbox_grace(p) * 6);
    const char *v[] = {smax, hold};
    /* Held for a while by moving next_try on: a sweeper that dies sending leaves them to the
     * next once that passes. */
    PGresult *r = exec1(p, &p->work, WORK_SECONDS, "reading pending messages", "UPDATE "
                        "immerge_outbox o SET next_try = now() + make_interval(secs => "
                        "$2::float8) FROM (SELECT id FROM immerge_outbox WHERE sent IS NULL AND "
                        "next_try <= now() ORDER BY next_try LIMIT $1::int FOR UPDATE SKIP "
                        "LOCKED) d WHERE o.id = d.id RETURNING o.id, o.destination, o.target, "
                        "o.endpoint, o.body", 2, v, err);
    if (!r)
        return err->code;
    int rows = PQntuples(r);
    imm_message *m = rows ? calloc((size_t)rows, sizeof(*m)) : NULL;
    for (int i = 0; m && i < rows; i++) {
        m[i].destination = imm_notify_destination(PQgetvalue(r, i, 1));
        m[i].target = strdup(PQgetvalue(r, i, 2));
        m[i].endpoint = PQgetisnull(r, i, 3) ? NULL : strdup(PQgetvalue(r, i, 3));
        m[i].body = strdup(PQgetvalue(r, i, 4));
        ids[i] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    }
    *out = m;
    *n = m ? rows : 0;
    PQclear(r);
    return IMM_OK;
}

static imm_err annotate(imm_tasks *t, imm_claim *c, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    PGresult *r = write_row(p, c, p->lease, "recording completion messages", "UPDATE "
                            "immerge_tasks SET status = $3, json = $4, tags = $5::jsonb, "
                            "start_time = $6, end_time = $7 WHERE task_id = $1 AND attempt = "
                            "$2::int", 0, NULL, err);
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

static imm_err stats(imm_tasks *t, imm_tasks_stats *st, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    pthread_mutex_lock(&p->lock);
    st->claims = p->claimed;
    st->takeovers = p->takeovers;
    st->lease_losses = p->lease_losses;
    st->timeouts = p->timeouts;
    pthread_mutex_unlock(&p->lock);
    /* Each count on an index of its own: the waiting, the leased, the unsent. */
    PGresult *r = exec1(p, &p->api, CALL_SECONDS, "counting tasks", "SELECT 'q', project, "
                        "count(*) FROM immerge_tasks WHERE status = 'Queued' AND runnable GROUP "
                        "BY project UNION ALL SELECT 'r', '', count(*) FROM immerge_tasks WHERE "
                        "status = 'Running' UNION ALL SELECT 'o', '', count(*) FROM "
                        "immerge_outbox WHERE sent IS NULL AND next_try < 'infinity'", 0, NULL,
                        err);
    if (!r)
        return IMM_EIO;
    int rows = PQntuples(r);
    st->queued = calloc((size_t)rows + 1, sizeof(*st->queued));
    for (int i = 0; st->queued && i < rows; i++) {
        const char *kind = PQgetvalue(r, i, 0);
        long long n = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        if (*kind == 'q') {
            imm_project_count *q = &st->queued[st->nqueued++];
            snprintf(q->project, sizeof(q->project), "%s", PQgetvalue(r, i, 1));
            q->n = n;
        } else {
            *(*kind == 'r' ? &st->running : &st->outbox_pending) = n;
        }
    }
    PQclear(r);
    return st->queued ? IMM_OK : imm_error_set(err, IMM_EINTERNAL, "out of memory");
}

static imm_err ping(imm_tasks *t, imm_error *err)
{
    pg_tasks *p = (pg_tasks *)t;
    PGresult *r = exec1(p, &p->api, CALL_SECONDS, "reaching the database", "SELECT 1", 0, NULL,
                        err);
    PQclear(r);
    return r ? IMM_OK : IMM_EIO;
}

/* The runs of this process stop, and their tasks are queued again at once for the others (the
 * attempt they had stays counted). */
static void abandon_runs(imm_tasks *t)
{
    pg_tasks *p = (pg_tasks *)t;
    for (;;) {
        char task_id[64], attempt[24];
        pthread_mutex_lock(&p->lock);
        imm_claim *c = p->claims;
        while (c && (c->lost || c->ending))
            c = c->next;
        if (c) {
            c->lost = 1; /* its run stops, and records nothing */
            snprintf(task_id, sizeof(task_id), "%s", c->task_id);
            snprintf(attempt, sizeof(attempt), "%lld", c->attempt);
        }
        pthread_mutex_unlock(&p->lock);
        if (!c)
            return;
        imm_error err = {0};
        const char *v[] = {task_id, attempt};
        PGresult *r = exec1(p, &p->work, WORK_SECONDS, "giving a task back", "UPDATE "
                            "immerge_tasks SET status = 'Queued', lease_until = NULL, "
                            "not_before = now() WHERE task_id = $1 AND attempt = $2::int AND "
                            "status = 'Running' AND runnable", 2, v, &err);
        if (r && !p->quiet)
            fprintf(stderr, "immerge: warning: task %s was given back unfinished (the drain "
                    "ran out of time); another server runs it\n", task_id);
        PQclear(r);
    }
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
    if (p->opened) { /* the next server leads the maintenance at once, not a lease later */
        imm_error ignored;
        const char *v[] = {p->owner};
        PQclear(exec1(p, &p->work, 1.0, "giving up the lead", "UPDATE immerge_leader SET until "
                      "= '-infinity' WHERE name = 'maintenance' AND owner = $1", 1, v,
                      &ignored));
    }
    pool_clear(&p->api);
    pool_clear(&p->work);
    PQfinish(p->beat_conn);
    free(p->uri);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->beat);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static const tasks_ops pg_ops = {
    .get = get, .list = list, .start = start, .enqueue = enqueue, .claim = claim,
    .progress = progress, .fence = fence, .finish = finish, .message_done = message_done,
    .messages_due = messages_due, .annotate = annotate, .release = release, .drain = drain,
    .stats = stats, .ping = ping, .abandon = abandon_runs, .close = close_tasks,
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
    p->retain_days = opt->retain_days;
    p->purged = -PURGE_EVERY;
    int n = opt->connections > 0 ? opt->connections : 8;
    gethostname(host, sizeof(host) - 1);
    imm_request_id_new(tag);
    snprintf(p->owner, sizeof(p->owner), "%s/%ld/%.8s", host, (long)getpid(), tag);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->beat, NULL);
    p->uri = strdup(uri);
    /* The API's calls wait a bounded time for theirs (then 503); the workers' never starve the
     * API's nor the heartbeat's. */
    int pools = pool_init(&p->api, "API calls", n, POOL_WAIT) |
                pool_init(&p->work, "the workers", n, 0);
    imm_err e = !p->uri || pools
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
    maintain(p); /* as the SQLite records recover on open: get-task sees a dead run as such */
    *out = &p->base;
    return IMM_OK;
}
