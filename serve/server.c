/*
 * server.c - `immerge serve` (see server.h): httpd.c takes the HTTP, this file the service's RPC
 * surface and the worker pool.
 *
 * A call's parameters come from the query and, for a form body, from the body; complex ones
 * (Sources, Targets, Notification, Tags, CredentialConfig) are JSON strings, as the official
 * clients send them. CreateMediaConvertTask validates the request at once (a bad one gets the
 * error body and HTTP 400), records the task as Queued and answers {RequestId, TaskId, EventId};
 * a worker then runs it through job.c. The queue is bounded: a full one refuses with Throttling
 * rather than grow. A request may name only the store's objects and the operator's message sinks
 * (imm_request_check_storage, imm_notify_admits). Without keys the server listens on loopback only
 * and refuses what a web page would send (keyless.c).
 */
#include "serve/server.h"

#include "serve/auth.h"
#include "serve/httpd.h"
#include "tasks/job.h"
#include "serve/keyless.h"
#include "serve/metrics.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define API_VERSION "2020-09-30"

typedef struct server {
    const imm_server_options *opt;
    imm_auth *auth;
    imm_job_env env;
    volatile int stopping; /* the workers take no more tasks */
    volatile int draining; /* no more calls: not ready */
    pthread_mutex_t lock;  /* the durations */
    imm_histogram durations; /* of the tasks this server ran, by their end */
    pthread_t *threads;
    int nthreads, queue;
} server;

typedef struct params {
    const imm_kv *query; /* signed, and the first place a parameter is looked for */
    size_t nquery;
    imm_kv *form;        /* a form body's */
    size_t nform;
    char *form_buf;
} params;

/* ---- the worker pool ------------------------------------------------------------------------- */

static void *worker(void *opaque)
{
    server *s = opaque;
    for (;;) {
        imm_claim *c = NULL;
        imm_error err = {0};
        if (imm_tasks_claim(s->opt->tasks, &s->stopping, &c, &err)) {
            if (!s->opt->quiet) /* the tasks failed: wait, then again */
                fprintf(stderr, "immerge: warning: %s\n", err.message);
            sleep(1);
            continue;
        }
        if (!c)
            return NULL; /* stopping */
        double t0 = imm_clock_seconds(IMM_CLOCK_MONOTONIC);
        imm_job_run(&s->env, imm_claim_task(c), imm_claim_request(c), c, &err);
        double took = imm_clock_seconds(IMM_CLOCK_MONOTONIC) - t0;
        pthread_mutex_lock(&s->lock);
        imm_histogram_observe(&s->durations, took);
        pthread_mutex_unlock(&s->lock);
        imm_tasks_release(s->opt->tasks, c);
    }
}

/* The outbox's sweeper: completion messages their run recorded but did not send (it crashed, or
 * the first try failed) are sent from here, on any server of the records, every 2 s. Sending
 * blocks on slow receivers, so it has a thread of its own. */
static void *sweeper(void *opaque)
{
    server *s = opaque;
    while (!s->stopping) {
        if (imm_job_send_pending(&s->env))
            continue; /* more may be due */
        for (int i = 0; i < 20 && !s->stopping; i++)
            usleep(100 * 1000);
    }
    return NULL;
}

/* ---- answers ----------------------------------------------------------------------------------- */

static unsigned http_status(imm_err e)
{
    switch (e) {
    case IMM_ENOTFOUND: return 400; /* the service's error table says 400, not 404 */
    case IMM_EFORBIDDEN: return 403;
    case IMM_EJSON:
    case IMM_EARG:
    case IMM_ELIMIT: return 400;
    default: return 500;
    }
}

static char *fail(unsigned *status, const imm_error *err)
{
    *status = http_status(err->code);
    return imm_error_to_json(err, NULL);
}

/* The service's error shape for a Code that is not one of imm_err's (signatures, throttling, and
 * what the HTTP layer refuses). */
static char *error_body(void *opaque, const char *code, const char *message)
{
    char rid[37];
    (void)opaque;
    imm_request_id_new(rid);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "RequestId", rid);
    cJSON_AddStringToObject(o, "HostId", "immerge.local");
    cJSON_AddStringToObject(o, "Code", code);
    cJSON_AddStringToObject(o, "Message", message);
    cJSON_AddStringToObject(o, "Recommend", "See immerge's docs/serve.md");
    char *json = cJSON_Print(o);
    cJSON_Delete(o);
    return json;
}

static char *fail_code(unsigned *status, unsigned http, const char *code, const char *message)
{
    *status = http;
    return error_body(NULL, code, message);
}

/* A failure of the task records: one they cannot answer now (a database that is down) is the
 * service's 503, to be tried again. */
static char *fail_tasks(unsigned *status, const imm_error *err)
{
    if (err->code == IMM_EIO)
        return fail_code(status, 503, "ServiceUnavailable", err->message);
    return fail(status, err);
}

/* ---- parameters -------------------------------------------------------------------------------- */

/* A form body's parameters; -1 when one holds a NUL byte, or out of memory. */
static int parse_form(params *p, const char *body, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += body[i] == '&';
    if (!(p->form_buf = malloc(len + 1)) || !(p->form = calloc(n, sizeof(*p->form))))
        return -1;
    memcpy(p->form_buf, body, len);
    p->form_buf[len] = '\0';
    char *save = NULL;
    for (char *pair = strtok_r(p->form_buf, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(pair, '=');
        if (eq)
            *eq++ = '\0';
        if (imm_httpd_form_decode(pair) || (eq && imm_httpd_form_decode(eq)))
            return -1;
        p->form[p->nform++] = (imm_kv){pair, eq ? eq : ""};
    }
    return 0;
}

static const char *get(const params *p, const char *name)
{
    const char *v = imm_kv_find(p->query, p->nquery, name, 0);
    return v ? v : imm_kv_find(p->form, p->nform, name, 0);
}

static const char *header(const imm_httpd_request *r, const char *name)
{
    return imm_kv_find(r->headers, r->nheaders, name, 1);
}

/* ---- actions ----------------------------------------------------------------------------------- */

/* The request JSON from RPC parameters; NULL with err set. */
static char *request_json(const params *p, imm_error *err)
{
    static const char *const json_params[] = {"Sources", "Targets", "TargetGroups",
                                              "Notification", "Tags", "CredentialConfig"};
    static const char *const string_params[] = {"ProjectName", "UserData", "NotifyTopicName",
                                                "NotifyEndpoint"};
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < sizeof(json_params) / sizeof(*json_params); i++) {
        const char *v = get(p, json_params[i]);
        if (!v)
            continue;
        cJSON *x = cJSON_Parse(v);
        if (!x) {
            cJSON_Delete(o);
            imm_error_set(err, IMM_EJSON, "The parameter %s is not valid JSON.", json_params[i]);
            return NULL;
        }
        cJSON_AddItemToObject(o, json_params[i], x);
    }
    for (size_t i = 0; i < sizeof(string_params) / sizeof(*string_params); i++) {
        const char *v = get(p, string_params[i]);
        if (v)
            cJSON_AddStringToObject(o, string_params[i], v);
    }
    const char *align = get(p, "AlignmentIndex");
    if (align) {
        char *end;
        long v = strtol(align, &end, 10);
        if (*end || !*align) {
            cJSON_Delete(o);
            imm_error_set(err, IMM_EARG, "The parameter AlignmentIndex must be an integer.");
            return NULL;
        }
        cJSON_AddNumberToObject(o, "AlignmentIndex", (double)v);
    }
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json)
        imm_error_set(err, IMM_EINTERNAL, "out of memory");
    return json;
}

static char *create_task(server *s, unsigned *status, const params *p)
{
    imm_error err = {0};
    imm_request *req = NULL;
    char *json = request_json(p, &err);
    if (!json || imm_request_parse(json, strlen(json), &req, &err)) {
        free(json);
        return fail(status, &err);
    }
    free(json);
    /* A caller names only what the operator configured: the store's objects, its sinks. */
    if (imm_request_check_storage(req, s->opt->run.storage, &err) ||
        imm_notify_admits(s->opt->notify, req, &err)) {
        imm_request_free(req);
        return fail(status, &err);
    }
    imm_task *task = imm_task_new(req);
    if (!task) {
        imm_request_free(req);
        imm_error_set(&err, IMM_EINTERNAL, "out of memory");
        return fail(status, &err);
    }
    imm_task_set_queued(task);
    char *task_json = imm_task_to_json(task);
    cJSON *t = task_json ? cJSON_Parse(task_json) : NULL;
    free(task_json);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "RequestId", imm_task_request_id(task));
    cJSON_AddStringToObject(o, "TaskId", cJSON_GetStringValue(cJSON_GetObjectItem(t, "TaskId")));
    cJSON_AddStringToObject(o, "EventId", cJSON_GetStringValue(cJSON_GetObjectItem(t, "EventId")));
    cJSON_Delete(t);
    char *body = cJSON_Print(o);
    cJSON_Delete(o);
    int full = 0;
    if (imm_tasks_enqueue(s->opt->tasks, task, req, s->queue, &full, &err) || full) {
        char msg[200];
        snprintf(msg, sizeof(msg), "The task queue is full (%d waiting%s); try again later.",
                 s->queue, imm_tasks_shared(s->opt->tasks) ? " across the servers" : "");
        free(body);
        return full ? fail_code(status, 429, "Throttling", msg) : fail_tasks(status, &err);
    }
    *status = 200;
    return body;
}

/* The parameters the SDK marks required (and the service refuses without), in its words. */
static imm_err missing(const params *p, const char *const *names, imm_error *err)
{
    for (; *names; names++) {
        const char *v = get(p, *names);
        if (!v || !*v)
            return imm_error_set(err, IMM_EARG, "The parameter %s is required but not provided.",
                                 *names);
    }
    return IMM_OK;
}

static char *get_task(server *s, unsigned *status, const params *p)
{
    imm_error err = {0};
    char *json = NULL;
    const char *id = get(p, "TaskId");
    if (missing(p, (const char *const[]){"ProjectName", "TaskType", "TaskId", NULL}, &err))
        return fail(status, &err);
    int with_request = 0;
    const char *def = get(p, "RequestDefinition");
    if (def && strcasecmp(def, "true") && strcasecmp(def, "false")) {
        imm_error_set(&err, IMM_EARG, "The parameter RequestDefinition must be true or false.");
        return fail(status, &err);
    }
    with_request = def && !strcasecmp(def, "true");
    if (imm_tasks_get(s->opt->tasks, get(p, "ProjectName"), id, get(p, "TaskType"),
                      with_request, &json, &err))
        return fail_tasks(status, &err);
    *status = 200;
    return json;
}

static char *list_tasks(server *s, unsigned *status, const params *p)
{
    static const char *const names[] = {"Status", "TagSelector", "MaxResults", "NextToken",
                                        "Sort", "Order", "TaskTypes", "StartTimeRange",
                                        "EndTimeRange", "RequestDefinition"};
    imm_error err = {0};
    char *json = NULL;
    imm_list_query q = {.project = get(p, "ProjectName")};
    if (missing(p, (const char *const[]){"ProjectName", NULL}, &err))
        return fail(status, &err);
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        const char *v = get(p, names[i]);
        if (v && imm_list_query_set(&q, names[i], v, &err))
            return fail(status, &err);
    }
    if (imm_tasks_list(s->opt->tasks, &q, &json, &err))
        return fail_tasks(status, &err);
    *status = 200;
    return json;
}

/* ---- operations: health and metrics ----------------------------------------------------------- */

static char *status_body(unsigned *status, unsigned code, const char *state, const char *why)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "Status", state);
    if (why)
        cJSON_AddStringToObject(o, "Message", why);
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    *status = code;
    return out;
}

/* Ready for calls: not stopping, and the records answer within the API's bound. */
static char *readiness(server *s, unsigned *status)
{
    imm_error err = {0};
    if (s->draining)
        return status_body(status, 503, "NotReady", "The server is stopping.");
    if (imm_tasks_ping(s->opt->tasks, &err))
        return status_body(status, 503, "NotReady", err.message);
    return status_body(status, 200, "Ready", NULL);
}

static char *metrics(server *s, unsigned *status, const char **type)
{
    imm_tasks_stats st;
    imm_error err = {0};
    if (imm_tasks_stats_read(s->opt->tasks, &st, &err)) {
        imm_tasks_stats_clear(&st);
        return fail_tasks(status, &err);
    }
    imm_metrics *m = imm_metrics_new();
    if (!m) {
        imm_tasks_stats_clear(&st);
        return fail_code(status, 500, "InternalError", "out of memory");
    }
    imm_metrics_family(m, "immerge_queue_depth", "gauge", "Tasks waiting to run, per project "
                       "(every server sharing the records).");
    for (int i = 0; i < st.nqueued; i++)
        imm_metrics_sample(m, "immerge_queue_depth", (double)st.queued[i].n, "project",
                           st.queued[i].project, NULL);
    const struct {
        const char *name, *type, *help;
        long long value;
    } plain[] = {
        {"immerge_tasks_running", "gauge", "Tasks running now (every server).", st.running},
        {"immerge_outbox_pending", "gauge", "Completion messages recorded and not sent yet "
         "(every server).", st.outbox_pending},
        {"immerge_claims_total", "counter", "Tasks this server took up to run.", st.claims},
        {"immerge_takeovers_total", "counter", "Runs gone silent past their lease that this "
         "server (as the maintenance leader) queued again.", st.takeovers},
        {"immerge_lease_losses_total", "counter", "Runs of this server whose task another "
         "server took over.", st.lease_losses},
        {"immerge_statement_timeouts_total", "counter", "Task-database statements of this "
         "server cancelled past their deadline.", st.timeouts},
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(*plain); i++) {
        imm_metrics_family(m, plain[i].name, plain[i].type, plain[i].help);
        imm_metrics_sample(m, plain[i].name, (double)plain[i].value, NULL);
    }
    imm_metrics_family(m, "immerge_task_duration_seconds", "histogram", "How long the tasks "
                       "this server ran took, claim to end.");
    pthread_mutex_lock(&s->lock);
    imm_histogram h = s->durations;
    pthread_mutex_unlock(&s->lock);
    imm_metrics_histogram(m, "immerge_task_duration_seconds", &h);
    imm_tasks_stats_clear(&st);
    char *text = imm_metrics_finish(m);
    if (!text)
        return fail_code(status, 500, "InternalError", "out of memory");
    *type = IMM_METRICS_TYPE;
    *status = 200;
    return text;
}

/* GET /healthz, /readyz, /metrics: what a load balancer and a monitor ask, unsigned (they
 * cannot sign; they learn counts, never a task), though a keyless server refuses them to a web
 * page as it refuses its calls. NULL when r is not one of them. */
static char *operations(server *s, const imm_httpd_request *r, unsigned *status,
                        const char **type)
{
    if (strcmp(r->path, "/healthz") && strcmp(r->path, "/readyz") && strcmp(r->path, "/metrics"))
        return NULL;
    imm_refusal why; /* a keyless server's operations are for this host's callers too */
    if (!s->auth && imm_keyless_refuses(r, 0, &why))
        return fail_code(status, why.status, why.code, why.message);
    if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD"))
        return NULL;
    if (!strcmp(r->path, "/healthz"))
        return status_body(status, 200, "Alive", NULL);
    if (!strcmp(r->path, "/readyz"))
        return readiness(s, status);
    if (!strcmp(r->path, "/metrics"))
        return metrics(s, status, type);
    return NULL;
}

/* Answers one call (imm_httpd_handler). */
static char *dispatch(void *opaque, const imm_httpd_request *r, unsigned *status,
                      const char **content_type)
{
    server *s = opaque;
    params p = {.query = r->query, .nquery = r->nquery};
    char *ret;
    const char *type = header(r, "Content-Type");
    if ((ret = operations(s, r, status, content_type)))
        return ret;
    if (strcmp(r->method, "GET") && strcmp(r->method, "POST"))
        return fail_code(status, 405, "MethodNotAllowed", "Use GET or POST.");
    if (r->body_len && type && !strncasecmp(type, "application/x-www-form-urlencoded", 33) &&
        parse_form(&p, r->body, r->body_len)) {
        ret = fail_code(status, 400, "MalformedRequest",
                        "A parameter of the form body holds a NUL byte (%00).");
        goto out;
    }
    const char *action = get(&p, "Action");
    const char *version = get(&p, "Version");
    if (!action)
        action = header(r, "x-acs-action");
    if (!version)
        version = header(r, "x-acs-version");
    if (s->auth) {
        char code[64], msg[256];
        imm_auth_call call = {.method = r->method, .path = r->path, .params = r->query,
                              .nparams = r->nquery, .headers = r->headers,
                              .nheaders = r->nheaders, .body = r->body, .body_len = r->body_len};
        if (imm_auth_check(s->auth, &call, code, msg)) {
            ret = fail_code(status, imm_auth_status(code), code, msg);
            goto out;
        }
    } else {
        imm_refusal why;
        if (imm_keyless_refuses(r, action && !strcmp(action, "CreateMediaConvertTask"), &why)) {
            ret = fail_code(status, why.status, why.code, why.message);
            goto out;
        }
    }
    if (version && strcmp(version, API_VERSION))
        ret = fail_code(status, 400, "InvalidVersion", "This server speaks Version 2020-09-30.");
    else if (!action)
        ret = fail_code(status, 400, "MissingAction", "The parameter Action is required.");
    else if (!strcmp(action, "CreateMediaConvertTask"))
        ret = create_task(s, status, &p);
    else if (!strcmp(action, "GetTask"))
        ret = get_task(s, status, &p);
    else if (!strcmp(action, "ListTasks"))
        ret = list_tasks(s, status, &p);
    else
        ret = fail_code(status, 404, "InvalidAction.NotFound",
                        "This server answers CreateMediaConvertTask, GetTask and ListTasks.");
out:
    free(p.form);
    free(p.form_buf);
    return ret;
}

/* ---- the server -------------------------------------------------------------------------------- */

static imm_err parse_listen(const char *listen, struct sockaddr_in *addr, int keys,
                            imm_error *err)
{
    char host[64];
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon || (size_t)(colon - listen) >= sizeof(host))
        return imm_error_set(err, IMM_EARG, "--listen must be HOST:PORT, e.g. 127.0.0.1:8080.");
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (*end || port < 0 || port > 65535 || inet_pton(AF_INET, host, &addr->sin_addr) != 1)
        return imm_error_set(err, IMM_EARG, "--listen must be an IPv4 HOST:PORT, not %s.",
                             listen);
    if (!keys && (ntohl(addr->sin_addr.s_addr) >> 24) != 127)
        return imm_error_set(err, IMM_EARG, "Without --access-key-id and --access-key-secret the "
                             "server listens on loopback (127.x.x.x) only, not %s.", host);
    return IMM_OK;
}

imm_err imm_serve(const imm_server_options *opt, imm_error *err)
{
    struct sockaddr_in addr;
    int keys = opt->access_key_id && opt->access_key_secret;
    imm_err e = parse_listen(opt->listen, &addr, keys, err);
    if (e)
        return e;
    if (!opt->tasks)
        return imm_error_set(err, IMM_EARG, "The server needs task records (--tasks).");
    server s = {.opt = opt};
    static const double bounds[IMM_HISTOGRAM_BUCKETS] = {1, 5, 15, 60, 300, 900, 1800, 3600,
                                                         21600};
    imm_histogram_init(&s.durations, bounds);
    pthread_mutex_init(&s.lock, NULL);
    s.env = (imm_job_env){.run = opt->run, .tasks = opt->tasks, .notify = opt->notify,
                          .quiet = opt->quiet};
    s.queue = opt->queue > 0 ? opt->queue : 64;
    s.nthreads = opt->workers > 0 ? opt->workers : imm_cores();
    s.threads = calloc((size_t)s.nthreads, sizeof(*s.threads));
    if (keys)
        s.auth = imm_auth_new(opt->access_key_id, opt->access_key_secret);
    if (!s.threads || (keys && !s.auth)) {
        free(s.threads);
        imm_auth_free(s.auth);
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    int started = 0;
    for (; started < s.nthreads; started++)
        if (pthread_create(&s.threads[started], NULL, worker, &s))
            break;
    pthread_t sweeping;
    int sweeps = opt->notify && !pthread_create(&sweeping, NULL, sweeper, &s);
    imm_httpd *d = NULL;
    imm_error why = {0};
    if (!started || imm_httpd_start(&addr, dispatch, error_body, &s, &d, &why)) {
        e = imm_error_set(err, IMM_EIO, "Cannot listen on %s (in use, or not this host's?): %s",
                          opt->listen, started ? why.message : "no worker thread.");
    } else {
        char host[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &addr.sin_addr, host, sizeof(host));
        printf("{\"Listen\": \"%s:%d\"}\n", host, imm_httpd_port(d));
        fflush(stdout);
        if (!opt->quiet)
            fprintf(stderr, "immerge: listening on %s:%d (%d workers, queue %d%s)\n", host,
                    imm_httpd_port(d), s.nthreads, s.queue, keys ? ", signed calls only" : "");
        while (!*opt->stop)
            usleep(100 * 1000);
        s.draining = 1;
        imm_httpd_stop(d); /* no new calls; the answers under way are finished */
    }
    /* Drain: running tasks finish (within drain_seconds, else they are given back); queued ones
     * are left to the other servers, or recorded as never started where there are none. */
    s.stopping = 1;
    struct timespec deadline = imm_clock_after(IMM_CLOCK_WALL, opt->drain_seconds);
    for (int i = 0; i < started; i++) {
        if (opt->drain_seconds > 0 && pthread_timedjoin_np(s.threads[i], NULL, &deadline)) {
            if (!opt->quiet)
                fprintf(stderr, "immerge: warning: the drain ran out of time (%g s): the "
                        "running tasks stop and are given back\n", opt->drain_seconds);
            imm_tasks_abandon(opt->tasks);
            for (; i < started; i++)
                pthread_join(s.threads[i], NULL);
            break;
        }
        if (opt->drain_seconds <= 0)
            pthread_join(s.threads[i], NULL);
    }
    if (sweeps)
        pthread_join(sweeping, NULL);
    imm_tasks_drain(opt->tasks);
    imm_auth_free(s.auth);
    free(s.threads);
    pthread_mutex_destroy(&s.lock);
    return e;
}
