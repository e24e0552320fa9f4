/*
 * backend.h - between tasks.h's interface (tasks.c) and its two implementations: the
 * operations each provides, the claim, and what they share (records.c): a task's record as
 * columns, the keyset paging's SQL words, the outbox's backoff, the clock.
 */
#ifndef IMMERGE_TASKS_BACKEND_H
#define IMMERGE_TASKS_BACKEND_H

#include "tasks/tasks.h"

#include <cjson/cJSON.h>
#include <pthread.h>

#define IMM_TASKS_MAX_LIST 100

/* Where a ListTasks page starts: after the row (key, seq) in the query's order; seq 0: at the
 * start. */
typedef struct imm_list_cursor {
    long long seq;
    char key[64];
} imm_list_cursor;

/* The SQL both implementations list with: the sort key's expression (given each one's
 * expressions for StartTime and EndTime), and the comparison and direction of the order. */
const char *imm_list_key_sql(const imm_list_query *q, const char *start, const char *end);
const char *imm_list_after_sql(const imm_list_query *q); /* ">" or "<" */
const char *imm_list_order_sql(const imm_list_query *q); /* "ASC" or "DESC" */
/* A time bound of the query as a parameter: NULL when open. */
const char *imm_list_bound(const char *bound);

typedef struct tasks_ops {
    imm_err (*get)(imm_tasks *t, const char *project, const char *task_id, char **stored,
                   imm_error *err);
    /* Up to max + 1 stored records that match q, after the cursor, in q's order: each row's
     * sequence number, sort key and JSON go to add(). */
    imm_err (*list)(imm_tasks *t, const imm_list_query *q, const imm_list_cursor *after, int max,
                    void (*add)(void *opaque, long long seq, const char *key, const char *stored),
                    void *opaque, imm_error *err);
    imm_err (*start)(imm_tasks *t, imm_claim *c, imm_error *err);
    imm_err (*enqueue)(imm_tasks *t, imm_claim *c, int queue, int *full, imm_error *err);
    imm_err (*claim)(imm_tasks *t, const volatile int *stop, imm_claim **out, imm_error *err);
    imm_err (*progress)(imm_tasks *t, imm_claim *c, imm_error *err);
    imm_err (*fence)(imm_tasks *t, imm_claim *c, const char *committing, imm_error *err);
    imm_err (*finish)(imm_tasks *t, imm_claim *c, const imm_message *m, int n, long long *ids,
                      int *won, imm_error *err);
    void (*message_done)(imm_tasks *t, long long id, int delivered, const char *why);
    imm_err (*messages_due)(imm_tasks *t, int max, imm_message **out, long long *ids, int *n,
                            imm_error *err);
    imm_err (*annotate)(imm_tasks *t, imm_claim *c, imm_error *err);
    void (*release)(imm_tasks *t, imm_claim *c); /* before the claim is freed */
    imm_err (*stats)(imm_tasks *t, imm_tasks_stats *s, imm_error *err);
    imm_err (*ping)(imm_tasks *t, imm_error *err);
    void (*abandon)(imm_tasks *t);
    void (*drain)(imm_tasks *t);
    void (*close)(imm_tasks *t);
} tasks_ops;

struct imm_tasks {
    const tasks_ops *ops;
    int shared;
};

struct imm_claim {
    imm_task *task;
    imm_request *req;
    int owns;           /* task and req are freed with the claim */
    volatile int lost;  /* another run has the task now */
    int ending;         /* PostgreSQL: its end is being recorded; the heartbeat leaves it be */
    long long attempt;  /* PostgreSQL: which run of the task this is */
    char *project;      /* the task's ProjectName: which project's share it takes */
    char *committing;   /* an earlier run's record at its fence (imm_tasks_fence), or NULL */
    char task_id[64];
    imm_claim *next;    /* the implementation's list (a queue, the claims a heartbeat renews) */
};

imm_claim *imm_claim_new(imm_task *task, imm_request *req, int owns);
void imm_claim_free(imm_claim *c);

/* A task's record: its JSON (imm_task_to_json) and the columns a query filters on. */
typedef struct task_row {
    char *json;
    cJSON *parsed;
    const char *task_id, *project, *status, *start, *end; /* "" when absent */
    char *tags; /* JSON object, or NULL */
} task_row;

imm_err imm_task_row(const imm_task *task, task_row *row, imm_error *err);
void imm_task_row_clear(task_row *row);

/* A Running or Queued record whose run is gone, as GetTask then reports it: Failed with Code
 * TaskInterrupted (running) or Cancelled with Code NotStarted (queued), `who` naming the run.
 * malloc'd JSON, or NULL. *status gets the new Status. */
char *imm_task_interrupted(const char *stored, const char *who, int queued, const char **status);

/* How long a message waits after its `tries`-th failed try: 5 s doubling, at most an hour. */
double imm_outbox_backoff(int tries);

/* Waits on cond (lock held) for at most `seconds`. */
void imm_tasks_wait(pthread_cond_t *cond, pthread_mutex_t *lock, double seconds);

/* The SQLite implementation (sqlite.c) and the PostgreSQL one (pg.c). */
imm_err imm_tasks_sqlite_open(const char *path, const imm_tasks_options *opt, imm_tasks **out,
                              imm_error *err);
imm_err imm_tasks_pg_open(const char *uri, const imm_tasks_options *opt, imm_tasks **out,
                          imm_error *err);

#endif
