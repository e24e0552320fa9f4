/*
 * notify.h - delivering a task's completion message: to an MNS topic (as the service does), to an
 * HTTP endpoint or a file of JSON lines (for air-gapped use), and the full task JSON to the
 * request's ExtendedMessageURI through storage.
 *
 * Delivery never fails a task: each destination's outcome comes back as a JSON array that the
 * caller attaches to the task (imm_task_set_notifications) and reports. The messages are made
 * apart from sending them, so that a caller can record them first (the task records' outbox)
 * and send them again after a crash.
 */
#ifndef IMMERGE_NOTIFY_NOTIFY_H
#define IMMERGE_NOTIFY_NOTIFY_H

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

/* One completion message bound for one destination, as it is recorded before it is sent (an
 * outbox row) and sent again as is: the same bytes, so the same id for a receiver to dedupe. */
typedef struct imm_message {
    const char *destination; /* "MNS", "RocketMQ", "ExtendedMessageURI", "URL", "File" */
    char *target;            /* the topic, "", the object's URI, the URL, the path */
    char *endpoint;          /* MNS: where the topic is ("" when none is configured); else NULL */
    char *body;              /* the message; ExtendedMessageURI: the task JSON */
} imm_message;

/* The messages of task's end (run from req), one per destination cfg and the request name, in
 * the order they are sent; *n of them. NULL with *n 0 when there is nowhere to send (or out of
 * memory). Free with imm_notify_messages_free. */
imm_message *imm_notify_messages(const imm_notify_config *cfg, const imm_request *req,
                                 const imm_task *task, int *n);
void imm_notify_messages_free(imm_message *m, int n);
/* A destination's name as recorded (an outbox row's), as the static string imm_message holds;
 * a name not one of ours reads as "RocketMQ", which is never delivered. */
const char *imm_notify_destination(const char *name);

/* Sends m (credentials and retries from cfg; an ExtendedMessageURI through st): 1 when it was
 * delivered, else 0; why gets the outcome's message either way. */
int imm_notify_send(const imm_notify_config *cfg, imm_storage *st, const imm_message *m,
                    char *why, size_t len);

/* Sends each of m[0..n), delivered[i] saying which arrived; returns the outcomes, a malloc'd
 * JSON array of {Destination, Target, Status ("Delivered" or "Failed"), Message, MessageId?}
 * for the task's record. */
char *imm_notify_send_all(const imm_notify_config *cfg, imm_storage *st, const imm_message *m,
                          int n, int *delivered);

#endif
