/*
 * config.c - which store a run uses and how it reaches it, resolved the way Alibaba's own tools
 * resolve it: command line, then environment, then an ossutil-style config file.
 *
 * The config file is ossutil's INI: ossutil 1.x writes a [Credentials] section (endpoint,
 * accessKeyID, accessKeySecret, stsToken), ossutil 2.x a [default] profile (region, endpoint,
 * accessKeyId, accessKeySecret, securityToken...). Both are read; keys are case-insensitive.
 * Secrets are copied into the config only, never into a message.
 */
#include "oss/oss.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_PART_SIZE (8LL << 20)
#define MIN_PART_SIZE (100LL << 10) /* OSS's and S3-compatible stores' smallest non-last part */
#define MAX_PART_SIZE (5LL << 30)

typedef struct file_values {
    char *endpoint, *region, *id, *secret, *token;
} file_values;

static void file_values_clear(file_values *f)
{
    char *all[] = {f->endpoint, f->region, f->id, f->secret, f->token};
    for (size_t i = 0; i < sizeof(all) / sizeof(*all); i++) {
        if (all[i])
            memset(all[i], 0, strlen(all[i]));
        free(all[i]);
    }
    memset(f, 0, sizeof(*f));
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static void take(char **slot, const char *v)
{
    if (!*slot && v && *v)
        *slot = strdup(v);
}

/* Reads the [Credentials] or [default] section. A missing default file is not an error. */
static imm_err read_config_file(const char *path, int explicit, file_values *f, imm_error *err)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        if (!explicit && errno == ENOENT)
            return IMM_OK;
        return imm_error_set(err, IMM_EARG, "Cannot read the OSS config file %s: %s", path,
                             strerror(errno));
    }
    char line[4096];
    int in_section = 0;
    while (fgets(line, sizeof(line), fp)) {
        char *s = trim(line);
        if (*s == '#' || *s == ';' || !*s)
            continue;
        if (*s == '[') {
            in_section = !strcasecmp(s, "[Credentials]") || !strcasecmp(s, "[default]");
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in_section || !eq)
            continue;
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        if (!strcasecmp(k, "endpoint"))
            take(&f->endpoint, v);
        else if (!strcasecmp(k, "region"))
            take(&f->region, v);
        else if (!strcasecmp(k, "accessKeyID"))
            take(&f->id, v);
        else if (!strcasecmp(k, "accessKeySecret"))
            take(&f->secret, v);
        else if (!strcasecmp(k, "stsToken") || !strcasecmp(k, "securityToken") ||
                 !strcasecmp(k, "sessionToken"))
            take(&f->token, v);
    }
    memset(line, 0, sizeof(line));
    fclose(fp);
    return IMM_OK;
}

static const char *first_env(const char *a, const char *b)
{
    const char *v = getenv(a);
    if (v && *v)
        return v;
    v = b ? getenv(b) : NULL;
    return v && *v ? v : NULL;
}

static imm_err parse_number(const char *opt, const char *s, double lo, double hi, int suffixes,
                            double *out, imm_error *err)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (suffixes && (*end == 'K' || *end == 'k'))
        v *= 1024, end++;
    else if (suffixes && (*end == 'M' || *end == 'm'))
        v *= 1024 * 1024, end++;
    else if (suffixes && (*end == 'G' || *end == 'g'))
        v *= 1024.0 * 1024 * 1024, end++;
    if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi)
        return imm_error_set(err, IMM_EARG, "%s must be a number from %g to %g, not \"%s\".", opt,
                             lo, hi, s);
    *out = v;
    return IMM_OK;
}

static imm_err parse_choices(const imm_oss_options *o, imm_oss_config *c, imm_error *err)
{
    double v;
    imm_err e;
    if (o->signature) {
        if (!strcasecmp(o->signature, "v4"))
            c->signature = IMM_OSS_SIGN_V4;
        else if (!strcasecmp(o->signature, "v1"))
            c->signature = IMM_OSS_SIGN_V1;
        else if (!strcasecmp(o->signature, "s3v4"))
            c->signature = IMM_OSS_SIGN_S3V4;
        else
            return imm_error_set(err, IMM_EARG, "--oss-signature must be v4, v1 or s3v4.");
    }
    if (o->addressing) {
        if (!strcasecmp(o->addressing, "auto"))
            c->addressing = IMM_OSS_ADDR_AUTO;
        else if (!strcasecmp(o->addressing, "virtual"))
            c->addressing = IMM_OSS_ADDR_VIRTUAL;
        else if (!strcasecmp(o->addressing, "path"))
            c->addressing = IMM_OSS_ADDR_PATH;
        else
            return imm_error_set(err, IMM_EARG, "--oss-addressing must be auto, virtual or path.");
    }
    if (o->retries) {
        if ((e = parse_number("--oss-retries", o->retries, 0, 100, 0, &v, err)))
            return e;
        c->retries = (int)v;
    }
    if (o->retry_time &&
        (e = parse_number("--oss-retry-time", o->retry_time, 0, 86400, 0, &c->retry_seconds, err)))
        return e;
    if (o->timeout) {
        if ((e = parse_number("--oss-timeout", o->timeout, 1, 86400, 0, &v, err)))
            return e;
        c->stall_seconds = (long)v;
    }
    if (o->part_size) {
        if ((e = parse_number("--oss-part-size", o->part_size, MIN_PART_SIZE, MAX_PART_SIZE, 1,
                              &v, err)))
            return e;
        c->part_size = (long long)v;
    }
    return IMM_OK;
}

void imm_oss_env_credentials(const char **id, const char **secret, const char **token)
{
    /* The three parts come from one place, so a key id never meets another's secret. */
    if ((*id = first_env("OSS_ACCESS_KEY_ID", NULL))) {
        *secret = getenv("OSS_ACCESS_KEY_SECRET");
        *token = first_env("OSS_SESSION_TOKEN", NULL);
    } else if ((*id = first_env("ALIBABA_CLOUD_ACCESS_KEY_ID", NULL))) {
        *secret = getenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
        *token = first_env("ALIBABA_CLOUD_SECURITY_TOKEN", NULL);
    } else {
        *secret = *token = NULL;
    }
}

static imm_err open_remote(const imm_oss_options *o, const char *endpoint, file_values *f,
                           imm_storage **out, char describe[256], imm_error *err)
{
    static const char *const sig_names[] = {"OSS V4", "OSS V1", "AWS SigV4"};
    imm_oss_config c = {
        .retries = 4, .retry_seconds = 60, .stall_seconds = 30, .part_size = DEFAULT_PART_SIZE};
    imm_err e = parse_choices(o, &c, err);
    if (e)
        return e;
    c.endpoint = strdup(endpoint);
    take(&c.region, o->region);
    take(&c.region, first_env("OSS_REGION", NULL));
    take(&c.region, f->region);
    const char *id, *secret, *token;
    imm_oss_env_credentials(&id, &secret, &token);
    if (!id) {
        id = f->id;
        secret = f->secret;
        token = f->token;
    }
    take(&c.access_key_id, id);
    take(&c.access_key_secret, secret);
    take(&c.session_token, token);
    take(&c.temp_dir, o->temp_dir);
    c.local_paths = o->local_paths;
    if (!c.endpoint)
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
    else
        e = imm_oss_remote_new(&c, out, err);
    if (!e && describe)
        snprintf(describe, 256, "storage: %s, %s signatures, key id %s", c.endpoint,
                 sig_names[c.signature], c.access_key_id ? "set" : "none (anonymous)");
    imm_oss_config_clear(&c);
    return e;
}

static imm_err open_local(const imm_oss_options *o, const char *root, imm_storage **out,
                          char describe[256], imm_error *err)
{
    imm_err e = imm_oss_local_new(root, &o->local_paths, out, err);
    if (!e && describe)
        snprintf(describe, 256, "storage: local folder %s", root ? root : "(none; paths only)");
    return e;
}

imm_err imm_oss_open(const imm_oss_options *o, imm_storage **out, char describe[256],
                     imm_error *err)
{
    file_values f = {0};
    imm_err e;
    if (describe)
        describe[0] = '\0';
    if (o->root && o->endpoint)
        return imm_error_set(err, IMM_EARG, "Give --oss-root or --oss-endpoint, not both.");
    if (o->root)
        return open_local(o, o->root, out, describe, err);

    /* The file is read even when the endpoint comes from elsewhere: it may hold the keys. */
    char home_file[4096];
    const char *path = o->config_file, *home = getenv("HOME");
    if (!path && home && *home) {
        snprintf(home_file, sizeof(home_file), "%s/.ossutilconfig", home);
        path = home_file;
    }
    if (path && (e = read_config_file(path, o->config_file != NULL, &f, err)))
        return e;

    const char *env_root = first_env("IMMERGE_OSS_ROOT", NULL);
    const char *env_endpoint = first_env("OSS_ENDPOINT", NULL);
    if (o->endpoint)
        e = open_remote(o, o->endpoint, &f, out, describe, err);
    else if (env_root && env_endpoint)
        e = imm_error_set(err, IMM_EARG, "Both IMMERGE_OSS_ROOT and OSS_ENDPOINT are set: pass "
                          "--oss-root or --oss-endpoint to choose.");
    else if (env_root)
        e = open_local(o, env_root, out, describe, err);
    else if (env_endpoint || f.endpoint)
        e = open_remote(o, env_endpoint ? env_endpoint : f.endpoint, &f, out, describe, err);
    else
        e = open_local(o, NULL, out, describe, err);
    file_values_clear(&f);
    return e;
}
