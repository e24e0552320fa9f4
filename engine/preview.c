/*
 * preview.c - `immerge plan`'s answer: what a task would do, from the probes and the targets'
 * plans alone (see imm_task_plan in task.c, which makes them as imm_task_run would).
 *
 * Lengths are predicted the way the merge makes them: each source's clip in its own samples
 * (StartTime and Duration rounded to the nearest sample), each converted to the target's rate as
 * round(samples * out / in), their sum, then round(sum / Speed). A source's own length is exact
 * when counted (imm_source_count); otherwise it is the container's estimate, and the targets'
 * predictions say they are not exact.
 */
#include "media.h"

#include <cjson/cJSON.h>
#include <math.h>

/* The clip's samples, as source.c cuts them from a source of `total` (-1: unknown); -1 when the
 * clip runs to an unknown end. */
static int64_t clip_samples(const imm_source_req *sr, int rate, int64_t total, int64_t *start)
{
    int64_t end = sr->duration > 0 ? llround(sr->start_time * rate) + llround(sr->duration * rate)
                                   : total;
    *start = llround(sr->start_time * rate);
    if (total >= 0 && end > total)
        end = total;
    if (end < 0)
        return -1;
    return end > *start ? end - *start : 0;
}

static void add_source(cJSON *arr, const imm_source_req *sr, const imm_preview_source *ps)
{
    cJSON *o = cJSON_CreateObject();
    const imm_source_info *in = ps->info;
    char layout[64] = "";
    int64_t start, n;
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
    if (ps->samples >= 0) {
        cJSON_AddNumberToObject(o, "Samples", (double)ps->samples);
        cJSON_AddNumberToObject(o, "Duration", (double)ps->samples / in->sample_rate);
        cJSON_AddStringToObject(o, "SamplesFrom", ps->samples_from);
    }
    cJSON *clip = cJSON_AddObjectToObject(o, "Clip");
    n = clip_samples(sr, in->sample_rate, ps->samples, &start);
    cJSON_AddNumberToObject(clip, "StartSample", (double)start);
    if (n >= 0)
        cJSON_AddNumberToObject(clip, "Samples", (double)n);
}

/* {"Value": v, "From": from} */
static void add_value(cJSON *o, const char *name, double v, const char *from)
{
    cJSON *f = cJSON_AddObjectToObject(o, name);
    cJSON_AddNumberToObject(f, "Value", v);
    cJSON_AddStringToObject(f, "From", from);
}

static void add_target(cJSON *arr, const imm_request *req, const imm_target_plan *p, int chunks,
                       const imm_preview_source *sources)
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
        int64_t start, n;
        const imm_preview_source *ps = &sources[i];
        if (!ps->info)
            continue;
        if ((n = clip_samples(&req->sources[i], ps->info->sample_rate, ps->samples, &start)) < 0)
            return; /* a source of unknown length: no prediction */
        total += av_rescale_rnd(n, p->sample_rate, ps->info->sample_rate, AV_ROUND_NEAR_INF);
        if (merged++)
            total -= p->xfade; /* each join overlaps the sources by the crossfade */
        /* A clip that ends before the source does is exact whatever the source's length. */
        exact &= ps->exact || (req->sources[i].duration > 0 && ps->samples > start + n);
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
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "ProjectName", req->project);
    cJSON_AddNumberToObject(o, "AlignmentIndex", req->alignment_index);
    cJSON *srcs = cJSON_AddArrayToObject(o, "Sources");
    for (int i = 0; i < req->nsources; i++)
        add_source(srcs, &req->sources[i], &sources[i]);
    cJSON_AddNumberToObject(o, "InputSeconds", input_seconds);
    cJSON *targets = cJSON_AddArrayToObject(o, "Targets");
    for (int t = 0; t < req->ntargets; t++)
        add_target(targets, req, plans[t], chunks[t], sources);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return json;
}
