/*
 * chunk.c - one target encoded on several cores: its timeline is split into contiguous chunks,
 * each encoded by an encoder of its own, and the packet streams are joined into one muxer.
 *
 * A fresh encoder is not the encoder that would have reached the same sample: FFmpeg's AAC rate
 * control needs 15-20 s to settle, so a chunk's encoder is first fed PREROLL_SECONDS of the
 * samples before its chunk and the packets of that pre-roll are dropped. Chunk edges are whole
 * encoder frames from the timeline's start, so the kept packets of one chunk end exactly where the
 * next chunk's begin: "chunk A's packets starting before the seam, then chunk B's from it on".
 * Each chunk but the last is also fed LOOKAHEAD_FRAMES past its end, so its last kept packets are
 * encoded with the look-ahead they would have had, not with the silence of a flush.
 *
 * MP3 needs one more step where the streams meet: the splice (splice.c).
 *
 * Every chunk gets exactly the samples a single encoder would: each chunk before the last reads
 * the sources again from the start on a thread of its own (a chunker), through its own decoders,
 * converters and tempo, and drops what precedes its pre-roll. Decoding is a small part of the
 * cost (a tenth of the AAC encoder's), so reading twice is cheaper than any way of seeking that
 * would not be sample-exact. The task's own thread feeds the last chunks, which hold the end.
 */
#include "engine/task/task.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define PREROLL_SECONDS 20.0
#define MARGIN_FRAMES 32 /* before a seam: MP3's reservoir bytes lie in the frames there */
/* How far the seam may move to where an MP3 splice fits. The two encoders' reservoirs differ by
 * a few bytes either way, so it fits within a few frames; the longest search measured was 10. */
#define REACH_FRAMES 200
#define LOOKAHEAD_FRAMES 8 /* past the seam (or past the reach, for MP3) */
/* Below this much output per chunk, the pre-roll and the second read cost more than they save. */
#define MIN_CHUNK_SECONDS 60.0

struct imm_chunker {
    imm_storage *st;
    const imm_request *req;
    imm_lane *lanes[IMM_MAX_TARGETS * IMM_MAX_CHUNKS];
    int n;
    const imm_span *spans; /* each source's part (TrimSilence) */
    imm_guard guard;
    pthread_t thread;
    int started;
    int ended; /* atomic: the thread has returned (result is set) */
    imm_err result;
    imm_error error;
};

int imm_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set))
        return 1;
    return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
}

/* Codecs whose chunks join without a seam one can measure (tests/e2e/seams.sh). Opus and Vorbis
 * carry state from packet to packet in the decoder; the lossless and fast codecs gain nothing. */
static int joins_seamlessly(const imm_target_plan *plan)
{
    return imm_splice_is_lame(plan) || (plan->encoder && !strcmp(plan->encoder->name, "aac"));
}

int imm_chunk_count(const imm_target_plan *plan, double seconds, int chunks)
{
    if (chunks == 1 || !joins_seamlessly(plan))
        return 1;
    if (chunks >= 2)
        return chunks < IMM_MAX_CHUNKS ? chunks : IMM_MAX_CHUNKS;
    int n = imm_cores();
    n = n < IMM_MAX_CHUNKS ? n : IMM_MAX_CHUNKS;
    while (n > 1 && seconds / plan->speed < n * MIN_CHUNK_SECONDS)
        n--;
    return n;
}

/* Where each chunk begins (cuts[k], k = 1..n-1): every chunk encodes as much, its pre-roll
 * included. Reading the timeline costs a tenth of encoding it or less, and the threads that read
 * overlap the encoders: weighing it in made the bench's chunks finish further apart, not closer. */
static void cuts(double length, double preroll, int n, double *at)
{
    double share = (length + (n - 1) * preroll) / n;
    for (int k = 1; k < n; k++)
        at[k] = share + (k - 1) * (share - preroll);
}

/* Where chunk k (1..n-1) begins, in whole frames. */
static int64_t cut(int64_t length, int64_t preroll, int frame, int k, int n)
{
    double at[IMM_MAX_CHUNKS];
    cuts((double)length, (double)preroll, n, at);
    int64_t c = (int64_t)at[k] / frame * frame;
    return c > (int64_t)k * frame ? c : (int64_t)k * frame;
}

imm_chunk_window imm_chunk_window_of(const imm_target_plan *plan, double seconds, int frame_size,
                                     int i, int n)
{
    int64_t length = llrint(seconds / plan->speed * plan->sample_rate);
    int64_t preroll = (int64_t)ceil(PREROLL_SECONDS * plan->sample_rate / frame_size) * frame_size;
    int reach = imm_splice_is_lame(plan) ? REACH_FRAMES : 0;
    imm_chunk_window w = {0, INT64_MIN, INT64_MAX, INT64_MAX, (int64_t)MARGIN_FRAMES * frame_size,
                          (int64_t)reach * frame_size};
    if (i > 0) {
        w.keep_from = cut(length, preroll, frame_size, i, n);
        w.first = w.keep_from > preroll ? w.keep_from - preroll : 0;
    }
    if (i < n - 1) {
        w.keep_to = cut(length, preroll, frame_size, i + 1, n);
        w.limit = w.keep_to + (int64_t)(reach + LOOKAHEAD_FRAMES) * frame_size;
    }
    return w;
}

static int wanted(const imm_chunker *c)
{
    for (int i = 0; i < c->n; i++)
        if (imm_lane_wants_input(c->lanes[i]))
            return 1;
    return 0;
}

/* A chunk's thread: reads every source again from the start into the chunk's lanes. */
static void *feed_chunk_lanes(void *opaque)
{
    imm_chunker *c = opaque;
    const imm_request *req = c->req;
    imm_err e = IMM_OK;
    for (int i = 0; i < req->nsources && !e && wanted(c); i++) {
        imm_source *src = NULL;
        if (req->sources[i].disable_audio)
            continue;
        if (!(e = imm_source_open(c->st, &req->sources[i], &req->targets[0].select, &src,
                                  &c->error))) {
            imm_source_narrow(src, &c->spans[i]);
            e = imm_lanes_feed(c->lanes, c->n, src, &c->guard, NULL, NULL, &c->error);
        }
        imm_source_close(src);
    }
    for (int i = 0; i < c->n && !e; i++)
        e = imm_lane_finish(c->lanes[i], &c->error);
    c->result = e;
    __atomic_store_n(&c->ended, 1, __ATOMIC_RELEASE);
    return NULL;
}

int imm_chunker_ended(const imm_chunker *c)
{
    return __atomic_load_n(&c->ended, __ATOMIC_ACQUIRE);
}

imm_err imm_chunker_start(imm_storage *st, const imm_request *req, const imm_span *spans,
                          imm_lane *const *lanes, int n, const imm_guard *guard,
                          imm_chunker **out, imm_error *err)
{
    imm_chunker *c = calloc(1, sizeof(*c));
    if (!c)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    c->st = st;
    c->req = req;
    c->spans = spans;
    memcpy(c->lanes, lanes, (size_t)n * sizeof(*lanes));
    c->n = n;
    c->guard = *guard;
    if (pthread_create(&c->thread, NULL, feed_chunk_lanes, c)) {
        free(c);
        return imm_error_set(err, IMM_EINTERNAL, "Cannot start a decoding thread.");
    }
    c->started = 1;
    *out = c;
    return IMM_OK;
}

imm_err imm_chunker_join(imm_chunker *c, imm_error *err)
{
    if (c->started) {
        pthread_join(c->thread, NULL);
        c->started = 0;
    }
    if (c->result)
        *err = c->error;
    return c->result;
}

void imm_chunker_free(imm_chunker *c)
{
    if (!c)
        return;
    if (c->started)
        pthread_join(c->thread, NULL);
    free(c);
}
