/*
 * tasks.h - where tasks live from their creation to their end: the records GetTask and ListTasks
 * answer from, and the queue the workers take them from, behind one interface with two
 * implementations.
 *
 * - SQLite (the embedded default, one machine): DIR/tasks.db holds the records, several
 *   processes may record at once, and a server's queue lives in that server. A task whose process
 *   is gone is reported Failed/TaskInterrupted (Running) or Cancelled/NotStarted (Queued).
 * - PostgreSQL (many servers, one service): one table is records and queue at once. A worker
 *   claims the next task with SELECT ... FOR UPDATE SKIP LOCKED and holds a lease on it that a
 *   heartbeat renews; a task whose lease expires is claimed again by any server and runs again
 *   from the start. Only the run that holds the lease when its outputs are complete may commit
 *   them (imm_tasks_fence) and record the end (imm_tasks_finish).
 *
 * Which task comes next, in both: the oldest queued task of the project with the fewest tasks
 * running now, so that one project's thousand tasks do not starve another project's one.
 */
#ifndef IMMERGE_TASKS_TASKS_H
#define IMMERGE_TASKS_TASKS_H

#include "immerge.h"
#include "notify/notify.h"

typedef struct imm_tasks imm_tasks;
typedef struct imm_claim imm_claim;

typedef struct imm_tasks_options {
    double lease_seconds; /* PostgreSQL: how long a claim holds without a heartbeat; 0: 30 */
    int connections;      /* PostgreSQL: connections for the API's calls, and as many for the
                             workers' (the heartbeat and the listener have one each); 0: 8 */
    double retain_days;   /* finished tasks older than this many days are deleted; 0: kept */
    int quiet;            /* no warnings on stderr (a lost database, a lost lease) */
} imm_tasks_options;

/* Opens (creating or migrating) the tasks at `where`: a postgres:// or postgresql:// URI (libpq's
 * connection URI), a SQLite file, or a folder that holds (or will hold) tasks.db. */
imm_err imm_tasks_open(const char *where, const imm_tasks_options *opt, imm_tasks **out,
                       imm_error *err);
void imm_tasks_close(imm_tasks *t);
/* Non-zero when the tasks are shared by servers on other machines (PostgreSQL). */
int imm_tasks_shared(const imm_tasks *t);

/* What a server reports of the tasks (GET /metrics): counts of every server sharing them, and
 * this process's counters since it opened them. */
typedef struct imm_project_count {
    char project[128];
    long long n;
} imm_project_count;

typedef struct imm_tasks_stats {
    imm_project_count *queued; /* waiting tasks per project */
    int nqueued;
    long long running;         /* tasks running now */
    long long outbox_pending;  /* completion messages not sent yet */
    long long claims;          /* this process: tasks it took up */
    long long takeovers;       /* this process: silent runs it queued again (as the leader) */
    long long lease_losses;    /* this process: runs of its own taken over by another */
    long long timeouts;        /* this process: statements past their deadline */
} imm_tasks_stats;

/* Reads the stats (the counts from the records); clear with imm_tasks_stats_clear. */
imm_err imm_tasks_stats_read(imm_tasks *t, imm_tasks_stats *s, imm_error *err);
void imm_tasks_stats_clear(imm_tasks_stats *s);
/* Whether the records answer now (within the API's bound): a server's readiness. */
imm_err imm_tasks_ping(imm_tasks *t, imm_error *err);
/* A drain that ran out of time: every run of this process is stopped (its claim lost) and its
 * task given back, queued again for the other servers where they share the tasks, recorded
 * Failed/TaskInterrupted where not. */
void imm_tasks_abandon(imm_tasks *t);

/* ---- records ---------------------------------------------------------------------------------- */

/* How GetTask and ListTasks report a state the service does not have: a task waiting for a
 * worker (Queued) is reported Running, with Progress 0 and its creation as StartTime (until a
 * worker starts it), so that a client
 * polling `while Status == "Running"` keeps waiting; one that never ran (Cancelled) is reported
 * Failed, with its Code. The record's own state is in ImmergeStatus. */

/* GetTask: *json (free()) gets the task with a fresh RequestId, with TaskRequestDefinition only
 * when with_request; ResourceNotFound when unknown. project may be NULL (any); task_type may be
 * NULL, else a type other than MediaConvert finds nothing. */
imm_err imm_tasks_get(imm_tasks *t, const char *project, const char *task_id,
                      const char *task_type, int with_request, char **json, imm_error *err);

typedef enum imm_list_sort {
    IMM_SORT_SUBMITTED, /* the order tasks were created in (immerge's default) */
    IMM_SORT_TASK_ID,
    IMM_SORT_START_TIME,
    IMM_SORT_END_TIME,
} imm_list_sort;

typedef struct imm_list_query {
    const char *project;    /* NULL: any */
    const char *status;     /* NULL: any; Running includes the Queued, Failed the Cancelled */
    const char *tag_key;    /* NULL: any; else Tags[tag_key] must equal tag_value */
    const char *tag_value;
    int max;                /* 1..100; 0: 100 */
    const char *next_token; /* NULL or "": from the start; else the NextToken of the last page */
    imm_list_sort sort;
    int descending;         /* Order desc */
    /* StartTimeRange and EndTimeRange: inclusive bounds as the records write times; "": open.
     * A bound set leaves out the tasks that have no such time yet. */
    char start_from[32], start_to[32], end_from[32], end_to[32];
    int with_request;       /* RequestDefinition: each task's TaskRequestDefinition */
    int none;               /* TaskTypes named no type of ours: nothing matches */
    char tag[512];          /* TagSelector's KEY=VALUE, which tag_key and tag_value point into */
    const char *status_also; /* set by imm_tasks_list: the stored state Status stands for too */
} imm_list_query;

/* Sets the ListTasks parameter `name` (as the API names it: Status, TagSelector, MaxResults,
 * NextToken, Sort, Order, TaskTypes, StartTimeRange, EndTimeRange, RequestDefinition) from its
 * value as the call sends it; InvalidArgument naming it when the value is not one it takes.
 * Strings are not copied (value must outlive q), except the times and TagSelector. */
imm_err imm_list_query_set(imm_list_query *q, const char *name, const char *value,
                           imm_error *err);

/* ListTasks: *json (free()) gets {RequestId, ProjectName, MaxResults, NextToken, Tasks[]}, in
 * q's order; NextToken only when more remain. */
imm_err imm_tasks_list(imm_tasks *t, const imm_list_query *q, char **json, imm_error *err);

/* ---- running a task ---------------------------------------------------------------------------
 * A claim is one run's hold on one task, from imm_tasks_start or imm_tasks_claim to
 * imm_tasks_release. While it holds, imm_claim_lost stays 0; it turns 1 when another run has
 * taken the task over (its lease expired), and a run that sees it should stop: nothing it does
 * after that is recorded.
 */

/* A task this process runs at once (`immerge run`): recorded Running under a claim. The claim
 * does not own task or req. */
imm_err imm_tasks_start(imm_tasks *t, imm_task *task, const imm_request *req, imm_claim **out,
                        imm_error *err);
/* A task for any worker (`immerge serve`): recorded Queued, and owned by the tasks from now on
 * (freed here on failure too). *full is set, and nothing recorded, when `queue` tasks already
 * wait (across every server sharing the tasks). */
imm_err imm_tasks_enqueue(imm_tasks *t, imm_task *task, imm_request *req, int queue, int *full,
                          imm_error *err);
/* The next task to run, waiting for one until *stop is set (then *out is NULL). The claim owns
 * its task and request. A lost database is waited out, not an error. */
imm_err imm_tasks_claim(imm_tasks *t, const volatile int *stop, imm_claim **out,
                        imm_error *err);

imm_task *imm_claim_task(const imm_claim *c);
const imm_request *imm_claim_request(const imm_claim *c);
const volatile int *imm_claim_lost(const imm_claim *c);
/* The claimed task's TaskId (PostgreSQL; "" in SQLite). */
const char *imm_claim_task_id(const imm_claim *c);
/* The record an earlier run of the task fenced its commit with, or NULL (see imm_tasks_fence). */
const char *imm_claim_committing(const imm_claim *c);

/* Records the task's progress, if the claim still holds. */
imm_err imm_tasks_progress(imm_tasks *t, imm_claim *c, imm_error *err);
/* Just before the outputs are committed: IMM_OK when the claim holds (and now holds for a whole
 * lease more), else IMM_ECANCELED: another run has the task, and these outputs must not land.
 * committing (imm_task_committing_json) is recorded with it: should this run stop after its
 * commit and before its end, the run that takes the task over finds it (imm_claim_committing). */
imm_err imm_tasks_fence(imm_tasks *t, imm_claim *c, const char *committing, imm_error *err);
/* Records the task's end and, in the same transaction, its completion messages m[0..n) as
 * pending (the outbox): a crash after the end cannot lose them. *won is 1 when this run's end
 * is the task's (its messages are then this run's to send, and ids[i] names m[i] for
 * imm_tasks_message_done), 0 when another run has the task: nothing was recorded. The messages
 * wait a grace period before a sweeper may send them, so that this run sends them first. */
imm_err imm_tasks_finish(imm_tasks *t, imm_claim *c, const imm_message *m, int n,
                         long long *ids, int *won, imm_error *err);
/* A pending message was sent (delivered 1), or the try failed (0, why): then it is tried again
 * later, each wait longer (5 s doubling, at most an hour), and given up after OUTBOX_TRIES. */
void imm_tasks_message_done(imm_tasks *t, long long id, int delivered, const char *why);
/* Up to max pending messages that are due (their grace or backoff past), each held for this
 * caller for a while (so that no other sweeper sends it meanwhile): *out gets them (free with
 * imm_notify_messages_free), ids their ids, *n how many. */
imm_err imm_tasks_messages_due(imm_tasks *t, int max, imm_message **out, long long *ids, int *n,
                               imm_error *err);
#define OUTBOX_TRIES 10
/* Updates a finished task's record (its Notifications), for the run that won it. */
imm_err imm_tasks_annotate(imm_tasks *t, imm_claim *c, imm_error *err);
/* Ends the claim (freeing what it owns). */
void imm_tasks_release(imm_tasks *t, imm_claim *c);
/* A stopping server's queued tasks: where they live in the server (SQLite), recorded Cancelled
 * with Code NotStarted; where they are shared, left for the other servers. */
void imm_tasks_drain(imm_tasks *t);

#endif
