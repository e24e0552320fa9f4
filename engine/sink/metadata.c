/*
 * metadata.c - what a target's muxer writes besides the audio: a chapter per merged source (the
 * Chapters extension) and the CoverFrom picture as an attached-picture stream.
 */
#include "engine/sink/sink.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Ogg and FLAC hold chapters as Vorbis comments (CHAPTER000=HH:MM:SS.mmm, CHAPTER000NAME=...),
 * which FFmpeg 5.1's muxers do not write from AVChapters: they go in as tags. */
static imm_err add_chapter_comment(AVFormatContext *mux, const imm_target_plan *p, int i,
                                   int64_t start, const char *title, imm_error *err)
{
    char key[32], when[32];
    int64_t ms = av_rescale(start, 1000, p->sample_rate);
    snprintf(key, sizeof(key), "CHAPTER%03d", i); /* numbered from 000, as the spec does */
    snprintf(when, sizeof(when), "%02d:%02d:%02d.%03d", (int)(ms / 3600000),
             (int)(ms / 60000 % 60), (int)(ms / 1000 % 60), (int)(ms % 1000));
    if (av_dict_set(&mux->metadata, key, when, 0) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    snprintf(key, sizeof(key), "CHAPTER%03dNAME", i);
    if (av_dict_set(&mux->metadata, key, title, 0) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    return IMM_OK;
}

/* Chapters: each source starts where the samples before it, converted to this target's rate
 * as the merge converts them (and stretched by Speed), end. */
imm_err imm_metadata_add_chapters(AVFormatContext *mux, const imm_target_plan *p, imm_error *err)
{
    const char *muxer = p->container->muxer;
    int comments = !strcmp(muxer, "ogg") || !strcmp(muxer, "opus") || !strcmp(muxer, "flac");
    int64_t at = 0;
    imm_err e;
    for (int i = 0; i < p->nchapters; i++) {
        const imm_chapter *c = &p->chapters[i];
        int64_t next = at + imm_timeline_length(c->length, p->sample_rate);
        if (comments) {
            if ((e = add_chapter_comment(mux, p, i, llround((double)at / p->speed), c->title, err)))
                return e;
            at = next - p->xfade;
            continue;
        }
        AVChapter *ch = av_mallocz(sizeof(*ch));
        int n = (int)mux->nb_chapters;
        if (!ch)
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        ch->id = i + 1;
        ch->time_base = (AVRational){1, p->sample_rate};
        ch->start = llround((double)at / p->speed);
        ch->end = llround((double)(i + 1 < p->nchapters ? next - p->xfade : next) / p->speed);
        if (av_dict_set(&ch->metadata, "title", c->title, 0) < 0 ||
            av_dynarray_add_nofree(&mux->chapters, &n, ch) < 0) {
            av_dict_free(&ch->metadata);
            av_free(ch);
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        }
        mux->nb_chapters = (unsigned)n;
        at = next - p->xfade; /* the next source begins as this one fades out */
    }
    return IMM_OK;
}

/* CoverFrom: a second stream holding the one picture. */
imm_err imm_metadata_add_cover(AVFormatContext *mux, const imm_target_plan *p, imm_error *err)
{
    AVStream *pic = avformat_new_stream(mux, NULL);
    if (!pic || avcodec_parameters_copy(pic->codecpar, p->cover->par) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    pic->disposition = AV_DISPOSITION_ATTACHED_PIC;
    pic->time_base = (AVRational){1, 90000};
    return IMM_OK;
}

/* CoverFrom's picture, right after the header: MP3 and FLAC write it before any audio. */
imm_err imm_metadata_write_cover(AVFormatContext *mux, const imm_target_plan *p, imm_error *err)
{
    AVPacket *pkt = av_packet_clone(p->cover->pkt);
    if (!pkt)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    pkt->stream_index = 1;
    pkt->pts = pkt->dts = 0;
    int ret = av_interleaved_write_frame(mux, pkt);
    av_packet_free(&pkt);
    if (ret < 0)
        return imm_error_set(err, IMM_EIO, "Cannot write the cover art of %s: %s", p->uri,
                             av_err2str(ret));
    return IMM_OK;
}
