/*
 * spool.c - encoded packets kept in a temporary file until they can be muxed.
 *
 * A chunk of a target encoded on another core (chunk.c) finishes while the chunks before it are
 * still being muxed; its packets wait here rather than in memory, so a long merge costs disk, not
 * RAM (a few MB per hour of compressed audio). Side data travels with each packet: the encoder's
 * last packet tells the muxer its end padding that way.
 */
#include "engine/sink/sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct imm_spool {
    FILE *f;
};

typedef struct record {
    int64_t pts, dts, duration;
    int32_t flags, size, side_data_elems;
} record;

typedef struct side_record {
    int32_t type, size;
} side_record;

int imm_temp_file(const char *dir)
{
    char path[4096];
    if (!dir || !*dir)
        dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
    snprintf(path, sizeof(path), "%s/immerge-XXXXXX", dir);
    if ((fd = mkostemp(path, O_CLOEXEC)) >= 0)
        unlink(path);
    return fd;
}

imm_err imm_spool_new(const char *temp_dir, imm_spool **out, imm_error *err)
{
    imm_spool *sp = calloc(1, sizeof(*sp));
    int fd = sp ? imm_temp_file(temp_dir) : -1;
    if (fd < 0 || !(sp->f = fdopen(fd, "w+b"))) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        free(sp);
        return imm_error_set(err, IMM_EIO, "Cannot create a temporary file in %s for encoded "
                             "audio: %s", temp_dir && *temp_dir ? temp_dir : "$TMPDIR",
                             strerror(saved));
    }
    *out = sp;
    return IMM_OK;
}

static imm_err write_failed(imm_error *err)
{
    return imm_error_set(err, IMM_EIO, "Cannot write encoded audio to a temporary file: %s",
                         strerror(errno));
}

imm_err imm_spool_put(imm_spool *sp, const AVPacket *pkt, imm_error *err)
{
    record r;
    memset(&r, 0, sizeof(r)); /* its padding goes to the file too */
    r = (record){pkt->pts, pkt->dts, pkt->duration, pkt->flags, pkt->size, pkt->side_data_elems};
    if (fwrite(&r, sizeof(r), 1, sp->f) != 1 ||
        fwrite(pkt->data, 1, (size_t)pkt->size, sp->f) != (size_t)pkt->size)
        return write_failed(err);
    for (int i = 0; i < pkt->side_data_elems; i++) {
        const AVPacketSideData *sd = &pkt->side_data[i];
        side_record s = {sd->type, (int32_t)sd->size};
        if (fwrite(&s, sizeof(s), 1, sp->f) != 1 || fwrite(sd->data, 1, sd->size, sp->f) != sd->size)
            return write_failed(err);
    }
    return IMM_OK;
}

imm_err imm_spool_rewind(imm_spool *sp, imm_error *err)
{
    if (fflush(sp->f) || fseek(sp->f, 0, SEEK_SET))
        return write_failed(err);
    return IMM_OK;
}

static imm_err read_failed(imm_spool *sp, imm_error *err)
{
    return imm_error_set(err, IMM_EIO, "Cannot read encoded audio back from a temporary file: %s",
                         ferror(sp->f) ? strerror(errno) : "it is shorter than was written");
}

imm_err imm_spool_get(imm_spool *sp, AVPacket *pkt, int *got, imm_error *err)
{
    record r;
    av_packet_unref(pkt);
    *got = 0;
    if (fread(&r, sizeof(r), 1, sp->f) != 1)
        return feof(sp->f) && !ferror(sp->f) ? IMM_OK : read_failed(sp, err);
    if (r.size < 0 || r.side_data_elems < 0 || av_new_packet(pkt, r.size) < 0)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    if (fread(pkt->data, 1, (size_t)r.size, sp->f) != (size_t)r.size)
        return read_failed(sp, err);
    pkt->pts = r.pts;
    pkt->dts = r.dts;
    pkt->duration = r.duration;
    pkt->flags = r.flags;
    for (int i = 0; i < r.side_data_elems; i++) {
        side_record s;
        uint8_t *data;
        if (fread(&s, sizeof(s), 1, sp->f) != 1 || s.size < 0)
            return read_failed(sp, err);
        if (!(data = av_packet_new_side_data(pkt, s.type, (size_t)s.size)))
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        if (fread(data, 1, (size_t)s.size, sp->f) != (size_t)s.size)
            return read_failed(sp, err);
    }
    *got = 1;
    return IMM_OK;
}

void imm_spool_free(imm_spool *sp)
{
    if (!sp)
        return;
    fclose(sp->f);
    free(sp);
}
