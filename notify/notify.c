/*
 * notify.c - completion messages (see notify.h).
 *
 * MNS PublishMessage: POST /topics/TOPIC/messages with the message XML-escaped in <MessageBody>,
 * signed "MNS id:signature" (HMAC-SHA1 over the verb, Content-Type, Date, the x-mns-* headers and
 * the resource, like OSS V1); an STS token rides unsigned in security-token. The answer's
 * MessageBodyMD5 is checked against what was sent. Network failures and 5xx are retried with the
 * storage client's backoff, signed afresh each time.
 *
 * The file sink appends each message as one line with a single write under an exclusive lock, so
 * concurrent tasks (several runs, the server's workers) never interleave their lines.
 */
#include "notify/notify.h"

#include "net/http.h"
#include "net/sign.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define MNS_VERSION "2015-06-06"

typedef struct outcome {
    char status[16]; /* Delivered, Failed */
    char message[512];
    char message_id[128];
} outcome;

static void add_outcome(cJSON *arr, const char *dest, const char *target, const outcome *o)
{
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "Destination", dest);
    cJSON_AddStringToObject(x, "Target", target);
    cJSON_AddStringToObject(x, "Status", o->status);
    cJSON_AddStringToObject(x, "Message", o->message);
    if (o->message_id[0])
        cJSON_AddStringToObject(x, "MessageId", o->message_id);
    cJSON_AddItemToArray(arr, x);
}

__attribute__((format(printf, 3, 4))) static void set(outcome *o, const char *status,
                                                      const char *fmt, ...)
{
    va_list ap;
    snprintf(o->status, sizeof(o->status), "%s", status);
    va_start(ap, fmt);
    vsnprintf(o->message, sizeof(o->message), fmt, ap);
    va_end(ap);
}

static void to_file(const char *path, const char *message, outcome *o)
{
    size_t len = strlen(message);
    char *line = malloc(len + 2);
    if (!line) {
        set(o, "Failed", "out of memory");
        return;
    }
    memcpy(line, message, len);
    line[len] = '\n';
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        set(o, "Failed", "Cannot open %s: %s", path, strerror(errno));
        free(line);
        return;
    }
    ssize_t n = -1;
    if (!flock(fd, LOCK_EX)) {
        n = write(fd, line, len + 1);
        fsync(fd);
        flock(fd, LOCK_UN);
    }
    if (n == (ssize_t)(len + 1))
        set(o, "Delivered", "Appended to %s.", path);
    else
        set(o, "Failed", "Cannot append to %s: %s", path, n < 0 ? strerror(errno) : "short write");
    close(fd);
    free(line);
}

/* One POST, retried while the failure may pass; fills o. *resp is the last answer. */
typedef size_t (*header_fn)(imm_kv *h, void *opaque);

static int post(const imm_notify_config *cfg, const char *url, const char *body,
                header_fn headers, void *opaque, imm_http_response *resp, outcome *o)
{
    imm_http *http = imm_http_new(NULL);
    imm_http_retry retry;
    imm_kv h[12];
    int ok = 0;
    if (!http) {
        set(o, "Failed", "out of memory");
        return 0;
    }
    imm_http_retry_start(&retry, cfg->retries, cfg->retry_seconds);
    for (;;) {
        size_t n = headers(h, opaque);
        imm_http_request q = {.method = "POST", .url = url, .headers = h, .nheaders = n,
                              .body = body, .body_fd = -1, .body_len = (int64_t)strlen(body),
                              .stall_timeout = 30};
        int rc = imm_http_perform(http, &q, resp);
        if (!rc && resp->status / 100 == 2) {
            ok = 1;
            break;
        }
        if (!imm_http_retryable(rc, resp) || !imm_http_retry_again(&retry)) {
            if (rc)
                set(o, "Failed", "POST %s failed after %d attempt%s: %s", url, retry.attempt + 1,
                    retry.attempt ? "s" : "", resp->reason);
            else {
                /* MNS answers XML with a Code and Message; anything else is quoted briefly. */
                char code[64], msg[200];
                imm_xml_text(resp->body, "Code", code, sizeof(code));
                imm_xml_text(resp->body, "Message", msg, sizeof(msg));
                if (!code[0])
                    snprintf(msg, sizeof(msg), "%.120s", resp->body ? resp->body : "");
                set(o, "Failed", "POST %s answered HTTP %ld after %d attempt%s%s%s%s%s", url,
                    resp->status, retry.attempt + 1, retry.attempt ? "s" : "", code[0] ? " " : "",
                    code, msg[0] ? ": " : "", msg);
            }
            break;
        }
    }
    imm_http_free(http);
    return ok;
}

static size_t json_headers(imm_kv *h, void *opaque)
{
    (void)opaque;
    h[0] = (imm_kv){"Content-Type", "application/json"};
    return 1;
}

static void to_url(const imm_notify_config *cfg, const char *url, const char *message,
                   outcome *o)
{
    imm_http_response resp = {0};
    if (post(cfg, url, message, json_headers, NULL, &resp, o))
        set(o, "Delivered", "POST %s answered HTTP %ld.", url, resp.status);
    imm_http_response_clear(&resp);
}

/* The headers of one MNS attempt, signed with a fresh Date. */
typedef struct mns_call {
    const imm_notify_config *cfg;
    char resource[400];
    char date[40];
    char *auth;
} mns_call;

static size_t mns_headers(imm_kv *h, void *opaque)
{
    mns_call *m = opaque;
    const imm_notify_config *cfg = m->cfg;
    static const char type[] = "text/xml;charset=utf-8";
    size_t n = 0;
    imm_http_date(time(NULL), m->date);
    h[n++] = (imm_kv){"Date", m->date};
    h[n++] = (imm_kv){"Content-Type", type};
    h[n++] = (imm_kv){"x-mns-version", MNS_VERSION};
    free(m->auth);
    m->auth = NULL;
    if (cfg->access_key_id && cfg->access_key_secret) {
        char sig[29];
        char *sts = imm_sign_hmac1_string("x-mns-", "POST", NULL, type, m->date, h, n,
                                          m->resource);
        if (sts) {
            imm_sign_v1_signature(cfg->access_key_secret, sts, sig);
            size_t len = strlen(cfg->access_key_id) + strlen(sig) + 6;
            if ((m->auth = malloc(len)))
                snprintf(m->auth, len, "MNS %s:%s", cfg->access_key_id, sig);
            free(sts);
        }
        if (m->auth)
            h[n++] = (imm_kv){"Authorization", m->auth};
    }
    if (cfg->security_token)
        h[n++] = (imm_kv){"security-token", cfg->security_token};
    return n;
}

static char *xml_escape(const char *s)
{
    size_t len = 0;
    for (const char *p = s; *p; p++)
        len += *p == '&' ? 5 : *p == '<' || *p == '>' ? 4 : *p == '"' || *p == '\'' ? 6 : 1;
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s; *p; p++) {
        const char *r = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;"
                        : *p == '"' ? "&quot;" : *p == '\'' ? "&apos;" : NULL;
        if (r) {
            memcpy(o, r, strlen(r));
            o += strlen(r);
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

static void md5_hex_upper(const char *s, char out[33])
{
    unsigned char d[16];
    unsigned int len = 0;
    EVP_Digest(s, strlen(s), d, &len, EVP_md5(), NULL);
    for (int i = 0; i < 16; i++)
        snprintf(out + i * 2, 3, "%02X", d[i]);
}

/* The length of endpoint without its trailing '/'s. */
static size_t endpoint_len(const char *endpoint)
{
    size_t n = strlen(endpoint);
    while (n && endpoint[n - 1] == '/')
        n--;
    return n;
}

static int same_endpoint(const char *a, const char *b)
{
    size_t n = endpoint_len(a);
    return n == endpoint_len(b) && !strncasecmp(a, b, n);
}

/* The MNS endpoint a request's message goes to: the operator's, or in a run of the operator's
 * own request, the one it names. NULL when there is none. */
static const char *mns_endpoint(const imm_notify_config *cfg, const imm_notification *n)
{
    return n->endpoint && !cfg->operator_sinks_only ? n->endpoint : cfg->mns_endpoint;
}

imm_err imm_notify_admits(const imm_notify_config *cfg, const imm_request *req, imm_error *err)
{
    imm_notification n = imm_request_notification(req);
    if (n.rocketmq)
        return imm_error_set(err, IMM_EARG, "The parameter Notification.RocketMQ asks for a "
                             "RocketMQ message, which immerge does not send; use Notification.MNS "
                             "or the server's --notify-url or --notify-file.");
    if (n.endpoint && cfg->operator_sinks_only &&
        (!cfg->mns_endpoint || !same_endpoint(n.endpoint, cfg->mns_endpoint)))
        return imm_error_set(err, IMM_EARG, "The parameter %s names an MNS endpoint other than "
                             "this server's: messages go only where its operator configured "
                             "(--mns-endpoint).", n.endpoint_field);
    if (n.topic && !mns_endpoint(cfg, &n))
        return imm_error_set(err, IMM_EARG, "The parameter %s names MNS topic %s, but this "
                             "server has no MNS endpoint to publish it to (--mns-endpoint or "
                             "MNS_ENDPOINT).", n.topic_field, n.topic);
    return IMM_OK;
}

static void to_mns(const imm_notify_config *cfg, const char *endpoint, const char *topic,
                   const char *message, outcome *o)
{
    char url[1024], md5[33], got[64];
    mns_call m = {.cfg = cfg};
    imm_http_response resp = {0};
    if (!endpoint) {
        set(o, "Failed", "The request names MNS topic %s, but no MNS endpoint is configured "
            "(--mns-endpoint or MNS_ENDPOINT).", topic);
        return;
    }
    snprintf(m.resource, sizeof(m.resource), "/topics/%s/messages", topic);
    snprintf(url, sizeof(url), "%.*s%s", (int)endpoint_len(endpoint), endpoint, m.resource);
    char *escaped = xml_escape(message);
    size_t blen = escaped ? strlen(escaped) + 160 : 0;
    char *body = escaped ? malloc(blen) : NULL;
    if (!body) {
        set(o, "Failed", "out of memory");
        free(escaped);
        return;
    }
    snprintf(body, blen, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Message xmlns=\"http://mns."
             "aliyuncs.com/doc/v1/\"><MessageBody>%s</MessageBody></Message>", escaped);
    if (post(cfg, url, body, mns_headers, &m, &resp, o)) {
        imm_xml_text(resp.body, "MessageId", o->message_id, sizeof(o->message_id));
        imm_xml_text(resp.body, "MessageBodyMD5", got, sizeof(got));
        md5_hex_upper(message, md5);
        if (got[0] && strcasecmp(got, md5))
            set(o, "Failed", "MNS topic %s took the message but reports MessageBodyMD5 %s, not "
                "%s: the body was altered on the way.", topic, got, md5);
        else
            set(o, "Delivered", "Published to MNS topic %s (HTTP %ld).", topic, resp.status);
    }
    imm_http_response_clear(&resp);
    free(m.auth);
    free(body);
    free(escaped);
}

/* The full task JSON to the object the request names, atomically, through storage. */
static void to_object(imm_storage *st, const char *uri, const char *json, outcome *o)
{
    imm_object *obj = NULL;
    imm_error err = {0};
    size_t len = strlen(json);
    if (!st) {
        set(o, "Failed", "No storage to write %s with.", uri);
        return;
    }
    if (st->ops->open_write(st, uri, &obj, &err) == IMM_OK) {
        if (st->ops->write(obj, (const uint8_t *)json, len) != (int64_t)len)
            imm_error_set(&err, IMM_EIO, "Writing %s failed: %s", uri, strerror(errno));
        else
            st->ops->commit(obj, &err);
        st->ops->close(obj);
    }
    if (err.code)
        set(o, "Failed", "%s: %s", imm_err_code(err.code), err.message);
    else
        set(o, "Delivered", "The task JSON (%zu bytes) is at %s.", len, uri);
}

static int add_message(imm_message *m, int *n, const char *destination, const char *target,
                       const char *endpoint, const char *body)
{
    imm_message *x = &m[*n];
    x->destination = destination;
    x->target = strdup(target);
    x->endpoint = endpoint ? strdup(endpoint) : NULL;
    x->body = strdup(body);
    (*n)++;
    return x->target && x->body && (!endpoint || x->endpoint) ? 0 : -1;
}

imm_message *imm_notify_messages(const imm_notify_config *cfg, const imm_request *req,
                                 const imm_task *task, int *count)
{
    imm_notification n = imm_request_notification(req);
    const char *topic = n.topic, *extended = n.extended_uri, *endpoint = mns_endpoint(cfg, &n);
    *count = 0;
    if (!cfg->file && !cfg->url && !topic && !extended && !n.rocketmq)
        return NULL;
    /* The subject names an account and region: given, else read off the MNS endpoint
     * ("https://ACCOUNT.mns.REGION.aliyuncs.com"), else placeholders for an offline run. */
    char account[64] = "0", region[64] = "local";
    const char *host = endpoint ? strstr(endpoint, "://") : NULL;
    host = host ? host + 3 : endpoint;
    const char *mns = host ? strstr(host, ".mns.") : NULL;
    if (mns && (size_t)(mns - host) < sizeof(account)) {
        snprintf(account, sizeof(account), "%.*s", (int)(mns - host), host);
        const char *r = mns + 5, *dot = strchr(r, '.');
        if (dot && (size_t)(dot - r) < sizeof(region))
            snprintf(region, sizeof(region), "%.*s", (int)(dot - r), r);
    }
    char *message = imm_task_message(task, cfg->region ? cfg->region : region,
                                     cfg->account_id ? cfg->account_id : account);
    char *json = extended ? imm_task_to_json(task) : NULL;
    imm_message *m = calloc(5, sizeof(*m));
    int n_ = 0, bad = !message || !m || (extended && !json);
    if (!bad && topic)
        bad |= add_message(m, &n_, "MNS", topic, endpoint ? endpoint : "", message);
    if (!bad && n.rocketmq)
        bad |= add_message(m, &n_, "RocketMQ", "", NULL, message);
    if (!bad && extended)
        bad |= add_message(m, &n_, "ExtendedMessageURI", extended, NULL, json);
    if (!bad && cfg->url)
        bad |= add_message(m, &n_, "URL", cfg->url, NULL, message);
    if (!bad && cfg->file)
        bad |= add_message(m, &n_, "File", cfg->file, NULL, message);
    free(message);
    free(json);
    if (bad) {
        imm_notify_messages_free(m, n_);
        return NULL;
    }
    *count = n_;
    return m;
}

const char *imm_notify_destination(const char *name)
{
    static const char *const kinds[] = {"MNS", "RocketMQ", "ExtendedMessageURI", "URL", "File"};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(*kinds); k++)
        if (!strcmp(name, kinds[k]))
            return kinds[k];
    return kinds[1];
}

void imm_notify_messages_free(imm_message *m, int n)
{
    for (int i = 0; m && i < n; i++) {
        free(m[i].target);
        free(m[i].endpoint);
        free(m[i].body);
    }
    free(m);
}

static void send1(const imm_notify_config *cfg, imm_storage *st, const imm_message *m,
                  outcome *o)
{
    const char *d = m->destination;
    if (!strcmp(d, "MNS"))
        to_mns(cfg, m->endpoint && *m->endpoint ? m->endpoint : NULL, m->target, m->body, o);
    else if (!strcmp(d, "ExtendedMessageURI"))
        to_object(st, m->target, m->body, o);
    else if (!strcmp(d, "URL"))
        to_url(cfg, m->target, m->body, o);
    else if (!strcmp(d, "File"))
        to_file(m->target, m->body, o);
    else
        set(o, "Failed", "RocketMQ delivery is not supported by immerge; use an MNS topic, "
            "--notify-url or --notify-file.");
}

int imm_notify_send(const imm_notify_config *cfg, imm_storage *st, const imm_message *m,
                    char *why, size_t len)
{
    outcome o = {0};
    send1(cfg, st, m, &o);
    snprintf(why, len, "%s", o.message);
    return !strcmp(o.status, "Delivered");
}

char *imm_notify_send_all(const imm_notify_config *cfg, imm_storage *st, const imm_message *m,
                          int n, int *delivered)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < n; i++) {
        outcome o = {0};
        send1(cfg, st, &m[i], &o);
        delivered[i] = !strcmp(o.status, "Delivered");
        add_outcome(arr, m[i].destination, m[i].target, &o);
    }
    char *out = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    return out;
}
