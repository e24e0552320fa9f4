/*
 * run.c - one CreateMediaConvertTask run: probe the sources, plan every target, then stream each
 * source once through every target's converter and encoder (each target on a thread of its own,
 * lane.c), and commit the outputs only when all of them are complete. What it learns goes into
 * the task's record (record.c).
 *
 * Sources are probed (opened) before any output is created, so a missing or unreadable source, or
 * a primary whose parameters a codec cannot take, fails the task before anything is written. Each
 * stays open until its turn to be decoded, which then goes on from where the probe stopped: no
 * byte of a source is fetched twice from remote storage, and the next source's first bytes are
 * already in when the previous one ends. An open source holds its demuxer's probe data and its
 * store's read window (a few hundred KiB), not its audio, so memory does not grow with the
 * sources' length. Past KEEP_OPEN sources (ImmergeExtensions.MaxSources allows up to 256), the
 * rest are closed after their probe and opened again in their turn.
 *
 * A long target whose codec allows it is encoded in chunks on several cores (chunk.c): the
 * chunks before the last are fed by threads that read the sources again from the start; this
 * thread feeds the last chunks, and so still reads every source whole.
 */
#include "engine/task/task.h"

#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#define KEEP_OPEN 16 /* sources held open between their probe and their turn */

/* Everything one run holds open; freed in one place whatever happened. */
typedef struct run {
    imm_task *task;
    const imm_run_options *opt;
    /* Each target's chunks (one unless chunk.c splits it): a sink and a converter each. Chunk
     * 0's sink muxes, the others spool. */
    int chunks[IMM_MAX_TARGETS];
    imm_sink *sinks[IMM_MAX_TARGETS][IMM_MAX_CHUNKS];
    imm_convert *converts[IMM_MAX_TARGETS][IMM_MAX_CHUNKS];
    /* The threads that convert and encode (see open_lanes), and who feeds each: -1 this thread,
     * i chunker i. */
    imm_lane *lanes[IMM_MAX_TARGETS * IMM_MAX_CHUNKS];
    int feeder[IMM_MAX_TARGETS * IMM_MAX_CHUNKS];
    int nlanes;
    imm_lane *fed[IMM_MAX_TARGETS * IMM_MAX_CHUNKS]; /* the lanes this thread feeds */
    int nfed;
    imm_chunker *chunkers[IMM_MAX_CHUNKS]; /* chunker i feeds the chunks i */
    imm_source *sources[IMM_MAX_SOURCES]; /* probed, waiting for their turn */
    AVDictionary *metadata; /* the primary source's tags */
    imm_guard guard;
    double total_seconds;  /* of input, estimated by the probe */
    double read_seconds;   /* of input, read so far by this thread */
    imm_timeline *taking;  /* what this thread has taken of the source being read */
    double planned;        /* samples all the sinks will encode, estimated */
    imm_join_meter meter;  /* the joins between the sources this thread reads */
    imm_prepass pre;       /* what Loudness, Chapters and TrimSilence learnt before the merge */
    imm_span spans[IMM_MAX_SOURCES]; /* the part of each source merged (TrimSilence) */
    imm_cover cover;       /* CoverFrom's picture */
    imm_chapter chapters[IMM_MAX_SOURCES];
    int nchapters;
    double started;        /* CLOCK_MONOTONIC seconds */
    double reported;       /* when progress was last reported */
} run;

static imm_err check_video(const imm_request *req, int i, const imm_source_info *in,
                           imm_error *err)
{
    const imm_source_req *sr = &req->sources[i];
    if (!in->has_video || sr->disable_video)
        return IMM_OK;
    for (int t = 0; t < req->ntargets; t++)
        if (imm_container_find(req->targets[t].container)->video && !req->targets[t].disable_video)
            return imm_error_set(err, IMM_EARG, "Sources[%d] (%s) has a video stream and "
                                 "Targets[%d] is %s, which would carry it: the service would "
                                 "make a video, immerge makes audio only. Set Sources[%d]."
                                 "DisableVideo to true for an audio-only %s, or use an audio "
                                 "container (mp3, aac, flac, oga, ac3, opus).", i, sr->uri, t,
                                 req->targets[t].container, i, req->targets[t].container);
    return IMM_OK;
}

/* Probes every source: it exists, it has audio, and how long it is. Keeps the primary's info and
 * the sources to merge open (the first KEEP_OPEN of them, or all with keep_all). */
static imm_err probe_sources(run *r, imm_source_info *primary, int keep_all, imm_error *err)
{
    const imm_request *req = r->task->req;
    const imm_target_req *t0 = &req->targets[0];
    for (int i = 0; i < req->nsources; i++) {
        const imm_source_req *sr = &req->sources[i];
        imm_source *src = NULL;
        int tags = req->ext.tags_from >= 0 ? i == req->ext.tags_from : i == req->alignment_index;
        if (sr->disable_audio && i != req->alignment_index && !tags && i != req->ext.cover_from)
            continue;
        imm_err e = imm_source_open(r->opt->storage, sr, &t0->select, &src, err);
        if (e)
            return e;
        const imm_source_info *in = imm_source_get_info(src);
        source_result *res = &r->task->sources[i];
        res->sample_rate = in->sample_rate;
        res->channels = in->channels;
        double left = in->duration - sr->start_time;
        res->duration = sr->duration > 0 && (sr->duration < left || left <= 0) ? sr->duration
                        : left > 0 ? left : 0;
        /* Container durations are estimates: refuse here only what is clearly past the end of a
         * length the header gives as a time; the exact judgement is made while decoding
         * (merge_source). */
        if (!sr->disable_audio && in->duration > 0 && imm_demuxer_gives_length(in->format) &&
            sr->start_time > in->duration * 1.05 + 1) {
            double length = in->duration;
            imm_source_close(src);
            return imm_error_set(err, IMM_EARG, "The parameter Sources[%d].StartTime %g s is "
                                 "past the end of %s (%.3f s): the clip is empty.", i,
                                 sr->start_time, sr->uri, length);
        }
        if ((e = check_video(req, i, in, err))) {
            imm_source_close(src);
            return e;
        }
        if (!sr->disable_audio)
            r->total_seconds += res->duration;
        if (i == req->alignment_index) {
            *primary = *in;
            memset(&primary->layout, 0, sizeof(primary->layout));
            av_channel_layout_copy(&primary->layout, &in->layout);
            primary->metadata = NULL;
        }
        if (tags)
            av_dict_copy(&r->metadata, in->metadata, 0);
        if (i == req->ext.cover_from && (e = imm_source_cover(src, &r->cover, err))) {
            imm_source_close(src);
            return e;
        }
        /* Sources wait open for their turn, up to KEEP_OPEN of them (file descriptors, demuxer
         * buffers); the rest of a long list (MaxSources) is opened again when its turn comes. */
        if (sr->disable_audio || (i >= KEEP_OPEN && !keep_all))
            imm_source_close(src);
        else
            r->sources[i] = src;
    }
    return IMM_OK;
}

/* One target's sinks, one per chunk, each given its chunk's window. */
static imm_err open_target(run *r, int t, imm_error *err)
{
    const imm_request *req = r->task->req;
    const imm_target_plan *plan = &r->task->targets[t].plan;
    const AVDictionary *md = req->targets[t].strip_metadata ? NULL : r->metadata;
    int n = r->chunks[t];
    imm_err e = imm_sink_open(r->opt->storage, plan, md, &r->sinks[t][0], err);
    for (int c = 1; c < n && !e; c++)
        e = imm_sink_open_spooled(plan, r->opt->temp_dir, &r->sinks[t][c], err);
    if (e)
        return e;
    int frame = imm_sink_frame_size(r->sinks[t][0]);
    double length = r->total_seconds / plan->speed * plan->sample_rate;
    if (n == 1)
        r->planned += length;
    for (int c = 0; c < n && n > 1; c++) {
        imm_chunk_window w = imm_chunk_window_of(plan, r->total_seconds, frame, c, n);
        imm_sink_set_window(r->sinks[t][c], &w);
        r->planned += (w.limit < length ? (double)w.limit : length) - (double)w.first;
    }
    return IMM_OK;
}

/* A lane for chunk c of target t, fed by `feeder`. */
static imm_err add_lane(run *r, int t, int c, int feeder, imm_error *err)
{
    if (!(r->converts[t][c] = imm_convert_new(&r->task->targets[t].plan)))
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    r->feeder[r->nlanes] = feeder;
    return imm_lane_start(&r->task->targets[t].plan, r->sinks[t][c], r->converts[t][c],
                          &r->lanes[r->nlanes++], err);
}

/* Every chunk of every target has a lane of its own, so the encoders spread over the cores and,
 * when one side of a seam finishes early, the other side's encoders still keep every core busy.
 * (Sharing one lane per chunk between targets saved a conversion but left a core idle at the end,
 * for a worse wall time.) The last chunks are fed by this thread, chunk i before them by chunker
 * i; a target in one piece goes with the first chunks when there are chunkers, so that the last
 * chunks are not held back by an encoder still at the start. */
static imm_err open_lanes(run *r, imm_error *err)
{
    int ntargets = r->task->req->ntargets, most = 1;
    imm_err e;
    for (int t = 0; t < ntargets; t++)
        most = r->chunks[t] > most ? r->chunks[t] : most;
    for (int t = 0; t < ntargets; t++)
        if (r->chunks[t] == 1 && (e = add_lane(r, t, 0, most > 1 ? 0 : -1, err)))
            return e;
    for (int t = 0; t < ntargets; t++)
        for (int c = 0, n = r->chunks[t]; c < n && n > 1; c++)
            if ((e = add_lane(r, t, c, c == n - 1 ? -1 : c, err)))
                return e;
    for (int i = 0; i + 1 < most; i++) {
        imm_lane *lanes[IMM_MAX_TARGETS * IMM_MAX_CHUNKS];
        int n = 0;
        for (int k = 0; k < r->nlanes; k++)
            if (r->feeder[k] == i)
                lanes[n++] = r->lanes[k];
        if ((e = imm_chunker_start(r->opt->storage, r->task->req, r->spans, lanes, n, &r->guard,
                                   &r->chunkers[i], err)))
            return e;
    }
    for (int k = 0; k < r->nlanes; k++)
        if (r->feeder[k] < 0)
            r->fed[r->nfed++] = r->lanes[k];
    return IMM_OK;
}

static imm_err too_long(const run *r, double seconds, imm_error *err)
{
    return imm_error_set(err, IMM_ELIMIT, "The sources last %.0f s in all; this installation "
                         "merges at most %g s (--max-duration).", seconds, r->opt->max_seconds);
}

/* What the containers say, against --max-duration: a 10-hour source fails before any work. */
static imm_err check_length(const run *r, imm_error *err)
{
    if (r->opt->max_seconds > 0 && r->total_seconds > r->opt->max_seconds)
        return too_long(r, r->total_seconds, err);
    return IMM_OK;
}

/* Each target's parameters, and how many chunks it is encoded in. */
static imm_err plan_targets(run *r, const imm_source_info *primary, imm_error *err)
{
    imm_task *task = r->task;
    const imm_request *req = task->req;
    imm_err e;
    for (int i = 0; i < req->ntargets; i++) {
        target_result *tr = &task->targets[i];
        task->ntargets = i + 1;
        if ((e = imm_plan_target(&req->targets[i], i, primary, &tr->plan, err)))
            return e;
        if (task->created_uris[i]) {
            char *uri = strdup(task->created_uris[i]);
            if (!uri)
                return imm_error_set(err, IMM_EINTERNAL, "out of memory");
            free(tr->plan.uri);
            tr->plan.uri = uri;
        }
        tr->plan.owner = r->opt->owner;
        tr->plan.fade_in = llround(req->ext.fade_in * tr->plan.sample_rate);
        tr->plan.fade_out = llround(req->ext.fade_out * tr->plan.sample_rate);
        tr->plan.fade_curve = req->ext.fade_curve;
        tr->plan.cover = r->cover.pkt ? &r->cover : NULL;
        tr->plan.xfade = llround(req->ext.crossfade * tr->plan.sample_rate);
        tr->plan.xfade_curve = req->ext.crossfade_curve;
        r->chunks[i] = imm_chunk_count(&tr->plan, r->total_seconds, r->opt->chunks);
        /* Only the last chunk sees the end: the fade-out (and the MP3 splice's reach before
         * it) must lie within it. */
        while (req->ext.fade_out > 0 && r->chunks[i] > 1 &&
               r->total_seconds / r->chunks[i] < req->ext.fade_out + 10)
            r->chunks[i]--;
        if (tr->plan.xfade) /* the chunks' windows are positions on a timeline it reshapes */
            r->chunks[i] = 1;
    }
    return IMM_OK;
}

/* Loudness and Chapters: a first pass over the sources sets each target's gain, and gives each
 * merged source a chapter in every target. */
static imm_err prepass(run *r, imm_error *err)
{
    imm_task *task = r->task;
    const imm_request *req = task->req;
    imm_target_plan *plans[IMM_MAX_TARGETS];
    if (!req->ext.loudness && !req->ext.chapters && !req->ext.trim)
        return IMM_OK;
    for (int t = 0; t < task->ntargets; t++)
        plans[t] = &task->targets[t].plan;
    imm_err e = imm_prepass_read(r->opt->storage, req, plans, task->ntargets, &r->guard, &r->pre,
                                err);
    for (int t = 0; t < task->ntargets && !e && req->ext.loudness; t++)
        task->targets[t].loudness = r->pre.loudness[t];
    for (int i = 0; i < req->nsources && !e && req->ext.trim; i++)
        r->spans[i] = r->pre.span[i];
    for (int i = 0; i < req->nsources && !e && req->ext.chapters; i++)
        if (!req->sources[i].disable_audio)
            r->chapters[r->nchapters++] = (imm_chapter){&r->pre.length[i], r->pre.title[i]};
    for (int t = 0; t < task->ntargets && !e; t++) {
        plans[t]->chapters = r->chapters;
        plans[t]->nchapters = r->nchapters;
    }
    return e;
}

static imm_err open_targets(run *r, imm_error *err)
{
    const imm_request *req = r->task->req;
    imm_err e;
    for (int i = 0; i < req->ntargets; i++)
        if ((e = open_target(r, i, err)))
            return e;
    return open_lanes(r, err);
}

/* Progress is what the encoders have done (with chunks, the input is read well ahead of them),
 * reported twice a second at most, and kept in the task's record as a percentage. */
static void report(run *r)
{
    double done = 0, now = imm_clock_seconds(IMM_CLOCK_MONOTONIC);
    if (r->planned <= 0 || now - r->reported < 0.5)
        return;
    r->reported = now;
    for (int t = 0; t < r->task->ntargets; t++)
        for (int c = 0; c < r->chunks[t]; c++)
            done += (double)imm_sink_encoded(r->sinks[t][c]);
    imm_progress p = {.fraction = done < r->planned ? done / r->planned : 1.0,
                      .input_seconds = r->total_seconds, .elapsed = now - r->started};
    if (p.fraction > 0.999) /* 100% is for a task that has succeeded */
        p.fraction = 0.999;
    r->task->progress = (int)(p.fraction * 100.0);
    if (r->opt->progress)
        r->opt->progress(r->opt->progress_opaque, &p);
}

/* Counts what this thread read against --max-duration, meters the join before this source, and
 * reports progress. */
static imm_err on_read(void *opaque, const AVFrame *frame, int offset, int count, imm_error *err)
{
    run *r = opaque;
    imm_err e = imm_timeline_add(r->taking, frame->sample_rate, count, err);
    if (e)
        return e;
    imm_join_meter_add(&r->meter, frame, offset, count);
    r->read_seconds += (double)count / frame->sample_rate;
    if (r->opt->max_seconds > 0 && r->read_seconds > r->opt->max_seconds)
        return too_long(r, r->read_seconds, err);
    report(r);
    return IMM_OK;
}

/* Streams one source through the lanes this thread feeds. */
static imm_err merge_source(run *r, int index, imm_error *err)
{
    const imm_request *req = r->task->req;
    imm_err e;
    if (!r->sources[index] &&
        (e = imm_source_open(r->opt->storage, &req->sources[index], &req->targets[0].select,
                             &r->sources[index], err)))
        return e;
    imm_source *src = r->sources[index];
    source_result *res = &r->task->sources[index];
    imm_source_narrow(src, &r->spans[index]);
    imm_join_meter_start(&r->meter);
    imm_timeline_clear(&res->taken);
    r->taking = &res->taken;
    e = imm_lanes_feed(r->fed, r->nfed, src, &r->guard, on_read, r, err);
    res->clip_start = imm_source_clip_start(src);
    memcpy(res->silence, r->pre.silence[index], sizeof(res->silence));
    imm_source_trimmed(src, &res->trimmed_start, &res->trimmed_end);
    res->merged = 1;
    if (imm_join_meter_measure(&r->meter, &res->join))
        res->joined = 1;
    /* A clip that selects nothing is a mistake in the request, not a reason to drop a source. */
    if (!e && imm_source_samples(src) == 0) {
        const imm_source_req *sr = &req->sources[index];
        if (sr->start_time > 0)
            e = imm_error_set(err, IMM_EARG, "The parameter Sources[%d].StartTime %g s is at or "
                              "past the end of %s, which decodes to %.3f s: the clip is empty.",
                              index, sr->start_time, sr->uri, imm_source_decoded_seconds(src));
        else if (sr->duration > 0)
            e = imm_error_set(err, IMM_EARG, "The parameter Sources[%d].Duration %g s selects no "
                              "whole sample of %s: the clip is empty.", index, sr->duration,
                              sr->uri);
        else
            e = imm_error_set(err, IMM_EMEDIA, "%s decodes to no audio at all.", sr->uri);
    }
    imm_source_close(src);
    r->sources[index] = NULL;
    return e;
}

/* Waits for every lane to end while the encoders finish (with chunks, the first chunk's are
 * still at work when this thread has read everything): progress goes on being reported, and a
 * cancel or the deadline stops the task within a quarter second. A chunker that failed leaves
 * its lanes waiting for input: its error ends the wait. */
static imm_err await_lanes(run *r, imm_error *err)
{
    imm_err e;
    for (int k = 0; k < r->nlanes;) {
        if ((e = imm_guard_check(&r->guard, err)))
            return e;
        for (int i = 0; i < IMM_MAX_CHUNKS && r->chunkers[i]; i++)
            if (imm_chunker_ended(r->chunkers[i]) && (e = imm_chunker_join(r->chunkers[i], err)))
                return e;
        if (imm_lane_wait_for(r->lanes[k], 0.25))
            k++;
        report(r);
    }
    return IMM_OK;
}

static imm_err finish_targets(run *r, imm_error *err)
{
    imm_task *task = r->task;
    imm_err e;
    /* Every output is complete before any becomes visible: a late failure leaves none behind.
     * The lanes finish side by side. */
    for (int i = 0; i < r->nfed; i++)
        if ((e = imm_lane_finish(r->fed[i], err)))
            return e;
    if ((e = await_lanes(r, err)))
        return e;
    for (int i = 0; i < IMM_MAX_CHUNKS && r->chunkers[i]; i++)
        if ((e = imm_chunker_join(r->chunkers[i], err)))
            return e;
    for (int k = 0; k < r->nlanes; k++)
        if ((e = imm_lane_wait(r->lanes[k], err)))
            return e;
    if ((e = imm_guard_check(&r->guard, err)))
        return e; /* stopped while the encoders finished: still nothing is visible */
    for (int t = 0; t < task->ntargets; t++) {
        target_result *tr = &task->targets[t];
        for (int c = 1; c < r->chunks[t]; c++) {
            int64_t seam;
            if ((e = imm_sink_join(r->sinks[t][0], r->sinks[t][c], &seam, err)))
                return e;
            if (seam >= 0)
                tr->seams[tr->nseams++] = seam;
        }
    }
    /* The figures are known before the fence, so that it can record them for a later run of
     * the task that finds the outputs committed (imm_task_committing_json). */
    for (int t = 0; t < task->ntargets; t++) {
        target_result *tr = &task->targets[t];
        if ((e = imm_sink_complete(r->sinks[t][0], err)))
            return e;
        tr->samples = imm_sink_samples(r->sinks[t][0]);
        tr->size = imm_sink_size(r->sinks[t][0]);
    }
    if (r->opt->may_commit && (e = r->opt->may_commit(r->opt->may_commit_opaque, err)))
        return e;
    for (int t = 0; t < task->ntargets; t++)
        if ((e = imm_sink_commit(r->sinks[t][0], err)))
            return e;
    return IMM_OK;
}

/* Frees what the run holds, whatever happened. */
static void release(run *r, imm_source_info *primary)
{
    /* Lanes stop before the chunkers that feed them are joined, and go before the sinks and
     * converters they use. */
    for (int k = 0; k < r->nlanes; k++)
        imm_lane_stop(r->lanes[k]);
    for (int i = 0; i < IMM_MAX_CHUNKS; i++)
        imm_chunker_free(r->chunkers[i]);
    for (int k = 0; k < r->nlanes; k++)
        imm_lane_free(r->lanes[k]);
    for (int t = 0; t < IMM_MAX_TARGETS; t++)
        for (int c = 0; c < IMM_MAX_CHUNKS; c++) {
            imm_sink_free(r->sinks[t][c]);
            imm_convert_free(r->converts[t][c]);
        }
    for (int i = 0; i < IMM_MAX_SOURCES; i++)
        imm_source_close(r->sources[i]);
    av_dict_free(&r->metadata);
    imm_cover_clear(&r->cover);
    imm_prepass_clear(&r->pre);
    av_channel_layout_uninit(&primary->layout);
}

imm_err imm_task_preview(const imm_request *req, const imm_run_options *opt, char **json,
                      imm_error *err)
{
    imm_task *task = imm_task_new(req);
    if (!task)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    run r = {.task = task, .opt = opt};
    imm_source_info primary = {0};
    imm_err e;
    *json = NULL;
    if (!(e = imm_request_check_storage(req, opt->storage, err)) &&
        !(e = probe_sources(&r, &primary, 1, err)) && !(e = check_length(&r, err)) &&
        !(e = plan_targets(&r, &primary, err))) {
        const imm_target_plan *plans[IMM_MAX_TARGETS];
        imm_preview_source ps[IMM_MAX_SOURCES] = {0};
        for (int t = 0; t < req->ntargets; t++)
            plans[t] = &task->targets[t].plan;
        for (int i = 0; i < req->nsources && !e; i++) {
            if (!r.sources[i])
                continue;
            ps[i].info = imm_source_get_info(r.sources[i]);
            e = imm_source_count(r.sources[i], &ps[i].whole, &ps[i].samples_from, &ps[i].exact,
                                 err);
            if (!e && !ps[i].whole.n && ps[i].info->duration > 0) {
                ps[i].samples_from = ps[i].info->duration_from;
                e = imm_timeline_add(&ps[i].whole, ps[i].info->sample_rate,
                                     llround(ps[i].info->duration * ps[i].info->sample_rate),
                                     err);
            }
        }
        if (!e && !(*json = imm_preview_json(req, ps, plans, r.chunks, r.total_seconds)))
            e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        for (int i = 0; i < req->nsources; i++)
            imm_timeline_clear(&ps[i].whole);
    }
    release(&r, &primary);
    imm_task_free(task);
    return e;
}

imm_err imm_task_run(imm_task *task, const imm_request *req, const imm_run_options *opt,
                     imm_error *err)
{
    run r = {.task = task, .opt = opt,
             .guard = imm_guard_new(opt->cancel, opt->timeout_seconds),
             .started = imm_clock_seconds(IMM_CLOCK_MONOTONIC)};
    imm_source_info primary = {0};
    imm_err e;
    task->req = req;
    for (int i = 0; i < IMM_MAX_SOURCES; i++)
        r.spans[i] = (imm_span){0, -1};
    if (!strcmp(task->status, "Queued")) {
        task->status = "Running";
        imm_now_rfc3339(task->start); /* it starts now, not when it was queued */
    }
    /* Where the task was created may not be where it runs (a shared queue): this store judges. */
    if (!(e = imm_request_check_storage(req, opt->storage, err)) &&
        !(e = probe_sources(&r, &primary, 0, err)) && !(e = check_length(&r, err)) &&
        !(e = plan_targets(&r, &primary, err)) && !(e = prepass(&r, err)) &&
        !(e = open_targets(&r, err))) {
        for (int i = 0; i < req->nsources && !e; i++)
            if (!req->sources[i].disable_audio)
                e = merge_source(&r, i, err);
        if (!e)
            e = finish_targets(&r, err);
    }
    release(&r, &primary);
    imm_now_rfc3339(task->end);
    if (e) {
        task->status = e == IMM_ECANCELED ? "Cancelled" : "Failed";
        task->error = *err;
    } else {
        task->status = "Succeeded";
        task->progress = 100;
        imm_progress p = {1.0, r.total_seconds, imm_clock_seconds(IMM_CLOCK_MONOTONIC) - r.started};
        if (opt->progress)
            opt->progress(opt->progress_opaque, &p);
    }
    return e;
}
