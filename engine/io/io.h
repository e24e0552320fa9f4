/*
 * io.h - the engine's I/O: FFmpeg reads the sources and writes the outputs through the operator's
 * imm_storage, and an output becomes visible only once committed.
 *
 *   storage_io.c  FFmpeg I/O over imm_storage
 */
#ifndef IMMERGE_ENGINE_IO_IO_H
#define IMMERGE_ENGINE_IO_IO_H

#include "engine/request/request.h"

#include <libavformat/avformat.h>

/* ---- storage_io.c ---- */
imm_err imm_io_open_input(imm_storage *st, const char *uri, AVFormatContext **out, imm_error *err);
/* A playlist segment that was missing or out of bounds, even where the demuxer went on without it:
 * a merge never silently drops part of a source. */
imm_err imm_io_input_check(AVFormatContext *fmt, imm_error *err);
/* Sets err for a failure while reading fmt: the storage's own reason (a playlist segment missing
 * or out of bounds) when there is one, else code with the printf-style message. */
imm_err imm_io_input_error(AVFormatContext *fmt, imm_err code, imm_error *err, const char *msg,
                           ...) __attribute__((format(printf, 4, 5)));
void imm_io_close_input(imm_storage *st, AVFormatContext **fmt);
imm_err imm_io_open_output(imm_storage *st, const char *uri, AVIOContext **pb, imm_error *err);
/* Flushes pb; *size gets the object's final size. Nothing is visible yet. */
imm_err imm_io_finish_output(imm_storage *st, AVIOContext *pb, int64_t *size, imm_error *err);
/* Makes the finished object appear at its URI: once for owner when it is not NULL (see
 * imm_storage_ops.commit_owned; *already, which may be NULL, is set when owner had committed it
 * and nothing was written), else replacing what is there. */
imm_err imm_io_commit_output(imm_storage *st, AVIOContext *pb, const char *owner, int *already,
                             imm_error *err);
/* From the output's byte at offset on, keeps a copy of what is written to pb, until pb is
 * closed: the MP4 muxer's moov, which it writes last (and patches as it goes). */
void imm_io_capture(AVIOContext *pb, int64_t offset);
/* What was kept since imm_io_capture, as far as it has been flushed (NULL when memory ran out). */
const uint8_t *imm_io_captured(AVIOContext *pb, size_t *len);
/* Frees pb; an uncommitted object is discarded. */
void imm_io_close_output(imm_storage *st, AVIOContext **pb);

#endif
