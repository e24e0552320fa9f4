/*
 * job.h - running one task the way both `immerge run` and `immerge serve` do: the merge, its
 * record kept current (at most once a second while it runs), and the completion message.
 */
#ifndef IMM_JOB_H
#define IMM_JOB_H

#include "immerge.h"
#include "notify.h"

typedef struct imm_job_env {
    imm_storage *storage;
    imm_records *records;          /* may be NULL: not recorded */
    const imm_notify_config *notify;
    const volatile int *cancel;    /* may be NULL */
    /* Called with the fraction done after each progress step; may be NULL. */
    void (*progress)(void *opaque, double fraction);
    void *progress_opaque;
    int quiet;                     /* no warnings on stderr */
    int chunks;                    /* imm_run_options' */
    const char *temp_dir;          /* imm_run_options' */
} imm_job_env;

/* Runs task (made by imm_task_new from req), records its end and sends its completion message;
 * returns imm_task_run's result. A record or message that fails only warns. */
imm_err imm_job_run(const imm_job_env *env, imm_task *task, const imm_request *req,
                    imm_error *err);

#endif
