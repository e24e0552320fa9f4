/*
 * preview.c - `immerge plan`'s answer: what a task would do, from the probes and the targets'
 * plans alone (see imm_task_preview in run.c, which makes them as imm_task_run would).
 *
 * Lengths are predicted the way the merge makes them: each source's clip taken from its counted
 * timeline as source.c takes it (imm_clip: by time, StartTime and Duration rounded to the nearest
 * sample of the run that holds them), converted to the target's rate run by run as round(samples
 * * out / in), their sum, then round(sum / Speed). A source's own length is exact when counted
 * (imm_source_count); otherwise it is the container's estimate, and the targets' predictions say
 * they are not exact.
 */
#include "engine/report/report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

/* A source's clip as source.c would take it from its timeline. */
typedef struct clip_plan {
    int known;       /* the clip's length is known (not: it runs to an unknown end) */
    int64_t start;   /* decoded samples before it */
    imm_timeline taken;
    int inside;      /* it ends before the source does */
} clip_plan;

static imm_err plan_clip(const imm_source_req *sr, const imm_preview_source *ps, clip_plan *out,
                         imm_error *err)
{
    const imm_timeline *whole = &ps->whole;
    int rate = ps->info->sample_rate;
    imm_err e = IMM_OK;
    if (!whole->n) { /* an unknown length: a Duration is taken as it would be at the first rate */
        out->start = llround(sr->start_time * rate);
        out->known = sr->duration > 0;
        return out->known ? imm_timeline_add(&out->taken, rate, llround(sr->duration * rate), err)
                          : IMM_OK;
    }
    imm_clip c;
    imm_clip_init(&c, sr->start_time, sr->duration);
    out->known = 1;
    for (int i = 0; i < whole->n && !e; i++) {
        int64_t at, n = imm_clip_take(&c, whole->runs[i].rate, whole->runs[i].samples, &at);
        if (!out->taken.n)
            out->start += n ? at : whole->runs[i].samples;
        e = imm_timeline_add(&out->taken, whole->runs[i].rate, n, err);
    }
    out->inside = out->start + imm_timeline_samples(&out->taken) < imm_timeline_samples(whole);
    return e;
}

static void add_source(cJSON *arr, const imm_source_req *sr, const imm_preview_source *ps,
                       const clip_plan *clip)
{
    cJSON *o = cJSON_CreateObject();
    const imm_source_info *in = ps->info;
    char layout[64] = "";
    cJSON_AddStringToObject(o, "URI", sr->uri);
    cJSON_AddItemToArray(arr, o);
    if (!in) {
        cJSON_AddBoolToObject(o, "DisableAudio", 1);
        return;
    }
    cJSON_AddStringToObject(o, "Format", in->format);
    cJSON_AddStringToObject(o, "Codec", in->codec);
    cJSON_AddNumberToObject(o, "StreamIndex", in->stream_index);
    if (in->nstreams > 1)
        cJSON_AddNumberToObject(o, "StreamsMixed", in->nstreams);
    cJSON_AddNumberToObject(o, "SampleRate", in->sample_rate);
    cJSON_AddNumberToObject(o, "Channel", in->channels);
    av_channel_layout_describe(&in->layout, layout, sizeof(layout));
    cJSON_AddStringToObject(o, "ChannelLayout", layout);
    cJSON_AddStringToObject(o, "SampleFormat", av_get_sample_fmt_name(in->sample_fmt));
    if (in->bit_rate > 0)
        cJSON_AddNumberToObject(o, "Bitrate", (double)in->bit_rate);
    if (ps->whole.n) {
        cJSON_AddNumberToObject(o, "Samples", (double)imm_timeline_samples(&ps->whole));
        cJSON_AddNumberToObject(o, "Duration", imm_timeline_seconds(&ps->whole));
        cJSON_AddStringToObject(o, "SamplesFrom", ps->samples_from);
    }
    if (ps->whole.n > 1) /* its rate changes mid-stream: each run of one rate */
        imm_timeline_json(o, &ps->whole);
    cJSON *c = cJSON_AddObjectToObject(o, "Clip");
    cJSON_AddNumberToObject(c, "StartSample", (double)clip->start);
    if (clip->known)
        cJSON_AddNumberToObject(c, "Samples", (double)imm_timeline_samples(&clip->taken));
}

/* {"Value": v, "From": from} */
static void add_value(cJSON *o, const char *name, double v, const char *from)
{
    cJSON *f = cJSON_AddObjectToObject(o, name);
    cJSON_AddNumberToObject(f, "Value", v);
    cJSON_AddStringToObject(f, "From", from);
}

static void add_target(cJSON *arr, const imm_request *req, const imm_target_plan *p, int chunks,
                       const imm_preview_source *sources, const clip_plan *clips)
{
    cJSON *o = cJSON_CreateObject();
    char layout[64] = "";
    cJSON_AddItemToArray(arr, o);
    cJSON_AddStringToObject(o, "URI", p->uri);
    cJSON_AddStringToObject(o, "Container", p->container->name);
    cJSON_AddStringToObject(o, "Codec", p->codec->name);
    cJSON_AddStringToObject(o, "Encoder", p->amrnb ? "libopencore_amrnb" : p->encoder->name);
    add_value(o, "SampleRate", p->sample_rate, p->rate_from);
    add_value(o, "Channel", p->layout.nb_channels, p->channels_from);
    av_channel_layout_describe(&p->layout, layout, sizeof(layout));
    cJSON_AddStringToObject(o, "ChannelLayout", layout);
    cJSON_AddStringToObject(o, "SampleFormat", av_get_sample_fmt_name(p->sample_fmt));
    if (p->bitrate)
        add_value(o, "Bitrate", (double)p->bitrate, p->bitrate_from);
    if (p->quality >= 0)
        cJSON_AddNumberToObject(o, "Quality", p->quality);
    if (p->bits_per_sample)
        cJSON_AddNumberToObject(o, "BitsPerSample", p->bits_per_sample);
    if (p->speed != 1.0)
        cJSON_AddNumberToObject(o, "Speed", p->speed);
    if (p->segment) {
        cJSON *seg = cJSON_AddObjectToObject(o, "Segment");
        cJSON_AddNumberToObject(seg, "Duration", p->segment_duration);
        cJSON_AddNumberToObject(seg, "StartNumber", p->segment_start);
    }
    cJSON_AddNumberToObject(o, "Chunks", chunks);
    int64_t total = 0;
    int exact = 1, merged = 0;
    for (int i = 0; i < req->nsources; i++) {
        const imm_preview_source *ps = &sources[i];
        if (!ps->info)
            continue;
        if (!clips[i].known)
            return; /* a source of unknown length: no prediction */
        total += imm_timeline_length(&clips[i].taken, p->sample_rate);
        if (merged++)
            total -= p->xfade; /* each join overlaps the sources by the crossfade */
        /* A clip that ends before a source of one rate does is exact whatever its length. */
        exact &= ps->exact || (req->sources[i].duration > 0 && clips[i].inside && ps->whole.n == 1);
    }
    if (p->speed != 1.0)
        total = llround((double)total / p->speed);
    exact &= !req->ext.trim; /* TrimSilence decides while it reads */
    cJSON_AddNumberToObject(o, "PredictedSamples", (double)total);
    cJSON_AddNumberToObject(o, "PredictedDuration", (double)total / p->sample_rate);
    cJSON_AddBoolToObject(o, "PredictionExact", exact);
}

char *imm_preview_json(const imm_request *req, const imm_preview_source *sources,
                       const imm_target_plan *const *plans, const int *chunks,
                       double input_seconds)
{
    cJSON *o = cJSON_CreateObject();
    clip_plan *clips = calloc((size_t)req->nsources, sizeof(*clips));
    char *json = NULL;
    int ok = o && clips;
    for (int i = 0; i < req->nsources && ok; i++)
        ok = !sources[i].info || !plan_clip(&req->sources[i], &sources[i], &clips[i], NULL);
    if (ok) {
        cJSON_AddStringToObject(o, "ProjectName", req->project);
        cJSON_AddNumberToObject(o, "AlignmentIndex", req->alignment_index);
        cJSON *srcs = cJSON_AddArrayToObject(o, "Sources");
        for (int i = 0; i < req->nsources; i++)
            add_source(srcs, &req->sources[i], &sources[i], &clips[i]);
        cJSON_AddNumberToObject(o, "InputSeconds", input_seconds);
        cJSON *targets = cJSON_AddArrayToObject(o, "Targets");
        for (int t = 0; t < req->ntargets; t++)
            add_target(targets, req, plans[t], chunks[t], sources, clips);
        json = cJSON_PrintUnformatted(o);
    }
    for (int i = 0; clips && i < req->nsources; i++)
        imm_timeline_clear(&clips[i].taken);
    free(clips);
    cJSON_Delete(o);
    return json;
}
