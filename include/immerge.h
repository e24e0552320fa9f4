/*
 * immerge.h - the one public header of libimmerge.
 *
 * libimmerge runs an Alibaba Cloud IMM CreateMediaConvertTask audio merge locally: it parses and
 * validates the service's request JSON, reads the sources through a caller-supplied storage, merges
 * them into one continuous output per target and writes each output atomically through the same
 * storage. The command line tool (cli/) and the HTTP service (serve/) are thin clients of this
 * header; where tasks are recorded and queued is the service's business, not the engine's.
 *
 * Conventions: functions return an imm_err (0 = IMM_OK); on failure they fill the caller-owned
 * imm_error with the service's error Code and a human message. Each _new or _parse function has
 * a _free, and _free(NULL) is a no-op.
 */
#ifndef IMMERGE_H
#define IMMERGE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum imm_err {
    IMM_OK = 0,
    IMM_EJSON,      /* InvalidJSON: the request is not a JSON object */
    IMM_EARG,       /* InvalidArgument: a field is missing, malformed or not allowed */
    IMM_ELIMIT,     /* LimitExceededError: a count or value over a service limit */
    IMM_ENOTFOUND,  /* ResourceNotFound: a source object does not exist */
    IMM_EFORBIDDEN, /* Forbidden: storage refused access, or a URI escapes its root */
    IMM_EMEDIA,     /* InvalidMedia: a source cannot be demuxed or decoded, or has no audio */
    IMM_EIO,        /* StorageError: reading or writing storage failed */
    IMM_EINTERNAL,  /* InternalError: an encoder/muxer failure or out of memory */
    IMM_ECANCELED,  /* Cancelled: the caller asked the task to stop */
    IMM_ETIMEOUT,   /* TaskTimeout: the task ran longer than imm_run_options.timeout_seconds */
} imm_err;

typedef struct imm_error {
    imm_err code;
    char message[512];
} imm_error;

/* The service's Code string for an error ("InvalidArgument", ...). */
const char *imm_err_code(imm_err code);
/* Non-zero when the error means "the request is invalid" (the task never started). */
int imm_err_is_request_error(imm_err code);
/* Sets *err (if not NULL) and returns code: `return imm_error_set(err, IMM_EARG, "...", ...);` */
imm_err imm_error_set(imm_error *err, imm_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- URIs --------------------------------------------------------------------------------------
 * oss://bucket/key names an object; file:///path and plain paths name local files. An OSS key may
 * not contain empty, "." or ".." segments, so that no implementation can map it outside its bucket.
 */
typedef struct imm_uri {
    int is_oss;
    char bucket[64];
    const char *key;  /* is_oss: points into the parsed string */
    const char *path; /* !is_oss: the local path, pointing into the parsed string */
} imm_uri;

imm_err imm_uri_parse(const char *uri, imm_uri *out, imm_error *err);

/* ---- Storage ------------------------------------------------------------------------------------
 * The engine reads sources and writes targets only through this interface. An implementation embeds
 * imm_storage as its first member. URIs are the request's (oss://bucket/key, file://..., paths); the
 * implementation decides where they live and refuses those that would leave its root.
 *
 * A written object is invisible at its URI until commit succeeds; close without commit discards it.
 */
typedef struct imm_storage imm_storage;
typedef struct imm_object imm_object;

enum { IMM_SEEK_SIZE = 0x10000 }; /* whence for seek: return the object's size, do not move */

typedef struct imm_storage_ops {
    /* Optional (NULL: every URI may be tried): whether this store serves uri at all, judged from
     * the URI alone, touching nothing. A store that keeps a caller to its own objects refuses
     * local paths here (IMM_EARG), so that a request naming one is refused before it runs, and
     * the answer is the same whether the file exists or not. open_read and open_write refuse
     * what this refuses. */
    imm_err (*admits)(imm_storage *st, const char *uri, imm_error *err);
    imm_err (*open_read)(imm_storage *st, const char *uri, imm_object **out, imm_error *err);
    imm_err (*open_write)(imm_storage *st, const char *uri, imm_object **out, imm_error *err);
    /* Bytes read (0 at end of object) or -1 with errno set. */
    int64_t (*read)(imm_object *obj, uint8_t *buf, size_t len);
    /* Bytes written (all of len) or -1 with errno set. */
    int64_t (*write)(imm_object *obj, const uint8_t *buf, size_t len);
    /* SEEK_SET/SEEK_CUR/SEEK_END or IMM_SEEK_SIZE; the new position (or the size), -1 on error. */
    int64_t (*seek)(imm_object *obj, int64_t offset, int whence);
    /* Makes a written object appear at its URI. The object stays open; close it afterwards. */
    imm_err (*commit)(imm_object *obj, imm_error *err);
    /* Optional (NULL: the store cannot tag its objects): commit, once per owner (a task id). The
     * object is tagged with owner, and put in place unless the URI already holds an object of
     * that owner: then *already is set and nothing is written. Where the store can, the check
     * and the write are one conditional write, so that two runs of one task racing to commit
     * write the object once. An untagged object or another owner's is replaced, as by commit. */
    imm_err (*commit_owned)(imm_object *obj, const char *owner, int *already, imm_error *err);
    /* Optional, with commit_owned: the owner of the object at uri into owner[cap] ("" when it
     * has none); IMM_ENOTFOUND when there is no object. */
    imm_err (*owner_of)(imm_storage *st, const char *uri, char *owner, size_t cap,
                        imm_error *err);
    /* Optional (may be NULL): why the last failed read, write or seek on obj failed, when errno
     * alone cannot say (a store's answer, a retry budget spent). IMM_OK when it did not fail. */
    imm_err (*last_error)(imm_object *obj, imm_error *err);
    void (*close)(imm_object *obj);
    /* Removes an object this task committed: undoes the pieces of a segmented output whose task
     * then failed. An object already missing is not an error. */
    imm_err (*remove)(imm_storage *st, const char *uri, imm_error *err);
    void (*free)(imm_storage *st);
} imm_storage_ops;

struct imm_storage {
    const imm_storage_ops *ops;
};

void imm_storage_free(imm_storage *st);

/* An unnamed read-write file in dir (NULL or "": $TMPDIR, else /tmp) that disappears when closed:
 * scratch space for an output on its way to a store. A descriptor, or -1 with errno set. */
int imm_temp_file(const char *dir);
/* The cores this process may run on (its CPU affinity), at least 1. */
int imm_cores(void);

/* ---- Request ----------------------------------------------------------------------------------- */
typedef struct imm_request imm_request;

/* Parses and validates a CreateMediaConvertTask request. Everything that can be judged without
 * reading the sources is judged here. */
imm_err imm_request_parse(const char *json, size_t len, imm_request **out, imm_error *err);
void imm_request_free(imm_request *req);
/* Every URI the request names (its sources, its targets as resolved, its ExtendedMessageURI) is
 * one st admits (see imm_storage_ops.admits), or the request is refused (IMM_EARG) naming the
 * field. imm_task_run and imm_task_preview check it too; a server checks it when a task is created. */
imm_err imm_request_check_storage(const imm_request *req, imm_storage *st, imm_error *err);
/* Where the request asks its completion message to go: each field NULL when not given. The
 * *_field members name the request field that gave the value (the SDK's or the legacy one). */
typedef struct imm_notification {
    const char *topic, *topic_field;       /* Notification.MNS.TopicName, NotifyTopicName */
    const char *endpoint, *endpoint_field; /* Notification.MNS.Endpoint, NotifyEndpoint */
    const char *extended_uri;              /* Notification.ExtendedMessageURI */
    int rocketmq;                          /* Notification.RocketMQ was given */
} imm_notification;
imm_notification imm_request_notification(const imm_request *req);

/* ---- Task -------------------------------------------------------------------------------------- */
typedef struct imm_task imm_task;

/* How far a running task is. */
typedef struct imm_progress {
    double fraction;      /* 0..1: the samples encoded, of all the targets will encode */
    double input_seconds; /* the sources' length after clipping, as probed (0: unknown) */
    double elapsed;       /* seconds since the task started */
} imm_progress;

typedef struct imm_run_options {
    imm_storage *storage;
    /* Called at most twice a second while the task runs, and once when it has succeeded
     * (fraction 1); may be NULL. */
    void (*progress)(void *opaque, const imm_progress *p);
    void *progress_opaque;
    /* When not NULL and non-zero, the task stops soon, writes nothing and fails with
     * IMM_ECANCELED (status Cancelled). A signal handler may set it. */
    const volatile int *cancel;
    /* Encoders per target: 0 lets the engine split a long target into as many chunks as there
     * are cores where the seams are inaudible (AAC, MP3); 1 keeps one encoder; N >= 2 splits every
     * target whose codec allows it into N, however short (for tests and measurements). */
    int chunks;
    /* Where chunked encodings keep their packets until they are joined (see imm_temp_file). */
    const char *temp_dir;
    /* Limits (0: none). The sources may last max_seconds in all, clipped: more fails the task
     * with IMM_ELIMIT, before encoding when their containers say so, else as soon as decoding
     * passes it. A task still running after timeout_seconds stops, writes nothing and fails with
     * IMM_ETIMEOUT. */
    double max_seconds;
    double timeout_seconds;
    /* Asked once every output is complete and before the first is committed (may be NULL): a
     * non-zero answer (with err set) discards them all and fails the task with it. A server
     * whose lease on the task may have passed to another uses it to fence its commit. */
    imm_err (*may_commit)(void *opaque, imm_error *err);
    void *may_commit_opaque;
    /* When not NULL (a task id): every output is committed once for this owner (see
     * imm_storage_ops.commit_owned), so that a second run of one task does not write again what
     * the first committed. NULL: outputs are committed as they are, replacing what is there. */
    const char *owner;
} imm_run_options;

/* A task record with a fresh TaskId and RequestId, status Running. */
imm_task *imm_task_new(const imm_request *req);
/* The task of a record made by imm_task_to_json (its TaskId, RequestId and EventId), for req
 * (parsed from the record's TaskRequestDefinition), taken up to run again now: status Running,
 * StartTime now. NULL when the record lacks the ids, or out of memory. */
imm_task *imm_task_restore(const imm_request *req, const char *record_json);
/* A task waiting for a worker: status Queued until imm_task_run starts it (StartTime then). */
void imm_task_set_queued(imm_task *task);
/* A queued task that will never run (the server stopped): status Cancelled, Code NotStarted. */
void imm_task_set_not_started(imm_task *task, const char *why);
/* Runs the merge synchronously. On failure the task's status becomes Failed with err's Code. */
imm_err imm_task_run(imm_task *task, const imm_request *req, const imm_run_options *opt,
                     imm_error *err);
/* What imm_task_run would do, without decoding or writing anything: the request is validated and
 * its sources probed as a run would (failing the same way), then *json (free()) describes each
 * source as probed (format, stream, clip in samples), each target's parameters and where each
 * came from (the request, the AlignmentIndex source, a *Option, a default), its resolved URI, its
 * chunks and its predicted length in samples. */
imm_err imm_task_preview(const imm_request *req, const imm_run_options *opt, char **json,
                      imm_error *err);
/* The task as the service reports it (GetTask shape plus per-target results); free with free(). */
char *imm_task_to_json(const imm_task *task);
const char *imm_task_request_id(const imm_task *task);
/* The completion message as the service publishes it: {id, source "acs.imm", type
 * "imm:Task:MediaConvert", subject "acs:imm:REGION:ACCOUNT:PROJECT/imm:Task:MediaConvert", time
 * (epoch ms), content (the task JSON as a string)}. free(); NULL when out of memory. */
char *imm_task_message(const imm_task *task, const char *region, const char *account_id);
/* Called from may_commit: the record the task will have once its outputs are committed (status
 * Succeeded, every figure of its outputs), for a later run of the task to adopt. free(). */
char *imm_task_committing_json(const imm_task *task);
/* A later run of a task whose earlier run recorded committing_json (imm_task_committing_json) at
 * its fence: when every output that record names is in st, owned by this task (the tags of
 * imm_storage_ops.commit_owned), the task takes that record instead of encoding again (status
 * Succeeded, EndTime now) and *adopted is set. Otherwise nothing changes and the task is to run.
 * An error only when st could not be asked. */
imm_err imm_task_adopt(imm_task *task, const char *committing_json, imm_storage *st,
                       int *adopted, imm_error *err);
/* Attaches how the completion message was delivered (a JSON array) to the task: its JSON and
 * record then show it as "Notifications". */
imm_err imm_task_set_notifications(imm_task *task, const char *json_array);
void imm_task_free(imm_task *task);

/* ---- Compare -----------------------------------------------------------------------------------
 * Two audio files side by side (`immerge compare`), say ours and the service's for one request.
 */
typedef struct imm_compare_options {
    imm_storage *storage;      /* where both URIs are read */
    double search_seconds;     /* the offset of B is looked for within +-this ... */
    double window_seconds;     /* ... by cross-correlating this much of the start */
    /* Tolerances: the files match when every one holds. */
    int64_t max_length_diff;   /* samples, at A's rate */
    int64_t max_offset;        /* samples */
    double min_snr;            /* dB, of B against A once aligned (at A's rate and layout) */
    double max_loudness_diff;  /* LU, integrated (EBU R128) */
} imm_compare_options;

/* *json (free()) gets each file's format, length, per-channel RMS and peak and integrated
 * loudness, then the length difference, the offset found, the SNR after alignment and the
 * mismatches; *match is non-zero when there are none. An unreadable file is an error. */
imm_err imm_compare(const char *a, const char *b, const imm_compare_options *opt, char **json,
                    int *match, imm_error *err);

/* The service's error body {RequestId, HostId, Code, Message, Recommend}; free with free(). */
char *imm_error_to_json(const imm_error *err, const char *request_id);
/* A fresh upper-case UUID as the service uses for RequestId; buf holds at least 37 bytes. */
void imm_request_id_new(char buf[37]);
/* The current time as the service writes it (RFC 3339 UTC with milliseconds). */
void imm_now_rfc3339(char buf[32]);
/* The monotonic clock for durations and deadlines (it never jumps), the wall clock for dates. */
typedef enum imm_clock { IMM_CLOCK_MONOTONIC, IMM_CLOCK_WALL } imm_clock;
/* Now on clock, in seconds (the wall clock's are Unix time). */
double imm_clock_seconds(imm_clock clock);
/* clock's time `seconds` from now, as pthread's timed waits take a deadline (a condition
 * variable waits by the wall clock unless it was told otherwise). */
struct timespec imm_clock_after(imm_clock clock, double seconds);

#ifdef __cplusplus
}
#endif
#endif
