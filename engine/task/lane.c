/*
 * lane.c - one target's converter and encoder on a thread of its own, fed the decoded frames
 * through a bounded queue.
 *
 * The task's thread decodes each source once and hands every lane a reference to each frame (no
 * copy); each lane resamples and encodes at its own pace, so several targets encode on several
 * cores, and a single target's encoding runs beside the decoding of what follows. A lane does
 * exactly what the task's thread did before, in the same order, so its output is the same byte for
 * byte. The queue is short: memory stays bounded, and a slow encoder holds the decoder back rather
 * than letting frames pile up.
 */
#include "engine/task/task.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define QUEUE 32

typedef enum item_kind { ITEM_FRAME, ITEM_END_SOURCE, ITEM_FINISH } item_kind;

typedef struct item {
    item_kind kind;
    AVFrame *frame;
    int offset, count;
} item;

struct imm_lane {
    imm_sink *sink;
    imm_convert *convert;
    imm_crossfade *xfade; /* between the converter and the sink, when asked */
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    item queue[QUEUE];
    int head, count;
    /* Who sleeps on `changed`. Each side wakes the other only once there is half a queue of work
     * (or room), or an end to handle, so the two trade the core in bursts, not frame by frame: a
     * fast lane (MP3 beside AAC) would otherwise be woken for every frame the feeder gets to put
     * between waits on the slow one. */
    int feeder_waits, lane_waits;
    int stop;     /* the task's thread gave up: discard what is queued */
    int finished; /* the lane ended (after ITEM_FINISH, a failure or a stop) */
    int full;     /* the sink wants no more of the timeline (atomic: read by the feeding thread) */
    imm_err result;
    imm_error error;
};

static imm_err handle(imm_lane *l, item *it)
{
    imm_err e = IMM_OK;
    AVAudioFifo *sink = imm_sink_fifo(l->sink);
    AVAudioFifo *fifo = l->xfade ? imm_crossfade_input(l->xfade) : sink;
    if (it->kind != ITEM_FINISH && imm_sink_full(l->sink))
        return IMM_OK; /* a chunk past its window: nothing more to convert */
    switch (it->kind) {
    case ITEM_FRAME: {
        int64_t skipped;
        e = imm_convert_push(l->convert, it->frame, it->offset, it->count,
                             imm_sink_unneeded(l->sink), &skipped, fifo, &l->error);
        imm_sink_pass(l->sink, skipped);
        if (!e && l->xfade)
            e = imm_crossfade_flow(l->xfade, sink, &l->error);
        break;
    }
    case ITEM_END_SOURCE:
        e = imm_convert_finish(l->convert, fifo, &l->error);
        if (!e && l->xfade)
            e = imm_crossfade_end_source(l->xfade, sink, &l->error);
        break;
    case ITEM_FINISH:
        if (l->xfade)
            e = imm_crossfade_finish(l->xfade, sink, &l->error);
        return e ? e : imm_sink_finish(l->sink, &l->error);
    }
    return e ? e : imm_sink_drain(l->sink, &l->error);
}

/* The lane's thread: converts and encodes what the feeder queued, until stopped. */
static void *encode_queued(void *opaque)
{
    imm_lane *l = opaque;
    for (;;) {
        pthread_mutex_lock(&l->lock);
        while (!l->count && !l->stop) {
            l->lane_waits = 1;
            pthread_cond_wait(&l->changed, &l->lock);
        }
        l->lane_waits = 0;
        if (l->stop) {
            pthread_mutex_unlock(&l->lock);
            break;
        }
        item it = l->queue[l->head];
        l->head = (l->head + 1) % QUEUE;
        l->count--;
        if (l->feeder_waits && l->count <= QUEUE / 2) {
            l->feeder_waits = 0;
            pthread_cond_broadcast(&l->changed);
        }
        pthread_mutex_unlock(&l->lock);
        imm_err e = handle(l, &it);
        av_frame_free(&it.frame);
        if (imm_sink_full(l->sink))
            __atomic_store_n(&l->full, 1, __ATOMIC_RELEASE);
        if (e || it.kind == ITEM_FINISH) {
            pthread_mutex_lock(&l->lock);
            l->result = e;
            l->finished = 1;
            pthread_cond_broadcast(&l->changed);
            pthread_mutex_unlock(&l->lock);
            return NULL;
        }
    }
    pthread_mutex_lock(&l->lock);
    l->finished = 1;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

imm_err imm_lane_start(const imm_target_plan *plan, imm_sink *sink, imm_convert *convert,
                       imm_lane **out, imm_error *err)
{
    imm_lane *l = calloc(1, sizeof(*l));
    if (!l)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    imm_err e = plan->xfade ? imm_crossfade_new(plan, &l->xfade, err) : IMM_OK;
    if (e) {
        free(l);
        return e;
    }
    l->sink = sink;
    l->convert = convert;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* imm_lane_wait_for's deadline */
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->changed, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&l->thread, NULL, encode_queued, l)) {
        imm_lane_free(l);
        return imm_error_set(err, IMM_EINTERNAL, "Cannot start an encoding thread.");
    }
    l->started = 1;
    *out = l;
    return IMM_OK;
}

/* Queues it, waiting for room; the lane's error if it has failed. */
static imm_err put(imm_lane *l, item it, imm_error *err)
{
    pthread_mutex_lock(&l->lock);
    while (l->count == QUEUE && !l->finished) {
        l->feeder_waits = 1;
        pthread_cond_wait(&l->changed, &l->lock);
    }
    if (l->finished) {
        imm_err e = l->result ? l->result : IMM_EINTERNAL;
        if (l->result)
            *err = l->error;
        else
            imm_error_set(err, IMM_EINTERNAL, "An encoding thread ended early.");
        pthread_mutex_unlock(&l->lock);
        av_frame_free(&it.frame);
        return e;
    }
    l->queue[(l->head + l->count) % QUEUE] = it;
    l->count++;
    if (l->lane_waits && (it.kind != ITEM_FRAME || l->count >= QUEUE / 2))
        pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    return IMM_OK;
}

imm_err imm_lane_push(imm_lane *l, const AVFrame *frame, int offset, int count, imm_error *err)
{
    AVFrame *ref = av_frame_clone(frame);
    if (!ref)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    return put(l, (item){ITEM_FRAME, ref, offset, count}, err);
}

imm_err imm_lane_end_source(imm_lane *l, imm_error *err)
{
    return put(l, (item){ITEM_END_SOURCE, NULL, 0, 0}, err);
}

imm_err imm_lane_finish(imm_lane *l, imm_error *err)
{
    return put(l, (item){ITEM_FINISH, NULL, 0, 0}, err);
}

int imm_lane_wants_input(const imm_lane *l)
{
    return !__atomic_load_n(&l->full, __ATOMIC_ACQUIRE);
}

imm_guard imm_guard_new(const volatile int *cancel, double timeout_seconds)
{
    imm_guard g = {cancel, 0, timeout_seconds};
    if (timeout_seconds > 0)
        g.deadline = imm_clock_seconds(IMM_CLOCK_MONOTONIC) + timeout_seconds;
    return g;
}

imm_err imm_guard_check(const imm_guard *g, imm_error *err)
{
    if (g->cancel && *g->cancel)
        return imm_error_set(err, IMM_ECANCELED, "The task was cancelled; nothing was written.");
    if (g->deadline > 0) {
        if (imm_clock_seconds(IMM_CLOCK_MONOTONIC) > g->deadline)
            return imm_error_set(err, IMM_ETIMEOUT, "The task ran longer than its time limit "
                                 "of %g s (--timeout); nothing was written.", g->timeout);
    }
    return IMM_OK;
}

imm_err imm_lanes_feed(imm_lane *const *lanes, int n, imm_source *src, const imm_guard *guard,
                       imm_err (*on_read)(void *opaque, const AVFrame *frame, int offset,
                                          int count, imm_error *err),
                       void *opaque, imm_error *err)
{
    AVFrame *frame;
    int offset, count, wanted = n;
    imm_err e = IMM_OK;
    while (wanted && !(e = imm_source_read(src, &frame, &offset, &count, err)) && frame) {
        if ((e = imm_guard_check(guard, err)))
            return e;
        wanted = 0;
        for (int i = 0; i < n; i++) {
            if (!imm_lane_wants_input(lanes[i]))
                continue;
            wanted++;
            if ((e = imm_lane_push(lanes[i], frame, offset, count, err)))
                return e;
        }
        if (on_read && (e = on_read(opaque, frame, offset, count, err)))
            return e;
    }
    if (e)
        return e;
    for (int i = 0; i < n; i++)
        if ((e = imm_lane_end_source(lanes[i], err)))
            return e;
    return IMM_OK;
}

imm_err imm_lane_wait(imm_lane *l, imm_error *err)
{
    pthread_mutex_lock(&l->lock);
    while (!l->finished)
        pthread_cond_wait(&l->changed, &l->lock);
    imm_err e = l->result;
    if (e)
        *err = l->error;
    pthread_mutex_unlock(&l->lock);
    return e;
}

int imm_lane_wait_for(imm_lane *l, double seconds)
{
    struct timespec until = imm_clock_after(IMM_CLOCK_MONOTONIC, seconds);
    pthread_mutex_lock(&l->lock);
    while (!l->finished && pthread_cond_timedwait(&l->changed, &l->lock, &until) == 0)
        ;
    int finished = l->finished;
    pthread_mutex_unlock(&l->lock);
    return finished;
}

void imm_lane_stop(imm_lane *l)
{
    if (!l || !l->started)
        return;
    pthread_mutex_lock(&l->lock);
    l->stop = 1;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
}

void imm_lane_free(imm_lane *l)
{
    if (!l)
        return;
    if (l->started) {
        imm_lane_stop(l);
        pthread_join(l->thread, NULL);
    }
    for (; l->count > 0; l->count--) {
        av_frame_free(&l->queue[l->head].frame);
        l->head = (l->head + 1) % QUEUE;
    }
    pthread_cond_destroy(&l->changed);
    pthread_mutex_destroy(&l->lock);
    imm_crossfade_free(l->xfade);
    free(l);
}
