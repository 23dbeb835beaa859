/* The common main() of every benchmark receiver.
 *
 * A receiver file includes this header and then defines the three
 * functions declared below; they are static, so the compiler sees the whole
 * receive loop of each receiver in one translation unit.
 *
 *   recv-X stream FD CTL COUNT FDS MAXBYTES
 *       FD is a connected stream socket, CTL a control socket to the driver.
 *       The driver announces a batch by writing its size K (a uint64_t) on
 *       CTL; the receiver waits until FD is readable, handles K commands
 *       (each expected to carry FDS fds) under the clock, and acknowledges
 *       with one byte on CTL. K = 0 ends the run: the receiver then expects
 *       end of stream on FD. COUNT commands in all.
 *   recv-X idle FD - COUNT FDS MAXBYTES
 *       FD is a listening socket. Accept COUNT connections, handle one
 *       command on each and keep the connection; report the heap and RSS
 *       growth per connection after the first.
 *
 * Prints one line on stdout: "ok key=value ..." (see below), or an error on
 * stderr and exits 1. Every run checks that the process holds exactly the
 * fds it started with once the connections are closed. */
#ifndef FDBENCH_RX_MAIN_H
#define FDBENCH_RX_MAIN_H

#include "bench.h"
#include <poll.h>

struct rx_cfg {
    size_t count;     /* commands (stream) or connections (idle) */
    size_t fds;       /* fds each command carries */
    size_t max_bytes; /* largest command of the workload */
};

typedef struct rx_conn rx_conn;
/* Wrap a connected socket; never closes fd. NULL on failure (message printed). */
static rx_conn *rx_open(int fd, const struct rx_cfg *cfg);
/* Receive and handle the next command: 1 (and *nfds = fds it carried),
 * 0 at end of stream, negative errno on failure. */
static int rx_next(rx_conn *c, size_t *nfds);
/* Release everything, closing every fd still held except the socket. */
static void rx_close(rx_conn *c);

static const char *rx_name(void);

static void rx_die(const char *what, int err)
{
    fprintf(stderr, "%s: %s: %s\n", rx_name(), what, err ? strerror(err) : "failed");
    exit(1);
}

static int rx_stream(int fd, int ctl, const struct rx_cfg *cfg)
{
    bench_alloc_stats_fn stats = bench_alloc_probe();
    unsigned long long a0 = 0, f0 = 0, a1 = 0, f1 = 0, allocs = 0, frees = 0;
    uint64_t wall = 0, cpu = 0;
    size_t got_fds = 0, done = 0, n;
    int r;

    rx_conn *c = rx_open(fd, cfg);
    if (!c)
        exit(1);
    for (;;) {
        uint64_t k;
        ssize_t got;
        do
            got = read(ctl, &k, sizeof k);
        while (got < 0 && errno == EINTR);
        if (got != (ssize_t)sizeof k)
            rx_die("control socket", got < 0 ? errno : EPIPE);
        if (k == 0)
            break;
        if (done + k > cfg->count)
            rx_die("driver announced more commands than the workload has", 0);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        while (poll(&p, 1, -1) < 0)
            if (errno != EINTR)
                rx_die("poll", errno);

        if (stats)
            stats(&a0, &f0);
        uint64_t w0 = bench_wall_ns(), c0 = bench_cpu_ns();
        for (uint64_t i = 0; i < k; i++, done++) {
            r = rx_next(c, &n);
            if (r != 1) {
                fprintf(stderr, "%s: command %zu of %zu: %s\n", rx_name(), done + 1, cfg->count,
                        r == 0 ? "early end of stream" : strerror(-r));
                exit(1);
            }
            if (n != cfg->fds) {
                fprintf(stderr, "%s: command %zu carried %zu fds, expected %zu\n", rx_name(),
                        done + 1, n, cfg->fds);
                exit(1);
            }
            got_fds += n;
        }
        uint64_t w1 = bench_wall_ns(), c1 = bench_cpu_ns();
        if (stats) {
            stats(&a1, &f1);
            allocs += a1 - a0;
            frees += f1 - f0;
        }
        wall += w1 - w0;
        cpu += c1 - c0;
        char ack = 1;
        if (write(ctl, &ack, 1) != 1)
            rx_die("control socket", errno);
    }
    if (done != cfg->count) {
        fprintf(stderr, "%s: %zu commands announced, the workload has %zu\n", rx_name(), done,
                cfg->count);
        exit(1);
    }
    r = rx_next(c, &n);
    if (r != 0) {
        fprintf(stderr, "%s: expected end of stream after %zu commands, got %d\n", rx_name(),
                cfg->count, r);
        exit(1);
    }
    rx_close(c);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("ok wall_ns=%llu cpu_ns=%llu cmds=%zu fds=%zu allocs=%lld frees=%lld maxrss_kb=%ld\n",
           (unsigned long long)wall, (unsigned long long)cpu, cfg->count, got_fds,
           stats ? (long long)allocs : -1LL, stats ? (long long)frees : -1LL, ru.ru_maxrss);
    return 0;
}

static int rx_accept_one(int lfd, const struct rx_cfg *cfg, rx_conn **out, int *outfd)
{
    int fd;
    do
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        rx_die("accept", errno);
    rx_conn *c = rx_open(fd, cfg);
    if (!c)
        exit(1);
    size_t n;
    int r = rx_next(c, &n);
    if (r != 1)
        rx_die("first command of an idle connection", r == 0 ? 0 : -r);
    if (n != cfg->fds) {
        fprintf(stderr, "%s: idle connection command carried %zu fds, expected %zu\n", rx_name(),
                n, cfg->fds);
        exit(1);
    }
    *out = c;
    *outfd = fd;
    return 0;
}

static int rx_idle(int lfd, const struct rx_cfg *cfg)
{
    if (cfg->count < 2)
        rx_die("idle mode needs at least 2 connections", 0);
    bench_raise_nofile(cfg->count * 2 + 64);
    rx_conn **conns = calloc(cfg->count, sizeof *conns);
    int *fds = calloc(cfg->count, sizeof *fds);
    if (!conns || !fds)
        rx_die("calloc", ENOMEM);
    /* The first connection pays for one-time set-up (lazy statics, the
     * allocator's first arena growth); the baseline is taken after it. */
    rx_accept_one(lfd, cfg, &conns[0], &fds[0]);
    long long h0 = bench_heap_bytes(), r0 = bench_rss_bytes();
    for (size_t i = 1; i < cfg->count; i++)
        rx_accept_one(lfd, cfg, &conns[i], &fds[i]);
    long long h1 = bench_heap_bytes(), r1 = bench_rss_bytes();
    size_t k = cfg->count - 1;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("ok conns=%zu idle_heap=%lld idle_rss=%lld maxrss_kb=%ld\n", cfg->count,
           (h1 - h0) / (long long)k, (r1 - r0) / (long long)k, ru.ru_maxrss);
    fflush(stdout);
    for (size_t i = 0; i < cfg->count; i++) {
        rx_close(conns[i]);
        close(fds[i]);
    }
    free(conns);
    free(fds);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s stream|idle FD CTL COUNT FDS MAXBYTES\n", argv[0]);
        return 2;
    }
    int fd = atoi(argv[2]);
    int ctl = strcmp(argv[3], "-") == 0 ? -1 : atoi(argv[3]);
    struct rx_cfg cfg = {
        .count = strtoull(argv[4], NULL, 10),
        .fds = strtoull(argv[5], NULL, 10),
        .max_bytes = strtoull(argv[6], NULL, 10),
    };
    /* fds open before the run: stdin/out/err, the socket(s). */
    long before = bench_fd_count();
    int r;
    if (strcmp(argv[1], "stream") == 0)
        r = rx_stream(fd, ctl, &cfg);
    else if (strcmp(argv[1], "idle") == 0)
        r = rx_idle(fd, &cfg);
    else {
        fprintf(stderr, "%s: unknown mode %s\n", argv[0], argv[1]);
        return 2;
    }
    long after = bench_fd_count();
    if (after != before) {
        fprintf(stderr, "%s: fd leak: %ld open fds before, %ld after\n", rx_name(), before, after);
        return 1;
    }
    fflush(stdout);
    return r == 0 ? 0 : 1;
}

#endif
