/*
 * notify.h - delivering a task's completion message: to an MNS topic (as the service does), to an
 * HTTP endpoint or a file of JSON lines (for air-gapped use), and the full task JSON to the
 * request's ExtendedMessageURI through storage.
 *
 * Delivery never fails a task: each destination's outcome comes back as a JSON array that the
 * caller attaches to the task (imm_task_set_notifications) and reports.
 */
#ifndef IMM_NOTIFY_H
#define IMM_NOTIFY_H

#include "immerge.h"

typedef struct imm_notify_config {
    const char *file;         /* --notify-file: every message appended as one JSON line */
    const char *url;          /* --notify-url: every message POSTed as JSON */
    const char *mns_endpoint; /* --mns-endpoint: "https://ACCOUNT.mns.REGION.aliyuncs.com" */
    const char *access_key_id; /* for MNS; NULL: unsigned */
    const char *access_key_secret;
    const char *security_token;
    const char *region;       /* for the message's subject */
    const char *account_id;
    int retries;              /* attempts after the first for network failures and 5xx */
    double retry_seconds;
    /* serve: a message goes only where the operator configured, never to an endpoint the
     * request names (see imm_notify_admits). Without it (run, whose request is the operator's
     * own), a request's MNS endpoint is used in place of mns_endpoint. */
    int operator_sinks_only;
} imm_notify_config;

/* Whether cfg can deliver what req asks and only to the operator's sinks: a RocketMQ
 * destination (not supported), an MNS topic without an MNS endpoint, and (operator_sinks_only)
 * an MNS endpoint other than cfg's are refused with IMM_EARG, naming the field. A server checks
 * this when a task is created, so that nothing asked for is silently dropped. */
imm_err imm_notify_admits(const imm_notify_config *cfg, const imm_request *req, imm_error *err);

/* Delivers the completion message of task (run from req) everywhere cfg and the request say;
 * returns the outcomes, a malloc'd JSON array of {Destination, Target, Status ("Delivered" or
 * "Failed"), Message, MessageId?}, or NULL when there was nowhere to deliver. */
char *imm_notify_deliver(const imm_notify_config *cfg, imm_storage *st, const imm_request *req,
                         const imm_task *task);

#endif
