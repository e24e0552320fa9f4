/*
 * version.c - `immerge --version`: immerge's own version, then each library it runs on, one line
 * a family, as `ffmpeg -version` and `curl --version` print theirs. The versions are the loaded
 * libraries' own answers, so that a report from a machine whose packages moved on says what ran.
 */
#include "cli/version.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <libavcodec/avcodec.h>
#include <libavfilter/avfilter.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libpq-fe.h>
#include <libswresample/swresample.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#ifndef IMMERGE_VERSION
#define IMMERGE_VERSION "unknown"
#endif

static void lib(FILE *out, const char *name, unsigned v)
{
    fprintf(out, " %s %u.%u.%u", name, AV_VERSION_MAJOR(v), AV_VERSION_MINOR(v),
            AV_VERSION_MICRO(v));
}

void imm_print_version(FILE *out)
{
    fprintf(out, "immerge %s\n", IMMERGE_VERSION);
    fprintf(out, "FFmpeg %s:", av_version_info());
    lib(out, "libavformat", avformat_version());
    lib(out, "libavcodec", avcodec_version());
    lib(out, "libavfilter", avfilter_version());
    lib(out, "libswresample", swresample_version());
    lib(out, "libavutil", avutil_version());
    const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
    fprintf(out, "\nlibcurl %s (%s)\n", curl->version, curl->ssl_version ? curl->ssl_version : "no TLS");
    int pq = PQlibVersion(); /* 150008 is 15.8 */
    fprintf(out, "SQLite %s, libpq %d.%d\n", sqlite3_libversion(), pq / 10000, pq % 10000);
    fprintf(out, "cJSON %s, %s\n", cJSON_Version(), OpenSSL_version(OPENSSL_VERSION));
}
