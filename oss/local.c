/*
 * local.c - the embedded storage: a folder that stands in for OSS, plus plain local files.
 *
 * Containment: every oss:// path is opened relative to a descriptor of the root with openat2's
 * RESOLVE_BENEATH, so neither ".." (already refused by imm_uri_parse) nor a symbolic link planted
 * inside the root can lead outside it. Writes go to an unnamed file (O_TMPFILE) in the target's
 * folder that is linked under a hidden name and renamed into place on commit, so a reader never
 * sees a partial output, a failed task leaves nothing behind, and neither does a process killed
 * mid-write (the kernel drops an unnamed file with its last descriptor). Where the file system
 * cannot make unnamed files, a hidden named one is used instead.
 *
 * A commit for an owner (a task) tags the file with an extended attribute and is one step under
 * the folder's flock: two runs of one task on this host write it once. Where the file system has
 * no user attributes, or servers on several hosts share the folder, it is a plain commit.
 */
#include "oss/oss.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* commit_owned's tag: the task that committed a file, as an extended attribute of it. */
#define OWNER_XATTR "user.immerge.task"

/* A folder local paths may name (imm_local_paths): as given and as the kernel resolves it. */
typedef struct allowed_dir {
    int fd;
    char *given, *real; /* without a trailing '/'; "" for the root folder itself */
} allowed_dir;

typedef struct local_storage {
    imm_storage base;
    int root_fd; /* -1 when no root was given */
    char *root;
    int restricted;      /* local paths only beneath dirs (none when ndirs is 0) */
    allowed_dir *dirs;
    size_t ndirs;
} local_storage;

/* Where a URI lives: a path relative to dirfd (AT_FDCWD: as given), opened beneath dirfd unless
 * that is AT_FDCWD. Inside a bucket, key prefixes are folders made as needed, as OSS treats them;
 * elsewhere a target's folder must exist. */
typedef struct place {
    int dirfd;
    int in_bucket;
    char rel[PATH_MAX];
} place;

struct imm_object {
    int fd;
    int unnamed;      /* writers: fd is an O_TMPFILE not yet linked anywhere */
    int dir_fd;       /* writers: the target's folder */
    char *tmp_name;   /* writers: the temporary file in dir_fd; NULL once committed */
    char *final_name; /* writers */
};

/* openat that refuses a link as the last component, reporting it as ELOOP even where O_DIRECTORY
 * would have said ENOTDIR. */
static int openat_nofollow(int dir, const char *name, int flags, mode_t mode)
{
    struct stat sb;
    int fd = openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0 && errno == ENOTDIR && !fstatat(dir, name, &sb, AT_SYMLINK_NOFOLLOW) &&
        S_ISLNK(sb.st_mode))
        errno = ELOOP;
    return fd;
}

/* Where openat2 is missing (old kernels, valgrind, some sandboxes), walk the path one component at
 * a time without following any link: stricter than RESOLVE_BENEATH, never weaker. */
static int open_nofollow_walk(int root_fd, const char *rel, int flags, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", rel) >= (int)sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int dir = dup(root_fd), fd = -1, saved;
    char *seg = buf;
    for (char *slash; dir >= 0 && (slash = strchr(seg, '/')); seg = slash + 1) {
        *slash = '\0';
        int next = openat_nofollow(dir, seg, O_DIRECTORY, 0);
        saved = errno;
        close(dir);
        errno = saved;
        dir = next;
    }
    if (dir < 0)
        return -1;
    fd = openat_nofollow(dir, seg, flags, mode);
    saved = errno;
    close(dir);
    errno = saved;
    return fd;
}

static int open_beneath(int root_fd, const char *rel, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)flags, .mode = mode, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, root_fd, rel, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS)
        return open_nofollow_walk(root_fd, rel, flags, mode);
    return fd;
}

static imm_err errno_error(imm_error *err, int e, const char *what, const char *uri)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return imm_error_set(err, IMM_ENOTFOUND, "The specified resource %s is not found: %s",
                             what, uri);
    case EACCES:
    case EPERM:
        return imm_error_set(err, IMM_EFORBIDDEN, "Access to %s is denied.", uri);
    case EXDEV:
    case ELOOP:
        return imm_error_set(err, IMM_EFORBIDDEN,
                             "%s resolves outside its storage root (a link leads out).", uri);
    default:
        return imm_error_set(err, IMM_EIO, "Cannot open %s: %s", uri, strerror(e));
    }
}

/* The folder of ls->dirs that path (absolute) is beneath, and the rest of path below it. */
static const allowed_dir *allowed_for(const local_storage *ls, const char *path, const char **rest)
{
    for (size_t i = 0; i < ls->ndirs; i++) {
        const char *names[] = {ls->dirs[i].given, ls->dirs[i].real};
        for (int k = 0; k < 2; k++) {
            size_t n = strlen(names[k]);
            if (!strncmp(path, names[k], n) && path[n] == '/' && path[n + 1]) {
                *rest = path + n + 1;
                return &ls->dirs[i];
            }
        }
    }
    return NULL;
}

/* Whether an absolute path has an empty, "." or ".." segment: judged by its text, so that a
 * refusal never depends on what is on disk. */
static int has_dot_segments(const char *path)
{
    for (const char *seg = path + 1;; ) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return 1;
        if (!end)
            return 0;
        seg = end + 1;
    }
}

/* A local path of a restricted store: beneath one of its folders, or refused. */
static imm_err resolve_allowed(const local_storage *ls, const char *uri, const char *path,
                               place *p, imm_error *err)
{
    const char *rest = NULL;
    const allowed_dir *d = NULL;
    if (!ls->ndirs)
        return imm_error_set(err, IMM_EARG, "%s names a local file; this server reads and "
                             "writes only the oss:// objects of its store (its operator may allow "
                             "local folders with --allow-local-paths DIR).", uri);
    if (path[0] != '/')
        return imm_error_set(err, IMM_EARG, "%s is a relative path; this server takes local "
                             "files only as absolute paths beneath the folders its operator "
                             "allows (--allow-local-paths).", uri);
    if (has_dot_segments(path) || !(d = allowed_for(ls, path, &rest)))
        return imm_error_set(err, IMM_EARG, "%s is not beneath a folder this server allows "
                             "local files in (--allow-local-paths), or has an empty, '.' or "
                             "'..' segment.", uri);
    if ((size_t)snprintf(p->rel, sizeof(p->rel), "%s", rest) >= sizeof(p->rel))
        return imm_error_set(err, IMM_EARG, "The URI %s is too long.", uri);
    p->dirfd = d->fd;
    return IMM_OK;
}

/* For oss:// URIs, the path below the root ("bucket/key"); for local ones, the path itself, or
 * beneath the allowed folder that holds it. */
static imm_err resolve(const local_storage *ls, const char *uri, place *p, imm_error *err)
{
    imm_uri u;
    imm_err e = imm_uri_parse(uri, &u, err);
    if (e)
        return e;
    p->in_bucket = u.is_oss;
    if (!u.is_oss) {
        if (ls->restricted)
            return resolve_allowed(ls, uri, u.path, p, err);
        snprintf(p->rel, sizeof(p->rel), "%s", u.path);
        p->dirfd = AT_FDCWD;
        return IMM_OK;
    }
    if (ls->root_fd < 0)
        return imm_error_set(err, IMM_EARG,
                             "%s is an OSS URI but no storage is configured: pass --oss-root DIR "
                             "(a local folder) or --oss-endpoint URL (an OSS or S3 server).", uri);
    if ((size_t)snprintf(p->rel, sizeof(p->rel), "%s/%s", u.bucket, u.key) >= sizeof(p->rel))
        return imm_error_set(err, IMM_EARG, "The URI %s is too long.", uri);
    p->dirfd = ls->root_fd;
    return IMM_OK;
}

static int open_path(int dirfd, const char *rel, int flags, mode_t mode)
{
    return dirfd == AT_FDCWD ? open(rel, flags, mode) : open_beneath(dirfd, rel, flags, mode);
}

static imm_err local_admits(imm_storage *st, const char *uri, imm_error *err)
{
    place p;
    return resolve((local_storage *)st, uri, &p, err);
}

static imm_err local_open_read(imm_storage *st, const char *uri, imm_object **out, imm_error *err)
{
    place p;
    struct stat sb;
    imm_err e = resolve((local_storage *)st, uri, &p, err);
    if (e)
        return e;
    int fd = open_path(p.dirfd, p.rel, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return errno_error(err, errno, "source", uri);
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return imm_error_set(err, IMM_ENOTFOUND, "The specified resource source is not found: "
                             "%s is not a regular file.", uri);
    }
    imm_object *obj = calloc(1, sizeof(*obj));
    if (!obj) {
        close(fd);
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    }
    obj->fd = fd;
    obj->dir_fd = -1;
    *out = obj;
    return IMM_OK;
}

/* Opens the folder that will hold p's last component, creating key prefixes inside a bucket the
 * way OSS treats them (virtual folders), but never creating the bucket itself. */
static int open_parent(place *where, const char **base)
{
    int dirfd = where->dirfd;
    char *rel = where->rel, *slash = strrchr(rel, '/');
    if (!slash) {
        *base = rel;
        return dirfd == AT_FDCWD ? open(".", O_DIRECTORY | O_CLOEXEC) : dup(dirfd);
    }
    *slash = '\0';
    *base = slash + 1;
    if (dirfd == AT_FDCWD)
        return open(rel[0] ? rel : "/", O_DIRECTORY | O_CLOEXEC);
    if (!where->in_bucket)
        return open_beneath(dirfd, rel, O_DIRECTORY | O_CLOEXEC, 0);
    /* rel is "bucket/prefix...": walk it, creating each prefix folder below the bucket. */
    int fd = open_beneath(dirfd, rel, O_DIRECTORY | O_CLOEXEC, 0);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    char *p = strchr(rel, '/');
    while (p) {
        *p = '\0';
        int ok = open_beneath(dirfd, rel, O_DIRECTORY | O_CLOEXEC, 0);
        if (ok < 0)
            return -1; /* the bucket (or a prefix) is missing or not a folder */
        close(ok);
        *p = '/';
        char *next = strchr(p + 1, '/');
        if (next)
            *next = '\0';
        if (mkdirat(dirfd, rel, 0777) && errno != EEXIST)
            return -1;
        if (next)
            *next = '/';
        p = next;
    }
    return open_beneath(dirfd, rel, O_DIRECTORY | O_CLOEXEC, 0);
}

/* A hidden name beside the target, ".NAME.immerge-XXXXXXXX", for a new file (fd >= 0 on entry
 * is not touched) or for linking fd_in there (link_fd >= 0). 0, or -1 with errno. */
static int hidden_name(int dir_fd, const char *base, char tmp[NAME_MAX + 1], int link_fd,
                       int *fd_out)
{
    for (int tries = 0; tries < 16; tries++) {
        uint32_t r = 0;
        if (getrandom(&r, sizeof(r), 0) < 0)
            r = (uint32_t)getpid() ^ (uint32_t)tries;
        snprintf(tmp, NAME_MAX + 1, ".%s.immerge-%08x", base, r);
        int ok;
        if (link_fd >= 0) {
            char proc[64];
            snprintf(proc, sizeof(proc), "/proc/self/fd/%d", link_fd);
            ok = !linkat(AT_FDCWD, proc, dir_fd, tmp, AT_SYMLINK_FOLLOW) ||
                 (errno == ENOENT && !linkat(link_fd, "", dir_fd, tmp, AT_EMPTY_PATH));
        } else {
            *fd_out = openat(dir_fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            ok = *fd_out >= 0;
        }
        if (ok)
            return 0;
        if (errno != EEXIST)
            return -1;
    }
    return -1;
}

static int create_hidden(int dir_fd, const char *base, char tmp[NAME_MAX + 1], int *fd)
{
    return hidden_name(dir_fd, base, tmp, -1, fd);
}

static imm_err local_open_write(imm_storage *st, const char *uri, imm_object **out,
                                imm_error *err)
{
    place p;
    char tmp[NAME_MAX + 1];
    const char *base;
    imm_err e = resolve((local_storage *)st, uri, &p, err);
    if (e)
        return e;
    imm_object *obj = calloc(1, sizeof(*obj));
    if (!obj)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    obj->fd = -1;
    obj->dir_fd = open_parent(&p, &base);
    if (obj->dir_fd < 0) {
        e = errno_error(err, errno, "target folder or bucket", uri);
        goto fail;
    }
    if (!*base || strlen(base) > NAME_MAX - 24) {
        e = imm_error_set(err, IMM_EARG, "The target %s has no usable file name.", uri);
        goto fail;
    }
    obj->fd = openat(obj->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
    obj->unnamed = obj->fd >= 0;
    if (!obj->unnamed && create_hidden(obj->dir_fd, base, tmp, &obj->fd)) {
        e = errno_error(err, errno, "target", uri);
        goto fail;
    }
    obj->tmp_name = strdup(obj->unnamed ? "" : tmp);
    obj->final_name = strdup(base);
    if (!obj->tmp_name || !obj->final_name) {
        e = imm_error_set(err, IMM_EINTERNAL, "out of memory");
        goto fail;
    }
    *out = obj;
    return IMM_OK;
fail:
    if (obj->fd >= 0 && !obj->unnamed)
        unlinkat(obj->dir_fd, tmp, 0);
    st->ops->close(obj);
    return e;
}

static int64_t local_read(imm_object *obj, uint8_t *buf, size_t len)
{
    ssize_t n;
    do
        n = read(obj->fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n;
}

static int64_t local_write(imm_object *obj, const uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(obj->fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return (int64_t)done;
}

static int64_t local_seek(imm_object *obj, int64_t offset, int whence)
{
    if (whence == IMM_SEEK_SIZE) {
        struct stat sb;
        return fstat(obj->fd, &sb) ? -1 : (int64_t)sb.st_size;
    }
    return lseek(obj->fd, offset, whence);
}

/* Gives the written file its name, replacing a file there unless `first`: then *taken is set
 * when there is one, and nothing moves. */
static imm_err move_into_place(imm_object *obj, int first, int *taken, imm_error *err)
{
    char tmp[NAME_MAX + 1];
    if (fsync(obj->fd))
        return imm_error_set(err, IMM_EIO, "Cannot write the output %s: %s", obj->final_name,
                             strerror(errno));
    if (obj->unnamed) {
        /* A name first, then the rename: a link cannot replace an existing target. */
        if (hidden_name(obj->dir_fd, obj->final_name, tmp, obj->fd, NULL))
            return imm_error_set(err, IMM_EIO, "Cannot give the output %s a name: %s",
                                 obj->final_name, strerror(errno));
        free(obj->tmp_name);
        if (!(obj->tmp_name = strdup(tmp))) {
            unlinkat(obj->dir_fd, tmp, 0);
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        }
        obj->unnamed = 0;
    }
    if (renameat2(obj->dir_fd, obj->tmp_name, obj->dir_fd, obj->final_name,
                  first ? RENAME_NOREPLACE : 0)) {
        if (first && errno == EEXIST)
            return *taken = 1, IMM_OK;
        return imm_error_set(err, IMM_EIO, "Cannot move the output into place (%s): %s",
                             obj->final_name, strerror(errno));
    }
    fsync(obj->dir_fd);
    free(obj->tmp_name);
    obj->tmp_name = NULL;
    return IMM_OK;
}

static imm_err local_commit(imm_object *obj, imm_error *err)
{
    return obj->tmp_name ? move_into_place(obj, 0, NULL, err) : IMM_OK;
}

/* Who wrote the file name in dir (commit_owned's tag) into owner[cap]: 1 with "" when it has no
 * tag (or the file system keeps none), 0 when there is no file, -1 with errno. */
static int owner_at(int dir, const char *name, char *owner, size_t cap)
{
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    owner[0] = '\0';
    if (fd < 0)
        return errno == ENOENT ? 0 : errno == ELOOP ? 1 : -1; /* a link: not ours */
    ssize_t n = fgetxattr(fd, OWNER_XATTR, owner, cap - 1);
    int saved = errno;
    close(fd);
    if (n < 0 && saved != ENODATA && saved != ENOTSUP && saved != ERANGE) {
        errno = saved;
        return -1;
    }
    owner[n > 0 ? n : 0] = '\0';
    return 1;
}

/* The check and the move are one step for every immerge on this host: they hold the folder's
 * lock (flock) between them, and the move of a first version cannot replace a file another
 * writer put there meanwhile (RENAME_NOREPLACE). */
static imm_err local_commit_owned(imm_object *obj, const char *owner, int *already,
                                  imm_error *err)
{
    char found[128];
    *already = 0;
    if (!obj->tmp_name)
        return IMM_OK;
    if (fsetxattr(obj->fd, OWNER_XATTR, owner, strlen(owner), 0))
        return errno == ENOTSUP ? local_commit(obj, err) /* no tags here: as commit */
                                : imm_error_set(err, IMM_EIO, "Cannot tag the output %s: %s",
                                                obj->final_name, strerror(errno));
    if (flock(obj->dir_fd, LOCK_EX))
        return imm_error_set(err, IMM_EIO, "Cannot lock the folder of %s: %s", obj->final_name,
                             strerror(errno));
    int there = owner_at(obj->dir_fd, obj->final_name, found, sizeof(found)), taken = 0;
    imm_err e;
    if (there < 0)
        e = imm_error_set(err, IMM_EIO, "Cannot read the output %s already there: %s",
                          obj->final_name, strerror(errno));
    else if (there && !strcmp(found, owner))
        *already = 1, e = IMM_OK;
    else if (!(e = move_into_place(obj, !there, &taken, err)) && taken)
        e = move_into_place(obj, 0, NULL, err); /* a writer outside immerge came first */
    flock(obj->dir_fd, LOCK_UN);
    return e;
}

static void local_close(imm_object *obj)
{
    if (!obj)
        return;
    if (obj->fd >= 0)
        close(obj->fd);
    if (obj->tmp_name && !obj->unnamed)
        unlinkat(obj->dir_fd, obj->tmp_name, 0);
    if (obj->dir_fd >= 0)
        close(obj->dir_fd);
    free(obj->tmp_name);
    free(obj->final_name);
    free(obj);
}

/* The folder holding p's last component, if it exists (see open_parent, which makes it). */
static int open_existing_parent(place *p, const char **base)
{
    char *rel = p->rel, *slash = strrchr(rel, '/');
    *base = slash ? slash + 1 : rel;
    if (!slash)
        return p->dirfd == AT_FDCWD ? open(".", O_DIRECTORY | O_CLOEXEC) : dup(p->dirfd);
    *slash = '\0';
    return p->dirfd == AT_FDCWD ? open(rel[0] ? rel : "/", O_DIRECTORY | O_CLOEXEC)
                                : open_beneath(p->dirfd, rel, O_DIRECTORY | O_CLOEXEC, 0);
}

static imm_err local_owner_of(imm_storage *st, const char *uri, char *owner, size_t cap,
                              imm_error *err)
{
    place p;
    const char *base;
    imm_err e = resolve((local_storage *)st, uri, &p, err);
    if (e)
        return e;
    int dir = open_existing_parent(&p, &base), there = dir < 0 ? -1 : owner_at(dir, base, owner,
                                                                                cap);
    int saved = errno;
    if (dir >= 0)
        close(dir);
    if (there == 0 || (there < 0 && saved == ENOENT))
        return imm_error_set(err, IMM_ENOTFOUND, "The specified resource %s is not found.", uri);
    return there < 0 ? errno_error(err, saved, "object", uri) : IMM_OK;
}

static imm_err local_remove(imm_storage *st, const char *uri, imm_error *err)
{
    place p;
    const char *base;
    imm_err e = resolve((local_storage *)st, uri, &p, err);
    if (e)
        return e;
    int dir = open_existing_parent(&p, &base);
    if (dir < 0)
        return errno == ENOENT ? IMM_OK : errno_error(err, errno, "object", uri);
    int ret = unlinkat(dir, base, 0), saved = errno;
    close(dir);
    if (ret && saved != ENOENT)
        return errno_error(err, saved, "object", uri);
    return IMM_OK;
}

static void local_free(imm_storage *st)
{
    local_storage *ls = (local_storage *)st;
    if (ls->root_fd >= 0)
        close(ls->root_fd);
    for (size_t i = 0; i < ls->ndirs; i++) {
        close(ls->dirs[i].fd);
        free(ls->dirs[i].given);
        free(ls->dirs[i].real);
    }
    free(ls->dirs);
    free(ls->root);
    free(ls);
}

static const imm_storage_ops local_ops = {
    .admits = local_admits,
    .open_read = local_open_read,
    .open_write = local_open_write,
    .read = local_read,
    .write = local_write,
    .seek = local_seek,
    .commit = local_commit,
    .commit_owned = local_commit_owned,
    .owner_of = local_owner_of,
    .close = local_close,
    .remove = local_remove,
    .free = local_free,
};

/* An allowed folder's name without its trailing '/' ("" for "/"); NULL when out of memory. */
static char *folder_name(const char *path)
{
    size_t n = strlen(path);
    while (n && path[n - 1] == '/')
        n--;
    return strndup(path, n);
}

static imm_err allow_dirs(local_storage *ls, const imm_local_paths *paths, imm_error *err)
{
    ls->restricted = 1;
    if (!paths->ndirs)
        return IMM_OK;
    if (!(ls->dirs = calloc(paths->ndirs, sizeof(*ls->dirs))))
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    for (size_t i = 0; i < paths->ndirs; i++) {
        const char *dir = paths->dirs[i];
        char real[PATH_MAX];
        allowed_dir *d = &ls->dirs[ls->ndirs];
        if (!realpath(dir, real) || (d->fd = open(real, O_DIRECTORY | O_RDONLY | O_CLOEXEC)) < 0)
            return imm_error_set(err, IMM_EARG, "--allow-local-paths %s cannot be opened as a "
                                 "folder: %s", dir, strerror(errno));
        ls->ndirs++;
        if (!(d->given = folder_name(dir)) || !(d->real = folder_name(real)))
            return imm_error_set(err, IMM_EINTERNAL, "out of memory");
        if (dir[0] != '/' || (d->given[0] && has_dot_segments(d->given)))
            return imm_error_set(err, IMM_EARG, "--allow-local-paths %s: give an absolute "
                                 "path without '.' or '..' segments.", dir);
    }
    return IMM_OK;
}

imm_err imm_oss_local_new(const char *root, const imm_local_paths *paths, imm_storage **out,
                          imm_error *err)
{
    local_storage *ls = calloc(1, sizeof(*ls));
    if (!ls)
        return imm_error_set(err, IMM_EINTERNAL, "out of memory");
    ls->base.ops = &local_ops;
    ls->root_fd = -1;
    if (root) {
        ls->root_fd = open(root, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (ls->root_fd < 0) {
            imm_err e = imm_error_set(err, IMM_EARG, "The storage root %s cannot be opened: %s",
                                      root, strerror(errno));
            free(ls);
            return e;
        }
        ls->root = strdup(root);
    }
    imm_err e = paths && paths->restricted ? allow_dirs(ls, paths, err) : IMM_OK;
    if (e) {
        local_free(&ls->base);
        return e;
    }
    *out = &ls->base;
    return IMM_OK;
}
