/* Unit tests of a source's length without decoding it (engine/source/count.c): each way it
 * counts (a PCM header, packets, decoding where MP3s were joined end to end, an estimate where
 * the container's sum is not exact) on files this test encodes with FFmpeg, each count checked
 * against the samples it encoded or against what decoding the same file gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/source/source.h"
#include "oss/oss.h"

#include <libavutil/opt.h>

static char dir[] = "/tmp/immerge-count-XXXXXX";

/* Writes n samples of a 440 Hz tone at rate, mono, with `codec` in `muxer`'s container; the
 * file's path goes to path. */
static void encode(const char *name, const char *muxer, const char *codec, int rate, int n,
                   char path[256])
{
    snprintf(path, 256, "%s/%s", dir, name);
    const AVCodec *enc = avcodec_find_encoder_by_name(codec);
    if (!enc)
        fail_msg("no %s encoder", codec);
    AVFormatContext *fmt = NULL;
    assert_true(avformat_alloc_output_context2(&fmt, NULL, muxer, path) >= 0);
    AVStream *st = avformat_new_stream(fmt, NULL);
    AVCodecContext *c = avcodec_alloc_context3(enc);
    c->sample_rate = rate;
    c->sample_fmt = enc->sample_fmts[0];
    av_channel_layout_default(&c->ch_layout, 1);
    c->bit_rate = enc->id == AV_CODEC_ID_PCM_S16LE || enc->id == AV_CODEC_ID_FLAC ? 0 : 64000;
    c->time_base = (AVRational){1, rate};
    if (fmt->oformat->flags & AVFMT_GLOBALHEADER)
        c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    assert_true(avcodec_open2(c, enc, NULL) >= 0);
    assert_true(avcodec_parameters_from_context(st->codecpar, c) >= 0);
    st->time_base = c->time_base;
    assert_true(avio_open(&fmt->pb, path, AVIO_FLAG_WRITE) >= 0);
    assert_true(avformat_write_header(fmt, NULL) >= 0);
    int frame_size = c->frame_size > 0 ? c->frame_size : 1024;
    AVFrame *f = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    for (int done = 0;;) {
        AVFrame *in = NULL;
        if (done < n) {
            f->nb_samples = n - done < frame_size ? n - done : frame_size;
            f->format = c->sample_fmt;
            f->sample_rate = rate;
            av_channel_layout_default(&f->ch_layout, 1);
            assert_true(av_frame_get_buffer(f, 0) >= 0);
            for (int i = 0; i < f->nb_samples; i++) {
                double v = 0.5 * sin(2 * M_PI * 440 * (done + i) / rate);
                if (c->sample_fmt == AV_SAMPLE_FMT_S16 || c->sample_fmt == AV_SAMPLE_FMT_S16P)
                    ((int16_t *)f->data[0])[i] = (int16_t)(v * 32767);
                else if (c->sample_fmt == AV_SAMPLE_FMT_S32 || c->sample_fmt == AV_SAMPLE_FMT_S32P)
                    ((int32_t *)f->data[0])[i] = (int32_t)(v * 2147483647.0);
                else
                    ((float *)f->data[0])[i] = (float)v;
            }
            f->pts = done;
            done += f->nb_samples;
            in = f;
        }
        assert_true(avcodec_send_frame(c, in) >= 0);
        if (in)
            av_frame_unref(f);
        while (avcodec_receive_packet(c, pkt) >= 0) {
            av_packet_rescale_ts(pkt, c->time_base, st->time_base);
            pkt->stream_index = st->index;
            assert_true(av_interleaved_write_frame(fmt, pkt) >= 0);
        }
        if (!in)
            break;
    }
    assert_true(av_write_trailer(fmt) >= 0);
    avio_closep(&fmt->pb);
    av_packet_free(&pkt);
    av_frame_free(&f);
    avcodec_free_context(&c);
    avformat_free_context(fmt);
}

static imm_source *open_source(imm_storage *st, const char *path)
{
    imm_source_req req = {.uri = (char *)path};
    imm_stream_select sel = {0};
    imm_source *src = NULL;
    imm_error err = {0};
    if (imm_source_open(st, &req, &sel, &src, &err))
        fail_msg("%s: %s", path, err.message);
    return src;
}

typedef struct counted {
    int64_t samples;
    int runs;
    const char *from;
    int exact;
    int64_t decoded; /* what decoding the whole file gives, through the reader a merge uses */
} counted;

/* The file counted, then opened again and decoded. */
static counted count(const char *path)
{
    imm_storage *st = NULL;
    imm_error err = {0};
    assert_int_equal(imm_oss_local_new(NULL, NULL, &st, &err), IMM_OK);
    imm_source *src = open_source(st, path);
    imm_timeline whole = {0};
    counted c = {0};
    assert_int_equal(imm_source_count(src, &whole, &c.from, &c.exact, &err), IMM_OK);
    c.samples = imm_timeline_samples(&whole);
    c.runs = whole.n;
    imm_timeline_clear(&whole);
    imm_source_close(src);
    src = open_source(st, path);
    AVFrame *f;
    int offset, n;
    while (!imm_source_read(src, &f, &offset, &n, &err) && f)
        c.decoded += n;
    assert_string_equal(err.message, "");
    imm_source_close(src);
    imm_storage_free(st);
    return c;
}

/* Counted `from` that way, exactly, as n samples at one rate: what decoding gives too. */
static void expect_exact(const char *path, const char *from, int64_t n)
{
    counted c = count(path);
    assert_string_equal(c.from, from);
    assert_true(c.exact);
    assert_int_equal(c.runs, 1);
    assert_int_equal(c.samples, n);
    assert_int_equal(c.decoded, n);
}

static void a_wav_header_counts_exactly(void **state)
{
    (void)state;
    char path[256];
    encode("tone.wav", "wav", "pcm_s16le", 44100, 12345, path);
    expect_exact(path, "stream header", 12345);
}

static void flac_frames_count_exactly(void **state)
{
    (void)state;
    char path[256];
    encode("tone.flac", "flac", "flac", 48000, 100003, path);
    expect_exact(path, "packets", 100003);
}

/* An MP3's packets, less the delay and padding its LAME header signals: what the decoder gives. */
static void mp3_packets_count_what_decoding_gives(void **state)
{
    (void)state;
    char path[256];
    encode("tone.mp3", "mp3", "libmp3lame", 44100, 44111, path);
    expect_exact(path, "packets", 44111);
}

/* Two MP3 files one after another: the second's LAME header is audio to the decoder, so the
 * packets cannot say; the source is decoded. */
static void mp3s_joined_end_to_end_are_decoded(void **state)
{
    (void)state;
    char a[256], b[256], joined[256];
    encode("a.mp3", "mp3", "libmp3lame", 44100, 30000, a);
    encode("b.mp3", "mp3", "libmp3lame", 44100, 20000, b);
    snprintf(joined, sizeof(joined), "%s/joined.mp3", dir);
    FILE *out = fopen(joined, "wb");
    assert_non_null(out);
    const char *parts[] = {a, b};
    for (int i = 0; i < 2; i++) {
        FILE *in = fopen(parts[i], "rb");
        assert_non_null(in);
        char buf[4096];
        size_t got;
        while ((got = fread(buf, 1, sizeof(buf), in)) > 0)
            assert_int_equal(fwrite(buf, 1, got, out), got);
        fclose(in);
    }
    fclose(out);
    counted c = count(joined);
    assert_string_equal(c.from, "decoding (streams joined end to end)");
    assert_true(c.exact);
    assert_int_equal(c.samples, c.decoded);
    assert_true(c.samples > 50000); /* the second file's header and delay are audio to it */
}

/* MP4 leaves the AAC encoder's end padding to the decoder's edit list: the packets' sum is only
 * an estimate, and said to be one. */
static void aac_in_mp4_is_an_estimate(void **state)
{
    (void)state;
    char path[256];
    encode("tone.m4a", "mp4", "aac", 44100, 44111, path);
    counted c = count(path);
    assert_string_equal(c.from, "packets (an estimate in this container)");
    assert_false(c.exact);
    assert_true(c.samples >= c.decoded - 2048 && c.samples <= c.decoded + 2048);
}

static void which_headers_give_the_whole_length(void **state)
{
    (void)state;
    assert_true(imm_demuxer_gives_length("wav"));
    assert_true(imm_demuxer_gives_length("mov,mp4,m4a,3gp,3g2,mj2"));
    assert_true(imm_demuxer_gives_length("matroska,webm"));
    assert_false(imm_demuxer_gives_length("mp3")); /* a Xing header: the first part's only */
    assert_false(imm_demuxer_gives_length("ogg"));
    assert_false(imm_demuxer_gives_length("no such demuxer"));
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    const char *names[] = {"tone.wav", "tone.flac", "tone.mp3", "a.mp3", "b.mp3",
                           "joined.mp3", "tone.m4a"};
    char path[300];
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    return rmdir(dir);
}

int main(void)
{
    av_log_set_level(AV_LOG_QUIET);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_wav_header_counts_exactly),
        cmocka_unit_test(flac_frames_count_exactly),
        cmocka_unit_test(mp3_packets_count_what_decoding_gives),
        cmocka_unit_test(mp3s_joined_end_to_end_are_decoded),
        cmocka_unit_test(aac_in_mp4_is_an_estimate),
        cmocka_unit_test(which_headers_give_the_whole_length),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
