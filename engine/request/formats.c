/*
 * formats.c - what the service allows: its codecs and containers, which codec each container may
 * carry, the sample rates and channel counts each codec takes, and {autoext}.
 *
 * These tables are the single source of truth for validation (request.c) and for choosing FFmpeg
 * encoders and muxers (plan.c, sink.c).
 */
#include "engine/request/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const int service_rates[] = {8000, 11025, 12000, 16000, 22050, 24000, 32000,
                                    44100, 48000, 64000, 88200, 96000, 0};
static const int mp3_rates[] = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 0};
static const int opus_rates[] = {8000, 12000, 16000, 24000, 48000, 0};
static const int ac3_rates[] = {32000, 44100, 48000, 0};
static const int amr_rates[] = {8000, 16000, 0};

static const imm_codec_info codecs[] = {
    {"aac", {"aac", "libfdk_aac", NULL}, NULL, 8, 512000, false},
    {"mp3", {"libmp3lame", "libshine", NULL}, mp3_rates, 2, 320000, false},
    {"flac", {"flac", NULL, NULL}, NULL, 8, 0, true},
    {"vorbis", {"libvorbis", "vorbis", NULL}, NULL, 8, 500000, false},
    {"opus", {"libopus", "opus", NULL}, opus_rates, 8, 510000, false},
    {"ac3", {"ac3", "ac3_fixed", NULL}, ac3_rates, 6, 640000, false},
    {"amr", {"libopencore_amrnb", "libvo_amrwbenc", NULL}, amr_rates, 1, 23850, false},
};

static const imm_container_info containers[] = {
    {"mp3", "mp3", {"mp3"}, false},
    {"aac", "adts", {"aac"}, false},
    {"flac", "flac", {"flac"}, false},
    {"oga", "ogg", {"vorbis", "flac", "opus"}, false},
    {"ac3", "ac3", {"ac3"}, false},
    {"opus", "opus", {"opus"}, false},
    {"mp4", "mp4", {"aac", "mp3", "ac3", "opus", "flac"}, true},
    {"mkv", "matroska", {"aac", "mp3", "flac", "vorbis", "opus", "ac3"}, true},
    {"mov", "mov", {"aac", "mp3", "ac3", "amr"}, true}, /* FFmpeg writes FLAC only into MP4 */
    {"asf", "asf", {"mp3", "aac", "ac3"}, true},
    {"avi", "avi", {"mp3", "aac", "ac3"}, true},
    {"mxf", "mxf", {NULL}, true},
    {"ts", "mpegts", {"aac", "mp3", "ac3", "opus"}, true},
    {"flv", "flv", {"mp3", "aac"}, true},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const imm_codec_info *imm_codec_find(const char *name)
{
    for (size_t i = 0; i < COUNT(codecs); i++)
        if (!strcmp(codecs[i].name, name))
            return &codecs[i];
    return NULL;
}

const imm_container_info *imm_container_find(const char *name)
{
    for (size_t i = 0; i < COUNT(containers); i++)
        if (!strcmp(containers[i].name, name))
            return &containers[i];
    return NULL;
}

const imm_container_info *imm_container_by_extension(const char *ext)
{
    static const struct { const char *ext, *container; } aliases[] = {
        {"m4a", "mp4"}, {"ogg", "oga"}, {"mka", "mkv"}, {"wma", "asf"}, {"adts", "aac"},
    };
    for (size_t i = 0; i < COUNT(aliases); i++)
        if (!strcasecmp(aliases[i].ext, ext))
            return imm_container_find(aliases[i].container);
    for (size_t i = 0; i < COUNT(containers); i++)
        if (!strcasecmp(containers[i].name, ext))
            return &containers[i];
    return NULL;
}

bool imm_container_carries(const imm_container_info *c, const char *codec)
{
    for (size_t i = 0; i < COUNT(c->codecs) && c->codecs[i]; i++)
        if (!strcmp(c->codecs[i], codec))
            return true;
    return false;
}

static bool rate_in(const int *list, int rate)
{
    for (; *list; list++)
        if (*list == rate)
            return true;
    return false;
}

bool imm_service_sample_rate(int rate)
{
    return rate_in(service_rates, rate);
}

bool imm_codec_takes_rate(const imm_codec_info *c, int rate)
{
    return rate_in(c->sample_rates ? c->sample_rates : service_rates, rate);
}

/* The eight AMR-NB modes, in bit/s, in libopencore-amrnb's order. */
static const int amrnb_rates[] = {4750, 5150, 5900, 6700, 7400, 7950, 10200, 12200};

int imm_amrnb_mode(int64_t bitrate)
{
    int best = 0;
    for (int m = 0; m < (int)COUNT(amrnb_rates); m++)
        if (amrnb_rates[m] <= bitrate)
            best = m;
    return best;
}

int imm_amrnb_mode_rate(int64_t bitrate)
{
    return amrnb_rates[imm_amrnb_mode(bitrate)];
}

char *imm_target_uri(const imm_target_req *t)
{
    return strdup(t->resolved);
}
