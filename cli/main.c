/*
 * main.c - the immerge command: arguments, progress on stderr, exit codes. Nothing else: the work
 * is libimmerge's (include/immerge.h) and storage is oss/'s.
 *
 * stdout carries exactly one JSON object: the task (exit 0 Succeeded, 1 Failed) or, for a request
 * that never became a task, the service's error body (exit 2).
 */
#include "immerge.h"
#include "oss/oss.h"
#include "tasks/job.h"
#include "serve/server.h"
#include "notify/notify.h"
#include "tasks/tasks.h"
#include "cli/version.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <libavutil/log.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUEST_BYTES (1 << 20)
#define MAX_ALLOWED_FOLDERS 64

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_INVALID = 2 };

static const char usage[] =
    "usage: immerge run [options] REQUEST.json   (- reads the request from stdin)\n"
    "       immerge plan [options] REQUEST.json\n"
    "       immerge compare [options] A B   (URIs or paths of two audio files)\n"
    "       immerge get-task [--tasks WHERE] [--project P] [--task-type T]\n"
    "                        [--request-definition] TASK_ID\n"
    "       immerge list-tasks [--tasks WHERE] [--project P] [--status S] [--tag KEY=VALUE]\n"
    "                          [--max N] [--next-token T] [--sort TaskId|StartTime|EndTime]\n"
    "                          [--order asc|desc] [--request-definition]\n"
    "       immerge --version   (immerge's and its libraries' versions)\n"
    "       immerge serve --listen HOST:PORT [--workers N] [--queue N] [--lease S]\n"
    "                     [--drain-timeout S]\n"
    "                     [--access-key-id ID --access-key-secret SECRET]\n"
    "                     [--allow-local-paths DIR]... [run's options]\n"
    "\n"
    "run: runs one IMM CreateMediaConvertTask audio merge locally and prints the task as JSON.\n"
    "plan: validates the request and probes its sources as run would, then prints what run\n"
    "would do without encoding: each source's format, stream and clip in samples, each\n"
    "target's parameters and where they came from, its URI and predicted length.\n"
    "compare: decodes A and B and prints their lengths, per-channel RMS and peak, integrated\n"
    "loudness (EBU R128), B's offset (cross-correlation) and SNR against A once aligned; exits\n"
    "0 when they match within the tolerances below, 1 when not.\n"
    "get-task, list-tasks: print recorded tasks as the service's GetTask and ListTasks do.\n"
    "serve: answers the service's OpenAPI (CreateMediaConvertTask, GetTask, ListTasks) over\n"
    "HTTP; with keys, only calls signed by them (ACS3-HMAC-SHA256 or RPC signatures); without,\n"
    "on loopback only, and never for a web page. SIGTERM drains: running tasks finish,\n"
    "queued ones are not started. GET /healthz, /readyz and /metrics (Prometheus) are\n"
    "answered unsigned. A caller names only the store's oss:// objects and the\n"
    "operator's message sinks; local paths only with:\n"
    "  --allow-local-paths DIR  file:// URIs and absolute paths beneath DIR (repeatable)\n"
    "  --drain-timeout S     a stop waits at most S seconds for the running tasks, then\n"
    "                        stops them and gives them back to the queue (default: as\n"
    "                        long as they take)\n"
    "\n"
    "task records and queue:\n"
    "  --tasks WHERE         postgres://USER@HOST:PORT/DB: every server and run pointed at\n"
    "                        that database is one service (shared queue, shared records);\n"
    "                        a SQLite file or folder: this machine's (default $IMMERGE_TASKS,\n"
    "                        else --state)\n"
    "  --state DIR           the SQLite records' folder, DIR/tasks.db (default $IMMERGE_STATE,\n"
    "                        else $XDG_DATA_HOME/immerge or ~/.local/share/immerge)\n"
    "  --lease S             PostgreSQL: a task whose server is silent this long is taken\n"
    "                        over by another and run again (default 30)\n"
    "  --retain-days D       finished tasks are deleted D days after their end, as the\n"
    "                        service keeps them 7 days (default 7; 0: kept)\n"
    "\n"
    "completion messages (the service's envelope; delivery never fails a task):\n"
    "  --mns-endpoint URL    publish to the request's Notification.MNS.TopicName there\n"
    "                        (default $MNS_ENDPOINT; signed with the OSS credentials)\n"
    "  --notify-url URL      also POST every task's message to URL as JSON\n"
    "  --notify-file PATH    also append every task's message to PATH as one JSON line\n"
    "  --account-id ID, --region R   the message subject's (default: from the MNS endpoint)\n"
    "\n"
    "progress and logs (stderr):\n"
    "  --progress [line]     a progress line (percent, input merged, speed as a multiple of\n"
    "                        real time, ETA) even when stderr is not a terminal, where it is\n"
    "                        shown by default\n"
    "  --progress json       instead, one JSON object per line: Progress (percent),\n"
    "                        InputSeconds, DoneSeconds, ElapsedSeconds, Speed, EtaSeconds\n"
    "  --quiet               no progress and no log lines on stderr\n"
    "  --verbose             also show FFmpeg's own warnings and the storage used\n"
    "\n"
    "storage (oss://bucket/key URIs; file:// URIs and paths are local files: any for run,\n"
    "plan and compare, none for serve unless --allow-local-paths):\n"
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
    "compare's tolerances and search:\n"
    "  --max-length-diff N   B may be N samples (at A's rate) longer or shorter (default 0)\n"
    "  --max-offset N        B may be offset by N samples (default 0)\n"
    "  --min-snr DB          B's SNR against A, aligned, at least DB (default 20)\n"
    "  --max-loudness-diff LU  integrated loudness within LU (default 1)\n"
    "  --search S, --window S  look for the offset within +-S seconds (default 1) by\n"
    "                        correlating the first S seconds (default 5)\n"
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

typedef enum command {
    CMD_RUN, CMD_PLAN, CMD_COMPARE, CMD_GET_TASK, CMD_LIST_TASKS, CMD_SERVE
} command;
typedef enum progress_style { PROGRESS_AUTO, PROGRESS_LINE, PROGRESS_JSON } progress_style;

typedef struct cli {
    command cmd;
    imm_oss_options storage;
    const char *state;
    const char *tasks; /* --tasks */
    double lease;
    double retain_days; /* --retain-days */
    double drain_seconds; /* serve --drain-timeout */
    const char *arg; /* run: the request; get-task: the TaskId; compare: A */
    const char *arg2; /* compare: B */
    imm_compare_options compare;
    const char *project;
    imm_list_query list;
    const char *task_type; /* get-task --task-type */
    imm_error bad;         /* why the command line was refused, when an option says */
    const char *allow_local[MAX_ALLOWED_FOLDERS]; /* serve --allow-local-paths */
    int nallow_local;
    imm_notify_config notify;
    const char *listen;
    const char *access_key_id, *access_key_secret;
    int workers, queue;
    progress_style progress; /* PROGRESS_AUTO: a line when stderr is a terminal */
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

/* H:MM:SS, or M:SS under an hour. */
static const char *clock_time(double seconds, char buf[32])
{
    long s = seconds > 0 && seconds < 1e8 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, 32, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, 32, "%ld:%02ld", s / 60, s % 60);
    return buf;
}

/* On a terminal the line is redrawn in place; elsewhere each update is a line of its own. */
static void show_progress_line(void *opaque, const imm_progress *p)
{
    int tty = *(const int *)opaque, done = p->fraction >= 1.0;
    double merged = p->fraction * p->input_seconds;
    char a[32], b[32], line[160];
    int n = snprintf(line, sizeof(line), "immerge: %3d%%", (int)(p->fraction * 100.0));
    if (p->input_seconds > 0 && p->elapsed > 0)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "  %s of %s  %.1fx real time",
                      clock_time(merged, a), clock_time(p->input_seconds, b),
                      merged / p->elapsed);
    if (done)
        snprintf(line + n, sizeof(line) - (size_t)n, "  in %s", clock_time(p->elapsed, a));
    else if (p->fraction >= 0.01)
        snprintf(line + n, sizeof(line) - (size_t)n, "  ETA %s",
                 clock_time(p->elapsed * (1.0 - p->fraction) / p->fraction, a));
    fprintf(stderr, tty ? "\r%s\033[K%s" : "%s\n%s", line, tty && done ? "\n" : "");
    fflush(stderr);
}

static void show_progress_json(void *opaque, const imm_progress *p)
{
    (void)opaque;
    double merged = p->fraction * p->input_seconds;
    fprintf(stderr, "{\"Progress\":%.1f,\"InputSeconds\":%.3f,\"DoneSeconds\":%.3f,"
            "\"ElapsedSeconds\":%.3f", p->fraction * 100.0, p->input_seconds, merged, p->elapsed);
    if (p->elapsed > 0 && p->input_seconds > 0)
        fprintf(stderr, ",\"Speed\":%.3f", merged / p->elapsed);
    if (p->fraction >= 0.01)
        fprintf(stderr, ",\"EtaSeconds\":%.1f", p->elapsed * (1.0 - p->fraction) / p->fraction);
    fputs("}\n", stderr);
    fflush(stderr);
}

/* --tasks, else --state, else $IMMERGE_TASKS, else $IMMERGE_STATE, else the per-user data
 * folder; *explicit says whether one was named. */
static const char *tasks_where(const cli *c, char *buf, size_t len, int *explicit)
{
    const char *env_tasks = getenv("IMMERGE_TASKS"), *env_state = getenv("IMMERGE_STATE");
    const char *v = c->tasks ? c->tasks : c->state ? c->state
                    : env_tasks && *env_tasks ? env_tasks : env_state;
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

static imm_err open_tasks(const cli *c, imm_tasks **out, int required, imm_error *err)
{
    char buf[4096];
    int explicit;
    const char *where = tasks_where(c, buf, sizeof(buf), &explicit);
    imm_tasks_options opt = {.lease_seconds = c->lease, .retain_days = c->retain_days,
                             .quiet = c->quiet};
    *out = NULL;
    if (!where)
        return imm_error_set(err, IMM_EARG, "No task records: pass --tasks, --state DIR or set "
                             "HOME.");
    imm_err e = imm_tasks_open(where, &opt, out, err);
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
           OPT_TIMEOUT, OPT_SEARCH, OPT_WINDOW, OPT_MIN_SNR, OPT_MAX_LOUDNESS_DIFF,
           OPT_MAX_LENGTH_DIFF, OPT_MAX_OFFSET, OPT_TASKS, OPT_LEASE, OPT_SORT, OPT_ORDER,
           OPT_REQUEST_DEFINITION, OPT_TASK_TYPE, OPT_ALLOW_LOCAL, OPT_RETAIN, OPT_DRAIN };
    static const struct option longopts[] = {
        {"oss-root", required_argument, NULL, 0},      {"oss-endpoint", required_argument, NULL, 1},
        {"oss-region", required_argument, NULL, 2},    {"oss-signature", required_argument, NULL, 3},
        {"oss-addressing", required_argument, NULL, 4}, {"oss-config", required_argument, NULL, 5},
        {"oss-retries", required_argument, NULL, 6},   {"oss-retry-time", required_argument, NULL, 7},
        {"oss-timeout", required_argument, NULL, 8},   {"oss-part-size", required_argument, NULL, 9},
        {"temp-dir", required_argument, NULL, 10},     {"progress", optional_argument, NULL, 'p'},
        {"quiet", no_argument, NULL, 'q'},             {"verbose", no_argument, NULL, 'v'},
        {"state", required_argument, NULL, OPT_STATE},
        {"tasks", required_argument, NULL, OPT_TASKS}, {"lease", required_argument, NULL, OPT_LEASE},
        {"retain-days", required_argument, NULL, OPT_RETAIN},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN}, {"project", required_argument, NULL, OPT_PROJECT},
        {"status", required_argument, NULL, OPT_STATUS}, {"tag", required_argument, NULL, OPT_TAG},
        {"max", required_argument, NULL, OPT_MAX},     {"next-token", required_argument, NULL, OPT_NEXT},
        {"sort", required_argument, NULL, OPT_SORT},   {"order", required_argument, NULL, OPT_ORDER},
        {"request-definition", no_argument, NULL, OPT_REQUEST_DEFINITION},
        {"task-type", required_argument, NULL, OPT_TASK_TYPE},
        {"allow-local-paths", required_argument, NULL, OPT_ALLOW_LOCAL},
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
        {"search", required_argument, NULL, OPT_SEARCH},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"min-snr", required_argument, NULL, OPT_MIN_SNR},
        {"max-loudness-diff", required_argument, NULL, OPT_MAX_LOUDNESS_DIFF},
        {"max-length-diff", required_argument, NULL, OPT_MAX_LENGTH_DIFF},
        {"max-offset", required_argument, NULL, OPT_MAX_OFFSET},
        {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0},
    };
    int ch;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage, stdout);
        exit(EXIT_OK);
    }
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        imm_print_version(stdout);
        exit(EXIT_OK);
    }
    if (argc < 2)
        return -1;
    if (!strcmp(argv[1], "run"))
        c->cmd = CMD_RUN;
    else if (!strcmp(argv[1], "plan"))
        c->cmd = CMD_PLAN;
    else if (!strcmp(argv[1], "compare"))
        c->cmd = CMD_COMPARE;
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
        case 'p': {
            /* `--progress json` as well as `--progress=json` */
            const char *style = optarg;
            if (!style && optind < argc - 1 &&
                (!strcmp(argv[optind], "json") || !strcmp(argv[optind], "line")))
                style = argv[optind++];
            if (style && strcmp(style, "json") && strcmp(style, "line"))
                return -1;
            c->progress = style && !strcmp(style, "json") ? PROGRESS_JSON : PROGRESS_LINE;
            break;
        }
        case 'q': c->quiet = 1; break;
        case 'v': c->verbose = 1; break;
        case OPT_STATE: c->state = optarg; break;
        case OPT_TASKS: c->tasks = optarg; break;
        case OPT_PROJECT: c->project = c->list.project = optarg; break;
        case OPT_STATUS: case OPT_TAG: case OPT_MAX: case OPT_NEXT: case OPT_SORT:
        case OPT_ORDER: case OPT_REQUEST_DEFINITION: {
            static const char *const names[] = {
                [OPT_STATUS - OPT_STATE] = "Status", [OPT_TAG - OPT_STATE] = "TagSelector",
                [OPT_MAX - OPT_STATE] = "MaxResults", [OPT_NEXT - OPT_STATE] = "NextToken",
                [OPT_SORT - OPT_STATE] = "Sort", [OPT_ORDER - OPT_STATE] = "Order",
                [OPT_REQUEST_DEFINITION - OPT_STATE] = "RequestDefinition"};
            if (imm_list_query_set(&c->list, names[ch - OPT_STATE],
                                   ch == OPT_REQUEST_DEFINITION ? "true" : optarg, &c->bad))
                return -1;
            break;
        }
        case OPT_TASK_TYPE: c->task_type = optarg; break;
        case OPT_ALLOW_LOCAL:
            if (c->nallow_local == MAX_ALLOWED_FOLDERS)
                return -1;
            c->allow_local[c->nallow_local++] = optarg;
            break;
        case OPT_MNS: c->notify.mns_endpoint = optarg; break;
        case OPT_NOTIFY_URL: c->notify.url = optarg; break;
        case OPT_NOTIFY_FILE: c->notify.file = optarg; break;
        case OPT_ACCOUNT: c->notify.account_id = optarg; break;
        case OPT_REGION: c->notify.region = optarg; break;
        case OPT_LISTEN: c->listen = optarg; break;
        case OPT_AK: c->access_key_id = optarg; break;
        case OPT_SK: c->access_key_secret = optarg; break;
        case OPT_NO_CHUNKING: c->chunks = 1; break;
        case OPT_LEASE:
        case OPT_RETAIN:
        case OPT_DRAIN:
        case OPT_MAX_DURATION:
        case OPT_TIMEOUT:
        case OPT_SEARCH:
        case OPT_WINDOW:
        case OPT_MAX_LOUDNESS_DIFF: {
            char *end;
            double v = strtod(optarg, &end);
            if (end == optarg || *end || !(v >= 0) || v > 1e9)
                return -1;
            if (ch == OPT_LEASE && v < 1)
                return -1;
            *(ch == OPT_LEASE ? &c->lease
              : ch == OPT_RETAIN ? &c->retain_days
              : ch == OPT_DRAIN ? &c->drain_seconds
              : ch == OPT_TIMEOUT ? &c->timeout_seconds
              : ch == OPT_MAX_DURATION ? &c->max_seconds
              : ch == OPT_SEARCH ? &c->compare.search_seconds
              : ch == OPT_WINDOW ? &c->compare.window_seconds
                                 : &c->compare.max_loudness_diff) = v;
            break;
        }
        case OPT_MIN_SNR: {
            char *end;
            c->compare.min_snr = strtod(optarg, &end);
            if (end == optarg || *end || !isfinite(c->compare.min_snr))
                return -1;
            break;
        }
        case OPT_MAX_LENGTH_DIFF:
        case OPT_MAX_OFFSET: {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            if (end == optarg || *end || v < 0)
                return -1;
            *(ch == OPT_MAX_OFFSET ? &c->compare.max_offset : &c->compare.max_length_diff) = v;
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
    if (c->nallow_local && c->cmd != CMD_SERVE) {
        imm_error_set(&c->bad, IMM_EARG, "--allow-local-paths is serve's: run, plan and compare "
                      "take any local path, their request being the operator's own.");
        return -1;
    }
    if (c->cmd == CMD_SERVE) {
        /* A caller's request reaches only what the operator configured. */
        so->local_paths = (imm_local_paths){.restricted = 1, .dirs = c->allow_local,
                                            .ndirs = (size_t)c->nallow_local};
        c->notify.operator_sinks_only = 1;
        return optind == argc && c->listen && !c->access_key_id == !c->access_key_secret ? 0 : -1;
    }
    if (c->cmd == CMD_COMPARE) {
        if (optind != argc - 2)
            return -1;
        c->arg = argv[optind];
        c->arg2 = argv[optind + 1];
        return 0;
    }
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

/* The request (parsed and validated) and the storage it names, for run and plan. */
static imm_err load(const cli *c, imm_request **req, imm_storage **st, imm_error *err)
{
    size_t len = 0;
    char describe[256];
    char *json = read_all(c->arg, &len, err);
    if (!json)
        return err->code;
    imm_err e = imm_request_parse(json, len, req, err);
    free(json);
    if (!e && (e = imm_oss_open(&c->storage, st, describe, err))) {
        imm_request_free(*req);
        *req = NULL;
    }
    if (!e && c->verbose)
        fprintf(stderr, "immerge: %s\n", describe);
    return e;
}

/* plan: what run would do, without encoding. A request error exits 2, as run's; one that only
 * the sources reveal (missing, not audio) exits 1, the code run's failed task would have. */
static int plan(const cli *c)
{
    imm_error err = {0};
    imm_request *req = NULL;
    imm_storage *st = NULL;
    char *json = NULL;
    if (load(c, &req, &st, &err))
        return fail_request(&err, NULL);
    imm_run_options opt = run_options(c, st);
    imm_err e = imm_task_preview(req, &opt, &json, &err);
    imm_storage_free(st);
    imm_request_free(req);
    if (e && imm_err_is_request_error(e))
        return fail_request(&err, NULL);
    if (e) {
        print_json(imm_error_to_json(&err, NULL));
        fprintf(stderr, "immerge: %s: %s\n", imm_err_code(err.code), err.message);
        return EXIT_FAILED;
    }
    print_json(json);
    return EXIT_OK;
}

/* compare: exit 0 when the files match within the tolerances, 1 when not, 2 when either cannot
 * be read. */
static int compare(const cli *c)
{
    imm_error err = {0};
    imm_storage *st = NULL;
    char describe[256], *json = NULL;
    int match = 0;
    if (imm_oss_open(&c->storage, &st, describe, &err))
        return fail_request(&err, NULL);
    imm_compare_options opt = c->compare;
    opt.storage = st;
    imm_err e = imm_compare(c->arg, c->arg2, &opt, &json, &match, &err);
    imm_storage_free(st);
    if (e)
        return fail_request(&err, NULL);
    print_json(json);
    return match ? EXIT_OK : EXIT_FAILED;
}

static int run(const cli *c)
{
    imm_error err = {0};
    imm_request *req = NULL;
    imm_storage *st = NULL;
    imm_task *task = NULL;
    int status;

    imm_err e = load(c, &req, &st, &err);
    if (e)
        return fail_request(&err, NULL);
    imm_tasks *tasks = NULL;
    imm_claim *claim = NULL;
    if ((e = open_tasks(c, &tasks, 0, &err))) {
        imm_storage_free(st);
        imm_request_free(req);
        return fail_request(&err, NULL);
    }
    if (!(task = imm_task_new(req))) {
        imm_tasks_close(tasks);
        imm_storage_free(st);
        imm_request_free(req);
        imm_error_set(&err, IMM_EINTERNAL, "out of memory");
        return fail_request(&err, NULL);
    }
    if (tasks && imm_tasks_start(tasks, task, req, &claim, &err)) {
        if (!c->quiet)
            fprintf(stderr, "immerge: warning: the task is not recorded: %s\n", err.message);
        imm_tasks_close(tasks);
        tasks = NULL;
    }
    imm_notify_config ncfg = notify_config(c);
    int tty = isatty(STDERR_FILENO);
    int show = !c->quiet && (c->progress != PROGRESS_AUTO || tty);
    imm_job_env env = {.run = run_options(c, st), .tasks = tasks, .notify = &ncfg,
                       .progress = !show ? NULL
                                   : c->progress == PROGRESS_JSON ? show_progress_json
                                                                  : show_progress_line,
                       .progress_opaque = &tty, .quiet = c->quiet};
    env.run.cancel = &cancel_requested;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A file-size limit (ulimit -f) then fails the write (EFBIG) and the task, cleanly. */
    signal(SIGXFSZ, SIG_IGN);
    e = imm_job_run(&env, task, req, claim, &err);
    if (e && imm_err_is_request_error(e)) {
        status = fail_request(&err, imm_task_request_id(task));
    } else {
        print_json(imm_task_to_json(task));
        if (e && !c->quiet)
            fprintf(stderr, "%simmerge: task failed: %s: %s\n",
                    show && tty && c->progress != PROGRESS_JSON ? "\n" : "",
                    imm_err_code(e), err.message);
        status = e ? EXIT_FAILED : EXIT_OK;
    }
    imm_tasks_release(tasks, claim);
    imm_tasks_close(tasks);
    imm_task_free(task);
    imm_storage_free(st);
    imm_request_free(req);
    return status;
}

static int serve(const cli *c)
{
    imm_error err = {0};
    imm_storage *st = NULL;
    imm_tasks *tasks = NULL;
    char describe[256];
    imm_err e = imm_oss_open(&c->storage, &st, describe, &err);
    if (!e)
        e = open_tasks(c, &tasks, 1, &err);
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
                              .run = run_options(c, st), .tasks = tasks, .notify = &ncfg,
                              .stop = &cancel_requested, .drain_seconds = c->drain_seconds,
                              .quiet = c->quiet};
    e = imm_serve(&opt, &err);
    imm_tasks_close(tasks);
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
    imm_tasks *tasks = NULL;
    char *json = NULL;
    imm_err e = open_tasks(c, &tasks, 1, &err);
    if (!e)
        e = c->cmd == CMD_GET_TASK ? imm_tasks_get(tasks, c->project, c->arg, c->task_type,
                                                   c->list.with_request, &json, &err)
                                   : imm_tasks_list(tasks, &c->list, &json, &err);
    imm_tasks_close(tasks);
    if (e)
        return fail_request(&err, NULL);
    print_json(json);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    cli c = {.max_seconds = 86400, .timeout_seconds = 21600, .retain_days = 7,
             .compare = {.search_seconds = 1, .window_seconds = 5, .min_snr = 20,
                         .max_loudness_diff = 1}};
    if (parse_args(argc, argv, &c)) {
        imm_error err = c.bad;
        if (!err.code) {
            fputs(usage, stderr);
            imm_error_set(&err, IMM_EARG, "Invalid command line; see immerge --help.");
        }
        print_json(imm_error_to_json(&err, NULL));
        return EXIT_INVALID;
    }
    av_log_set_level(c.verbose ? AV_LOG_WARNING : c.quiet ? AV_LOG_QUIET : AV_LOG_ERROR);
    switch (c.cmd) {
    case CMD_RUN: return run(&c);
    case CMD_PLAN: return plan(&c);
    case CMD_COMPARE: return compare(&c);
    case CMD_SERVE: return serve(&c);
    default: return query(&c);
    }
}
