/*
 * job.h - running one task the way both `immerge run` and `immerge serve` do: the merge, its
 * record kept current (at most once a second while it runs), its outputs committed only while
 * its claim holds, and its completion message sent by the one run whose end is the task's.
 */
#ifndef IMMERGE_TASKS_JOB_H
#define IMMERGE_TASKS_JOB_H

#include "immerge.h"
#include "notify/notify.h"
#include "tasks/tasks.h"

typedef struct imm_job_env {
    /* How every task runs: storage, cancel flag, chunks, temporary folder, limits. Its progress
     * callback and commit check are the job's own; the one below hears of progress. Without a
     * cancel flag, a claim that another run takes over cancels the task. */
    imm_run_options run;
    imm_tasks *tasks;              /* may be NULL: not recorded */
    const imm_notify_config *notify;
    /* Hears the task's progress (see imm_run_options); may be NULL. */
    void (*progress)(void *opaque, const imm_progress *p);
    void *progress_opaque;
    int quiet;                     /* no warnings on stderr */
} imm_job_env;

/* Runs task (made by imm_task_new from req) under claim (from env->tasks; NULL when env->tasks is
 * NULL), records its end and sends its completion message; returns imm_task_run's result. A
 * record or message that fails only warns. */
imm_err imm_job_run(const imm_job_env *env, imm_task *task, const imm_request *req,
                    imm_claim *claim, imm_error *err);

/* One turn of a server's outbox sweeper: the completion messages recorded with a task's end but
 * not sent by their run (it crashed, or the first try failed), sent now through env's notify
 * configuration and storage; returns how many were tried. */
int imm_job_send_pending(const imm_job_env *env);

#endif
