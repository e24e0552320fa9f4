/* Unit tests of the task records on a temporary SQLite file (tasks/tasks.c, tasks/sqlite.c),
 * through the interface `serve` uses: a queued task is reported as the service reports one, a
 * worker's run records its end (Succeeded with the samples made, or Failed with a Code),
 * ListTasks filters by project, status and tag, pages with NextToken through every task once,
 * sorts both ways, and refuses a parameter it does not take by name; a stopping server's queued
 * task is recorded NotStarted. The merges are real: a 1000-sample WAV written here, to MP3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oss/oss.h"
#include "tasks/job.h"
#include "tasks/tasks.h"

typedef struct fixture {
    char root[64];
    imm_storage *st;
    imm_tasks *tasks;
    imm_notify_config notify;
    imm_job_env env;
} fixture;

/* RIFF/WAVE, PCM 16-bit mono at 8000 Hz, n samples of a ramp. */
static void write_wav(const char *path, int n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint32_t data = (uint32_t)n * 2, riff = 36 + data, fmt = 16, rate = 8000, bytes = 16000;
    uint16_t pcm = 1, ch = 1, align = 2, bits = 16;
    fwrite("RIFF", 1, 4, f), fwrite(&riff, 4, 1, f), fwrite("WAVEfmt ", 1, 8, f);
    fwrite(&fmt, 4, 1, f), fwrite(&pcm, 2, 1, f), fwrite(&ch, 2, 1, f), fwrite(&rate, 4, 1, f);
    fwrite(&bytes, 4, 1, f), fwrite(&align, 2, 1, f), fwrite(&bits, 2, 1, f);
    fwrite("data", 1, 4, f), fwrite(&data, 4, 1, f);
    for (int i = 0; i < n; i++) {
        int16_t s = (int16_t)((i % 200) * 100 - 10000);
        fwrite(&s, 2, 1, f);
    }
    fclose(f);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    snprintf(fx->root, sizeof(fx->root), "/tmp/immerge-records-XXXXXX");
    assert_non_null(mkdtemp(fx->root));
    char path[128];
    snprintf(path, sizeof(path), "%s/bkt", fx->root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/bkt/in.wav", fx->root);
    write_wav(path, 1000);
    imm_error err = {0};
    assert_int_equal(imm_oss_local_new(fx->root, NULL, &fx->st, &err), IMM_OK);
    snprintf(path, sizeof(path), "%s/tasks.db", fx->root);
    imm_tasks_options opt = {.quiet = 1};
    assert_int_equal(imm_tasks_open(path, &opt, &fx->tasks, &err), IMM_OK);
    fx->env = (imm_job_env){.run = {.storage = fx->st, .chunks = 1}, .tasks = fx->tasks,
                            .notify = &fx->notify, .quiet = 1};
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    imm_tasks_close(fx->tasks);
    imm_storage_free(fx->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->root);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

/* Queues a merge of in.wav (or of a missing source) for project, tagged n=tag; its TaskId. */
static void submit(fixture *fx, const char *project, int tag, int missing, char id[128])
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"ProjectName\":\"%s\",\"Tags\":{\"n\":\"%d\"},\"Sources\":[{\"URI\":"
             "\"oss://bkt/%s\"}],\"Targets\":[{\"URI\":\"oss://bkt/out/%s-%d.{autoext}\","
             "\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}",
             project, tag, missing ? "missing.wav" : "in.wav", project, tag);
    imm_request *req = NULL;
    imm_error err = {0};
    if (imm_request_parse(json, strlen(json), &req, &err))
        fail_msg("%s", err.message);
    imm_task *task = imm_task_new(req);
    char *record = imm_task_to_json(task);
    cJSON *o = cJSON_Parse(record);
    snprintf(id, 128, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(o, "TaskId")));
    cJSON_Delete(o);
    free(record);
    int full = 0;
    assert_int_equal(imm_tasks_enqueue(fx->tasks, task, req, 100, &full, &err), IMM_OK);
    assert_int_equal(full, 0);
}

/* One worker's turn: claims the next task and runs it to its recorded end. */
static void work(fixture *fx)
{
    static const volatile int go = 0;
    imm_claim *c = NULL;
    imm_error err = {0};
    assert_int_equal(imm_tasks_claim(fx->tasks, &go, &c, &err), IMM_OK);
    assert_non_null(c);
    imm_job_run(&fx->env, imm_claim_task(c), imm_claim_request(c), c, &err);
    imm_tasks_release(fx->tasks, c);
}

static cJSON *get(fixture *fx, const char *project, const char *id, imm_err want)
{
    char *json = NULL;
    imm_error err = {0};
    assert_int_equal(imm_tasks_get(fx->tasks, project, id, "MediaConvert", 0, &json, &err), want);
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    free(json);
    return o;
}

static const char *str(const cJSON *o, const char *k)
{
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(o, k));
    return v ? v : "(none)";
}

static void a_task_from_queue_to_its_end(void **state)
{
    fixture *fx = *state;
    char ok[128], bad[128];
    submit(fx, "p", 0, 0, ok);
    submit(fx, "p", 1, 1, bad);
    cJSON *o = get(fx, "p", ok, IMM_OK);
    /* Waiting: Running as the service says, with Progress 0 and a StartTime; our state apart. */
    assert_string_equal(str(o, "Status"), "Running");
    assert_string_equal(str(o, "ImmergeStatus"), "Queued");
    assert_int_equal(cJSON_GetObjectItem(o, "Progress")->valueint, 0);
    assert_string_not_equal(str(o, "StartTime"), "(none)");
    cJSON_Delete(o);
    work(fx);
    work(fx);
    o = get(fx, "p", ok, IMM_OK);
    assert_string_equal(str(o, "Status"), "Succeeded");
    const cJSON *target = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "Targets"), 0);
    assert_int_equal(cJSON_GetObjectItem(target, "Samples")->valueint, 1000);
    assert_string_equal(str(target, "URI"), "oss://bkt/out/p-0.mp3");
    assert_string_not_equal(str(o, "EndTime"), "(none)");
    cJSON_Delete(o);
    o = get(fx, "p", bad, IMM_OK);
    assert_string_equal(str(o, "Status"), "Failed");
    assert_string_not_equal(str(o, "Code"), "");
    assert_non_null(strstr(str(o, "Message"), "missing.wav"));
    cJSON_Delete(o);
    /* Another project's name, or no such task: ResourceNotFound. */
    assert_null(get(fx, "q", ok, IMM_ENOTFOUND));
    assert_null(get(fx, "p", "MediaConvert-00000000-0000-0000-0000-000000000000", IMM_ENOTFOUND));
}

/* Lists with the parameters given as the API gives them ("Name", "value", ..., NULL). */
static cJSON *list(fixture *fx, const char *project, ...)
{
    imm_list_query q = {.project = project};
    imm_error err = {0};
    va_list ap;
    va_start(ap, project);
    for (const char *k; (k = va_arg(ap, const char *));)
        assert_int_equal(imm_list_query_set(&q, k, va_arg(ap, const char *), &err), IMM_OK);
    va_end(ap);
    char *json = NULL;
    assert_int_equal(imm_tasks_list(fx->tasks, &q, &json, &err), IMM_OK);
    cJSON *o = cJSON_Parse(json);
    free(json);
    return o;
}

static int count(const cJSON *o)
{
    return cJSON_GetArraySize(cJSON_GetObjectItem(o, "Tasks"));
}

static void lists_filter_page_and_sort(void **state)
{
    fixture *fx = *state;
    char ids[7][128];
    for (int i = 0; i < 5; i++)
        submit(fx, "p1", i % 2, 0, ids[i]);
    submit(fx, "p2", 0, 0, ids[5]);
    submit(fx, "p2", 1, 0, ids[6]);
    for (int i = 0; i < 4; i++)
        work(fx); /* the fairer claim takes p2's too: whatever ran, 3 wait */
    cJSON *o = list(fx, "p1", NULL);
    assert_int_equal(count(o), 5);
    cJSON_Delete(o);
    o = list(fx, "p1", "TagSelector", "n=0", NULL);
    assert_int_equal(count(o), 3);
    cJSON_Delete(o);
    int succeeded = 0, running = 0;
    for (const char *const *p = (const char *const[]){"p1", "p2", NULL}; *p; p++) {
        o = list(fx, *p, "Status", "Succeeded", NULL);
        succeeded += count(o);
        cJSON_Delete(o);
        o = list(fx, *p, "Status", "Running", NULL); /* the waiting ones */
        running += count(o);
        cJSON_Delete(o);
    }
    assert_int_equal(succeeded, 4);
    assert_int_equal(running, 3);

    /* Pages of 2 in TaskId order: every task once, in order, NextToken until the last. */
    char seen[5][128];
    int n = 0;
    char token[512] = "";
    for (int page = 0; page < 4; page++) {
        o = page ? list(fx, "p1", "MaxResults", "2", "Sort", "TaskId", "NextToken", token, NULL)
                 : list(fx, "p1", "MaxResults", "2", "Sort", "TaskId", NULL);
        assert_string_equal(str(o, "MaxResults"), "2");
        cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(o, "Tasks")) {
            assert_true(n < 5);
            snprintf(seen[n], sizeof(seen[n]), "%s", str(t, "TaskId"));
            if (n)
                assert_true(strcmp(seen[n - 1], seen[n]) < 0);
            n++;
        }
        const char *next = cJSON_GetStringValue(cJSON_GetObjectItem(o, "NextToken"));
        snprintf(token, sizeof(token), "%s", next ? next : "");
        cJSON_Delete(o);
        if (!next)
            break;
    }
    assert_int_equal(n, 5);
    for (int i = 0; i < 5; i++) {
        int found = 0;
        for (int j = 0; j < 5; j++)
            found += !strcmp(seen[j], ids[i]);
        assert_int_equal(found, 1);
    }
    o = list(fx, "p1", "Sort", "TaskId", "Order", "desc", NULL);
    for (int i = 0; i < 5; i++)
        assert_string_equal(str(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "Tasks"), i), "TaskId"),
                            seen[4 - i]);
    cJSON_Delete(o);
    for (int i = 0; i < 3; i++)
        work(fx);
}

static void parameters_it_does_not_take_are_named(void **state)
{
    (void)state;
    static const char *const bad[][2] = {{"MaxResults", "0"}, {"MaxResults", "101"},
                                         {"MaxResults", "x"}, {"Sort", "Size"},
                                         {"Order", "up"},     {"TagSelector", "novalue"},
                                         {"StartTimeRange", "{\"Start\":\"yesterday\"}"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        imm_list_query q = {0};
        imm_error err = {0};
        assert_int_equal(imm_list_query_set(&q, bad[i][0], bad[i][1], &err), IMM_EARG);
        if (!strstr(err.message, bad[i][0]))
            fail_msg("%s=%s: %s", bad[i][0], bad[i][1], err.message);
    }
}

static void a_stopping_server_records_its_queue_not_started(void **state)
{
    fixture *fx = *state;
    char id[128];
    submit(fx, "p", 0, 0, id);
    imm_tasks_drain(fx->tasks);
    cJSON *o = get(fx, "p", id, IMM_OK);
    assert_string_equal(str(o, "Status"), "Failed");
    assert_string_equal(str(o, "Code"), "NotStarted");
    assert_string_equal(str(o, "ImmergeStatus"), "Cancelled");
    cJSON_Delete(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_task_from_queue_to_its_end, setup, teardown),
        cmocka_unit_test_setup_teardown(lists_filter_page_and_sort, setup, teardown),
        cmocka_unit_test(parameters_it_does_not_take_are_named),
        cmocka_unit_test_setup_teardown(a_stopping_server_records_its_queue_not_started, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
