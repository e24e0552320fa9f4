/*
 * job.c - one task from start to record and message (see job.h).
 */
#include "tasks/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    const imm_job_env *env;
    imm_claim *claim;
    imm_task *task;
    double last_save; /* monotonic s */
} job;

static void on_progress(void *opaque, const imm_progress *p)
{
    job *j = opaque;
    if (j->env->progress)
        j->env->progress(j->env->progress_opaque, p);
    double now = imm_clock_seconds(IMM_CLOCK_MONOTONIC);
    if (j->claim && now >= j->last_save + 1) {
        imm_error ignored;
        imm_tasks_progress(j->env->tasks, j->claim, &ignored);
        j->last_save = now;
    }
}

static void warn(const imm_job_env *env, const char *what, const char *why)
{
    if (!env->quiet)
        fprintf(stderr, "immerge: warning: %s%s%s\n", what, why ? ": " : "", why ? why : "");
}

static imm_err may_commit(void *opaque, imm_error *err)
{
    job *j = opaque;
    char *committing = imm_task_committing_json(j->task);
    if (!committing)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    imm_err e = imm_tasks_fence(j->env->tasks, j->claim, committing, err);
    free(committing);
    return e;
}

/* A run that takes over a task whose earlier run fenced its commit: when that run's outputs are
 * all in place, committed by this task, the task ends with its record, and nothing is encoded
 * or written again. */
static int adopt(const imm_job_env *env, imm_task *task, imm_claim *claim)
{
    const char *committing = imm_claim_committing(claim);
    int adopted = 0;
    imm_error why = {0};
    if (!committing)
        return 0;
    if (imm_task_adopt(task, committing, env->run.storage, &adopted, &why))
        warn(env, "could not tell whether an earlier run committed this task's outputs",
             why.message);
    else if (adopted && !env->quiet)
        fprintf(stderr, "immerge: task %s: an earlier run committed its outputs and stopped "
                "before recording its end: the task ends with that run's record, without "
                "encoding again\n", imm_claim_task_id(claim));
    return adopted;
}

/* Sends the end's messages (recorded as pending under ids when the task is recorded), marks
 * each sent or tried, and attaches the outcomes to the task. */
static void notify(const imm_job_env *env, imm_task *task, const imm_message *m, int n,
                   const long long *ids)
{
    int *delivered = calloc((size_t)n, sizeof(*delivered));
    char *outcomes = delivered ? imm_notify_send_all(env->notify, env->run.storage, m, n,
                                                     delivered) : NULL;
    for (int i = 0; delivered && env->tasks && i < n; i++)
        imm_tasks_message_done(env->tasks, ids[i], delivered[i], delivered[i] ? NULL :
                               "the first try failed (see the task's Notifications)");
    if (outcomes) {
        imm_task_set_notifications(task, outcomes);
        if (strstr(outcomes, "\"Status\":\"Failed\""))
            warn(env, "a completion message was not delivered; see the task's Notifications",
                 NULL);
        free(outcomes);
    }
    free(delivered);
}

imm_err imm_job_run(const imm_job_env *env, imm_task *task, const imm_request *req,
                    imm_claim *claim, imm_error *err)
{
    job j = {.env = env, .claim = env->tasks ? claim : NULL, .task = task};
    imm_error note = {0};
    int won = 1, n = 0;
    j.last_save = imm_clock_seconds(IMM_CLOCK_MONOTONIC);
    imm_run_options opt = env->run;
    opt.progress = on_progress;
    opt.progress_opaque = &j;
    if (j.claim) {
        opt.may_commit = may_commit;
        opt.may_commit_opaque = &j;
        if (!opt.cancel)
            opt.cancel = imm_claim_lost(j.claim);
        /* Shared, a task may run twice at once (one run paused past its lease): each output
         * is then written once, by whichever commits first. */
        if (imm_tasks_shared(env->tasks))
            opt.owner = imm_claim_task_id(j.claim);
    }
    imm_err e = j.claim && adopt(env, task, j.claim) ? IMM_OK : imm_task_run(task, req, &opt, err);
    imm_message *m = env->notify ? imm_notify_messages(env->notify, req, task, &n) : NULL;
    long long *ids = calloc((size_t)n + 1, sizeof(*ids));
    if (!ids)
        n = 0;
    if (j.claim && imm_tasks_finish(env->tasks, j.claim, m, n, ids, &won, &note)) {
        warn(env, "the task's end is not recorded", note.message);
        /* Shared, its lease runs out and the run that takes the task over records it and sends
         * its message: one message per task. Alone, this run is the task's only one. */
        if (imm_tasks_shared(env->tasks))
            goto done;
        won = 1;
    }
    if (won && n) {
        notify(env, task, m, n, ids);
        if (j.claim && imm_tasks_annotate(env->tasks, j.claim, &note))
            warn(env, "the task's completion messages are not recorded", note.message);
    }
    /* !won: another run has the task (the tasks said so); its end and messages are that run's. */
done:
    imm_notify_messages_free(m, n);
    free(ids);
    return e;
}

/* One turn of the outbox's sweeper: the pending messages that are due, sent. */
int imm_job_send_pending(const imm_job_env *env)
{
    enum { MAX = 20 };
    imm_message *m = NULL;
    long long ids[MAX];
    int n = 0;
    imm_error err = {0};
    if (imm_tasks_messages_due(env->tasks, MAX, &m, ids, &n, &err))
        return 0;
    for (int i = 0; i < n; i++) {
        char why[512];
        int ok = imm_notify_send(env->notify, env->run.storage, &m[i], why, sizeof(why));
        imm_tasks_message_done(env->tasks, ids[i], ok, why);
        if (!env->quiet)
            fprintf(stderr, "immerge: %s a pending completion message (%s %s): %s\n",
                    ok ? "sent" : "warning: could not send", m[i].destination, m[i].target, why);
    }
    imm_notify_messages_free(m, n);
    return n;
}
