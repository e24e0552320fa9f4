/*
 * oss.h - storage implementations behind immerge.h's imm_storage interface.
 *
 * The local store is the embedded default: oss://bucket/key is the file ROOT/bucket/key, and
 * file:// URIs and plain paths are local files. A key can never resolve outside ROOT/bucket, not
 * even through a symbolic link inside the root.
 *
 * The remote store speaks to Alibaba Cloud OSS (OSS V4 or V1 signatures) or to any S3-compatible
 * server (AWS SigV4) over HTTP(S): sources are read with ranged GETs, targets are uploaded from a
 * temporary local file only on commit. file:// URIs and plain paths stay local files.
 */
#ifndef IMMERGE_OSS_OSS_H
#define IMMERGE_OSS_OSS_H

#include "immerge.h"

/* Which local files (file:// URIs and plain paths) a store opens. `run` opens any: its request is
 * the operator's own. `serve` opens none, or only those beneath the folders its operator listed
 * (--allow-local-paths DIR), as absolute paths: a caller's request must not reach the server's
 * file system. The refusal is judged from the URI alone (see imm_storage_ops.admits), so that its
 * answer cannot tell whether a file exists. */
typedef struct imm_local_paths {
    int restricted;
    const char *const *dirs; /* restricted: the folders allowed, ndirs of them */
    size_t ndirs;
} imm_local_paths;

/* root may be NULL: then only local paths work and oss:// URIs are refused with a clear error.
 * paths may be NULL: any local path. */
imm_err imm_oss_local_new(const char *root, const imm_local_paths *paths, imm_storage **out,
                          imm_error *err);

typedef enum imm_oss_signature {
    IMM_OSS_SIGN_V4,   /* OSS4-HMAC-SHA256, the default */
    IMM_OSS_SIGN_V1,   /* OSS AccessKeyId:Signature (HMAC-SHA1) */
    IMM_OSS_SIGN_S3V4, /* AWS4-HMAC-SHA256: MinIO, Ceph RGW, OSS's S3 endpoint */
} imm_oss_signature;

typedef enum imm_oss_addressing {
    IMM_OSS_ADDR_AUTO,    /* virtual-hosted for *.aliyuncs.com, path style elsewhere */
    IMM_OSS_ADDR_VIRTUAL, /* https://bucket.host/key */
    IMM_OSS_ADDR_PATH,    /* https://host/bucket/key */
} imm_oss_addressing;

/* Everything the remote store needs; strings are owned (see imm_oss_config_clear). */
typedef struct imm_oss_config {
    char *endpoint; /* "https://oss-cn-hangzhou.aliyuncs.com", "http://127.0.0.1:9000" */
    char *region;   /* "cn-hangzhou"; derived from an OSS endpoint when not given */
    char *access_key_id;
    char *access_key_secret;
    char *session_token; /* STS; NULL when none */
    imm_oss_signature signature;
    imm_oss_addressing addressing;
    int retries;          /* attempts after the first for network failures and 5xx */
    double retry_seconds; /* the most time spent retrying one request */
    long stall_seconds;   /* a transfer with no progress for this long fails (and is retried) */
    long long part_size;  /* uploads larger than this are multipart, in parts of this size */
    char *temp_dir;       /* where outputs wait for upload; NULL: $TMPDIR or /tmp */
    imm_local_paths local_paths; /* borrowed: which local files the store also opens */
} imm_oss_config;

/* What the command line said; NULL means "not given". Numbers are validated here. */
typedef struct imm_oss_options {
    const char *root;        /* --oss-root */
    const char *endpoint;    /* --oss-endpoint */
    const char *region;      /* --oss-region */
    const char *signature;   /* --oss-signature v4|v1|s3v4 */
    const char *addressing;  /* --oss-addressing auto|virtual|path */
    const char *config_file; /* --oss-config; default ~/.ossutilconfig when it exists */
    const char *retries;     /* --oss-retries N */
    const char *retry_time;  /* --oss-retry-time SECONDS */
    const char *timeout;     /* --oss-timeout SECONDS */
    const char *part_size;   /* --oss-part-size BYTES[K|M] */
    const char *temp_dir;    /* --temp-dir */
    imm_local_paths local_paths; /* serve: restricted, with --allow-local-paths' folders */
} imm_oss_options;

/* Chooses and opens the store: the command line first (--oss-root or --oss-endpoint), then the
 * environment (IMMERGE_OSS_ROOT or OSS_ENDPOINT), then the config file's endpoint; giving a root
 * and an endpoint at the same level is an error. Credentials come from OSS_ACCESS_KEY_ID,
 * OSS_ACCESS_KEY_SECRET and OSS_SESSION_TOKEN, then the ALIBABA_CLOUD_* names, then the file.
 * *describe (may be NULL) gets a line for logs naming the store, never a secret. */
imm_err imm_oss_open(const imm_oss_options *opt, imm_storage **out, char describe[256],
                     imm_error *err);

/* Credentials from the environment: OSS_ACCESS_KEY_ID/_SECRET/OSS_SESSION_TOKEN, else the
 * ALIBABA_CLOUD_* names; all NULL when neither is set. (The MNS notifier signs with them too.) */
void imm_oss_env_credentials(const char **id, const char **secret, const char **token);

imm_err imm_oss_remote_new(const imm_oss_config *cfg, imm_storage **out, imm_error *err);
void imm_oss_config_clear(imm_oss_config *cfg);

#endif
