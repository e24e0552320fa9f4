/*
 * server.h - `immerge serve`: the service's OpenAPI (RPC style, Version 2020-09-30) over HTTP,
 * with CreateMediaConvertTask answered at once and the task run by a bounded pool of workers.
 */
#ifndef IMMERGE_SERVE_SERVER_H
#define IMMERGE_SERVE_SERVER_H

#include "immerge.h"
#include "notify/notify.h"
#include "tasks/tasks.h"

typedef struct imm_server_options {
    const char *listen;   /* "HOST:PORT"; PORT 0 picks a free one */
    int workers;          /* tasks run at once; 0: the number of cores */
    int queue;            /* tasks waiting at most (across the servers sharing tasks); 0: 64 */
    const char *access_key_id; /* with the secret: only calls signed by this key are served */
    const char *access_key_secret;
    imm_run_options run;  /* how every task runs: storage, chunks, limits (see imm_job_env) */
    imm_tasks *tasks;     /* records and queue */
    const imm_notify_config *notify;
    const volatile int *stop; /* set (by SIGTERM, SIGINT) to stop: see imm_serve */
    double drain_seconds; /* how long a stop waits for the running tasks; 0: as they take */
    int quiet;
} imm_server_options;

/* Serves until *stop is set, then drains: no new calls, running tasks finish (within
 * drain_seconds; past it they stop and are given back, see imm_tasks_abandon), queued ones are
 * left to the other servers sharing the tasks, or recorded Cancelled with Code NotStarted where
 * none share them. Prints {"Listen": "HOST:PORT"} on stdout once ready. Besides the OpenAPI it
 * answers GET /healthz (alive), /readyz (ready for calls: not stopping, records reachable) and
 * /metrics (Prometheus), unsigned. */
imm_err imm_serve(const imm_server_options *opt, imm_error *err);

#endif
