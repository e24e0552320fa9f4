/*
 * request.h - the request as every later stage reads it (callers of immerge.h never see it):
 * the validated model, its TargetURI templates, and the service's codec and container tables.
 *
 *   request.c     parse and validate the request JSON: its Sources, Notification, the checks
 *                 across fields
 *   fields.c      the JSON read field by field, each refusal naming the field
 *   target.c      one of its Targets
 *   extensions.c  ImmergeExtensions
 *   template.c    TargetURI templates ({autoext}, name parts, tags, times)
 *   uri.c         oss:// and local URIs
 *   formats.c     the codecs and containers the service allows, AMR-NB's modes
 */
#ifndef IMMERGE_ENGINE_REQUEST_REQUEST_H
#define IMMERGE_ENGINE_REQUEST_REQUEST_H

#include "engine/base/base.h"

#include <stdarg.h>
#include <stdbool.h>

#define IMM_SERVICE_MAX_SOURCES 11 /* the service's limit, and ours unless MaxSources raises it */
#define IMM_MAX_SOURCES 256        /* ImmergeExtensions.MaxSources' ceiling */
#define IMM_MAX_TARGETS 16
#define IMM_MAX_STREAM_SELECT 16

typedef struct imm_source_req {
    char *uri;
    double start_time; /* seconds into the source */
    double duration;   /* seconds; 0 = to the end */
    bool disable_audio;
    bool disable_video; /* the user accepts an output without this source's video */
    bool attached;      /* Attached: as parsed, refused by the request check */
} imm_source_req;

/* Audio.Stream and FilterAudio.Mixing: which of a source's audio streams a merge takes. */
typedef struct imm_stream_select {
    int index[IMM_MAX_STREAM_SELECT]; /* counted among audio streams; > 100 = all of them */
    int n;                            /* 0 = the first audio stream */
    bool mixing;                      /* mix every selected stream into one */
} imm_stream_select;

typedef enum imm_option { IMM_OPT_FIXED, IMM_OPT_ADAPTIVE, IMM_OPT_FALL } imm_option;

typedef struct imm_target_req {
    char *uri;        /* as written: a TargetURI template */
    char *resolved;   /* the template resolved (template.c) when the request was parsed */
    char *container;  /* lower-case, validated */
    char *codec;      /* lower-case, validated, never "copy" */
    int64_t bitrate;  /* 0 = from the primary source */
    imm_option bitrate_option;
    int quality;      /* 0..100 (VBR), -1 = not set; never set together with bitrate */
    int sample_rate;  /* 0 = from the primary source */
    imm_option sample_rate_option;
    int channels;     /* 0 = from the primary source */
    int bits_per_sample; /* 0 = from the primary source (FLAC) */
    imm_stream_select select;
    bool strip_metadata;
    bool disable_video; /* Video.DisableVideo: the user asks for no video stream */
    double speed;     /* 0.5..1.0 */
    bool segment;     /* Segment: an HLS playlist and its segments */
    double segment_duration; /* seconds */
    int segment_start;       /* the first segment's number */
} imm_target_req;

/* The target's URI as resolved when the request was parsed (a copy of t->resolved); malloc'd, NULL
 * when out of memory. */
char *imm_target_uri(const imm_target_req *t);

typedef enum imm_curve { IMM_CURVE_LINEAR, IMM_CURVE_SINE } imm_curve;

/* ImmergeExtensions: immerge's own additions, under a key the service never sends; each is off
 * unless asked (docs/extensions.md). */
typedef struct imm_extensions {
    double fade_in, fade_out; /* seconds of the output; 0: none */
    imm_curve fade_curve;
    bool loudness;            /* normalise the whole merge to loudness_target (two passes) */
    double loudness_target;   /* LUFS */
    double max_peak;          /* dBFS: the gain never lifts the sample peak above it */
    bool chapters;            /* a chapter per source in every target */
    bool trim;                /* TrimSilence: drop each source's silent edges */
    double trim_threshold;    /* dBFS: quieter samples are silence */
    double trim_keep;         /* seconds of silence kept at each trimmed edge */
    int tags_from;            /* the source whose tags the outputs carry; -1: AlignmentIndex's */
    int max_sources;          /* how many Sources the request may list (11, the service's) */
    int cover_from;           /* the source whose attached picture the outputs carry; -1: none */
    double crossfade;         /* seconds each join overlaps; 0: none */
    imm_curve crossfade_curve;
} imm_extensions;

struct imm_request {
    char *project;
    imm_extensions ext;
    imm_source_req sources[IMM_MAX_SOURCES];
    int nsources;
    int alignment_index;
    imm_target_req targets[IMM_MAX_TARGETS];
    int ntargets;
    char *user_data;
    char *notify_topic;        /* Notification.MNS.TopicName (or legacy NotifyTopicName) */
    const char *notify_topic_field;
    char *notify_extended_uri; /* Notification.ExtendedMessageURI */
    bool notify_rocketmq;      /* Notification.RocketMQ was given */
    char *notify_endpoint;     /* Notification.MNS.Endpoint (or legacy NotifyEndpoint) */
    const char *notify_endpoint_field; /* which of the two named it */
    char *raw;        /* the request as given, for TaskRequestDefinition */
    void *tags;       /* cJSON object or NULL */
    int64_t created;  /* when it was parsed (Unix seconds): the templates' t_year.. t_sec */
};

/* Targets[target].URI, a TargetURI template, resolved for the request (template.c): {autoext} (or
 * a missing extension) by the container's, the primary source's name parts, the Tags, the time
 * `created` (Unix seconds, UTC). malloc'd; NULL with err set for what cannot be resolved. */
char *imm_target_uri_resolve(const imm_request *req, int target, int64_t created,
                             imm_error *err);

/* ---- fields.c: the request's JSON read field by field ---- */
struct cJSON;
typedef struct imm_fields {
    imm_error *err;
    char path[160]; /* the field being judged, for messages */
    int nsources;   /* of the request, once its Sources are read */
} imm_fields;

/* Refuses the field at c->path: "The parameter PATH WHY." */
imm_err imm_field_bad(imm_fields *c, const char *why);
/* Sets c->path, the field the next refusal names. */
__attribute__((format(printf, 2, 3))) void imm_field_at(imm_fields *c, const char *fmt, ...);
imm_err imm_field_uri(imm_fields *c, const char *uri);
/* Every key of obj (the object at c->path) is one of `keys` (NULL-terminated), or the request is
 * refused naming the key and `what` it is not. */
imm_err imm_field_keys(imm_fields *c, const struct cJSON *obj, const char *const *keys,
                       const char *what);
/* obj's member `name`, of the type each names; absent (or null) leaves *out as it was. */
imm_err imm_field_string(imm_fields *c, const struct cJSON *obj, const char *name, char **out);
imm_err imm_field_number(imm_fields *c, const struct cJSON *obj, const char *name, double *out);
imm_err imm_field_int(imm_fields *c, const struct cJSON *obj, const char *name, int64_t lo,
                      int64_t hi, int64_t *out);
imm_err imm_field_bool(imm_fields *c, const struct cJSON *obj, const char *name, bool *out);
imm_err imm_field_object(imm_fields *c, const struct cJSON *obj, const char *name,
                         const struct cJSON **out);
imm_err imm_field_array(imm_fields *c, const struct cJSON *root, const char *name,
                        const struct cJSON **out, int *n);
/* A *Option field: fixed, adaptive or fall, in any case. */
imm_err imm_field_option(imm_fields *c, const struct cJSON *obj, const char *name,
                         imm_option *out);
imm_err imm_field_curve(imm_fields *c, const struct cJSON *obj, const char *name, imm_curve *out);
/* A field that asks for video work (or a stream immerge does not write), refused by name when it
 * asks for anything; `off` (may be NULL) names its own switch ({"DisableVideo": true}). */
imm_err imm_field_refuse_video(imm_fields *c, const struct cJSON *obj, const char *name,
                               const char *off, const char *what);
void imm_field_lower(char *s);

/* ---- target.c ---- */
imm_err imm_parse_target(imm_fields *c, const struct cJSON *tj, int i, imm_target_req *t);

/* ---- extensions.c ---- */
/* ImmergeExtensions.MaxSources, read before the Sources it admits. */
imm_err imm_parse_max_sources(imm_fields *c, const struct cJSON *root, imm_request *req);
/* The rest of ImmergeExtensions, once the Sources and Targets are read. */
imm_err imm_parse_extensions(imm_fields *c, const struct cJSON *root, imm_request *req);

/* ---- codec and container tables (formats.c) ---- */
typedef struct imm_codec_info {
    const char *name;          /* request name: "aac" */
    const char *encoders[3];   /* FFmpeg encoders to try, in order */
    const int *sample_rates;   /* allowed rates, 0-terminated; NULL = any of the service's */
    int max_channels;
    int64_t max_bitrate;       /* per stream; 0 = no bitrate (lossless) */
    bool lossless;
} imm_codec_info;

typedef struct imm_container_info {
    const char *name;          /* request name and {autoext} extension: "aac" */
    const char *muxer;         /* FFmpeg muxer: "adts" */
    const char *codecs[8];     /* request codec names it carries */
    bool video;                /* an audio+video container: the service would put video in it */
} imm_container_info;

const imm_codec_info *imm_codec_find(const char *name);
const imm_container_info *imm_container_find(const char *name);
const imm_container_info *imm_container_by_extension(const char *ext);
bool imm_container_carries(const imm_container_info *c, const char *codec);
bool imm_codec_takes_rate(const imm_codec_info *c, int rate);
bool imm_service_sample_rate(int rate);
/* The AMR-NB mode for a requested bitrate: the highest at or below it (4750 bit/s at least), as
 * libopencore-amrnb numbers them (enum Mode, 0..7), and that mode's bit/s. */
int imm_amrnb_mode(int64_t bitrate);
int imm_amrnb_mode_rate(int64_t bitrate);


#endif
