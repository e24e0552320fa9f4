/* Unit tests of the Prometheus text writer (serve/metrics.c): exact lines, label escaping,
 * values as the format writes them, a histogram's cumulative buckets. (The cluster suite parses
 * a live server's answer with the Python client's own parser.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "serve/metrics.h"

static void families_and_samples(void **state)
{
    (void)state;
    imm_metrics *m = imm_metrics_new();
    imm_metrics_family(m, "immerge_queue_depth", "gauge", "Tasks waiting.");
    imm_metrics_sample(m, "immerge_queue_depth", 3, "project", "a", NULL);
    imm_metrics_sample(m, "immerge_queue_depth", 0.5, "project", "b", "x", "y", NULL);
    imm_metrics_sample(m, "immerge_queue_depth", 7, NULL);
    char *text = imm_metrics_finish(m);
    assert_string_equal(text, "# HELP immerge_queue_depth Tasks waiting.\n"
                              "# TYPE immerge_queue_depth gauge\n"
                              "immerge_queue_depth{project=\"a\"} 3\n"
                              "immerge_queue_depth{project=\"b\",x=\"y\"} 0.5\n"
                              "immerge_queue_depth 7\n");
    free(text);
}

static void label_values_are_escaped(void **state)
{
    (void)state;
    imm_metrics *m = imm_metrics_new();
    imm_metrics_sample(m, "n", 1, "project", "a\"b\\c\nd", NULL);
    char *text = imm_metrics_finish(m);
    assert_string_equal(text, "n{project=\"a\\\"b\\\\c\\nd\"} 1\n");
    free(text);
}

static void special_values(void **state)
{
    (void)state;
    imm_metrics *m = imm_metrics_new();
    imm_metrics_sample(m, "a", INFINITY, NULL);
    imm_metrics_sample(m, "b", NAN, NULL);
    imm_metrics_sample(m, "c", 1e20, NULL);
    char *text = imm_metrics_finish(m);
    assert_string_equal(text, "a +Inf\nb NaN\nc 1e+20\n");
    free(text);
}

static void histogram_buckets_are_cumulative(void **state)
{
    (void)state;
    static const double bounds[IMM_HISTOGRAM_BUCKETS] = {1, 5, 15, 60, 300, 900, 1800, 3600,
                                                         21600};
    imm_histogram h;
    imm_histogram_init(&h, bounds);
    imm_histogram_observe(&h, 0.5);
    imm_histogram_observe(&h, 1); /* le is inclusive */
    imm_histogram_observe(&h, 4);
    imm_histogram_observe(&h, 1e6); /* past every bound: +Inf only */
    imm_metrics *m = imm_metrics_new();
    imm_metrics_histogram(m, "d", &h);
    char *text = imm_metrics_finish(m);
    assert_non_null(strstr(text, "d_bucket{le=\"1\"} 2\nd_bucket{le=\"5\"} 3\n"));
    assert_non_null(strstr(text, "d_bucket{le=\"21600\"} 3\nd_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "d_sum 1000005.5\nd_count 4\n"));
    free(text);
}

static void long_text_grows(void **state)
{
    (void)state;
    imm_metrics *m = imm_metrics_new();
    char project[300];
    memset(project, 'p', sizeof(project) - 1);
    project[sizeof(project) - 1] = '\0';
    for (int i = 0; i < 100; i++)
        imm_metrics_sample(m, "q", i, "project", project, NULL);
    char *text = imm_metrics_finish(m);
    assert_int_equal(strlen(text), 100 * (strlen("q{project=\"\"} \n") + 299) + 10 + 90 * 2);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(families_and_samples),
        cmocka_unit_test(label_values_are_escaped),
        cmocka_unit_test(special_values),
        cmocka_unit_test(histogram_buckets_are_cumulative),
        cmocka_unit_test(long_text_grows),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
