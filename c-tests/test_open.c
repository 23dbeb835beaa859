/*
 * fdctx_open: /dev/fd/N against the context with open(2)'s checks, ordinary
 * paths, paths that would reach the process's own descriptors, and the
 * thread-local current context.
 */
#include "harness.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>

static char tmpdir[512];

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/fdctx-c-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        printf("harness: mkdtemp: %s\n", strerror(errno));
        exit(2);
    }
}

static void tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* A regular file in the temp dir holding `text`; returns its path in out. */
static void make_file(char *out, size_t cap, const char *name, const char *text)
{
    int fd;
    tmp_path(out, cap, name);
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        printf("harness: %s: %s\n", out, strerror(errno));
        exit(2);
    }
    close(fd);
}

/* A context holding exactly `fd`. */
static fdctx *ctx_with(int fd)
{
    fdctx *ctx = fdctx_new();
    if (!ctx) {
        close(fd);
        return NULL;
    }
    if (fdctx_adopt(ctx, &fd, 1) < 0)
        h_fail(__FILE__, __LINE__, "fdctx_adopt failed: %s", fdctx_last_error());
    return ctx;
}

/* /dev/fd/N is duplicated: the caller's fd is a new close-on-exec fd to
 * the same file, the original stays in the context until finish. */
static void test_open_devfd_basic(void)
{
    int rd = h_pipe_with("hello");
    fdctx *ctx = ctx_with(rd);
    int fd;
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    fd = fdctx_open(ctx, "/dev/fd/0", O_RDONLY, 0);
    CHECK_OK(fd);
    CHECK(fd != rd);
    CHECK(h_cloexec(fd));
    CHECK(h_same_file(fd, rd));
    CHECK_EQ(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    /* The original is still the context's. */
    CHECK_EQ(fdctx_get(ctx, 0), rd);
    CHECK_EQ(fdctx_finish(ctx), 0);
    CHECK(!h_is_open(rd));
    CHECK(h_is_open(fd));
    CHECK(h_reads(fd, "hello"));
    if (fd >= 0)
        close(fd);
}

/* The requested access must be allowed by the fd's O_ACCMODE. */
static void test_open_access_mode(void)
{
    int p[2];
    char path[PATH_MAX];
    int ro, rw, fd;
    fdctx *ctx;
    int fds[4];

    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    make_file(path, sizeof path, "acc", "data");
    ro = open(path, O_RDONLY | O_CLOEXEC);
    rw = open(path, O_RDWR | O_CLOEXEC);
    CHECK(ro >= 0 && rw >= 0);
    fds[0] = p[0]; /* read end */
    fds[1] = p[1]; /* write end */
    fds[2] = ro;
    fds[3] = rw;
    ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    CHECK_OK(fdctx_adopt(ctx, fds, 4));

    CHECK_ERR(fdctx_open(ctx, "/dev/fd/0", O_RDWR, 0), EACCES);
    CHECK(fdctx_last_error() != NULL);
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/0", O_WRONLY, 0), EACCES);
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/1", O_RDONLY, 0), EACCES);
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/1", O_RDWR, 0), EACCES);
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/2", O_RDWR, 0), EACCES);
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/2", O_WRONLY, 0), EACCES);

    fd = fdctx_open(ctx, "/dev/fd/1", O_WRONLY, 0);
    CHECK_OK(fd);
    if (fd >= 0) {
        CHECK_EQ(fcntl(fd, F_GETFL) & O_ACCMODE, O_WRONLY);
        close(fd);
    }
    fd = fdctx_open(ctx, "/dev/fd/2", O_RDONLY, 0);
    CHECK_OK(fd);
    if (fd >= 0)
        close(fd);
    /* An O_RDWR fd serves any access mode. */
    fd = fdctx_open(ctx, "/dev/fd/3", O_RDONLY, 0);
    CHECK_OK(fd);
    if (fd >= 0)
        close(fd);
    fd = fdctx_open(ctx, "/dev/fd/3", O_WRONLY, 0);
    CHECK_OK(fd);
    if (fd >= 0)
        close(fd);
    fd = fdctx_open(ctx, "/dev/fd/3", O_RDWR, 0);
    CHECK_OK(fd);
    if (fd >= 0) {
        CHECK_EQ(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
        close(fd);
    }
    CHECK_EQ(fdctx_finish(ctx), 0);
    CHECK(!h_is_open(p[0]) && !h_is_open(p[1]) && !h_is_open(ro) && !h_is_open(rw));
}

/* An O_PATH fd cannot be used for reading or writing. */
static void test_open_opath_refused(void)
{
    char path[PATH_MAX];
    int op;
    fdctx *ctx;
    make_file(path, sizeof path, "opath", "x");
    op = open(path, O_PATH | O_CLOEXEC);
    CHECK(op >= 0);
    ctx = ctx_with(op);
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    CHECK_NEG(fdctx_open(ctx, "/dev/fd/0", O_RDONLY, 0));
    CHECK_NEG(fdctx_open(ctx, "/dev/fd/0", O_WRONLY, 0));
    CHECK_NEG(fdctx_open(ctx, "/dev/fd/0", O_RDWR, 0));
    fdctx_finish(ctx);
    CHECK(!h_is_open(op));
}

/* O_DIRECTORY on a non-directory is -ENOTDIR; on a directory it works. */
static void test_open_directory(void)
{
    int fds[2], fd;
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    fds[0] = h_pipe_with("");
    fds[1] = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fds[1] >= 0);
    CHECK_OK(fdctx_adopt(ctx, fds, 2));
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/0", O_RDONLY | O_DIRECTORY, 0), ENOTDIR);
    fd = fdctx_open(ctx, "/dev/fd/1", O_RDONLY | O_DIRECTORY, 0);
    CHECK_OK(fd);
    if (fd >= 0) {
        struct stat st;
        CHECK(fstat(fd, &st) == 0 && S_ISDIR(st.st_mode));
        close(fd);
    }
    fdctx_finish(ctx);
}

/* O_NONBLOCK follows the flags: set when asked, cleared when not, even
 * though the file description is shared with the sender's copy. */
static void test_open_nonblock(void)
{
    int p[2], fd, mine;
    fdctx *ctx;
    CHECK_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    mine = dup(p[0]); /* the "sender's" copy, same description */
    ctx = ctx_with(p[0]);
    CHECK(ctx != NULL);
    if (!ctx) {
        close(p[1]);
        close(mine);
        return;
    }
    fd = fdctx_open(ctx, "/dev/fd/0", O_RDONLY, 0);
    CHECK_OK(fd);
    if (fd >= 0) {
        CHECK(!(fcntl(fd, F_GETFL) & O_NONBLOCK));
        close(fd);
    }
    fd = fdctx_open(ctx, "/dev/fd/0", O_RDONLY | O_NONBLOCK, 0);
    CHECK_OK(fd);
    if (fd >= 0) {
        char c;
        CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
        /* Really non-blocking: an empty pipe with a writer gives EAGAIN. */
        CHECK(read(fd, &c, 1) == -1 && errno == EAGAIN);
        close(fd);
    }
    fd = fdctx_open(ctx, "/dev/fd/0", O_RDONLY, 0);
    CHECK_OK(fd);
    if (fd >= 0) {
        CHECK(!(fcntl(fd, F_GETFL) & O_NONBLOCK));
        close(fd);
    }
    fdctx_finish(ctx);
    close(p[1]);
    close(mine);
}

/* Ordinary paths open normally, close-on-exec, O_CREAT honours mode. */
static void test_open_ordinary_path(void)
{
    char path[PATH_MAX], created[PATH_MAX];
    int fd;
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    make_file(path, sizeof path, "plain", "plain text");
    fd = fdctx_open(ctx, path, O_RDONLY, 0);
    CHECK_OK(fd);
    if (fd >= 0) {
        CHECK(h_cloexec(fd));
        CHECK(h_reads(fd, "plain text"));
        close(fd);
    }
    tmp_path(created, sizeof created, "created");
    {
        mode_t old = umask(022);
        fd = fdctx_open(ctx, created, O_WRONLY | O_CREAT | O_EXCL, 0640);
        umask(old);
    }
    CHECK_OK(fd);
    if (fd >= 0) {
        struct stat st;
        CHECK(h_cloexec(fd));
        CHECK(fstat(fd, &st) == 0 && (st.st_mode & 0777) == 0640);
        close(fd);
    }
    /* Errors are open(2)'s. */
    tmp_path(created, sizeof created, "does-not-exist");
    CHECK_ERR(fdctx_open(ctx, created, O_RDONLY, 0), ENOENT);
    CHECK_EQ(fdctx_finish(ctx), 0);
}

/* Paths that would reach the process's own descriptor table are refused. */
static void test_open_refused_paths(void)
{
    char buf[128], lnk[PATH_MAX];
    int fd = h_pipe_with("p");
    int got_errno_eperm = 0;
    size_t i;
    fdctx *ctx = ctx_with(fd);
    static const char *const lexical[] = {
        "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/", "/proc/thread-self/fd/0",
        "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev//fd/0", "/dev/./fd/0",
        "//dev/fd/0", "/dev/fd/./0", "/dev/../dev/fd/0", "/proc/self/./fd/0",
        "/proc//self/fd/0", "/proc/self/../self/fd/0",
    };
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    for (i = 0; i < sizeof lexical / sizeof lexical[0]; i++) {
        int r = fdctx_open(ctx, lexical[i], O_RDONLY, 0);
        if (r >= 0) {
            h_fail(__FILE__, __LINE__, "fdctx_open(\"%s\") = %d; must be refused", lexical[i], r);
            close(r);
        } else if (r == -EPERM) {
            got_errno_eperm++;
        }
    }
    {
        /* Spellings with this process's ids in them. */
        char own[3][96];
        int k;
        snprintf(own[0], sizeof own[0], "/proc/self/task/%ld/fd/0", (long)syscall(SYS_gettid));
        snprintf(own[1], sizeof own[1], "/proc/%d/task/%ld/fd/0", (int)getpid(),
                 (long)syscall(SYS_gettid));
        snprintf(own[2], sizeof own[2], "/proc/%d/fd/0", (int)getpid());
        for (k = 0; k < 3; k++) {
            int r = fdctx_open(ctx, own[k], O_RDONLY, 0);
            if (r >= 0) {
                h_fail(__FILE__, __LINE__, "fdctx_open(\"%s\") = %d; must be refused", own[k], r);
                close(r);
            }
        }
    }
    snprintf(buf, sizeof buf, "/proc/%d/fd/0", (int)getpid());
    /* The plain forms must give the documented -EPERM. */
    CHECK_ERR(fdctx_open(ctx, "/proc/self/fd/0", O_RDONLY, 0), EPERM);
    CHECK_ERR(fdctx_open(ctx, "/dev/stdin", O_RDONLY, 0), EPERM);
    CHECK_ERR(fdctx_open(ctx, buf, O_RDONLY, 0), EPERM);
    CHECK(fdctx_last_error() != NULL);
    /* A malformed /dev/fd/ form is malformed, not "not an fd path". */
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/00", O_RDONLY, 0), EINVAL);
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/0/", O_RDONLY, 0), EINVAL);
    CHECK(got_errno_eperm > 0);

    /* Symlinks into /proc/<pid>/fd: refused by openat2(RESOLVE_NO_MAGICLINKS). */
    {
        static const char *const targets[] = {"/proc/self/fd/0", "/dev/stdin", "/dev/fd/0"};
        int have_openat2 = h_openat2_available();
        char target2[64];
        int j;
        snprintf(target2, sizeof target2, "/proc/%d/fd/0", (int)getpid());
        for (j = 0; j < 4; j++) {
            const char *t = j < 3 ? targets[j] : target2;
            int r;
            snprintf(lnk, sizeof lnk, "%s/link%d", tmpdir, j);
            CHECK_EQ(symlink(t, lnk), 0);
            r = fdctx_open(ctx, lnk, O_RDONLY, 0);
            if (r >= 0) {
                close(r);
                if (have_openat2)
                    h_fail(__FILE__, __LINE__, "symlink -> %s opened (%d); must be refused", t, r);
                else
                    printf("    symlink -> %s opened: openat2(2) is not available here\n", t);
                if (!have_openat2)
                    h_skip("openat2(2) is not available here, magic links are not refused");
            }
            unlink(lnk);
        }
        /* A relative path that resolves into /dev/fd from the cwd. */
        {
            char cwd[PATH_MAX];
            CHECK(getcwd(cwd, sizeof cwd) != NULL);
            CHECK_EQ(chdir("/"), 0);
            {
                int r = fdctx_open(ctx, "dev/fd/0", O_RDONLY, 0);
                if (r >= 0) {
                    close(r);
                    if (have_openat2)
                        h_fail(__FILE__, __LINE__, "\"dev/fd/0\" from / opened; must be refused");
                    else
                        h_skip("openat2(2) is not available here, magic links are not refused");
                }
            }
            CHECK_EQ(chdir(cwd), 0);
        }
    }
    /* None of the refusals used the context's fd. */
    CHECK_EQ(fdctx_finish(ctx), 1);
    CHECK(!h_is_open(fd));
}

/* O_TRUNC as open(2) does it: a regular file is truncated; on a pipe, a
 * character device and a tty it is ignored (QEMU's chardev file backend
 * opens O_WRONLY|O_CREAT|O_TRUNC and may be given any of them). */
static void test_open_trunc_only_regular_files(void)
{
    char path[PATH_MAX], buf[64];
    int p[2], fds[4], master, slave = -1, r, i;
    fdctx *ctx;
    struct stat st;

    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    CHECK_EQ(write(p[1], "queued", 6), 6);
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(master >= 0);
    if (master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0 && ptsname_r(master, buf, sizeof buf) == 0)
        slave = open(buf, O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(slave >= 0);
    make_file(path, sizeof path, "trunc", "old contents");
    fds[0] = p[1];
    fds[1] = open("/dev/null", O_WRONLY | O_CLOEXEC);
    fds[2] = slave;
    fds[3] = open(path, O_WRONLY | O_CLOEXEC);
    ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    CHECK_EQ(fdctx_adopt(ctx, fds, 4), 4);
    for (i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "/dev/fd/%d", i);
        r = fdctx_open(ctx, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        CHECK_OK(r);
        if (r >= 0) {
            CHECK_EQ(write(r, "!", 1), 1);
            close(r);
        }
    }
    r = fdctx_open(ctx, "/dev/fd/2", O_RDWR | O_TRUNC, 0);
    CHECK_OK(r);
    if (r >= 0)
        close(r);
    CHECK_EQ(read(p[0], buf, sizeof buf), 7);
    CHECK(memcmp(buf, "queued!", 7) == 0);
    CHECK_EQ(read(master, buf, sizeof buf), 1);
    /* The regular file is truncated. */
    r = fdctx_open(ctx, "/dev/fd/3", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK_OK(r);
    if (r >= 0)
        close(r);
    CHECK(stat(path, &st) == 0 && st.st_size == 0);
    CHECK_EQ(fdctx_finish(ctx), 0);
    close(p[0]);
    if (master >= 0)
        close(master);
    unlink(path);
}

/* Nothing on procfs opens for a client path, by any name or flag; its own
 * fds, passed and named /dev/fd/N, still do (O_PATH included). */
static void test_open_procfs_refused(void)
{
    static const char *const paths[] = {
        "/proc/cpuinfo", "/proc/self/status", "/proc/self/mem", "/proc/self/environ",
        "/proc/thread-self/maps", "/proc", "/proc/sys/kernel/ostype", "/proc/self/fdinfo",
    };
    static const int flags[] = {O_RDONLY, O_PATH, O_RDWR, O_WRONLY | O_TRUNC};
    int fd = h_pipe_with("pipe");
    fdctx *ctx = ctx_with(fd);
    size_t i, j;
    int r;

    CHECK(ctx != NULL);
    if (!ctx)
        return;
    for (i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        for (j = 0; j < sizeof flags / sizeof flags[0]; j++) {
            r = fdctx_open(ctx, paths[i], flags[j], 0);
            if (r >= 0) {
                h_fail(__FILE__, __LINE__, "fdctx_open(\"%s\", %#o) opened; must be refused", paths[i], flags[j]);
                close(r);
            } else if (r != -EPERM && ((flags[j] & O_ACCMODE) == O_RDONLY || (r != -EISDIR && r != -EACCES))) {
                /* Asked for writing, a directory or read-only file may
                 * be refused by the kernel first (EISDIR, EACCES). */
                h_fail(__FILE__, __LINE__, "fdctx_open(\"%s\", %#o) = %d (%s), want -EPERM", paths[i], flags[j],
                       r, fdctx_last_error());
            }
        }
    }
    CHECK_ERR(fdctx_open(ctx, "/proc/cpuinfo", O_RDONLY, 0), EPERM);
    CHECK(strstr(fdctx_last_error(), "procfs") != NULL);
    r = fdctx_open(ctx, "/dev/fd/0", O_PATH, 0);
    CHECK_OK(r);
    if (r >= 0) {
        CHECK(fcntl(r, F_GETFL) & O_PATH);
        CHECK(h_same_file(r, fd));
        close(r);
    }
    r = fdctx_open(ctx, "/dev/fd/0", O_RDONLY, 0);
    CHECK_OK(r);
    if (r >= 0) {
        CHECK(h_reads(r, "pipe"));
        close(r);
    }
    CHECK_EQ(fdctx_finish(ctx), 0);
}

/* ---- procfs where no name tells: a private user+mount namespace ---- */

static int write_proc_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;
    if (fd < 0)
        return -1;
    n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Bind-mounts src at dst (both must exist); 0 or -1. */
static int bind_at(const char *src, const char *dst)
{
    /* A type, though the kernel ignores it here: valgrind checks it. */
    return mount(src, dst, "none", MS_BIND, NULL);
}

/* In the child: a private user and mount namespace, a tmpfs over /tmp,
 * and /proc/<pid>, /proc/<pid>/task/<tid>, one fdinfo directory and one
 * fdinfo file bind-mounted at paths without a digit. Exit 77: the kernel
 * refuses the namespace here. */
static int procfs_bind_child(void)
{
    static const char *const dirs[] = {"/tmp/process", "/tmp/thread", "/tmp/to-process"};
    static const char *const entries[] = {"mem", "environ", "maps", "cmdline", "status", "auxv",
                                          "fdinfo", "fd", "", "."};
    static const int flags[] = {O_RDONLY, O_PATH, O_RDWR};
    char map[64], p[128];
    uid_t uid = getuid();
    gid_t gid = getgid();
    int fd = h_pipe_with("still mine");
    fdctx *ctx = ctx_with(fd);
    int bad = 0, tried = 0, r;
    size_t i, j, k;

    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
        printf("    skip: unshare(CLONE_NEWUSER|CLONE_NEWNS): %s\n", strerror(errno));
        fdctx_finish(ctx);
        return 77;
    }
    snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
    if (write_proc_file("/proc/self/setgroups", "deny") != 0 && errno != ENOENT)
        printf("    setgroups: %s\n", strerror(errno));
    if (write_proc_file("/proc/self/uid_map", map) != 0) {
        printf("    skip: uid_map: %s\n", strerror(errno));
        fdctx_finish(ctx);
        return 77;
    }
    snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
    write_proc_file("/proc/self/gid_map", map);
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("none", "/tmp", "tmpfs", 0, NULL) != 0) {
        printf("    skip: a tmpfs in the new mount namespace: %s\n", strerror(errno));
        fdctx_finish(ctx);
        return 77;
    }
    if (mkdir("/tmp/process", 0700) || mkdir("/tmp/thread", 0700) || mkdir("/tmp/fdinfo-dir", 0700) ||
        mkdir("/tmp/plain", 0700) || symlink("process", "/tmp/to-process") ||
        symlink("/tmp/process/environ", "/tmp/to-environ")) {
        printf("    FAIL setting up /tmp: %s\n", strerror(errno));
        return 1;
    }
    close(open("/tmp/fdinfo-entry", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    close(open("/tmp/plain/file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    if (bind_at("/proc/self", "/tmp/process") || bind_at("/proc/thread-self", "/tmp/thread") ||
        bind_at("/proc/self/fdinfo", "/tmp/fdinfo-dir") || bind_at("/proc/self/fdinfo/0", "/tmp/fdinfo-entry")) {
        printf("    FAIL bind-mounting procfs: %s\n", strerror(errno));
        return 1;
    }
    for (i = 0; i < sizeof dirs / sizeof dirs[0] + 3; i++) {
        for (j = 0; j < sizeof entries / sizeof entries[0]; j++) {
            if (i < 3)
                snprintf(p, sizeof p, "%s%s%s", dirs[i], *entries[j] ? "/" : "", entries[j]);
            else if (j > 0)
                break;
            else
                snprintf(p, sizeof p, "%s", i == 3 ? "/tmp/fdinfo-dir" : i == 4 ? "/tmp/fdinfo-entry" : "/tmp/to-environ");
            if (strpbrk(p, "0123456789")) {
                printf("    FAIL %s has a digit\n", p);
                bad++;
            }
            for (k = 0; k < sizeof flags / sizeof flags[0]; k++) {
                tried++;
                r = fdctx_open(ctx, p, flags[k], 0);
                if (r >= 0) {
                    printf("    FAIL fdctx_open(\"%s\", %#o) opened it\n", p, flags[k]);
                    close(r);
                    bad++;
                } else if (r != -EPERM && !(flags[k] == O_RDWR && (r == -EISDIR || r == -EACCES))) {
                    printf("    FAIL fdctx_open(\"%s\", %#o) = %d (%s)\n", p, flags[k], r, fdctx_last_error());
                    bad++;
                }
            }
        }
    }
    /* What a client may name still opens. */
    r = fdctx_open(ctx, "/dev/fd/0", O_PATH, 0);
    if (r < 0) {
        printf("    FAIL /dev/fd/0 O_PATH: %s\n", fdctx_last_error());
        bad++;
    } else {
        close(r);
    }
    r = fdctx_open(ctx, "/tmp/plain/file", O_RDONLY, 0);
    if (r < 0) {
        printf("    FAIL /tmp/plain/file: %s\n", fdctx_last_error());
        bad++;
    } else {
        close(r);
    }
    if (fdctx_finish(ctx) != 0)
        bad++;
    printf("    %d opens of procfs bound at paths without digits, all refused: %s\n", tried, bad ? "no" : "yes");
    return bad ? 1 : 0;
}

/* /proc/<pid> bind-mounted where no name tells it is procfs: refused by
 * the filesystem of the file opened (with openat2, or, under a tool that
 * lacks it, with the library's own walk). */
static void test_open_procfs_bind_mounted(void)
{
    pid_t pid;
    int status = 0;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        int rc = procfs_bind_child(), fd;
        fflush(stdout);
        for (fd = 3; fd < 1024; fd++)
            close(fd);
        _exit(rc);
    }
    CHECK(pid > 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        h_skip("the kernel refuses a private user+mount namespace here");
    else
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Thread-local current context: enter/leave nest; fdctx_open(NULL, ...)
 * resolves /dev/fd/N in the current one. */
static void *thread_current(void *arg)
{
    *(fdctx **)arg = fdctx_current();
    return NULL;
}

static void test_enter_leave_current(void)
{
    fdctx *a = ctx_with(h_pipe_with("from-a"));
    fdctx *b = ctx_with(h_pipe_with("from-b"));
    fdctx *prev_a, *prev_b, *seen = (fdctx *)&seen;
    pthread_t th;
    int fd;

    CHECK(a != NULL && b != NULL);
    if (!a || !b)
        return;
    CHECK(fdctx_current() == NULL);
    /* No current context: /dev/fd/N has nothing to resolve against. */
    CHECK_NEG(fdctx_open(NULL, "/dev/fd/0", O_RDONLY, 0));

    prev_a = fdctx_enter(a);
    CHECK(prev_a == NULL);
    CHECK(fdctx_current() == a);
    /* Another thread has its own (empty) current context. */
    CHECK_EQ(pthread_create(&th, NULL, thread_current, &seen), 0);
    pthread_join(th, NULL);
    CHECK(seen == NULL);

    prev_b = fdctx_enter(b);
    CHECK(prev_b == a);
    CHECK(fdctx_current() == b);
    fd = fdctx_open(NULL, "/dev/fd/0", O_RDONLY, 0);
    CHECK_OK(fd);
    if (fd >= 0) {
        CHECK(h_reads(fd, "from-b"));
        close(fd);
    }
    fdctx_leave(prev_b);
    CHECK(fdctx_current() == a);
    fd = fdctx_open(NULL, "/dev/fd/0", O_RDONLY, 0);
    CHECK_OK(fd);
    if (fd >= 0) {
        CHECK(h_reads(fd, "from-a"));
        close(fd);
    }
    /* Ordinary paths work through the current context as well. */
    fd = fdctx_open(NULL, tmpdir, O_RDONLY | O_DIRECTORY, 0);
    CHECK_OK(fd);
    if (fd >= 0) {
        CHECK(h_cloexec(fd));
        close(fd);
    }
    fdctx_leave(prev_a);
    CHECK(fdctx_current() == NULL);
    CHECK_NEG(fdctx_open(NULL, "/dev/fd/0", O_RDONLY, 0));
    /* Leaving with nothing entered is harmless. */
    fdctx_leave(NULL);
    CHECK(fdctx_current() == NULL);
    CHECK_EQ(fdctx_finish(a), 0);
    CHECK_EQ(fdctx_finish(b), 0);
}

int main(void)
{
    int rc;
    h_init();
    make_tmpdir();
    RUN(test_open_devfd_basic);
    RUN(test_open_access_mode);
    RUN(test_open_opath_refused);
    RUN(test_open_directory);
    RUN(test_open_nonblock);
    RUN(test_open_ordinary_path);
    RUN(test_open_refused_paths);
    RUN(test_open_trunc_only_regular_files);
    RUN(test_open_procfs_refused);
    RUN(test_open_procfs_bind_mounted);
    RUN(test_enter_leave_current);
    rc = h_finish();
    {
        char p[PATH_MAX];
        tmp_path(p, sizeof p, "acc");
        unlink(p);
        tmp_path(p, sizeof p, "opath");
        unlink(p);
        tmp_path(p, sizeof p, "plain");
        unlink(p);
        tmp_path(p, sizeof p, "created");
        unlink(p);
        rmdir(tmpdir);
    }
    return rc;
}
