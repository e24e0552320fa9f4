/*
 * error.c - the engine's error codes, their service names, and the service's error body.
 *
 * The service publishes InvalidArgument, LimitExceededError, ResourceNotFound, Forbidden and
 * InternalError; run-time codes are not published, so InvalidMedia, StorageError and TaskTimeout
 * are ours, named in the same family and listed in docs/request.md, "Errors".
 */
#include "engine/base/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <cjson/cJSON.h>

const char *imm_err_code(imm_err code)
{
    switch (code) {
    case IMM_OK:         return "OK";
    case IMM_EJSON:      return "InvalidJSON";
    case IMM_EARG:       return "InvalidArgument";
    case IMM_ELIMIT:     return "LimitExceededError";
    case IMM_ENOTFOUND:  return "ResourceNotFound";
    case IMM_EFORBIDDEN: return "Forbidden";
    case IMM_EMEDIA:     return "InvalidMedia";
    case IMM_EIO:        return "StorageError";
    case IMM_EINTERNAL:  return "InternalError";
    case IMM_ECANCELED:  return "Cancelled";
    case IMM_ETIMEOUT:   return "TaskTimeout";
    }
    return "InternalError";
}

int imm_err_is_request_error(imm_err code)
{
    return code == IMM_EJSON || code == IMM_EARG || code == IMM_ELIMIT;
}

imm_err imm_error_vset(imm_error *err, imm_err code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
    }
    return code;
}

imm_err imm_error_set(imm_error *err, imm_err code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    imm_error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

static void uuid_v4(char buf[37], int upper)
{
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    const char *fmt = upper
        ? "%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X"
        : "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x";
    snprintf(buf, 37, fmt, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
}

void imm_request_id_new(char buf[37])
{
    uuid_v4(buf, 1);
}

void imm_uuid_lower(char buf[37])
{
    uuid_v4(buf, 0);
}

char *imm_error_to_json(const imm_error *err, const char *request_id)
{
    char rid[37];
    if (!request_id) {
        imm_request_id_new(rid);
        request_id = rid;
    }
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "RequestId", request_id);
    cJSON_AddStringToObject(o, "HostId", "immerge.local");
    cJSON_AddStringToObject(o, "Code", imm_err_code(err->code));
    cJSON_AddStringToObject(o, "Message", err->message);
    cJSON_AddStringToObject(o, "Recommend", "See immerge's docs/request.md, \"Errors\"");
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}
