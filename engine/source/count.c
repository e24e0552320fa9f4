/*
 * count.c - how long a source is without decoding it, for `immerge plan`: its whole decoded
 * timeline (its runs of one rate, timeline.c) from PCM headers, else from its packets' durations
 * less the encoder delay and padding the container signals, FLAC's from each frame's own header.
 * Where packets cannot be counted because streams were joined end to end (a chained Ogg, MP3
 * files one after another), the source is decoded. Which containers' sums equal what FFmpeg
 * decodes was measured (tests/e2e/report.sh); elsewhere the count says it is an estimate.
 */
#include "engine/source/source.h"

#include <libavutil/intreadwrite.h>
#include <string.h>

/* What a demuxer's lengths can be trusted for:
 * - packets: its packet durations add up to what FFmpeg decodes, once the signalled delay and
 *   padding are taken off (measured: tests/e2e/report.sh). Elsewhere timestamps in milliseconds
 *   (Matroska, FLV), end padding FFmpeg does not trim (MP4) or a decoder's own delay (Opus, WMA)
 *   leave the sum off by up to a frame or two.
 * - header: its header gives the whole file's length as a time. Elsewhere the length is one
 *   part's (the first of MP3s joined end to end, by its Xing header), a guess from the bitrate,
 *   or samples at the first rate (a chained Ogg's last granule, a FLAC header) where the rate may
 *   change mid-stream. */
static const struct demuxer {
    const char *name;
    bool packets, header;
} demuxers[] = {
    {"mp3", true, false},      {"aac", true, false},   {"ac3", true, false},
    {"eac3", true, false},     {"mpegts", true, false}, {"mpeg", true, false},
    {"rm", true, false},       {"flac", true, false},   {"avi", true, true},
    {"mov,mp4,m4a,3gp,3g2,mj2", false, true},           {"matroska,webm", false, true},
    {"wav", false, true},      {"w64", false, true},    {"asf", false, true},
    {"aiff", false, true},
};

static const struct demuxer *demuxer(const char *name)
{
    for (size_t i = 0; i < sizeof(demuxers) / sizeof(*demuxers); i++)
        if (!strcmp(name, demuxers[i].name))
            return &demuxers[i];
    return NULL;
}

static int counts_exactly(const char *format)
{
    return demuxer(format) && demuxer(format)->packets;
}

bool imm_demuxer_gives_length(const char *format)
{
    return demuxer(format) && demuxer(format)->header;
}

/* Takes the delay and padding the container signalled off the last run. */
static void take_trim(imm_timeline *t, int64_t *trim)
{
    if (t->n)
        t->runs[t->n - 1].samples = FFMAX(0, t->runs[t->n - 1].samples - *trim);
    *trim = 0;
}

/* A FLAC frame's samples and rate, from its header (RFC 9639, 9.1): exact where the packet's
 * duration, rounded to the stream's time base of the first rate, is not. 0 if it is not one. */
static int flac_frame(const AVPacket *pkt, int stream_rate, int *rate)
{
    static const int rates[12] = {0, 88200, 176400, 192000, 8000, 16000, 22050, 24000, 32000,
                                  44100, 48000, 96000};
    const uint8_t *d = pkt->data;
    if (pkt->size < 6 || d[0] != 0xFF || (d[1] & 0xFE) != 0xF8)
        return 0;
    int size_code = d[2] >> 4, rate_code = d[2] & 15, i = 5;
    for (int lead = d[4]; lead & 0x80 && i < 11; lead <<= 1) /* the coded frame number */
        i += (lead & 0x40) != 0;
    if (i + 4 > pkt->size || size_code == 0 || rate_code == 15)
        return 0;
    int n = size_code == 1 ? 192 : size_code <= 5 ? 576 << (size_code - 2)
          : size_code == 6 ? d[i] + 1 : size_code == 7 ? AV_RB16(d + i) + 1
          : 256 << (size_code - 8);
    i += size_code == 6 ? 1 : size_code == 7 ? 2 : 0;
    *rate = rate_code == 0 ? stream_rate : rate_code < 12 ? rates[rate_code]
          : rate_code == 12 ? d[i] * 1000 : rate_code == 13 ? AV_RB16(d + i)
          : AV_RB16(d + i) * 10;
    return *rate > 0 ? n : 0;
}

/* The packet begins another stream joined on, whose packets the demuxer cannot count: a
 * timestamp going back (a new link of a chained Ogg, whose packets' durations the demuxer worked
 * out from the first link's headers), a rate that changes but in FLAC (whose frames are read
 * here; elsewhere the parser's rate lags a packet behind), or another MP3 file's ID3v2 tag or
 * Xing/Info/VBRI frame (MP3s joined end to end: the decoder then gives that file's encoder delay
 * and padding among the audio). */
static int joins_another(const AVPacket *pkt, const AVCodecParameters *par, int64_t last_pts,
                         int last_rate)
{
    if (pkt->pts != AV_NOPTS_VALUE && last_pts != AV_NOPTS_VALUE && pkt->pts < last_pts)
        return 1;
    if (par->codec_id == AV_CODEC_ID_FLAC)
        return 0;
    if (last_rate && par->sample_rate != last_rate)
        return 1;
    if (par->codec_id != AV_CODEC_ID_MP3 || pkt->size < 40)
        return 0;
    if (!memcmp(pkt->data, "ID3", 3))
        return 1;
    static const int at[] = {13, 21, 36}; /* after the side information: mono MPEG-2, ..., VBRI */
    for (size_t i = 0; i < sizeof(at) / sizeof(*at); i++)
        if (!memcmp(pkt->data + at[i], "Xing", 4) || !memcmp(pkt->data + at[i], "Info", 4) ||
            !memcmp(pkt->data + at[i], "VBRI", 4))
            return 1;
    return 0;
}

/* Sums the packets' durations into runs, each packet at the rate the demuxer's parser last gave
 * the stream (MP3 frames each carry theirs; FLAC frames are read here). Leaves `whole` empty when
 * a packet has no duration, and sets *joined where another stream was joined on. */
static imm_err count_packets(imm_source *src, imm_timeline *whole, int *joined, imm_error *err)
{
    const imm_source_info *in = imm_source_get_info(src);
    const AVStream *st = imm_source_demuxer(src)->streams[in->stream_index];
    int64_t last_pts = AV_NOPTS_VALUE, trim = 0;
    int last_rate = 0;
    AVPacket *pkt;
    imm_err e;
    *joined = 0;
    while (!(e = imm_source_next_packet(src, &pkt, err)) && pkt) {
        int rate = st->codecpar->sample_rate > 0 ? st->codecpar->sample_rate : in->sample_rate;
        int64_t n = st->codecpar->codec_id == AV_CODEC_ID_FLAC
                    ? flac_frame(pkt, in->sample_rate, &rate) : 0;
        if (!n && pkt->duration > 0)
            n = av_rescale_q(pkt->duration, st->time_base, (AVRational){1, rate});
        *joined = joins_another(pkt, st->codecpar, last_pts, last_rate);
        last_rate = st->codecpar->sample_rate;
        if (*joined || n <= 0) { /* a packet of unknown length: no exact count */
            imm_timeline_clear(whole);
            return IMM_OK;
        }
        last_pts = pkt->pts;
        if (whole->n && whole->runs[whole->n - 1].rate != rate)
            take_trim(whole, &trim);
        size_t size;
        const uint8_t *skip = av_packet_get_side_data(pkt, AV_PKT_DATA_SKIP_SAMPLES, &size);
        if (skip && size >= 8)
            trim += AV_RL32(skip) + AV_RL32(skip + 4);
        if ((e = imm_timeline_add(whole, rate, n, err)))
            return e;
    }
    take_trim(whole, &trim);
    return e;
}

/* Decodes the whole source (a fresh one: src's reading is spent) into `whole`. */
static imm_err count_decoded(const imm_source *src, imm_timeline *whole, imm_error *err)
{
    imm_source *d = NULL;
    AVFrame *f;
    int offset, count;
    imm_err e = imm_source_reopen_whole(src, &d, err);
    while (!e && !(e = imm_source_read(d, &f, &offset, &count, err)) && f)
        e = imm_timeline_add(whole, f->sample_rate, count, err);
    imm_source_close(d);
    return e;
}

imm_err imm_source_count(imm_source *src, imm_timeline *whole, const char **from, int *exact,
                         imm_error *err)
{
    const imm_source_info *in = imm_source_get_info(src);
    const AVFormatContext *fmt = imm_source_demuxer(src);
    const AVStream *st = fmt->streams[in->stream_index];
    enum AVCodecID id = st->codecpar->codec_id;
    int pcm = id >= AV_CODEC_ID_FIRST_AUDIO && id < AV_CODEC_ID_ADPCM_IMA_QT;
    int joined;
    imm_err e;
    *from = NULL;
    *exact = 0;
    /* A mix's length is its longest stream's. */
    if (in->nstreams > 1)
        return IMM_OK;
    /* PCM headers count samples exactly, at the one rate PCM has. */
    if (pcm && st->duration > 0 && st->duration != AV_NOPTS_VALUE &&
        fmt->duration_estimation_method != AVFMT_DURATION_FROM_BITRATE) {
        *from = "stream header";
        *exact = 1;
        return imm_timeline_add(whole, in->sample_rate,
                                av_rescale_q(st->duration, st->time_base,
                                             (AVRational){1, in->sample_rate}), err);
    }
    if ((e = count_packets(src, whole, &joined, err)))
        return e;
    if (joined) {
        *from = "decoding (streams joined end to end)";
        *exact = 1;
        return count_decoded(src, whole, err);
    }
    if (whole->n) {
        *exact = counts_exactly(in->format);
        *from = *exact ? "packets" : "packets (an estimate in this container)";
    }
    return IMM_OK;
}

