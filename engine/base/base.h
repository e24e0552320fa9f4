/*
 * base.h - what every stage of the engine may use, below the request: the errors' varargs form
 * and ids (error.c), beside the clocks and times that immerge.h makes public (clock.c).
 */
#ifndef IMMERGE_ENGINE_BASE_BASE_H
#define IMMERGE_ENGINE_BASE_BASE_H

#include "immerge.h"

#include <stdarg.h>

/* A fresh lower-case UUID (TaskId, EventId); buf holds at least 37 bytes. */
void imm_uuid_lower(char buf[37]);
imm_err imm_error_vset(imm_error *err, imm_err code, const char *fmt, va_list ap);

#endif
