/*
 * job.h - running one task the way both `immerge run` and `immerge serve` do: the merge, its
 * record kept current (at most once a second while it runs), and the completion message.
 */
#ifndef IMM_JOB_H
#define IMM_JOB_H

#include "immerge.h"
#include "notify.h"

typedef struct imm_job_env {
    /* How every task runs: storage, cancel flag, chunks, temporary folder, limits. Its progress
     * callback is the job's own; the one below hears of it. */
    imm_run_options run;
    imm_records *records;          /* may be NULL: not recorded */
    const imm_notify_config *notify;
    /* Hears the task's progress (see imm_run_options); may be NULL. */
    void (*progress)(void *opaque, const imm_progress *p);
    void *progress_opaque;
    int quiet;                     /* no warnings on stderr */
} imm_job_env;

/* Runs task (made by imm_task_new from req), records its end and sends its completion message;
 * returns imm_task_run's result. A record or message that fails only warns. */
imm_err imm_job_run(const imm_job_env *env, imm_task *task, const imm_request *req,
                    imm_error *err);

#endif
