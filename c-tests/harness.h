/*
 * Minimal test harness for the fdctx C tests.
 *
 * Every test runs through RUN(fn): the harness lists /proc/self/fd before
 * and after it and fails the test when an fd appeared (leaked: printed with
 * its readlink target) or disappeared (something closed a descriptor it did
 * not own). Checks record failures and go on; the program ends with the line
 * "N passed, N failed" (", N skipped" when any test was skipped) and exits
 * non-zero when anything failed.
 *
 * Everything is printed to stdout, so a memory checker's stderr stays its own.
 */
#ifndef FDCTX_TEST_HARNESS_H
#define FDCTX_TEST_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <fdctx.h>

static int h_passed, h_failed, h_skipped;
static int h_cur_failures;
static int h_cur_skipped;
static const char *h_cur_name = "(none)";

#if defined(__GNUC__)
#define H_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define H_FN static __attribute__((unused))
#else
#define H_PRINTF(a, b)
#define H_FN static
#endif

H_PRINTF(3, 4)
H_FN void h_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    printf("    FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    h_cur_failures++;
}

/* Passes when cond holds. */
#define CHECK(cond)                                                      \
    do {                                                                 \
        if (!(cond))                                                     \
            h_fail(__FILE__, __LINE__, "%s", #cond);                     \
    } while (0)

/* Passes when two integers are equal; prints both. */
#define CHECK_EQ(a, b)                                                   \
    do {                                                                 \
        long long h_a_ = (long long)(a), h_b_ = (long long)(b);          \
        if (h_a_ != h_b_)                                                \
            h_fail(__FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b, \
                   h_a_, h_b_);                                          \
    } while (0)

/* Passes when expr returns exactly -err; prints the errno names. */
#define CHECK_ERR(expr, err)                                             \
    do {                                                                 \
        long long h_r_ = (long long)(expr);                              \
        if (h_r_ != -(long long)(err))                                   \
            h_fail(__FILE__, __LINE__, "%s == -%s: got %lld (%s)", #expr, \
                   #err, h_r_, h_r_ < 0 ? strerror((int)-h_r_) : "not an error"); \
    } while (0)

/* Passes when expr returns a negative errno (any). */
#define CHECK_NEG(expr)                                                  \
    do {                                                                 \
        long long h_r_ = (long long)(expr);                              \
        if (h_r_ >= 0)                                                   \
            h_fail(__FILE__, __LINE__, "%s < 0: got %lld", #expr, h_r_); \
    } while (0)

/* Passes when expr returns >= 0; prints the error and fdctx_last_error(). */
#define CHECK_OK(expr)                                                   \
    do {                                                                 \
        long long h_r_ = (long long)(expr);                              \
        if (h_r_ < 0) {                                                  \
            const char *h_le_ = fdctx_last_error();                      \
            h_fail(__FILE__, __LINE__, "%s >= 0: got %lld (%s; %s)", #expr, \
                   h_r_, strerror((int)-h_r_), h_le_ ? h_le_ : "no text"); \
        }                                                                \
    } while (0)

#define CHECK_STREQ(a, b)                                                \
    do {                                                                 \
        const char *h_sa_ = (a), *h_sb_ = (b);                           \
        if (!h_sa_ || !h_sb_ || strcmp(h_sa_, h_sb_) != 0)               \
            h_fail(__FILE__, __LINE__, "%s == %s (\"%s\" != \"%s\")", #a, #b, \
                   h_sa_ ? h_sa_ : "(null)", h_sb_ ? h_sb_ : "(null)");   \
    } while (0)

/* Mark the running test skipped, with the reason printed. */
H_FN void h_skip(const char *why)
{
    printf("    skip: %s\n", why);
    h_cur_skipped = 1;
}

/* ---- fd accounting ---------------------------------------------------- */

#define H_MAX_FDS 4096

struct h_fdent {
    int fd;
    char target[200];
};

struct h_fdsnap {
    int n;
    int truncated;
    struct h_fdent e[H_MAX_FDS];
};

H_FN int h_fdent_cmp(const void *a, const void *b)
{
    const struct h_fdent *x = a, *y = b;
    return (x->fd > y->fd) - (x->fd < y->fd);
}

/* List the open fds of the process (without the listing's own fd). */
H_FN void h_snapshot(struct h_fdsnap *s)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int self;

    s->n = 0;
    s->truncated = 0;
    if (!d) {
        printf("    harness: opendir /proc/self/fd: %s\n", strerror(errno));
        exit(2);
    }
    self = dirfd(d);
    while ((de = readdir(d)) != NULL) {
        char link[64];
        ssize_t len;
        int fd;

        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        fd = atoi(de->d_name);
        if (fd == self)
            continue;
        if (s->n == H_MAX_FDS) {
            s->truncated = 1;
            break;
        }
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        len = readlink(link, s->e[s->n].target, sizeof s->e[s->n].target - 1);
        if (len < 0)
            len = 0;
        s->e[s->n].target[len] = '\0';
        s->e[s->n].fd = fd;
        s->n++;
    }
    closedir(d);
    qsort(s->e, (size_t)s->n, sizeof s->e[0], h_fdent_cmp);
}

H_FN const struct h_fdent *h_find(const struct h_fdsnap *s, int fd)
{
    struct h_fdent key;
    key.fd = fd;
    return bsearch(&key, s->e, (size_t)s->n, sizeof s->e[0], h_fdent_cmp);
}

/* Number of open fds right now (the listing's own fd excluded). */
H_FN int h_fd_count(void)
{
    static struct h_fdsnap s;
    h_snapshot(&s);
    return s.n;
}

/* Compare two snapshots; print and count every difference. */
H_FN int h_fd_diff(const struct h_fdsnap *before, const struct h_fdsnap *after)
{
    int bad = 0;
    int i;

    for (i = 0; i < after->n; i++) {
        const struct h_fdent *b = h_find(before, after->e[i].fd);
        if (!b || strcmp(b->target, after->e[i].target) != 0) {
            printf("    LEAK fd %d -> %s\n", after->e[i].fd, after->e[i].target);
            bad++;
        }
    }
    for (i = 0; i < before->n; i++) {
        const struct h_fdent *a = h_find(after, before->e[i].fd);
        if (!a || strcmp(a->target, before->e[i].target) != 0) {
            printf("    CLOSED fd %d -> %s (open before the test, not its own)\n",
                   before->e[i].fd, before->e[i].target);
            bad++;
        }
    }
    if (before->truncated || after->truncated) {
        printf("    harness: more than %d fds open, accounting incomplete\n", H_MAX_FDS);
        bad++;
    }
    return bad;
}

static struct h_fdsnap h_before, h_after;

H_FN void h_run(const char *name, void (*fn)(void))
{
    int leaks;

    h_cur_name = name;
    h_cur_failures = 0;
    h_cur_skipped = 0;
    printf("test %s\n", name);
    fflush(stdout);
    h_snapshot(&h_before);
    fn();
    h_snapshot(&h_after);
    leaks = h_fd_diff(&h_before, &h_after);
    if (leaks) {
        printf("    FAIL fd accounting: %d open before, %d after, %d differences\n",
               h_before.n, h_after.n, leaks);
        h_cur_failures++;
    }
    if (h_cur_failures) {
        printf("FAIL %s\n", name);
        h_failed++;
    } else if (h_cur_skipped) {
        printf("skip %s\n", name);
        h_skipped++;
    } else {
        printf("ok   %s\n", name);
        h_passed++;
    }
    fflush(stdout);
}

#define RUN(fn) h_run(#fn, fn)

H_FN int h_finish(void)
{
    if (h_skipped)
        printf("%d passed, %d failed, %d skipped\n", h_passed, h_failed, h_skipped);
    else
        printf("%d passed, %d failed\n", h_passed, h_failed);
    fflush(stdout);
    return h_failed ? 1 : 0;
}

H_FN void h_init(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* A closed peer must give EPIPE, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
}

/* ---- small helpers ---------------------------------------------------- */

H_FN int h_is_open(int fd)
{
    return fd >= 0 && fcntl(fd, F_GETFD) != -1;
}

H_FN int h_cloexec(int fd)
{
    int f = fcntl(fd, F_GETFD);
    return f != -1 && (f & FD_CLOEXEC);
}

H_FN int h_same_file(int a, int b)
{
    struct stat sa, sb;
    if (fstat(a, &sa) != 0 || fstat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The read end of a pipe that holds `payload` and then EOF. */
H_FN int h_pipe_with(const char *payload)
{
    int p[2];
    size_t len = strlen(payload);
    if (pipe2(p, O_CLOEXEC) != 0) {
        printf("    harness: pipe2: %s\n", strerror(errno));
        exit(2);
    }
    if (write(p[1], payload, len) != (ssize_t)len) {
        printf("    harness: write: %s\n", strerror(errno));
        exit(2);
    }
    close(p[1]);
    return p[0];
}

/* One sendmsg(2) of `text` with the `n` fds attached (at most 8), exactly
 * as given: a client that does not use fdctx_send (qemu.qmp sends its fd
 * on a lone space, which fdctx_send refuses). Returns what sendmsg does. */
H_FN ssize_t h_sendmsg_raw(int sock, const char *text, const int *fds, size_t n)
{
    union {
        char buf[CMSG_SPACE(8 * sizeof(int))];
        struct cmsghdr align;
    } cbuf;
    struct iovec iov;
    struct msghdr mh;

    if (n > 8)
        return -1;
    memset(&mh, 0, sizeof mh);
    memset(&cbuf, 0, sizeof cbuf);
    iov.iov_base = (void *)text;
    iov.iov_len = strlen(text);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (n > 0) {
        struct cmsghdr *c;
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

/* One recvmsg(2) of up to `cap` bytes the way a VMM reads, with room for
 * `max_fds` fds (at most 253; QEMU's socket chardev has room for 16): the
 * fds into fds[], MSG_CTRUNC as FDCTX_FEED_FDS_LOST and end of stream as
 * FDCTX_FEED_END into *flags. Returns what recvmsg does. */
H_FN ssize_t h_recv_fds(int sock, char *buf, size_t cap, int *fds, size_t max_fds, size_t *nfds,
                        unsigned *flags)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(253 * sizeof(int))];
    } cm;
    struct iovec iov = {buf, cap};
    struct msghdr mh;
    struct cmsghdr *c;
    ssize_t n;

    if (max_fds > 253)
        max_fds = 253;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cm.b;
    mh.msg_controllen = CMSG_SPACE(max_fds * sizeof(int));
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    *nfds = 0;
    *flags = 0;
    if (n < 0)
        return n;
    for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds + *nfds, CMSG_DATA(c), k * sizeof(int));
            *nfds += k;
        }
    }
    if (mh.msg_flags & MSG_CTRUNC)
        *flags |= FDCTX_FEED_FDS_LOST;
    if (n == 0)
        *flags |= FDCTX_FEED_END;
    return n;
}

/* Read everything from fd into buf (NUL-terminated); returns the length or -1. */
H_FN ssize_t h_read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            buf[n] = '\0';
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap - 1)
            break;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

/* 1 when `fd` is a pipe read end whose content equals `want`. */
H_FN int h_reads(int fd, const char *want)
{
    char buf[256];
    if (h_read_all(fd, buf, sizeof buf) < 0)
        return 0;
    if (strcmp(buf, want) != 0) {
        printf("    read \"%s\", expected \"%s\"\n", buf, want);
        return 0;
    }
    return 1;
}

/* Whether openat2(2) works in this process (not under valgrind 3.19, old kernels). */
H_FN int h_openat2_available(void)
{
#ifdef SYS_openat2
    struct {
        uint64_t flags, mode, resolve;
    } how = {O_PATH | O_CLOEXEC, 0, 0};
    long fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof how);
    if (fd >= 0) {
        close((int)fd);
        return 1;
    }
#endif
    return 0;
}

/* Make sure the soft RLIMIT_NOFILE is at least `want` (up to the hard limit). */
H_FN void h_raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

#endif /* FDCTX_TEST_HARNESS_H */
