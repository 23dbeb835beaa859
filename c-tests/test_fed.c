/*
 * The fed connection from C, written from the header alone: the monitor
 * reads its socket itself (one recvmsg per byte, as QEMU's chardev layer
 * does for QMP, or whole reads) and hands every read to fdctx_conn_feed();
 * commands come out of fdctx_conn_recv() with exactly their own fds.
 * Also every misuse: the fds passed in are closed whatever happens.
 */
#include "harness.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define MAX_GOT 16

struct got {
    int n;
    int status[MAX_GOT];
    char data[MAX_GOT][256];
    size_t nfds[MAX_GOT];
    char fd0[MAX_GOT][64]; /* what /dev/fd/0 read, "" when no fd */
};

static void take(struct got *g, fdctx_msg *msg)
{
    int i = g->n < MAX_GOT ? g->n : MAX_GOT - 1;
    size_t len = 0;
    const char *d = fdctx_msg_data(msg, &len);
    g->status[i] = fdctx_msg_status(msg);
    snprintf(g->data[i], sizeof g->data[i], "%s", d ? d : "(null)");
    g->nfds[i] = fdctx_count(fdctx_msg_fds(msg));
    g->fd0[i][0] = '\0';
    if (g->nfds[i] > 0) {
        int fd = fdctx_open(fdctx_msg_fds(msg), "/dev/fd/0", O_RDONLY, 0);
        CHECK_OK(fd);
        if (fd >= 0) {
            CHECK(h_read_all(fd, g->fd0[i], sizeof g->fd0[i]) >= 0);
            close(fd);
        }
    }
    CHECK_OK(fdctx_msg_finish(msg));
    g->n++;
}

/* Every command complete so far; returns what ended the drain. */
static int drain(fdctx_conn *conn, struct got *g)
{
    fdctx_msg *msg;
    int r;
    while ((r = fdctx_conn_recv(conn, &msg)) == 1)
        take(g, msg);
    return r;
}

/* Reads sock to its end in reads of `cap` bytes, feeding each one. */
static void serve(int sock, size_t cap, struct got *g, int *feeds)
{
    fdctx_conn *conn = fdctx_conn_new_fed(FDCTX_FRAMING_JSON, NULL);
    char buf[65536];
    int fds[253];
    CHECK(conn != NULL);
    if (!conn)
        return;
    *feeds = 0;
    for (;;) {
        size_t nfds;
        unsigned flags;
        ssize_t n = h_recv_fds(sock, buf, cap, fds, 253, &nfds, &flags);
        if (n < 0) {
            CHECK_OK(n);
            break;
        }
        CHECK_EQ(fdctx_conn_feed(conn, buf, (size_t)n, fds, nfds, flags), 0);
        (*feeds)++;
        if (flags & FDCTX_FEED_END) {
            CHECK_EQ(drain(conn, g), 0);
            break;
        }
        CHECK_ERR(drain(conn, g), EAGAIN);
    }
    fdctx_conn_free(conn);
}

/* One sendmsg of `text` with one fresh pipe holding `payload` (none if
 * NULL), exactly as given. */
static void send_one(int sock, const char *text, const char *payload)
{
    int fd = payload ? h_pipe_with(payload) : -1;
    CHECK_EQ(h_sendmsg_raw(sock, text, &fd, payload ? 1 : 0), (ssize_t)strlen(text));
    if (fd >= 0)
        close(fd);
}

/* A client mixing both styles: fds on the command's own bytes (libvirt,
 * socket.send_fds), on a lone space before it (qemu.qmp), a command
 * without fds, and one split over two writes. */
static void client(int sock)
{
    send_one(sock, "{\"execute\":\"add-fd\",\"arguments\":{\"fd\":\"/dev/fd/0\"}}\r\n", "own-bytes");
    send_one(sock, " ", "lone-space");
    send_one(sock, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"x\"}}", NULL);
    send_one(sock, "{\"execute\":\"query-status\"}\n", NULL);
    send_one(sock, "{\"execute\":\"blockdev-add\",", "split");
    send_one(sock, "\"arguments\":{}}\n", NULL);
    shutdown(sock, SHUT_WR);
}

static void check_client_messages(const struct got *g)
{
    CHECK_EQ(g->n, 4);
    CHECK_STREQ(g->data[0], "{\"execute\":\"add-fd\",\"arguments\":{\"fd\":\"/dev/fd/0\"}}");
    CHECK_STREQ(g->fd0[0], "own-bytes");
    CHECK_STREQ(g->data[1], "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"x\"}}");
    CHECK_STREQ(g->fd0[1], "lone-space");
    CHECK_STREQ(g->data[2], "{\"execute\":\"query-status\"}");
    CHECK_EQ(g->nfds[2], 0);
    CHECK_STREQ(g->fd0[3], "split");
    for (int i = 0; i < g->n && i < 4; i++) {
        CHECK_EQ(g->status[i], 0);
        CHECK_EQ(g->nfds[i], i == 2 ? 0 : 1);
    }
}

static void test_fed_one_byte_per_read(void)
{
    int sp[2], feeds = 0;
    struct got g = {0};
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    client(sp[1]);
    serve(sp[0], 1, &g, &feeds);
    check_client_messages(&g);
    CHECK(feeds > 100); /* one feed per byte, plus the end */
    close(sp[0]);
    close(sp[1]);
}

static void test_fed_whole_reads(void)
{
    int sp[2], feeds = 0;
    struct got g = {0};
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    client(sp[1]);
    serve(sp[0], 65536, &g, &feeds);
    check_client_messages(&g);
    close(sp[0]);
    close(sp[1]);
}

/* Every failing call closes the fds it was given. */
static void test_fed_misuse_closes_the_fds(void)
{
    fdctx_conn *fed = fdctx_conn_new_fed(FDCTX_FRAMING_JSON, NULL);
    int sp[2], fd, two[2];
    fdctx_conn *sock;
    fdctx_limits too_big = {0};

    CHECK(fed != NULL);
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    sock = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, NULL);
    CHECK(sock != NULL);

    fd = h_pipe_with("x");
    CHECK_ERR(fdctx_conn_feed(NULL, "{}", 2, &fd, 1, 0), EINVAL);
    CHECK(!h_is_open(fd));

    fd = h_pipe_with("x");
    CHECK_ERR(fdctx_conn_feed(fed, "{}", 2, &fd, 1, 4), EINVAL);
    CHECK(!h_is_open(fd));

    fd = h_pipe_with("x");
    CHECK_ERR(fdctx_conn_feed(sock, "{}", 2, &fd, 1, 0), EINVAL);
    CHECK(!h_is_open(fd));

    fd = h_pipe_with("x");
    CHECK_ERR(fdctx_conn_feed(fed, NULL, 2, &fd, 1, 0), EINVAL);
    CHECK(!h_is_open(fd));

    CHECK_ERR(fdctx_conn_feed(fed, "{}", 2, NULL, 1, 0), EINVAL);

    two[0] = h_pipe_with("x");
    two[1] = -1;
    CHECK_ERR(fdctx_conn_feed(fed, "{}", 2, two, 2, 0), EBADF);
    CHECK(!h_is_open(two[0]));

    /* The same fd twice: closed once (the harness sees no other fd go). */
    two[0] = two[1] = h_pipe_with("x");
    CHECK_ERR(fdctx_conn_feed(fed, "{}", 2, two, 2, 0), EINVAL);
    CHECK(!h_is_open(two[0]));

    /* The failed calls fed nothing. */
    {
        fdctx_msg *msg = (fdctx_msg *)1;
        CHECK_ERR(fdctx_conn_recv(fed, &msg), EAGAIN);
        CHECK(msg == NULL);
    }

    CHECK_EQ(fdctx_conn_feed(fed, NULL, 0, NULL, 0, FDCTX_FEED_END), 0);
    fd = h_pipe_with("x");
    CHECK_ERR(fdctx_conn_feed(fed, "{}", 2, &fd, 1, 0), EPIPE);
    CHECK(!h_is_open(fd));

    CHECK(fdctx_conn_new_fed(7, NULL) == NULL);
    too_big.max_depth = 1000;
    CHECK(fdctx_conn_new_fed(FDCTX_FRAMING_JSON, &too_big) == NULL);

    fdctx_conn_free(fed);
    fdctx_conn_free(sock);
    close(sp[0]);
    close(sp[1]);
}

static void test_fed_recv_states(void)
{
    fdctx_conn *conn = fdctx_conn_new_fed(FDCTX_FRAMING_JSON, NULL);
    struct got g = {0};
    int fd = h_pipe_with("held");

    CHECK_ERR(drain(conn, &g), EAGAIN);
    CHECK_EQ(fdctx_conn_feed(conn, "{\"a\":", 5, &fd, 1, 0), 0);
    CHECK_ERR(drain(conn, &g), EAGAIN);
    CHECK(h_is_open(fd)); /* held for the unfinished command */
    CHECK_EQ(fdctx_conn_feed(conn, "1}{\"b\":", 7, NULL, 0, 0), 0);
    CHECK_ERR(drain(conn, &g), EAGAIN);
    CHECK_EQ(g.n, 1);
    CHECK_STREQ(g.data[0], "{\"a\":1}");
    CHECK_STREQ(g.fd0[0], "held");

    /* The end in the middle of a command closes that command's fds. */
    fd = h_pipe_with("cut");
    CHECK_EQ(fdctx_conn_feed(conn, "2", 1, &fd, 1, FDCTX_FEED_END), 0);
    CHECK(!h_is_open(fd));
    CHECK_EQ(drain(conn, &g), 0);
    CHECK_EQ(drain(conn, &g), 0);
    CHECK_EQ(g.n, 1);
    fdctx_conn_free(conn);
}

static void test_fed_fds_lost(void)
{
    fdctx_conn *conn = fdctx_conn_new_fed(FDCTX_FRAMING_JSON, NULL);
    struct got g = {0};
    int fd = h_pipe_with("partial");
    CHECK_EQ(fdctx_conn_feed(conn, "{\"x\":1}\n{}", 10, &fd, 1, FDCTX_FEED_FDS_LOST), 0);
    CHECK_EQ(fdctx_conn_feed(conn, NULL, 0, NULL, 0, FDCTX_FEED_END), 0);
    CHECK_EQ(drain(conn, &g), 0);
    CHECK_EQ(g.n, 2);
    CHECK_EQ(g.status[0], 0);
    CHECK_EQ(g.status[1], -ECOMM);
    CHECK_EQ(g.nfds[1], 0);
    CHECK(!h_is_open(fd));
    fdctx_conn_free(conn);
}

static void test_fed_packets(void)
{
    fdctx_conn *conn = fdctx_conn_new_fed(FDCTX_FRAMING_PACKET, NULL);
    struct got g = {0};
    int fd = h_pipe_with("empty");
    CHECK_EQ(fdctx_conn_feed(conn, "info", 4, NULL, 0, 0), 0);
    CHECK_EQ(fdctx_conn_feed(conn, "", 0, NULL, 0, 0), 0);
    CHECK_EQ(fdctx_conn_feed(conn, NULL, 0, &fd, 1, 0), 0);
    CHECK_EQ(fdctx_conn_feed(conn, "{\"a\":1}", 7, NULL, 0, FDCTX_FEED_END), 0);
    CHECK_EQ(drain(conn, &g), 0);
    CHECK_EQ(g.n, 4);
    CHECK_STREQ(g.data[0], "info");
    CHECK_STREQ(g.data[1], "");
    CHECK_EQ(g.nfds[2], 1);
    CHECK_STREQ(g.fd0[2], "empty");
    CHECK_STREQ(g.data[3], "{\"a\":1}");
    fdctx_conn_free(conn);
}

/* Fds held by a fed connection are closed when it is freed. */
static void test_fed_free_closes_held_fds(void)
{
    fdctx_conn *conn = fdctx_conn_new_fed(FDCTX_FRAMING_JSON, NULL);
    int a = h_pipe_with("a"), b = h_pipe_with("b");
    CHECK_EQ(fdctx_conn_feed(conn, " ", 1, &a, 1, 0), 0);
    CHECK_EQ(fdctx_conn_feed(conn, "{\"x\":", 5, &b, 1, 0), 0);
    CHECK(h_is_open(a) && h_is_open(b));
    fdctx_conn_free(conn);
    CHECK(!h_is_open(a) && !h_is_open(b));
}

/* The hold deadline on a fed connection, driven as an event loop does:
 * sleep for fdctx_conn_deadline_ms(), then call fdctx_conn_recv(). */
static void test_fed_deadline_driven_like_an_event_loop(void)
{
    fdctx_limits limits = {0};
    fdctx_conn *conn;
    struct got g = {0};
    int fd = h_pipe_with("held"), ms, rounds = 0;

    limits.max_hold_ms = 20;
    conn = fdctx_conn_new_fed(FDCTX_FRAMING_JSON, &limits);
    CHECK(conn != NULL);
    CHECK_EQ(fdctx_conn_deadline_ms(conn), -1);
    CHECK_EQ(fdctx_conn_feed(conn, "{\"a\":", 5, &fd, 1, 0), 0);
    ms = fdctx_conn_deadline_ms(conn);
    CHECK(ms > 0 && ms <= 20);
    while ((ms = fdctx_conn_deadline_ms(conn)) > 0 && rounds++ < 1000)
        poll(NULL, 0, ms);
    CHECK_EQ(ms, 0);
    CHECK(h_is_open(fd)); /* expired by the next recv, not behind our back */
    CHECK_ERR(drain(conn, &g), EAGAIN);
    CHECK(!h_is_open(fd));
    CHECK_EQ(g.n, 1);
    CHECK_EQ(g.status[0], -ETIMEDOUT);
    CHECK_STREQ(g.data[0], "{\"a\":");
    CHECK_EQ(g.nfds[0], 0);
    CHECK_EQ(fdctx_conn_deadline_ms(conn), -1);
    /* The rest of the line is discarded; the connection goes on. */
    CHECK_EQ(fdctx_conn_feed(conn, "1} {\"b\":1}\n{\"c\":1}", 18, NULL, 0, FDCTX_FEED_END), 0);
    CHECK_EQ(drain(conn, &g), 0);
    CHECK_EQ(g.n, 2);
    CHECK_STREQ(g.data[1], "{\"c\":1}");
    CHECK_EQ(g.status[1], 0);

    CHECK_ERR(fdctx_conn_deadline_ms(NULL), EINVAL);
    limits.max_hold_ms = 3600001;
    CHECK(fdctx_conn_new_fed(FDCTX_FRAMING_JSON, &limits) == NULL);
    limits.max_hold_ms = 3600000;
    fdctx_conn_free(fdctx_conn_new_fed(FDCTX_FRAMING_JSON, &limits));
    fdctx_conn_free(conn);
}

int main(void)
{
    h_init();
    RUN(test_fed_one_byte_per_read);
    RUN(test_fed_whole_reads);
    RUN(test_fed_misuse_closes_the_fds);
    RUN(test_fed_recv_states);
    RUN(test_fed_fds_lost);
    RUN(test_fed_packets);
    RUN(test_fed_free_closes_held_fds);
    RUN(test_fed_deadline_driven_like_an_event_loop);
    return h_finish();
}
