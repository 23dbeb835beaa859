/*
 * epoll-monitor - a QMP monitor serving many clients at once from one
 * epoll loop, with fdctx reading each client's non-blocking socket.
 *
 * Usage: epoll-monitor SOCKET_PATH   (prints "ready" once listening;
 *        EXAMPLE_MAX_HOLD_MS shortens fdctx's 10 s hold deadline)
 *
 * The shape, per client:
 *   - fdctx_conn_new() on the non-blocking socket;
 *   - when epoll says readable, fdctx_conn_recv() until -EAGAIN: one read
 *     may bring several commands, and a command already buffered does not
 *     make the socket readable again;
 *   - each message is run with its own fds (qmp_run) and finished, which
 *     closes every fd the command did not keep;
 *   - epoll_wait's timeout is the nearest fdctx_conn_deadline_ms(), so a
 *     client that stops half way through a command while holding fds is
 *     answered (-ETIMEDOUT) when its deadline passes, and its fds closed.
 * Replies are queued and written when the socket takes them; a client that
 * never reads them is dropped once 1 MiB is waiting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fdctx.h>

#include "qmp-common.h"

#define MAX_PENDING_OUTPUT (1 << 20)

struct client {
    int fd;
    fdctx_conn *conn;
    struct qmp_session qmp;
    char name[32];
    char *out;  /* replies not yet written */
    size_t out_len, out_cap;
    struct client *next;
};

static struct client *clients;
static int epfd;
static bool quitting;

static void client_free(struct client *c)
{
    struct client **p = &clients;
    while (*p != c)
        p = &(*p)->next;
    *p = c->next;
    fprintf(stderr, "%s: gone\n", c->name);
    fdctx_conn_free(c->conn);  /* closes the fds of a command cut off half way */
    close(c->fd);              /* also takes it out of the epoll set */
    free(c->out);
    free(c);
}

/* Writes what the socket takes now; waits for EPOLLOUT for the rest.
 * Returns -1 when the client is gone or reads too little. */
static int flush(struct client *c)
{
    size_t done = 0;
    while (done < c->out_len) {
        ssize_t n = send(c->fd, c->out + done, c->out_len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0)
            return -1;
        done += (size_t)n;
    }
    memmove(c->out, c->out + done, c->out_len - done);
    c->out_len -= done;
    struct epoll_event ev = { .events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c };
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    return c->out_len > MAX_PENDING_OUTPUT ? -1 : 0;
}

static void queue(struct client *c, const char *text)
{
    size_t n = strlen(text);
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p) {
            perror("realloc");
            exit(1);
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, text, n);
    c->out_len += n;
}

/* Serves every command fdctx has for this client. Returns -1 when the
 * client is done (end of stream, a broken socket or a full output queue). */
static int serve(struct client *c)
{
    fdctx_msg *msg;
    int r;
    while ((r = fdctx_conn_recv(c->conn, &msg)) == 1) {
        char *reply = qmp_run(msg, &c->qmp, c->name);
        fdctx_msg_finish(msg);
        queue(c, reply);
        free(reply);
        if (c->qmp.quit)
            quitting = true;
    }
    if (flush(c) < 0)
        return -1;
    if (r == -EAGAIN)
        return 0;
    if (r < 0)
        fprintf(stderr, "%s: %s\n", c->name, strerror(-r));
    return -1;
}

static void accept_clients(int lfd)
{
    static unsigned serial;
    fdctx_limits limits = qmp_limits();
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                perror("accept4");
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;
        }
        struct client *c = calloc(1, sizeof *c);
        if (!c || !(c->conn = fdctx_conn_new(fd, FDCTX_FRAMING_JSON, &limits))) {
            fprintf(stderr, "epoll-monitor: no room for a client: %s\n", fdctx_last_error());
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        snprintf(c->name, sizeof c->name, "client %u", ++serial);
        c->next = clients;
        clients = c;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        fprintf(stderr, "%s: connected\n", c->name);
        queue(c, qmp_greeting);
        if (flush(c) < 0)
            client_free(c);
    }
}

/* The epoll_wait timeout: the nearest hold deadline of any client. */
static int next_timeout(void)
{
    int timeout = -1;
    for (struct client *c = clients; c; c = c->next) {
        int ms = fdctx_conn_deadline_ms(c->conn);
        if (ms >= 0 && (timeout < 0 || ms < timeout))
            timeout = ms;
    }
    return timeout;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "epoll-monitor: socket path too long\n");
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0) {
        fprintf(stderr, "epoll-monitor: cannot listen on %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: epoll-monitor SOCKET_PATH\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_unix(argv[1]);
    if (lfd < 0)
        return 1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        perror("epoll");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    while (!quitting) {
        struct epoll_event evs[16];
        int n = epoll_wait(epfd, evs, 16, next_timeout());
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            struct client *c = evs[i].data.ptr;
            if (!c)
                accept_clients(lfd);
            else if (serve(c) < 0)
                client_free(c);
        }
        /* Clients whose hold deadline passed: fdctx_conn_recv expires it. */
        for (struct client *c = clients, *next; c; c = next) {
            next = c->next;
            if (fdctx_conn_deadline_ms(c->conn) == 0 && serve(c) < 0)
                client_free(c);
        }
    }

    while (clients)
        client_free(clients);
    qmp_close_nodes();
    close(epfd);
    close(lfd);
    unlink(argv[1]);
    fprintf(stderr, "epoll-monitor: quit\n");
    return 0;
}
