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
    imm_task *task;
    struct timespec last_save;
} job;

static void on_progress(void *opaque, const imm_progress *p)
{
    job *j = opaque;
    struct timespec now;
    if (j->env->progress)
        j->env->progress(j->env->progress_opaque, p);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (j->env->records && now.tv_sec > j->last_save.tv_sec) {
        imm_error ignored;
        imm_records_save(j->env->records, j->task, &ignored);
        j->last_save = now;
    }
}

static void warn(const imm_job_env *env, const char *what, const char *why)
{
    if (!env->quiet)
        fprintf(stderr, "immerge: warning: %s%s%s\n", what, why ? ": " : "", why ? why : "");
}

imm_err imm_job_run(const imm_job_env *env, imm_task *task, const imm_request *req,
                    imm_error *err)
{
    job j = {.env = env, .task = task};
    imm_error note = {0};
    clock_gettime(CLOCK_MONOTONIC, &j.last_save);
    imm_run_options opt = env->run;
    opt.progress = on_progress;
    opt.progress_opaque = &j;
    imm_err e = imm_task_run(task, req, &opt, err);
    if (env->notify) {
        char *outcomes = imm_notify_deliver(env->notify, env->run.storage, req, task);
        if (outcomes) {
            imm_task_set_notifications(task, outcomes);
            if (strstr(outcomes, "\"Status\":\"Failed\""))
                warn(env, "a completion message was not delivered; see the task's "
                          "Notifications", NULL);
            free(outcomes);
        }
    }
    if (env->records && imm_records_save(env->records, task, &note))
        warn(env, "the task's end is not recorded", note.message);
    return e;
}
