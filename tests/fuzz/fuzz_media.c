/*
 * fuzz_media.c - libFuzzer target: any bytes as a source, through demux, decode, clip, resample
 * and encode (FLAC, 8 kHz mono: the cheapest encoder, so the time goes to the source's path). The
 * storage is in memory: oss://fuzz/in reads the input, every write is kept in memory and dropped.
 * The engine must fail cleanly or merge, never crash, leak or hang, whatever the bytes.
 */
#include "immerge.h"

#include <errno.h>
#include <libavutil/log.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mem_storage {
    imm_storage base;
    const uint8_t *data;
    size_t size;
} mem_storage;

struct imm_object {
    const uint8_t *data; /* readers */
    size_t size;
    int64_t pos;
    uint8_t *buf; /* writers */
    size_t len, cap;
};

static imm_err mem_open_read(imm_storage *st, const char *uri, imm_object **out, imm_error *err)
{
    mem_storage *m = (mem_storage *)st;
    if (strcmp(uri, "oss://fuzz/in"))
        return imm_error_set(err, IMM_ENOTFOUND, "The specified resource %s is not found.", uri);
    imm_object *o = calloc(1, sizeof(*o));
    if (!o)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    o->data = m->data;
    o->size = m->size;
    *out = o;
    return IMM_OK;
}

static imm_err mem_open_write(imm_storage *st, const char *uri, imm_object **out, imm_error *err)
{
    (void)st;
    (void)uri;
    if (!(*out = calloc(1, sizeof(**out))))
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    return IMM_OK;
}

static int64_t mem_read(imm_object *o, uint8_t *buf, size_t len)
{
    if (o->pos >= (int64_t)o->size)
        return 0;
    size_t n = o->size - (size_t)o->pos < len ? o->size - (size_t)o->pos : len;
    memcpy(buf, o->data + o->pos, n);
    o->pos += (int64_t)n;
    return (int64_t)n;
}

static int64_t mem_write(imm_object *o, const uint8_t *buf, size_t len)
{
    if ((size_t)o->pos + len > o->cap) {
        size_t cap = ((size_t)o->pos + len) * 2;
        uint8_t *p = realloc(o->buf, cap);
        if (!p) {
            errno = ENOMEM;
            return -1;
        }
        o->buf = p;
        o->cap = cap;
    }
    memcpy(o->buf + o->pos, buf, len);
    o->pos += (int64_t)len;
    if ((size_t)o->pos > o->len)
        o->len = (size_t)o->pos;
    return (int64_t)len;
}

static int64_t mem_seek(imm_object *o, int64_t offset, int whence)
{
    int64_t size = o->data ? (int64_t)o->size : (int64_t)o->len;
    if (whence == IMM_SEEK_SIZE)
        return size;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? o->pos : size;
    if (base + offset < 0 || (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END)) {
        errno = EINVAL;
        return -1;
    }
    return o->pos = base + offset;
}

static imm_err mem_commit(imm_object *o, imm_error *err)
{
    (void)o;
    (void)err;
    return IMM_OK;
}

static void mem_close(imm_object *o)
{
    if (o)
        free(o->buf);
    free(o);
}

static imm_err mem_remove(imm_storage *st, const char *uri, imm_error *err)
{
    (void)st;
    (void)uri;
    (void)err;
    return IMM_OK;
}

static void mem_free(imm_storage *st)
{
    (void)st;
}

static const imm_storage_ops mem_ops = {
    .open_read = mem_open_read, .open_write = mem_open_write, .read = mem_read,
    .write = mem_write, .seek = mem_seek, .commit = mem_commit, .close = mem_close,
    .remove = mem_remove, .free = mem_free,
};

static const char request[] =
    "{\"ProjectName\":\"fuzz\",\"Sources\":[{\"URI\":\"oss://fuzz/in\"}],"
    "\"Targets\":[{\"URI\":\"oss://fuzz/out.{autoext}\",\"Container\":\"flac\","
    "\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"flac\",\"SampleRate\":8000,\"Channel\":1}}}]}";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    av_log_set_level(AV_LOG_QUIET);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mem_storage st = {.base = {&mem_ops}, .data = data, .size = size};
    imm_request *req = NULL;
    imm_error err = {0};
    if (imm_request_parse(request, sizeof(request) - 1, &req, &err))
        abort(); /* the fixed request is valid */
    imm_task *task = imm_task_new(req);
    imm_run_options opt = {.storage = &st.base};
    imm_task_run(task, req, &opt, &err);
    imm_task_free(task);
    imm_request_free(req);
    return 0;
}
