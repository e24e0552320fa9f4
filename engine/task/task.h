/*
 * task.h - a task: its run, which drives every stage below, and its record.
 *
 *   run.c         one run: probe, plan, merge every source into every target, commit
 *   lane.c        a target's converter and encoder on a thread of its own
 *   chunk.c       one target encoded in chunks on several cores, joined into one stream
 *   prepass.c     the sources read once before the merge, for Loudness and Chapters
 *   record.c      the task as the service shows it: ids, status, results, its JSON and message
 */
#ifndef IMMERGE_ENGINE_TASK_TASK_H
#define IMMERGE_ENGINE_TASK_TASK_H

#include "engine/report/report.h"
#include "engine/sink/sink.h"

/* ---- lane.c ---- */
typedef struct imm_lane imm_lane;

/* A thread that converts and encodes for one target, crossfading its sources when plan says so
 * (its sink and converter stay the caller's). */
imm_err imm_lane_start(const imm_target_plan *plan, imm_sink *sink, imm_convert *convert,
                       imm_lane **out, imm_error *err);
/* Queues samples [offset, offset + count) of frame (by reference), waiting while the queue is
 * full; fails with the lane's own error once it has failed. */
imm_err imm_lane_push(imm_lane *l, const AVFrame *frame, int offset, int count, imm_error *err);
/* Queues the end of a source: the converter is flushed to its exact length. */
imm_err imm_lane_end_source(imm_lane *l, imm_error *err);
/* Queues the end of the stream: the sink finishes (imm_sink_finish). */
imm_err imm_lane_finish(imm_lane *l, imm_error *err);
/* Zero once the lane's sink wants nothing more of the timeline (imm_sink_full). */
int imm_lane_wants_input(const imm_lane *l);

/* What ends a run early: the caller's cancel flag (may be NULL) and a deadline. */
typedef struct imm_guard {
    const volatile int *cancel;
    double deadline; /* CLOCK_MONOTONIC seconds; 0: none */
    double timeout;  /* the limit it came from, for the message */
} imm_guard;

imm_guard imm_guard_new(const volatile int *cancel, double timeout_seconds);
/* IMM_ECANCELED or IMM_ETIMEOUT when the run must stop, else IMM_OK. */
imm_err imm_guard_check(const imm_guard *g, imm_error *err);

/* Reads src to its end into every lane, and ends the source in each; reading stops early once no
 * lane wants input. on_read (may be NULL) hears of each run of samples read (frame's samples
 * [offset, offset + count)) and may stop the reading with an error. */
imm_err imm_lanes_feed(imm_lane *const *lanes, int n, imm_source *src, const imm_guard *guard,
                       imm_err (*on_read)(void *opaque, const AVFrame *frame, int offset,
                                          int count, imm_error *err),
                       void *opaque, imm_error *err);
/* Waits until the lane has handled everything up to its finish, or failed. */
imm_err imm_lane_wait(imm_lane *l, imm_error *err);
/* Waits at most `seconds` for the lane to end; non-zero when it has (imm_lane_wait then says how). */
int imm_lane_wait_for(imm_lane *l, double seconds);
/* Tells the lane to stop: what is queued is dropped and pushing fails from now on. */
void imm_lane_stop(imm_lane *l);
/* Stops the lane and joins its thread. */
void imm_lane_free(imm_lane *l);

/* ---- prepass.c ---- */
typedef struct imm_normalised {
    double measured; /* LUFS, of the merge as this target converts it; -HUGE_VAL: silence */
    double peak;     /* dBFS, its sample peak before the gain */
    double gain;     /* dB applied */
    int limited;     /* the gain was lowered to keep the peak at MaxPeak */
} imm_normalised;

typedef struct imm_prepass {
    imm_timeline length[IMM_MAX_SOURCES]; /* each source's clipped (and trimmed) part, decoded */
    imm_span span[IMM_MAX_SOURCES];   /* TrimSilence: the part of each clip kept */
    int64_t silence[IMM_MAX_SOURCES][2]; /* TrimSilence: samples dropped at its start and end */
    char title[IMM_MAX_SOURCES][128]; /* its title tag, else its file name */
    imm_normalised loudness[IMM_MAX_TARGETS];
} imm_prepass;

/* Decodes every source once before the merge (prepass.c): each one's length and title, with
 * TrimSilence the part of it that is kept, and with Loudness each target's measure, setting
 * plans[t]->gain. */
imm_err imm_prepass_read(imm_storage *st, const imm_request *req, imm_target_plan *const *plans,
                        int ntargets, const imm_guard *guard, imm_prepass *out, imm_error *err);
void imm_prepass_clear(imm_prepass *p);

/* ---- chunk.c ---- */
#define IMM_MAX_CHUNKS 8
typedef struct imm_chunker imm_chunker;

/* How many chunks a target is encoded in: 1 unless its codec's chunks join seamlessly (AAC,
 * MP3) and, with chunks == 0 (automatic), the timeline of `seconds` is long enough to pay for
 * the pre-roll; then as many as asked, or as cores. */
int imm_chunk_count(const imm_target_plan *plan, double seconds, int chunks);
/* The window of chunk i of n, for a timeline of about `seconds` (of input) and an encoder frame
 * of frame_size samples. */
imm_chunk_window imm_chunk_window_of(const imm_target_plan *plan, double seconds, int frame_size,
                                     int i, int n);
/* A thread that reads the request's sources (each narrowed to spans[i]) from the start into lanes
 * of their own (the chunks before the last), stopping once none of them wants more, then finishes
 * them. */
imm_err imm_chunker_start(imm_storage *st, const imm_request *req, const imm_span *spans,
                          imm_lane *const *lanes, int n, const imm_guard *guard,
                          imm_chunker **out, imm_error *err);
/* Non-zero once the thread has ended, well or not (imm_chunker_join then does not wait). */
int imm_chunker_ended(const imm_chunker *c);
/* Waits for the thread; its error if it failed. */
imm_err imm_chunker_join(imm_chunker *c, imm_error *err);
/* Joins (if still running) and frees; stop the lanes first when giving up. */
void imm_chunker_free(imm_chunker *c);

/* ---- record.c ---- */
/* What the run learns of each target and source, kept in the task for its JSON. */
typedef struct target_result {
    imm_target_plan plan;
    int64_t samples;
    int64_t size;
    int64_t seams[IMM_MAX_CHUNKS]; /* where one encoder's packets follow another's */
    int nseams;
    imm_normalised loudness; /* the Loudness extension's measure and gain, when asked */
} target_result;

typedef struct source_result {
    int sample_rate;
    int channels;
    imm_timeline taken;   /* the samples it gave, as runs of one rate */
    double duration; /* estimate from the probe, for progress */
    /* The join report's (ImmergeReport): */
    int merged;                   /* read to its end */
    int64_t clip_start;           /* samples StartTime dropped */
    int64_t trimmed_start, trimmed_end; /* encoder delay and padding the container signalled */
    int64_t silence[2];           /* TrimSilence: samples dropped at the start and the end */
    int joined;                   /* join: the join before this source, measured */
    imm_join_measure join;
} source_result;

struct imm_task {
    char request_id[37];
    char task_id[64];
    char event_id[64];
    char start[32], end[32];
    const char *status;
    imm_error error;
    int progress;
    const imm_request *req;
    target_result targets[IMM_MAX_TARGETS];
    int ntargets;
    source_result *sources; /* one per request source (up to 256 with MaxSources) */
    int nsources;
    char *notifications; /* JSON array: how the completion message was delivered */
    /* A restored task's target URIs as its record resolved them when it was created: a template's
     * t_year.. are the creation time, not the time a worker took the task up. */
    char *created_uris[IMM_MAX_TARGETS];
    int not_started;     /* cancelled before it ran: Code NotStarted */
    /* An earlier run's record, taken up because that run committed every output (imm_task_adopt):
     * the task's JSON is this one's, with its own end and notifications. */
    struct cJSON *adopted;
};

#endif
