/* Shared helpers for the fdctx benchmark: timing, CPU pinning, the
 * per-connection line buffer the hand-written baselines use, and the
 * memory probes. Header-only so every receiver is one translation unit. */
#ifndef FDBENCH_H
#define FDBENCH_H

#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The kernel's SCM_MAX_FD: the most fds one sendmsg can carry. */
#define BENCH_SCM_MAX_FD 253

static inline uint64_t bench_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t bench_wall_ns(void) { return bench_ns(CLOCK_MONOTONIC); }
static inline uint64_t bench_cpu_ns(void) { return bench_ns(CLOCK_PROCESS_CPUTIME_ID); }

/* Pin the calling process (and whatever it execs) to one CPU; -1 = no pin. */
static inline int bench_pin(int cpu)
{
    if (cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

/* Raise RLIMIT_NOFILE's soft limit towards the hard one. */
static inline void bench_raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* Number of open fds of this process (entries of /proc/self/fd). */
static inline long bench_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own fd */
}

/* Heap bytes in use right now, as glibc malloc accounts them (all arenas,
 * including chunks served by mmap). */
static inline long long bench_heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long long)mi.uordblks + (long long)mi.hblkhd;
}

/* Resident set size in bytes (from /proc/self/statm). */
static inline long long bench_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, res = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%lld %lld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

/* Allocation counters of the LD_PRELOAD shim (fdbench-alloc.so), when it is
 * loaded: the counts of malloc/calloc/realloc/aligned allocations and frees
 * made by this process so far, whoever made them (C, GLib, jansson, Rust). */
typedef void (*bench_alloc_stats_fn)(unsigned long long *allocs, unsigned long long *frees);

static inline bench_alloc_stats_fn bench_alloc_probe(void)
{
    return (bench_alloc_stats_fn)dlsym(RTLD_DEFAULT, "fdbench_alloc_stats");
}

/* ---- the hand-written baselines' per-connection buffer ------------------
 * Newline framing over a growable buffer. Reads land at the end; every byte
 * is scanned for '\n' once (scan position kept across reads), the consumed
 * prefix is dropped only when more room is needed. fds received are queued
 * and handed to the next command that completes, like a C monitor's
 * per-connection fd queue. */
struct linebuf {
    char *buf;
    size_t start, scan, len, cap;
    int *fds;
    size_t nfds, capfds;
};

#define LINEBUF_INITIAL (64 * 1024)
#define LINEBUF_MIN_READ 4096

static inline int linebuf_init(struct linebuf *lb)
{
    memset(lb, 0, sizeof *lb);
    lb->cap = LINEBUF_INITIAL;
    lb->buf = malloc(lb->cap);
    lb->capfds = BENCH_SCM_MAX_FD;
    lb->fds = malloc(lb->capfds * sizeof(int));
    return lb->buf && lb->fds ? 0 : -ENOMEM;
}

static inline void linebuf_close_fds(struct linebuf *lb)
{
    for (size_t i = 0; i < lb->nfds; i++)
        close(lb->fds[i]);
    lb->nfds = 0;
}

static inline void linebuf_free(struct linebuf *lb)
{
    linebuf_close_fds(lb);
    free(lb->buf);
    free(lb->fds);
    memset(lb, 0, sizeof *lb);
}

/* Next complete line (without its '\n') if one is buffered: returns 1 and
 * sets *line and *n, else 0. */
static inline int linebuf_line(struct linebuf *lb, const char **line, size_t *n)
{
    while (lb->scan < lb->len) {
        char *nl = memchr(lb->buf + lb->scan, '\n', lb->len - lb->scan);
        if (!nl) {
            lb->scan = lb->len;
            return 0;
        }
        size_t end = (size_t)(nl - lb->buf);
        *line = lb->buf + lb->start;
        *n = end - lb->start;
        lb->start = lb->scan = end + 1;
        if (*n == 0)
            continue; /* blank line */
        return 1;
    }
    return 0;
}

/* Room for the next read: drops the consumed prefix, grows when short. */
static inline int linebuf_room(struct linebuf *lb, char **at, size_t *room)
{
    if (lb->start > 0) {
        memmove(lb->buf, lb->buf + lb->start, lb->len - lb->start);
        lb->len -= lb->start;
        lb->scan -= lb->start;
        lb->start = 0;
    }
    if (lb->cap - lb->len < LINEBUF_MIN_READ) {
        size_t ncap = lb->cap * 2;
        char *nb = realloc(lb->buf, ncap);
        if (!nb)
            return -ENOMEM;
        lb->buf = nb;
        lb->cap = ncap;
    }
    *at = lb->buf + lb->len;
    *room = lb->cap - lb->len;
    return 0;
}

static inline int linebuf_add_fds(struct linebuf *lb, const int *fds, size_t n)
{
    if (lb->nfds + n > lb->capfds) {
        size_t ncap = (lb->nfds + n) * 2;
        int *nf = realloc(lb->fds, ncap * sizeof(int));
        if (!nf) {
            for (size_t i = 0; i < n; i++)
                close(fds[i]);
            return -ENOMEM;
        }
        lb->fds = nf;
        lb->capfds = ncap;
    }
    memcpy(lb->fds + lb->nfds, fds, n * sizeof(int));
    lb->nfds += n;
    return 0;
}

/* The plain recvmsg(2) read with SCM_RIGHTS parsing used by B1 and B2.
 * Returns bytes read, 0 at end of stream, negative errno. */
static inline ssize_t linebuf_recvmsg(struct linebuf *lb, int fd)
{
    char *at;
    size_t room;
    int r = linebuf_room(lb, &at, &room);
    if (r < 0)
        return r;
    union {
        char buf[CMSG_SPACE(BENCH_SCM_MAX_FD * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { at, room };
    struct msghdr mh = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof ctl.buf,
    };
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int tmp[BENCH_SCM_MAX_FD];
            memcpy(tmp, CMSG_DATA(c), k * sizeof(int));
            r = linebuf_add_fds(lb, tmp, k);
            if (r < 0)
                return r;
        }
    }
    if (mh.msg_flags & MSG_CTRUNC)
        return -ECOMM;
    lb->len += (size_t)n;
    return n;
}

#endif
