/* Unit tests of the embedded local store (oss/local.c): mapping, containment, atomic writes,
 * commits once per owner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oss/oss.h"

typedef struct fixture {
    char dir[64];  /* holds root/ and outside/ */
    char root[96];
    imm_storage *st;
} fixture;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    char path[256];
    strcpy(fx->dir, "/tmp/immerge-unit-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->root, sizeof(fx->root), "%s/root", fx->dir);
    mkdir(fx->root, 0755);
    snprintf(path, sizeof(path), "%s/bkt", fx->root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/bkt/in.txt", fx->root);
    write_file(path, "source bytes");
    snprintf(path, sizeof(path), "%s/outside", fx->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/outside/secret.txt", fx->dir);
    write_file(path, "secret");
    char link[256];
    snprintf(link, sizeof(link), "%s/bkt/link.txt", fx->root);
    assert_int_equal(symlink(path, link), 0);
    snprintf(path, sizeof(path), "%s/outside", fx->dir);
    snprintf(link, sizeof(link), "%s/bkt/dirlink", fx->root);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(imm_oss_local_new(fx->root, NULL, &fx->st, NULL), IMM_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[128];
    imm_storage_free(fx->st);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->dir);
    if (system(cmd) != 0)
        return -1;
    free(fx);
    return 0;
}

static void oss_uri_reads_root_bucket_key(void **state)
{
    fixture *fx = *state;
    imm_object *obj = NULL;
    uint8_t buf[64] = {0};
    assert_int_equal(fx->st->ops->open_read(fx->st, "oss://bkt/in.txt", &obj, NULL), IMM_OK);
    assert_int_equal(fx->st->ops->seek(obj, 0, IMM_SEEK_SIZE), 12);
    assert_int_equal(fx->st->ops->read(obj, buf, sizeof(buf)), 12);
    assert_memory_equal(buf, "source bytes", 12);
    assert_int_equal(fx->st->ops->seek(obj, 7, SEEK_SET), 7);
    assert_int_equal(fx->st->ops->read(obj, buf, 5), 5);
    assert_memory_equal(buf, "bytes", 5);
    fx->st->ops->close(obj);
}

static void missing_object_is_not_found(void **state)
{
    fixture *fx = *state;
    imm_object *obj = NULL;
    imm_error err;
    assert_int_equal(fx->st->ops->open_read(fx->st, "oss://bkt/none.mp3", &obj, &err),
                     IMM_ENOTFOUND);
    assert_non_null(strstr(err.message, "oss://bkt/none.mp3"));
}

static void links_out_of_the_root_are_forbidden(void **state)
{
    fixture *fx = *state;
    imm_object *obj = NULL;
    imm_error err;
    assert_int_equal(fx->st->ops->open_read(fx->st, "oss://bkt/link.txt", &obj, &err),
                     IMM_EFORBIDDEN);
    assert_int_equal(fx->st->ops->open_read(fx->st, "oss://bkt/dirlink/secret.txt", &obj, &err),
                     IMM_EFORBIDDEN);
    assert_int_equal(fx->st->ops->open_write(fx->st, "oss://bkt/dirlink/new.txt", &obj, &err),
                     IMM_EFORBIDDEN);
    char path[256];
    snprintf(path, sizeof(path), "%s/outside/new.txt", fx->dir);
    assert_int_equal(access(path, F_OK), -1);
}

static int count_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    return n;
}

static void writes_appear_only_on_commit(void **state)
{
    fixture *fx = *state;
    imm_object *obj = NULL;
    char path[300], dir[200];
    struct stat sb;
    snprintf(dir, sizeof(dir), "%s/bkt/new/deeper", fx->root);
    snprintf(path, sizeof(path), "%s/out.bin", dir);
    assert_int_equal(fx->st->ops->open_write(fx->st, "oss://bkt/new/deeper/out.bin", &obj, NULL),
                     IMM_OK);
    assert_int_equal(fx->st->ops->write(obj, (const uint8_t *)"hello world", 11), 11);
    assert_int_equal(fx->st->ops->seek(obj, 0, SEEK_SET), 0);
    assert_int_equal(fx->st->ops->write(obj, (const uint8_t *)"J", 1), 1);
    assert_int_equal(stat(path, &sb), -1); /* not visible before commit */
    assert_int_equal(fx->st->ops->commit(obj, NULL), IMM_OK);
    fx->st->ops->close(obj);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 11);
    assert_int_equal(count_entries(dir), 1); /* no temporary left */
}

static void an_uncommitted_write_leaves_nothing_and_keeps_the_old_object(void **state)
{
    fixture *fx = *state;
    imm_object *obj = NULL;
    char path[300], dir[200], buf[32] = {0};
    snprintf(dir, sizeof(dir), "%s/bkt", fx->root);
    snprintf(path, sizeof(path), "%s/in.txt", dir);
    int before = count_entries(dir);
    assert_int_equal(fx->st->ops->open_write(fx->st, "oss://bkt/in.txt", &obj, NULL), IMM_OK);
    assert_int_equal(fx->st->ops->write(obj, (const uint8_t *)"partial", 7), 7);
    fx->st->ops->close(obj);
    assert_int_equal(count_entries(dir), before);
    FILE *f = fopen(path, "r");
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_string_equal(buf, "source bytes");
}

/* Writes text to uri and commits it for owner; returns *already. */
static int commit_for(imm_storage *st, const char *uri, const char *text, const char *owner)
{
    imm_object *obj = NULL;
    int already = -1;
    assert_int_equal(st->ops->open_write(st, uri, &obj, NULL), IMM_OK);
    assert_int_equal(st->ops->write(obj, (const uint8_t *)text, strlen(text)),
                     (int64_t)strlen(text));
    assert_int_equal(st->ops->commit_owned(obj, owner, &already, NULL), IMM_OK);
    st->ops->close(obj);
    return already;
}

static void read_back(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    memset(buf, 0, cap);
    assert_true(fread(buf, 1, cap - 1, f) > 0);
    fclose(f);
}

/* Two runs of one task write a file once; another task, or a plain commit, replaces it. */
static void a_file_is_committed_once_per_owner(void **state)
{
    fixture *fx = *state;
    char path[300], dir[200], buf[64], owner[64];
    snprintf(dir, sizeof(dir), "%s/bkt/owned", fx->root);
    snprintf(path, sizeof(path), "%s/out.txt", dir);
    const char *uri = "oss://bkt/owned/out.txt";
    assert_int_equal(fx->st->ops->owner_of(fx->st, uri, owner, sizeof(owner), NULL),
                     IMM_ENOTFOUND);
    assert_int_equal(commit_for(fx->st, uri, "first run", "task-a"), 0);
    assert_int_equal(commit_for(fx->st, uri, "second run", "task-a"), 1);
    read_back(path, buf, sizeof(buf));
    assert_string_equal(buf, "first run");
    assert_int_equal(fx->st->ops->owner_of(fx->st, uri, owner, sizeof(owner), NULL), IMM_OK);
    assert_string_equal(owner, "task-a");
    assert_int_equal(count_entries(dir), 1); /* the second run's file is gone */

    assert_int_equal(commit_for(fx->st, uri, "another task", "task-b"), 0);
    read_back(path, buf, sizeof(buf));
    assert_string_equal(buf, "another task");
    assert_int_equal(fx->st->ops->owner_of(fx->st, uri, owner, sizeof(owner), NULL), IMM_OK);
    assert_string_equal(owner, "task-b");

    /* A file no task tagged (a new one, by hand or by a plain commit) is replaced. */
    assert_int_equal(unlink(path), 0);
    write_file(path, "by hand");
    assert_int_equal(fx->st->ops->owner_of(fx->st, uri, owner, sizeof(owner), NULL), IMM_OK);
    assert_string_equal(owner, "");
    assert_int_equal(commit_for(fx->st, uri, "task b again", "task-b"), 0);
    read_back(path, buf, sizeof(buf));
    assert_string_equal(buf, "task b again");
    assert_int_equal(count_entries(dir), 1);
}

static void a_missing_bucket_is_not_created(void **state)
{
    fixture *fx = *state;
    imm_object *obj = NULL;
    char path[256];
    assert_int_equal(fx->st->ops->open_write(fx->st, "oss://nobucket/a/b.mp3", &obj, NULL),
                     IMM_ENOTFOUND);
    snprintf(path, sizeof(path), "%s/nobucket", fx->root);
    assert_int_equal(access(path, F_OK), -1);
}

static void oss_uris_need_a_root(void **state)
{
    (void)state;
    imm_storage *st = NULL;
    imm_object *obj = NULL;
    imm_error err;
    assert_int_equal(imm_oss_local_new(NULL, NULL, &st, NULL), IMM_OK);
    assert_int_equal(st->ops->open_read(st, "oss://bkt/in.txt", &obj, &err), IMM_EARG);
    assert_non_null(strstr(err.message, "--oss-root"));
    imm_storage_free(st);
    assert_int_equal(imm_oss_local_new("/nonexistent/immerge", NULL, &st, &err), IMM_EARG);
}

/* remove undoes a committed object, treats a missing one as done, and cannot reach outside the
 * root through a link: the target outside stays. */
static void remove_stays_inside_the_root(void **state)
{
    fixture *fx = *state;
    imm_error err = {0};
    char path[256];
    struct stat sb;
    const imm_storage_ops *ops = fx->st->ops;
    assert_int_equal(ops->remove(fx->st, "oss://bkt/in.txt", &err), IMM_OK);
    snprintf(path, sizeof(path), "%s/bkt/in.txt", fx->root);
    assert_int_not_equal(stat(path, &sb), 0);
    assert_int_equal(ops->remove(fx->st, "oss://bkt/in.txt", &err), IMM_OK);
    assert_int_equal(ops->remove(fx->st, "oss://bkt/nowhere/x.txt", &err), IMM_OK);
    assert_int_not_equal(ops->remove(fx->st, "oss://bkt/dirlink/secret.txt", &err), IMM_OK);
    snprintf(path, sizeof(path), "%s/outside/secret.txt", fx->dir);
    assert_int_equal(stat(path, &sb), 0);
}

/* A store restricted to no local folders refuses every local path by its text alone: the answer
 * for a file that exists is the answer for one that does not, and nothing is written. */
static void a_restricted_store_refuses_local_paths(void **state)
{
    fixture *fx = *state;
    imm_storage *st = NULL;
    imm_object *obj = NULL;
    imm_error a = {0}, b = {0};
    char uri[256], missing[256];
    imm_local_paths none = {.restricted = 1};
    assert_int_equal(imm_oss_local_new(fx->root, &none, &st, NULL), IMM_OK);
    snprintf(uri, sizeof(uri), "file://%s/outside/secret.txt", fx->dir);
    snprintf(missing, sizeof(missing), "file://%s/outside/nothing.txt", fx->dir);
    assert_int_equal(st->ops->admits(st, uri, &a), IMM_EARG);
    assert_int_equal(st->ops->open_read(st, missing, &obj, &b), IMM_EARG);
    assert_non_null(strstr(a.message, "--allow-local-paths"));
    assert_int_equal(st->ops->open_read(st, uri + 7, &obj, &a), IMM_EARG);
    assert_int_equal(st->ops->open_write(st, "relative.txt", &obj, &a), IMM_EARG);
    assert_int_equal(st->ops->remove(st, uri, &a), IMM_EARG);
    assert_int_equal(st->ops->admits(st, "oss://bkt/in.txt", &a), IMM_OK);
    assert_int_equal(st->ops->open_read(st, "oss://bkt/in.txt", &obj, &a), IMM_OK);
    st->ops->close(obj);
    imm_storage_free(st);
}

/* --allow-local-paths DIR: absolute paths beneath DIR are served; '..', empty segments, a
 * lookalike prefix, a relative path and a link planted inside DIR that leads out are not. */
static void allowed_folders_hold_and_contain(void **state)
{
    fixture *fx = *state;
    imm_storage *st = NULL;
    imm_object *obj = NULL;
    imm_error err = {0};
    char allowed[128], uri[320], path[320], link[320];
    uint8_t buf[16];
    snprintf(allowed, sizeof(allowed), "%s/allowed", fx->dir);
    mkdir(allowed, 0755);
    snprintf(path, sizeof(path), "%s/in.txt", allowed);
    write_file(path, "allowed");
    snprintf(path, sizeof(path), "%s/allowed-not", fx->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/outside", fx->dir);
    snprintf(link, sizeof(link), "%s/out", allowed);
    assert_int_equal(symlink(path, link), 0);
    char given[140];
    snprintf(given, sizeof(given), "%s/", allowed); /* a trailing '/' is the same folder */
    const char *dirs[] = {given};
    imm_local_paths paths = {.restricted = 1, .dirs = dirs, .ndirs = 1};
    assert_int_equal(imm_oss_local_new(fx->root, &paths, &st, &err), IMM_OK);

    snprintf(uri, sizeof(uri), "file://%s/in.txt", allowed);
    assert_int_equal(st->ops->open_read(st, uri, &obj, &err), IMM_OK);
    assert_int_equal(st->ops->read(obj, buf, sizeof(buf)), 7);
    st->ops->close(obj);
    snprintf(uri, sizeof(uri), "%s/made.txt", allowed);
    assert_int_equal(st->ops->open_write(st, uri, &obj, &err), IMM_OK);
    assert_int_equal(st->ops->write(obj, (const uint8_t *)"x", 1), 1);
    assert_int_equal(st->ops->commit(obj, &err), IMM_OK);
    st->ops->close(obj);
    assert_int_equal(access(uri, F_OK), 0);
    /* No folder is made outside a bucket: a target's folder must be there. */
    snprintf(uri, sizeof(uri), "%s/new/made.txt", allowed);
    assert_int_not_equal(st->ops->open_write(st, uri, &obj, &err), IMM_OK);

    const char *refused[] = {"file://%s/../outside/secret.txt", "file://%s//in.txt",
                             "file://%s/./in.txt", "file://%s-not/x.txt", "file://%s",
                             "file://%s/"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
        snprintf(uri, sizeof(uri), refused[i], allowed);
        assert_int_equal(st->ops->admits(st, uri, &err), IMM_EARG);
        assert_int_equal(st->ops->open_read(st, uri, &obj, &err), IMM_EARG);
    }
    assert_int_equal(st->ops->admits(st, "in.txt", &err), IMM_EARG);
    assert_non_null(strstr(err.message, "relative"));
    /* The link passes the text (admits) but not the kernel's RESOLVE_BENEATH. */
    snprintf(uri, sizeof(uri), "file://%s/out/secret.txt", allowed);
    assert_int_equal(st->ops->admits(st, uri, &err), IMM_OK);
    assert_int_equal(st->ops->open_read(st, uri, &obj, &err), IMM_EFORBIDDEN);
    imm_storage_free(st);

    const char *bad[] = {"relative/dir", "/no/such/folder"};
    for (size_t i = 0; i < 2; i++) {
        paths.dirs = &bad[i];
        assert_int_equal(imm_oss_local_new(fx->root, &paths, &st, &err), IMM_EARG);
        assert_non_null(strstr(err.message, "--allow-local-paths"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(oss_uri_reads_root_bucket_key, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_object_is_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(links_out_of_the_root_are_forbidden, setup, teardown),
        cmocka_unit_test_setup_teardown(writes_appear_only_on_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(
            an_uncommitted_write_leaves_nothing_and_keeps_the_old_object, setup, teardown),
        cmocka_unit_test_setup_teardown(a_missing_bucket_is_not_created, setup, teardown),
        cmocka_unit_test_setup_teardown(a_file_is_committed_once_per_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(remove_stays_inside_the_root, setup, teardown),
        cmocka_unit_test(oss_uris_need_a_root),
        cmocka_unit_test_setup_teardown(a_restricted_store_refuses_local_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(allowed_folders_hold_and_contain, setup, teardown),
    };
    return cmocka_run_group_tests_name("storage_local", tests, NULL, NULL);
}
