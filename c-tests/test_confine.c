/*
 * fdctx_confine: a process confined by Landlock opens no file by path
 * except beneath its allow entries, while the fds it holds or receives
 * keep working through fdctx_open("/dev/fd/N").
 *
 * Confinement cannot be undone, so every scenario runs in a fork()ed
 * child; the child counts its own fds (with fcntl: /proc/self/fd cannot
 * be listed once confined), prints its failures and exits with their
 * verdict; the parent's fds are counted by the harness around it. Where
 * the kernel has no usable Landlock (or the run is under a tool that does
 * not know its system calls), the scenarios that need it are skipped with
 * a line saying so; the ones about a kernel without Landlock still run.
 */
#include "harness.h"

#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

#define SKIP_EXIT 77

static char tmpdir[256];
static int kernel_abi; /* the kernel's Landlock ABI version, or <= 0 */

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_file(const char *name, const char *text)
{
    char p[PATH_MAX];
    int fd;
    path_of(p, sizeof p, name);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        printf("harness: %s: %s\n", p, strerror(errno));
        exit(2);
    }
    close(fd);
}

static void make_dir(const char *name)
{
    char p[PATH_MAX];
    path_of(p, sizeof p, name);
    if (mkdir(p, 0700) != 0) {
        printf("harness: mkdir %s: %s\n", p, strerror(errno));
        exit(2);
    }
}

/* open(2) by name in the temp dir: the fd, or -errno. */
static int open_in(const char *name, int flags)
{
    char p[PATH_MAX];
    int fd;
    path_of(p, sizeof p, name);
    fd = open(p, flags | O_CLOEXEC, 0600);
    return fd >= 0 ? fd : -errno;
}

/* 1 when open_in(name, flags) succeeds (the fd is closed again). */
static int opens(const char *name, int flags)
{
    int fd = open_in(name, flags);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

/* Open fds, counted without /proc (which a confined process cannot list). */
static int count_fds(void)
{
    int n = 0, fd;
    for (fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            n++;
    return n;
}

/* ---- child processes --------------------------------------------------- */

static int child_fds_at_start;

/* Runs scenario `fn` in a child; the child's failures become this test's. */
static void in_child(void (*fn)(void))
{
    pid_t pid;
    int status = 0;

    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        h_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        int fd, end;
        child_fds_at_start = count_fds();
        fn();
        end = count_fds();
        if (end != child_fds_at_start) {
            printf("    FAIL child fd accounting: %d open at start, %d at the end\n", child_fds_at_start, end);
            h_cur_failures++;
        }
        fflush(stdout);
        /* Leave a memory checker's fd report clean: only 0, 1 and 2. */
        for (fd = 3; fd < 1024; fd++)
            close(fd);
        _exit(h_cur_failures ? 1 : h_cur_skipped ? SKIP_EXIT : 0);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == SKIP_EXIT)
        h_cur_skipped = 1;
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        h_fail(__FILE__, __LINE__, "scenario child failed (status %#x)", status);
}

/* In a child: skips the scenario unless Landlock can be enforced. */
static int need_landlock(void)
{
    if (kernel_abi > 0)
        return 1;
    h_skip("no usable Landlock in this process (kernel without it, or a tool that does not know its system calls)");
    return 0;
}

/* A context holding `n` fds. */
static fdctx *ctx_of(const int *fds, size_t n)
{
    fdctx *ctx = fdctx_new();
    if (!ctx || fdctx_adopt(ctx, fds, n) != (int)n) {
        printf("harness: context: %s\n", fdctx_last_error());
        exit(2);
    }
    return ctx;
}

/* ---- scenarios --------------------------------------------------------- */

/* After fdctx_confine(NULL, 0, 0) no path opens, open(2) or fdctx_open;
 * the fds held from before keep every behaviour of /dev/fd/N. */
static void paths_refused_fds_work(void)
{
    char p[PATH_MAX], buf[64];
    int fds[4], r, abi;
    fdctx *ctx;

    if (!need_landlock())
        return;
    write_file("disk.img", "image");
    write_file("scratch.img", "scratch data");
    fds[0] = open_in("disk.img", O_RDONLY);
    fds[1] = open_in("scratch.img", O_RDWR);
    fds[2] = open_in(".", O_RDONLY | O_DIRECTORY);
    fds[3] = h_pipe_with("piped");
    ctx = ctx_of(fds, 4);

    abi = fdctx_confine(NULL, 0, 0);
    CHECK_EQ(abi, kernel_abi);
    CHECK_EQ(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 1);

    /* By path: refused by the kernel, and by fdctx_open with a text. */
    CHECK_EQ(open_in("disk.img", O_RDONLY), -EACCES);
    CHECK_EQ(open_in("new.img", O_RDWR | O_CREAT), -EACCES);
    path_of(p, sizeof p, "disk.img");
    CHECK_ERR(fdctx_open(ctx, p, O_RDONLY, 0), EACCES);
    CHECK(strstr(fdctx_last_error(), "confined") != NULL);
    CHECK(strstr(fdctx_last_error(), p) != NULL);
    CHECK_ERR(fdctx_open(ctx, "/dev/null", O_RDWR, 0), EACCES);
    CHECK_ERR(fdctx_open(NULL, "/etc/passwd", O_RDONLY, 0), EACCES);
    CHECK(open("/etc/passwd", O_RDONLY | O_CLOEXEC) < 0 && errno == EACCES);

    /* What the header says Landlock leaves: existence can be probed (a
     * missing path is -ENOENT, not -EACCES), and an O_PATH open of any
     * existing path succeeds, though that fd reads nothing. */
    path_of(p, sizeof p, "no-such.img");
    CHECK_ERR(fdctx_open(NULL, p, O_RDONLY, 0), ENOENT);
    path_of(p, sizeof p, "disk.img");
    r = fdctx_open(NULL, p, O_PATH, 0);
    CHECK_OK(r);
    if (r >= 0) {
        CHECK(read(r, buf, 1) < 0 && errno == EBADF);
        close(r);
    }

    /* By fd: every flag of /dev/fd/N. */
    r = fdctx_open(ctx, "/dev/fd/0", O_RDONLY, 0);
    CHECK_OK(r);
    if (r >= 0) {
        CHECK(h_cloexec(r));
        CHECK_EQ(pread(r, buf, sizeof buf, 0), 5);
        close(r);
    }
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/0", O_RDWR, 0), EACCES);
    r = fdctx_open(ctx, "/dev/fd/0", O_PATH, 0);
    CHECK_OK(r);
    if (r >= 0) {
        CHECK(fcntl(r, F_GETFL) & O_PATH);
        CHECK(h_same_file(r, fds[0]));
        CHECK(read(r, buf, 1) < 0 && errno == EBADF);
        close(r);
    }
    r = fdctx_open(ctx, "/dev/fd/1", O_RDWR | O_TRUNC | O_NONBLOCK, 0);
    CHECK_OK(r);
    if (r >= 0) {
        struct stat st;
        CHECK(fstat(r, &st) == 0 && st.st_size == 0);
        CHECK(fcntl(r, F_GETFL) & O_NONBLOCK);
        CHECK_EQ(pwrite(r, "new", 3, 0), 3);
        CHECK_EQ(ftruncate(r, 2), 0);
        close(r);
    }
    r = fdctx_open(ctx, "/dev/fd/2", O_RDONLY | O_DIRECTORY, 0);
    CHECK_OK(r);
    if (r >= 0) {
        /* A directory fd held from before lists, but openat beneath it is
         * a path open, and Landlock refuses it. */
        CHECK(openat(r, "disk.img", O_RDONLY | O_CLOEXEC) < 0 && errno == EACCES);
        close(r);
    }
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/3", O_RDONLY | O_DIRECTORY, 0), ENOTDIR);
    r = fdctx_open(ctx, "/dev/fd/3", O_RDONLY, 0);
    CHECK_OK(r);
    if (r >= 0) {
        CHECK(h_reads(r, "piped"));
        close(r);
    }
    r = fdctx_dup(ctx, 1);
    CHECK_OK(r);
    if (r >= 0) {
        CHECK_EQ(pread(r, buf, sizeof buf, 0), 2);
        CHECK(memcmp(buf, "ne", 2) == 0);
        close(r);
    }
    r = fdctx_take(ctx, 0);
    CHECK_OK(r);
    if (r >= 0)
        close(r);
    CHECK_EQ(fdctx_finish(ctx), 0);
}

static void *open_from_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)open_in("disk.img", O_RDONLY);
}

struct waiter {
    int go; /* read end: the thread waits for one byte */
    int result;
};

static void *open_when_told(void *arg)
{
    struct waiter *w = arg;
    char c;
    while (read(w->go, &c, 1) < 0 && errno == EINTR)
        ;
    w->result = open_in("disk.img", O_RDONLY);
    return NULL;
}

/* Threads and processes created after the call are confined (exec too);
 * a thread that existed before is not: the documented thread rule. */
static void threads_and_children_confined(void)
{
    pthread_t before, after;
    struct waiter w;
    int go[2];
    void *res = NULL;
    pid_t pid;
    int status = 0;

    if (!need_landlock())
        return;
    write_file("disk.img", "image");
    CHECK_EQ(pipe2(go, O_CLOEXEC), 0);
    w.go = go[0];
    w.result = -1;
    CHECK_EQ(pthread_create(&before, NULL, open_when_told, &w), 0);

    CHECK(fdctx_confine(NULL, 0, 0) > 0);

    CHECK_EQ(pthread_create(&after, NULL, open_from_thread, NULL), 0);
    CHECK_EQ(pthread_join(after, &res), 0);
    CHECK_EQ((intptr_t)res, -EACCES);

    CHECK_EQ(write(go[1], "x", 1), 1);
    CHECK_EQ(pthread_join(before, NULL), 0);
    CHECK(w.result >= 0); /* not confined: it existed before the call */
    if (w.result >= 0)
        close(w.result);
    close(go[0]);
    close(go[1]);

    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        int r = open_in("disk.img", O_RDONLY);
        char *argv[] = {(char *)"true", NULL};
        if (r != -EACCES)
            _exit(1);
        execv("/bin/true", argv);
        _exit(errno == EACCES ? 0 : 2);
    }
    CHECK(pid > 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Allow entries: a directory allows what is beneath it with its access,
 * a file allows itself, and nothing more. */
static void allow_list_grants_its_access_only(void)
{
    char ro[PATH_MAX], rw[PATH_MAX], wo[PATH_MAX], p[PATH_MAX];
    fdctx_allow allow[4];
    int abi, r;
    struct stat st;

    if (!need_landlock())
        return;
    make_dir("ro");
    make_dir("ro/sub");
    make_dir("rw");
    make_dir("outside");
    write_file("ro/image", "ro image");
    write_file("ro/sub/deep", "deep");
    write_file("rw/old", "old");
    write_file("log", "log line");
    write_file("outside/secret", "secret");
    path_of(p, sizeof p, "ro/escape");
    if (symlink("../outside/secret", p) != 0)
        h_fail(__FILE__, __LINE__, "symlink: %s", strerror(errno));
    path_of(ro, sizeof ro, "ro");
    path_of(rw, sizeof rw, "rw");
    path_of(wo, sizeof wo, "log");
    allow[0].path = ro;
    allow[0].access = O_RDONLY;
    allow[1].path = rw;
    allow[1].access = O_RDWR;
    allow[2].path = wo;
    allow[2].access = O_WRONLY;
    allow[3].path = "/dev/null";
    allow[3].access = O_RDWR;

    abi = fdctx_confine(allow, 4, FDCTX_CONFINE_REQUIRE);
    CHECK_EQ(abi, kernel_abi);

    /* O_RDONLY directory: read and list beneath it, nothing else. */
    CHECK(opens("ro/image", O_RDONLY));
    CHECK(opens("ro/sub/deep", O_RDONLY));
    CHECK(opens("ro/sub", O_RDONLY | O_DIRECTORY));
    CHECK_EQ(open_in("ro/image", O_WRONLY), -EACCES);
    CHECK_EQ(open_in("ro/image", O_RDWR), -EACCES);
    CHECK_EQ(open_in("ro/new", O_WRONLY | O_CREAT), -EACCES);
    path_of(p, sizeof p, "ro/image");
    CHECK_EQ(unlink(p), -1);
    CHECK_EQ(errno, EACCES);
    if (abi >= 3) {
        CHECK_EQ(truncate(p, 0), -1);
        CHECK_EQ(errno, EACCES);
    }
    r = fdctx_open(NULL, p, O_RDONLY, 0);
    CHECK_OK(r);
    if (r >= 0) {
        CHECK(h_reads(r, "ro image"));
        close(r);
    }
    CHECK_ERR(fdctx_open(NULL, p, O_RDWR, 0), EACCES);
    CHECK(strstr(fdctx_last_error(), "confined") != NULL);
    /* ".." and symlinks do not get out: the file reached is checked. */
    CHECK_EQ(open_in("ro/../outside/secret", O_RDONLY), -EACCES);
    CHECK_EQ(open_in("ro/escape", O_RDONLY), -EACCES);
    path_of(p, sizeof p, "ro/escape");
    CHECK_ERR(fdctx_open(NULL, p, O_RDONLY, 0), EACCES);
    CHECK_EQ(open_in("outside/secret", O_RDONLY), -EACCES);

    /* O_RDWR directory: files made, written, truncated, removed; and
     * directories and sockets made; never FIFOs, symlinks or devices. */
    r = open_in("rw/new", O_RDWR | O_CREAT | O_EXCL);
    CHECK(r >= 0);
    if (r >= 0) {
        CHECK_EQ(write(r, "abc", 3), 3);
        close(r);
    }
    CHECK(opens("rw/old", O_RDWR | O_TRUNC));
    path_of(p, sizeof p, "rw/old");
    CHECK(stat(p, &st) == 0 && st.st_size == 0);
    path_of(p, sizeof p, "rw/new");
    CHECK_EQ(unlink(p), 0);
    path_of(p, sizeof p, "rw/dir");
    CHECK_EQ(mkdir(p, 0700), 0);
    CHECK_EQ(rmdir(p), 0);
    if (abi >= 2) {
        /* Moved between directories within the allowed tree (REFER), but
         * not out of it. */
        char q[PATH_MAX];
        path_of(p, sizeof p, "rw/dir");
        CHECK_EQ(mkdir(p, 0700), 0);
        path_of(p, sizeof p, "rw/moved");
        r = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        CHECK(r >= 0);
        if (r >= 0)
            close(r);
        path_of(q, sizeof q, "rw/dir/moved");
        CHECK_EQ(rename(p, q), 0);
        path_of(p, sizeof p, "outside/moved");
        CHECK(rename(q, p) == -1 && (errno == EXDEV || errno == EACCES));
        CHECK_EQ(unlink(q), 0);
        path_of(p, sizeof p, "rw/dir");
        CHECK_EQ(rmdir(p), 0);
    }
    path_of(p, sizeof p, "rw/fifo");
    CHECK_EQ(mkfifo(p, 0600), -1);
    CHECK_EQ(errno, EACCES);
    path_of(p, sizeof p, "rw/link");
    CHECK_EQ(symlink("old", p), -1);
    CHECK_EQ(errno, EACCES);
    r = fdctx_open(NULL, p, O_RDWR | O_CREAT, 0600);
    CHECK_OK(r);
    if (r >= 0)
        close(r);
    CHECK_EQ(unlink(p), 0);

    /* O_WRONLY file: written and truncated, not read. */
    CHECK(opens("log", O_WRONLY | O_APPEND));
    CHECK(opens("log", O_WRONLY | O_TRUNC));
    CHECK_EQ(open_in("log", O_RDONLY), -EACCES);
    CHECK_EQ(open_in("log", O_RDWR), -EACCES);
    /* Its directory is not allowed. */
    CHECK_EQ(open_in("other", O_WRONLY | O_CREAT), -EACCES);

    /* A device allowed by path takes ioctls (IOCTL_DEV, ABI 5): /dev/null
     * answers TCGETS with ENOTTY, not a Landlock EACCES. Not allowed, it
     * does not open at all. */
    r = open("/dev/null", O_RDWR | O_CLOEXEC);
    CHECK(r >= 0);
    if (r >= 0) {
        struct termios t;
        CHECK_EQ(tcgetattr(r, &t), -1);
        CHECK_EQ(errno, ENOTTY);
        close(r);
    }
    CHECK(open("/dev/zero", O_RDONLY | O_CLOEXEC) < 0 && errno == EACCES);

    /* A second call adds a layer: it can only narrow. */
    allow[0].path = rw;
    allow[0].access = O_RDONLY;
    CHECK_EQ(fdctx_confine(allow, 1, 0), kernel_abi);
    CHECK(opens("rw/old", O_RDONLY));
    CHECK_EQ(open_in("rw/old", O_WRONLY), -EACCES);
    CHECK_EQ(open_in("ro/image", O_RDONLY), -EACCES);
}

/* A monitor confined before it serves: the command's image arrives as an
 * fd from an unconfined client and opens as /dev/fd/0; by path it fails. */
static int served_sock = -1;
static char served_path[PATH_MAX];

static void serve_after_confining(void)
{
    fdctx_conn *conn;
    fdctx_msg *msg = NULL;
    const char *name;
    char buf[64];
    int fd;

    if (!need_landlock())
        return;
    CHECK(fdctx_confine(NULL, 0, FDCTX_CONFINE_REQUIRE) > 0);
    conn = fdctx_conn_new(served_sock, FDCTX_FRAMING_JSON, NULL);
    CHECK(conn != NULL);
    if (!conn)
        return;
    CHECK_EQ(fdctx_conn_recv(conn, &msg), 1);
    if (msg) {
        CHECK_EQ(fdctx_msg_status(msg), 0);
        CHECK_EQ(fdctx_count(fdctx_msg_fds(msg)), 1);
        name = fdctx_msg_get_str(msg, "/arguments/filename", NULL);
        CHECK_STREQ(name, "/dev/fd/0");
        fd = fdctx_open(fdctx_msg_fds(msg), name ? name : "", O_RDWR, 0);
        CHECK_OK(fd);
        if (fd >= 0) {
            CHECK_EQ(pread(fd, buf, sizeof buf, 0), 10);
            CHECK(memcmp(buf, "qcow2 data", 10) == 0);
            CHECK_EQ(pwrite(fd, "QCOW", 4, 0), 4);
            close(fd);
        }
        /* The same image by its name: the kernel says no. */
        CHECK_ERR(fdctx_open(fdctx_msg_fds(msg), served_path, O_RDONLY, 0), EACCES);
        CHECK(strstr(fdctx_last_error(), "confined") != NULL);
        CHECK_EQ(fdctx_msg_finish(msg), 0);
    }
    /* The client shut its side: end of stream. */
    CHECK_EQ(fdctx_conn_recv(conn, &msg), 0);
    fdctx_conn_free(conn);
}

static void test_confine_serves_commands_by_fd(void)
{
    static const char cmd[] = "{\"execute\":\"blockdev-add\",\"arguments\":{\"filename\":\"/dev/fd/0\"}}\n";
    int sv[2], img, fd;
    char buf[16];

    write_file("served.qcow2", "qcow2 data");
    path_of(served_path, sizeof served_path, "served.qcow2");
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    /* The unconfined client sends the image with the command, then shuts
     * its side; the monitor receives it only once confined. */
    img = open_in("served.qcow2", O_RDWR);
    CHECK(img >= 0);
    CHECK_OK(fdctx_send(sv[0], cmd, sizeof cmd - 1, &img, 1));
    close(img);
    CHECK_EQ(shutdown(sv[0], SHUT_WR), 0);
    served_sock = sv[1];
    in_child(serve_after_confining);
    close(sv[0]);
    close(sv[1]);
    if (kernel_abi <= 0)
        return;
    fd = open_in("served.qcow2", O_RDONLY);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK_EQ(read(fd, buf, 4), 4);
        CHECK(memcmp(buf, "QCOW", 4) == 0);
        close(fd);
    }
}

/* A seccomp filter that answers `err` to each of the `n` system calls in
 * `nrs`: with ENOSYS, a kernel without them as far as this process can
 * tell; with EPERM, a container runtime's default answer. */
static int deny_syscalls(const long *nrs, unsigned n, int err)
{
#if defined(__x86_64__)
    const unsigned arch = 0xC000003Eu; /* AUDIT_ARCH_X86_64 */
#elif defined(__aarch64__)
    const unsigned arch = 0xC00000B7u; /* AUDIT_ARCH_AARCH64 */
#else
    const unsigned arch = 0;
#endif
    struct sock_filter f[4 + 2 * 8 + 1];
    struct sock_fprog prog;
    unsigned i, k = 0;

    if (arch == 0 || n > 8) {
        errno = ENOTSUP;
        return -1;
    }
    f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (i = 0; i < n; i++) {
        f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nrs[i], 0, 1);
        f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err);
    }
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog.len = (unsigned short)k;
    prog.filter = f;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* The Landlock calls in `mask` (bit 0 create_ruleset, 1 add_rule, 2
 * restrict_self) answered with `err`. */
static int deny_landlock(unsigned mask, int err)
{
    static const long calls[] = {SYS_landlock_create_ruleset, SYS_landlock_add_rule,
                                 SYS_landlock_restrict_self};
    long nrs[3];
    unsigned i, n = 0;
    for (i = 0; i < 3; i++)
        if (mask & (1u << i))
            nrs[n++] = calls[i];
    return deny_syscalls(nrs, n, err);
}

static unsigned denied_calls;
static int denied_errno;

/* FDCTX_CONFINE_REQUIRE on a kernel without Landlock fails; without it
 * the call returns 0 and says why; either way nothing is enforced. */
static void without_landlock(void)
{
    const char *text;
    char dir[PATH_MAX], p[PATH_MAX];
    fdctx_allow allow[1];
    int r;

    /* One read-only entry, so that landlock_add_rule is called too; were
     * anything enforced, the read-write opens below would fail. */
    path_of(dir, sizeof dir, ".");
    allow[0].path = dir;
    allow[0].access = O_RDONLY;
    write_file("disk.img", "image");
    if (deny_landlock(denied_calls, denied_errno) != 0) {
        printf("    no seccomp filter here (%s): the kernel's own answer is tested\n", strerror(errno));
        if (kernel_abi > 0) {
            h_skip("seccomp filters cannot be installed here");
            return;
        }
    }
    CHECK_ERR(fdctx_confine(allow, 1, FDCTX_CONFINE_REQUIRE), EOPNOTSUPP);
    text = fdctx_last_error();
    CHECK(strstr(text, "Landlock") != NULL);
    CHECK(opens("disk.img", O_RDWR));
    CHECK_EQ(fdctx_confine(allow, 1, 0), 0);
    text = fdctx_last_error();
    CHECK(strstr(text, "Landlock") != NULL);
    printf("    fdctx_confine without Landlock: 0, \"%s\"\n", text);
    CHECK(opens("disk.img", O_RDWR));
    /* fdctx_open is not told it is confined. */
    path_of(p, sizeof p, "disk.img");
    r = fdctx_open(NULL, p, O_RDWR, 0);
    CHECK_OK(r);
    if (r >= 0)
        close(r);
}

static void test_confine_require_without_landlock(void)
{
    static const struct {
        unsigned mask;
        int err;
    } cases[] = {{7, ENOSYS}, {1, ENOSYS}, {2, ENOSYS}, {4, ENOSYS}, {7, EPERM}, {2, EPERM}, {4, EPERM}};
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        denied_calls = cases[i].mask;
        denied_errno = cases[i].err;
        printf("    seccomp answers %s to Landlock calls %#x\n", cases[i].err == EPERM ? "EPERM" : "ENOSYS",
               cases[i].mask);
        in_child(without_landlock);
    }
}

/* Arguments: each bad one is refused before anything is enforced. */
static void bad_arguments(void)
{
    char missing[PATH_MAX], dir[PATH_MAX];
    fdctx_allow allow[2];
    fdctx_allow none[1];

    write_file("disk.img", "image");
    path_of(dir, sizeof dir, ".");
    path_of(missing, sizeof missing, "no-such-dir/image");
    allow[0].path = dir;
    allow[0].access = O_RDONLY;
    allow[1].path = missing;
    allow[1].access = O_RDONLY;

    CHECK_ERR(fdctx_confine(NULL, 1, 0), EINVAL);
    CHECK_ERR(fdctx_confine(allow, 1, 2), EINVAL);
    CHECK_ERR(fdctx_confine(allow, 1, ~0u), EINVAL);
    CHECK_ERR(fdctx_confine(allow, 2, 0), ENOENT);
    CHECK(strstr(fdctx_last_error(), missing) != NULL);
    printf("    missing allow path: \"%s\"\n", fdctx_last_error());
    allow[1].path = NULL;
    CHECK_ERR(fdctx_confine(allow, 2, 0), EINVAL);
    allow[1].path = dir;
    allow[1].access = O_RDWR | O_CREAT;
    CHECK_ERR(fdctx_confine(allow, 2, 0), EINVAL);
    allow[1].access = O_ACCMODE;
    CHECK_ERR(fdctx_confine(allow, 2, 0), EINVAL);
    allow[1].access = -1;
    CHECK_ERR(fdctx_confine(allow, 2, 0), EINVAL);
    allow[1].path = "";
    allow[1].access = O_RDONLY;
    CHECK_ERR(fdctx_confine(allow, 2, 0), ENOENT);
    /* Nothing was enforced by any of them. */
    CHECK(opens("disk.img", O_RDWR));
    CHECK_EQ(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 0);

    if (kernel_abi <= 0) {
        printf("    no Landlock: an empty allow list is not enforced here\n");
        return;
    }
    /* An empty list, not NULL: nothing allowed. */
    CHECK_EQ(fdctx_confine(none, 0, 0), kernel_abi);
    CHECK_EQ(open_in("disk.img", O_RDONLY), -EACCES);
}

static void nothing_allowed_by_null(void)
{
    if (!need_landlock())
        return;
    write_file("disk.img", "image");
    CHECK_EQ(fdctx_confine(NULL, 0, FDCTX_CONFINE_REQUIRE), kernel_abi);
    CHECK_EQ(open_in("disk.img", O_RDONLY), -EACCES);
    CHECK_EQ(open_in(".", O_RDONLY | O_DIRECTORY), -EACCES);
}

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* Where open_tree(2) and openat2(2) are missing (old kernels, seccomp
 * filters), the library's fallbacks work confined too: O_PATH views of
 * passed fds through /proc/thread-self/fd (an O_PATH open, which Landlock
 * does not check) and its own path walk, whose refusals still say the
 * process is confined. */
static void fallbacks_work_confined(void)
{
    static const long calls[] = {SYS_open_tree, SYS_openat2};
    char p[PATH_MAX], dir[PATH_MAX];
    fdctx_allow allow[1];
    fdctx *ctx;
    int fd, r;

    if (!need_landlock())
        return;
    make_dir("allowed");
    write_file("allowed/image", "allowed image");
    write_file("disk.img", "image");
    fd = open_in("disk.img", O_RDWR);
    ctx = ctx_of(&fd, 1);
    if (deny_syscalls(calls, 2, ENOSYS) != 0) {
        h_skip("seccomp filters cannot be installed here");
        fdctx_finish(ctx);
        return;
    }
    CHECK(syscall(SYS_openat2, AT_FDCWD, "/", NULL, 0) < 0 && errno == ENOSYS);
    path_of(dir, sizeof dir, "allowed");
    allow[0].path = dir;
    allow[0].access = O_RDONLY;
    CHECK_EQ(fdctx_confine(allow, 1, FDCTX_CONFINE_REQUIRE), kernel_abi);
    r = fdctx_open(ctx, "/dev/fd/0", O_PATH, 0);
    CHECK_OK(r);
    if (r >= 0) {
        CHECK(fcntl(r, F_GETFL) & O_PATH);
        CHECK(h_same_file(r, fd));
        close(r);
    }
    r = fdctx_open(ctx, "/dev/fd/0", O_WRONLY | O_TRUNC, 0);
    CHECK_OK(r);
    if (r >= 0)
        close(r);
    path_of(p, sizeof p, "disk.img");
    CHECK_ERR(fdctx_open(ctx, p, O_RDONLY, 0), EACCES);
    CHECK(strstr(fdctx_last_error(), "confined") != NULL);
    path_of(p, sizeof p, "allowed/image");
    r = fdctx_open(ctx, p, O_RDONLY, 0);
    CHECK_OK(r);
    if (r >= 0) {
        CHECK(h_reads(r, "allowed image"));
        close(r);
    }
    CHECK_ERR(fdctx_open(ctx, p, O_RDWR, 0), EACCES);
    /* procfs: the walk refuses it before the kernel is asked. */
    CHECK_ERR(fdctx_open(ctx, "/proc/self/status", O_RDONLY, 0), EPERM);
    CHECK_EQ(fdctx_finish(ctx), 0);
}

/* Runs `path` (no arguments) in a child: its exit status, or 128 + the
 * errno of a failed execve. */
static int run_program(const char *path)
{
    char *argv[2];
    int status = 0;
    pid_t pid;

    argv[0] = (char *)path;
    argv[1] = NULL;
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execv(path, argv);
        _exit(128 + errno);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* FDCTX_ALLOW_EXEC: the one program allowed (and its ELF interpreter) can
 * be executed, nothing else; without the bit no entry allows executing. */
static void exec_only_what_is_allowed(void)
{
    static const char interp[] = "/lib64/ld-linux-x86-64.so.2";
    fdctx_allow allow[] = {
        {"/etc/ld.so.cache", O_RDONLY},
        {"/usr/lib", O_RDONLY},
        {"/bin/true", O_RDONLY | FDCTX_ALLOW_EXEC},
        {interp, O_RDONLY | FDCTX_ALLOW_EXEC},
        {"/bin/false", O_RDONLY},
    };
    fdctx_allow bad = {"/bin/true", O_RDONLY | FDCTX_ALLOW_EXEC | O_CREAT};
    int abi, fd;

    if (!need_landlock())
        return;
    if (access(interp, X_OK) != 0 || access("/bin/true", X_OK) != 0 || access("/bin/false", X_OK) != 0
        || access("/bin/echo", X_OK) != 0) {
        h_skip("needs /bin/true, /bin/false, /bin/echo and the x86-64 loader /lib64/ld-linux-x86-64.so.2");
        return;
    }
    CHECK_ERR(fdctx_confine(&bad, 1, 0), EINVAL);
    CHECK_EQ(run_program("/bin/false"), 1);

    abi = fdctx_confine(allow, sizeof allow / sizeof allow[0], 0);
    CHECK_EQ(abi, kernel_abi);
    CHECK(strstr(fdctx_last_error(), "confined (Landlock ABI") != NULL);
    if (kernel_abi >= 8)
        CHECK(strstr(fdctx_last_error(), "every thread") != NULL);

    CHECK_EQ(run_program("/bin/true"), 0);
    /* Readable but not executable, and neither. */
    CHECK_EQ(run_program("/bin/false"), 128 + EACCES);
    CHECK_EQ(run_program("/bin/echo"), 128 + EACCES);
    /* The entry's read access stands beside execute. */
    fd = open("/bin/true", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
}

static void test_confine_paths_refused_fds_work(void) { in_child(paths_refused_fds_work); }
static void test_confine_threads_and_children(void) { in_child(threads_and_children_confined); }
static void test_confine_allow_list(void) { in_child(allow_list_grants_its_access_only); }
static void test_confine_bad_arguments(void) { in_child(bad_arguments); }
static void test_confine_null_allow_list(void) { in_child(nothing_allowed_by_null); }
static void test_confine_fallbacks(void) { in_child(fallbacks_work_confined); }
static void test_confine_exec_only_what_is_allowed(void) { in_child(exec_only_what_is_allowed); }

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        char p[PATH_MAX];
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    h_init();
    snprintf(tmpdir, sizeof tmpdir, "%s/fdctx-confine-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        printf("harness: mkdtemp: %s\n", strerror(errno));
        return 2;
    }
    kernel_abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, 1u);
    if (kernel_abi > 0)
        printf("Landlock ABI %d\n", kernel_abi);
    else
        printf("no Landlock here (%s): scenarios that need it are skipped\n", strerror(errno));
    RUN(test_confine_paths_refused_fds_work);
    RUN(test_confine_threads_and_children);
    RUN(test_confine_allow_list);
    RUN(test_confine_serves_commands_by_fd);
    RUN(test_confine_require_without_landlock);
    RUN(test_confine_bad_arguments);
    RUN(test_confine_null_allow_list);
    RUN(test_confine_fallbacks);
    RUN(test_confine_exec_only_what_is_allowed);
    remove_tree(tmpdir);
    return h_finish();
}
