/*
 * clock.c - the clocks every layer reads: one place that turns a timespec into seconds, and
 * seconds from now into the absolute deadline pthread's timed waits take.
 */
#include "engine/base/base.h"

#include <stdio.h>

static clockid_t clock_id(imm_clock clock)
{
    return clock == IMM_CLOCK_MONOTONIC ? CLOCK_MONOTONIC : CLOCK_REALTIME;
}

double imm_clock_seconds(imm_clock clock)
{
    struct timespec ts;
    clock_gettime(clock_id(clock), &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct timespec imm_clock_after(imm_clock clock, double seconds)
{
    struct timespec ts;
    clock_gettime(clock_id(clock), &ts);
    long long ns = ts.tv_nsec + (long long)(seconds * 1e9);
    ts.tv_sec += (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    return ts;
}

void imm_now_rfc3339(char buf[32])
{
    struct timespec ts = imm_clock_after(IMM_CLOCK_WALL, 0);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}
