/*
 * main.c - the immerge command: arguments, progress on stderr, exit codes. Nothing else: the work
 * is libimmerge's (engine/include/immerge.h) and storage is oss/'s.
 *
 * stdout carries exactly one JSON object: the task (exit 0 Succeeded, 1 Failed) or, for a request
 * that never became a task, the service's error body (exit 2).
 */
#include "immerge.h"
#include "imm_oss.h"
#include "job.h"
#include "server.h"
#include "notify.h"

#include <getopt.h>
#include <signal.h>
#include <libavutil/log.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUEST_BYTES (1 << 20)

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_INVALID = 2 };

static const char usage[] =
    "usage: immerge run [options] REQUEST.json   (- reads the request from stdin)\n"
    "       immerge get-task [--state DIR] [--project P] TASK_ID\n"
    "       immerge list-tasks [--state DIR] [--project P] [--status S] [--tag KEY=VALUE]\n"
    "                          [--max N] [--next-token T]\n"
    "       immerge serve --listen HOST:PORT [--workers N] [--queue N]\n"
    "                     [--access-key-id ID --access-key-secret SECRET] [run's options]\n"
    "\n"
    "run: runs one IMM CreateMediaConvertTask audio merge locally and prints the task as JSON.\n"
    "get-task, list-tasks: print recorded tasks as the service's GetTask and ListTasks do.\n"
    "serve: answers the service's OpenAPI (CreateMediaConvertTask, GetTask, ListTasks) over\n"
    "HTTP; with keys, only calls signed by them (ACS3-HMAC-SHA256 or RPC signatures); without,\n"
    "on loopback only. SIGTERM drains: running tasks finish, queued ones are not started.\n"
    "\n"
    "options:\n"
    "  --state DIR           where task records are kept (default $IMMERGE_STATE, else\n"
    "                        $XDG_DATA_HOME/immerge or ~/.local/share/immerge)\n"
    "\n"
    "completion messages (the service's envelope; delivery never fails a task):\n"
    "  --mns-endpoint URL    publish to the request's Notification.MNS.TopicName there\n"
    "                        (default $MNS_ENDPOINT; signed with the OSS credentials)\n"
    "  --notify-url URL      also POST every task's message to URL as JSON\n"
    "  --notify-file PATH    also append every task's message to PATH as one JSON line\n"
    "  --account-id ID, --region R   the message subject's (default: from the MNS endpoint)\n"
    "  --progress            show progress on stderr even when it is not a terminal\n"
    "  --quiet               no progress and no log lines on stderr\n"
    "  --verbose             also show FFmpeg's own warnings and the storage used\n"
    "\n"
    "storage (oss://bucket/key URIs; file:// URIs and paths are always local files):\n"
    "  --oss-root DIR        a local folder: oss://bucket/key is DIR/bucket/key\n"
    "                        (default: $IMMERGE_OSS_ROOT)\n"
    "  --oss-endpoint URL    an OSS or S3-compatible server (default: $OSS_ENDPOINT, then\n"
    "                        the config file's endpoint). Keys: $OSS_ACCESS_KEY_ID,\n"
    "                        $OSS_ACCESS_KEY_SECRET, $OSS_SESSION_TOKEN, else the\n"
    "                        ALIBABA_CLOUD_* names, else the config file\n"
    "  --oss-region R        region for V4 signatures, e.g. cn-hangzhou ($OSS_REGION;\n"
    "                        derived from an aliyuncs.com endpoint)\n"
    "  --oss-signature S     v4 (OSS4-HMAC-SHA256, default), v1, or s3v4 (AWS SigV4)\n"
    "  --oss-addressing A    auto (default: virtual-hosted for aliyuncs.com), virtual, path\n"
    "  --oss-config FILE     ossutil-style config file (default ~/.ossutilconfig)\n"
    "  --oss-retries N       retries of a failed request (network, 5xx; default 4)\n"
    "  --oss-retry-time S    most seconds spent retrying one request (default 60)\n"
    "  --oss-timeout S       a transfer stalled this long fails and is retried (default 30)\n"
    "  --oss-part-size B     uploads above B bytes go multipart in parts of B (default 8M)\n"
    "  --temp-dir DIR        where outputs wait for their upload and chunks for their join\n"
    "                        (default $TMPDIR or /tmp)\n"
    "\n"
    "speed:\n"
    "  --no-chunking         encode each target with one encoder (by default a long AAC or\n"
    "                        MP3 target is encoded in chunks, one per core, then joined)\n"
    "  --chunks N            encode every AAC and MP3 target in N chunks (1-8), however short\n"
    "\n"
    "limits (0: none):\n"
    "  --max-duration S      the sources may last S seconds in all (default 86400, a day);\n"
    "                        more fails with LimitExceededError, before any work when the\n"
    "                        containers tell, else as soon as decoding passes it\n"
    "  --timeout S           a task running longer than S seconds stops, writes nothing and\n"
    "                        fails with TaskTimeout (default 21600, six hours)\n"
    "\n"
    "exit status: 0 succeeded, 1 the task failed while running, 2 invalid request or usage\n";

/* Set by SIGINT/SIGTERM: the engine stops and discards its temporary outputs. */
static volatile int cancel_requested;

static void on_signal(int sig)
{
    (void)sig;
    cancel_requested = 1;
}

typedef enum command { CMD_RUN, CMD_GET_TASK, CMD_LIST_TASKS, CMD_SERVE } command;

typedef struct cli {
    command cmd;
    imm_oss_options storage;
    const char *state;
    const char *arg; /* run: the request; get-task: the TaskId */
    const char *project;
    imm_list_query list;
    imm_notify_config notify;
    const char *listen;
    const char *access_key_id, *access_key_secret;
    int workers, queue;
    int progress;
    int quiet;
    int verbose;
    int chunks; /* 0: automatic */
    double max_seconds, timeout_seconds;
} cli;

/* How every task runs, from the command line. */
static imm_run_options run_options(const cli *c, imm_storage *st)
{
    return (imm_run_options){.storage = st, .chunks = c->chunks, .temp_dir = c->storage.temp_dir,
                             .max_seconds = c->max_seconds, .timeout_seconds = c->timeout_seconds};
}

static void print_json(char *json)
{
    if (json) {
        fputs(json, stdout);
        fputc('\n', stdout);
        free(json);
    }
}

static int fail_request(const imm_error *err, const char *request_id)
{
    print_json(imm_error_to_json(err, request_id));
    fprintf(stderr, "immerge: %s: %s\n", imm_err_code(err->code), err->message);
    return EXIT_INVALID;
}

static char *read_all(const char *path, size_t *len, imm_error *err)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        imm_error_set(err, IMM_EARG, "Cannot open the request %s.", path);
        return NULL;
    }
    char *buf = malloc(MAX_REQUEST_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_REQUEST_BYTES + 1, f) : 0;
    int bad = !buf || ferror(f) || n > MAX_REQUEST_BYTES;
    if (f != stdin)
        fclose(f);
    if (bad) {
        imm_error_set(err, IMM_EARG, "Cannot read the request %s (at most %d bytes).", path,
                      MAX_REQUEST_BYTES);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void show_progress(void *opaque, double fraction)
{
    (void)opaque;
    fprintf(stderr, "\rimmerge: merging %3d%%", (int)(fraction * 100.0 + 0.5));
    if (fraction >= 1.0)
        fputc('\n', stderr);
    fflush(stderr);
}

/* --state, else $IMMERGE_STATE, else the per-user data folder; *explicit says which. */
static const char *state_dir(const cli *c, char *buf, size_t len, int *explicit)
{
    const char *v = c->state ? c->state : getenv("IMMERGE_STATE");
    *explicit = v && *v;
    if (*explicit)
        return v;
    const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(buf, len, "%s/immerge", xdg);
    else if (home && *home)
        snprintf(buf, len, "%s/.local/share/immerge", home);
    else
        return NULL;
    return buf;
}

static imm_err open_records(const cli *c, imm_records **out, int required, imm_error *err)
{
    char buf[4096];
    int explicit;
    const char *dir = state_dir(c, buf, sizeof(buf), &explicit);
    *out = NULL;
    if (!dir)
        return imm_error_set(err, IMM_EARG, "No state folder: pass --state DIR or set HOME.");
    imm_err e = imm_records_open(dir, out, err);
    if (e && !explicit && !required) {
        /* The merge is the job: an unusable default folder costs the record, not the task. */
        if (!c->quiet)
            fprintf(stderr, "immerge: warning: the task is not recorded: %s\n", err->message);
        return IMM_OK;
    }
    return e;
}

static int parse_args(int argc, char **argv, cli *c)
{
    imm_oss_options *so = &c->storage;
    const char **storage_values[] = {
        &so->root,   &so->endpoint,   &so->region,  &so->signature,
        &so->addressing, &so->config_file, &so->retries, &so->retry_time,
        &so->timeout, &so->part_size, &so->temp_dir,
    };
    enum { OPT_STATE = 200, OPT_PROJECT, OPT_STATUS, OPT_TAG, OPT_MAX, OPT_NEXT, OPT_MNS,
           OPT_NOTIFY_URL, OPT_NOTIFY_FILE, OPT_ACCOUNT, OPT_REGION, OPT_LISTEN, OPT_WORKERS,
           OPT_QUEUE, OPT_AK, OPT_SK, OPT_CHUNKS, OPT_NO_CHUNKING, OPT_MAX_DURATION,
           OPT_TIMEOUT };
    static const struct option longopts[] = {
        {"oss-root", required_argument, NULL, 0},      {"oss-endpoint", required_argument, NULL, 1},
        {"oss-region", required_argument, NULL, 2},    {"oss-signature", required_argument, NULL, 3},
        {"oss-addressing", required_argument, NULL, 4}, {"oss-config", required_argument, NULL, 5},
        {"oss-retries", required_argument, NULL, 6},   {"oss-retry-time", required_argument, NULL, 7},
        {"oss-timeout", required_argument, NULL, 8},   {"oss-part-size", required_argument, NULL, 9},
        {"temp-dir", required_argument, NULL, 10},     {"progress", no_argument, NULL, 'p'},
        {"quiet", no_argument, NULL, 'q'},             {"verbose", no_argument, NULL, 'v'},
        {"state", required_argument, NULL, OPT_STATE}, {"project", required_argument, NULL, OPT_PROJECT},
        {"status", required_argument, NULL, OPT_STATUS}, {"tag", required_argument, NULL, OPT_TAG},
        {"max", required_argument, NULL, OPT_MAX},     {"next-token", required_argument, NULL, OPT_NEXT},
        {"mns-endpoint", required_argument, NULL, OPT_MNS},
        {"notify-url", required_argument, NULL, OPT_NOTIFY_URL},
        {"notify-file", required_argument, NULL, OPT_NOTIFY_FILE},
        {"account-id", required_argument, NULL, OPT_ACCOUNT},
        {"region", required_argument, NULL, OPT_REGION},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"access-key-id", required_argument, NULL, OPT_AK},
        {"access-key-secret", required_argument, NULL, OPT_SK},
        {"chunks", required_argument, NULL, OPT_CHUNKS},
        {"no-chunking", no_argument, NULL, OPT_NO_CHUNKING},
        {"max-duration", required_argument, NULL, OPT_MAX_DURATION},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0},
    };
    static char tag[512];
    int ch;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage, stdout);
        exit(EXIT_OK);
    }
    if (argc < 2)
        return -1;
    if (!strcmp(argv[1], "run"))
        c->cmd = CMD_RUN;
    else if (!strcmp(argv[1], "get-task"))
        c->cmd = CMD_GET_TASK;
    else if (!strcmp(argv[1], "list-tasks"))
        c->cmd = CMD_LIST_TASKS;
    else if (!strcmp(argv[1], "serve"))
        c->cmd = CMD_SERVE;
    else
        return -1;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch >= 0 && ch < (int)(sizeof(storage_values) / sizeof(*storage_values))) {
            *storage_values[ch] = optarg;
            continue;
        }
        switch (ch) {
        case 'p': c->progress = 1; break;
        case 'q': c->quiet = 1; break;
        case 'v': c->verbose = 1; break;
        case OPT_STATE: c->state = optarg; break;
        case OPT_PROJECT: c->project = c->list.project = optarg; break;
        case OPT_STATUS: c->list.status = optarg; break;
        case OPT_TAG: {
            snprintf(tag, sizeof(tag), "%s", optarg);
            char *eq = strchr(tag, '=');
            if (!eq)
                return -1;
            *eq = '\0';
            c->list.tag_key = tag;
            c->list.tag_value = eq + 1;
            break;
        }
        case OPT_MAX: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 100)
                return -1;
            c->list.max = (int)v;
            break;
        }
        case OPT_NEXT: c->list.next_token = optarg; break;
        case OPT_MNS: c->notify.mns_endpoint = optarg; break;
        case OPT_NOTIFY_URL: c->notify.url = optarg; break;
        case OPT_NOTIFY_FILE: c->notify.file = optarg; break;
        case OPT_ACCOUNT: c->notify.account_id = optarg; break;
        case OPT_REGION: c->notify.region = optarg; break;
        case OPT_LISTEN: c->listen = optarg; break;
        case OPT_AK: c->access_key_id = optarg; break;
        case OPT_SK: c->access_key_secret = optarg; break;
        case OPT_NO_CHUNKING: c->chunks = 1; break;
        case OPT_MAX_DURATION:
        case OPT_TIMEOUT: {
            char *end;
            double v = strtod(optarg, &end);
            if (end == optarg || *end || !(v >= 0) || v > 1e9)
                return -1;
            *(ch == OPT_TIMEOUT ? &c->timeout_seconds : &c->max_seconds) = v;
            break;
        }
        case OPT_WORKERS:
        case OPT_QUEUE:
        case OPT_CHUNKS: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > (ch == OPT_CHUNKS ? 8 : 100000))
                return -1;
            *(ch == OPT_WORKERS ? &c->workers : ch == OPT_QUEUE ? &c->queue : &c->chunks) = (int)v;
            break;
        }
        case 'h': fputs(usage, stdout); exit(EXIT_OK);
        default: return -1;
        }
    }
    if (c->cmd == CMD_LIST_TASKS)
        return optind == argc ? 0 : -1;
    if (c->cmd == CMD_SERVE)
        return optind == argc && c->listen && !c->access_key_id == !c->access_key_secret ? 0 : -1;
    if (optind != argc - 1)
        return -1;
    c->arg = argv[optind];
    return 0;
}

/* The completion-message settings: the command line, $MNS_ENDPOINT, the OSS credentials. */
static imm_notify_config notify_config(const cli *c)
{
    imm_notify_config cfg = c->notify;
    if (!cfg.mns_endpoint && getenv("MNS_ENDPOINT") && *getenv("MNS_ENDPOINT"))
        cfg.mns_endpoint = getenv("MNS_ENDPOINT");
    imm_oss_env_credentials(&cfg.access_key_id, &cfg.access_key_secret, &cfg.security_token);
    cfg.retries = 4;
    cfg.retry_seconds = 30;
    return cfg;
}

static int run(const cli *c)
{
    imm_error err = {0};
    imm_request *req = NULL;
    imm_storage *st = NULL;
    imm_task *task = NULL;
    size_t len = 0;
    int status;

    char *json = read_all(c->arg, &len, &err);
    if (!json)
        return fail_request(&err, NULL);
    imm_err e = imm_request_parse(json, len, &req, &err);
    free(json);
    if (e)
        return fail_request(&err, NULL);
    char describe[256];
    if ((e = imm_oss_open(&c->storage, &st, describe, &err))) {
        imm_request_free(req);
        return fail_request(&err, NULL);
    }
    if (c->verbose)
        fprintf(stderr, "immerge: %s\n", describe);
    imm_records *records = NULL;
    if ((e = open_records(c, &records, 0, &err))) {
        imm_storage_free(st);
        imm_request_free(req);
        return fail_request(&err, NULL);
    }
    task = imm_task_new(req);
    if (records && imm_records_save(records, task, &err) && !c->quiet)
        fprintf(stderr, "immerge: warning: the task is not recorded: %s\n", err.message);
    imm_notify_config ncfg = notify_config(c);
    int show = !c->quiet && (c->progress || isatty(STDERR_FILENO));
    imm_job_env env = {.run = run_options(c, st), .records = records, .notify = &ncfg,
                       .progress = show ? show_progress : NULL, .quiet = c->quiet};
    env.run.cancel = &cancel_requested;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A file-size limit (ulimit -f) then fails the write (EFBIG) and the task, cleanly. */
    signal(SIGXFSZ, SIG_IGN);
    e = imm_job_run(&env, task, req, &err);
    if (e && imm_err_is_request_error(e)) {
        status = fail_request(&err, imm_task_request_id(task));
    } else {
        print_json(imm_task_to_json(task));
        if (e && !c->quiet)
            fprintf(stderr, "%simmerge: task failed: %s: %s\n", show ? "\n" : "",
                    imm_err_code(e), err.message);
        status = e ? EXIT_FAILED : EXIT_OK;
    }
    imm_records_close(records);
    imm_task_free(task);
    imm_storage_free(st);
    imm_request_free(req);
    return status;
}

static int serve(const cli *c)
{
    imm_error err = {0};
    imm_storage *st = NULL;
    imm_records *records = NULL;
    char describe[256];
    imm_err e = imm_oss_open(&c->storage, &st, describe, &err);
    if (!e)
        e = open_records(c, &records, 1, &err);
    if (e) {
        imm_storage_free(st);
        return fail_request(&err, NULL);
    }
    if (c->verbose)
        fprintf(stderr, "immerge: %s\n", describe);
    imm_notify_config ncfg = notify_config(c);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    imm_server_options opt = {.listen = c->listen, .workers = c->workers, .queue = c->queue,
                              .access_key_id = c->access_key_id,
                              .access_key_secret = c->access_key_secret,
                              .run = run_options(c, st), .records = records, .notify = &ncfg,
                              .stop = &cancel_requested, .quiet = c->quiet};
    e = imm_server_run(&opt, &err);
    imm_records_close(records);
    imm_storage_free(st);
    if (e)
        return fail_request(&err, NULL);
    if (!c->quiet)
        fprintf(stderr, "immerge: stopped\n");
    return EXIT_OK;
}

/* get-task and list-tasks: the records as the service answers GetTask and ListTasks. */
static int query(const cli *c)
{
    imm_error err = {0};
    imm_records *records = NULL;
    char *json = NULL;
    imm_err e = open_records(c, &records, 1, &err);
    if (!e)
        e = c->cmd == CMD_GET_TASK ? imm_records_get(records, c->project, c->arg, &json, &err)
                                   : imm_records_list(records, &c->list, &json, &err);
    imm_records_close(records);
    if (e)
        return fail_request(&err, NULL);
    print_json(json);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    cli c = {.max_seconds = 86400, .timeout_seconds = 21600};
    if (parse_args(argc, argv, &c)) {
        fputs(usage, stderr);
        imm_error err;
        imm_error_set(&err, IMM_EARG, "Invalid command line; see immerge --help.");
        print_json(imm_error_to_json(&err, NULL));
        return EXIT_INVALID;
    }
    av_log_set_level(c.verbose ? AV_LOG_WARNING : c.quiet ? AV_LOG_QUIET : AV_LOG_ERROR);
    return c.cmd == CMD_RUN ? run(&c) : c.cmd == CMD_SERVE ? serve(&c) : query(&c);
}
