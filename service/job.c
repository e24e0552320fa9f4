/*
 * job.c - one task from start to record and message (see job.h).
 */
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    const imm_job_env *env;
    imm_claim *claim;
    struct timespec last_save;
} job;

static void on_progress(void *opaque, const imm_progress *p)
{
    job *j = opaque;
    struct timespec now;
    if (j->env->progress)
        j->env->progress(j->env->progress_opaque, p);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (j->claim && now.tv_sec > j->last_save.tv_sec) {
        imm_error ignored;
        imm_tasks_progress(j->env->tasks, j->claim, &ignored);
        j->last_save = now;
    }
}

static imm_err may_commit(void *opaque, imm_error *err)
{
    job *j = opaque;
    return imm_tasks_fence(j->env->tasks, j->claim, err);
}

static void warn(const imm_job_env *env, const char *what, const char *why)
{
    if (!env->quiet)
        fprintf(stderr, "immerge: warning: %s%s%s\n", what, why ? ": " : "", why ? why : "");
}

static void notify(const imm_job_env *env, imm_task *task, const imm_request *req)
{
    char *outcomes = imm_notify_deliver(env->notify, env->run.storage, req, task);
    if (outcomes) {
        imm_task_set_notifications(task, outcomes);
        if (strstr(outcomes, "\"Status\":\"Failed\""))
            warn(env, "a completion message was not delivered; see the task's Notifications",
                 NULL);
        free(outcomes);
    }
}

imm_err imm_job_run(const imm_job_env *env, imm_task *task, const imm_request *req,
                    imm_claim *claim, imm_error *err)
{
    job j = {.env = env, .claim = env->tasks ? claim : NULL};
    imm_error note = {0};
    int won = 1;
    clock_gettime(CLOCK_MONOTONIC, &j.last_save);
    imm_run_options opt = env->run;
    opt.progress = on_progress;
    opt.progress_opaque = &j;
    if (j.claim) {
        opt.may_commit = may_commit;
        opt.may_commit_opaque = &j;
        if (!opt.cancel)
            opt.cancel = imm_claim_lost(j.claim);
    }
    imm_err e = imm_task_run(task, req, &opt, err);
    if (j.claim && imm_tasks_finish(env->tasks, j.claim, &won, &note)) {
        warn(env, "the task's end is not recorded", note.message);
        /* Shared, its lease runs out and the run that takes the task over records it and sends
         * its message: one message per task. Alone, this run is the task's only one. */
        if (imm_tasks_shared(env->tasks))
            return e;
        won = 1;
    }
    if (!won)
        return e; /* another run has the task (the tasks said so): its end is that run's */
    if (env->notify) {
        notify(env, task, req);
        if (j.claim && imm_tasks_annotate(env->tasks, j.claim, &note))
            warn(env, "the task's completion messages are not recorded", note.message);
    }
    return e;
}
