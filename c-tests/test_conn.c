/*
 * The receiving side from C: the monitor loop the header documents for
 * fdctx_conn_recv(), over a socket pair, with the client side using fdctx_send.
 * Framings (JSON, LINE, PACKET), bad messages followed by good ones, the fd
 * association rules, limits, the JSON pointer accessors, and a message used
 * from another thread after its connection was freed.
 */
#include "harness.h"

#include <pthread.h>
#include <sys/socket.h>

/* ---- what the monitor saw ---------------------------------------------- */

#define MAX_SEEN 16

struct seen_msg {
    int status;
    char data[1024];
    size_t len;
    int nul_ok;    /* data[len] == '\0' and no NUL before it */
    int has_error; /* fdctx_msg_error() non-NULL and non-empty */
    size_t nfds;
    char fd0[64]; /* what /dev/fd/0 read, when the command had an fd */
    int fd0_ok;
    int finish; /* fdctx_msg_finish() */
};

struct seen {
    int n;
    struct seen_msg m[MAX_SEEN];
};

static struct seen_msg *next_slot(struct seen *s)
{
    static struct seen_msg spare;
    if (s->n < MAX_SEEN)
        return &s->m[s->n];
    return &spare;
}

static void record_common(struct seen_msg *g, fdctx_msg *msg)
{
    size_t len = (size_t)-1;
    const char *d = fdctx_msg_data(msg, &len);
    memset(g, 0, sizeof *g);
    g->status = fdctx_msg_status(msg);
    if (d && len != (size_t)-1) {
        g->nul_ok = d[len] == '\0' && strlen(d) == len;
        g->len = len;
        snprintf(g->data, sizeof g->data, "%s", d);
    }
    g->nfds = fdctx_count(fdctx_msg_fds(msg));
}

/* The error path of the loop: answer the client (here: write it down). */
static void reply_error(struct seen *s, fdctx_msg *msg, const char *error)
{
    struct seen_msg *g = next_slot(s);
    record_common(g, msg);
    g->has_error = error != NULL && error[0] != '\0';
}

/* The command handler: uses /dev/fd/0 when the command brought fds. */
static void dispatch(struct seen *s, fdctx_msg *msg)
{
    struct seen_msg *g = next_slot(s);
    record_common(g, msg);
    g->has_error = fdctx_msg_error(msg) != NULL;
    if (g->nfds > 0) {
        int fd = fdctx_open(fdctx_msg_fds(msg), "/dev/fd/0", O_RDONLY, 0);
        if (fd >= 0) {
            g->fd0_ok = h_read_all(fd, g->fd0, sizeof g->fd0) >= 0;
            close(fd);
        }
    }
}

/* The monitor loop of the header's fdctx_conn_recv() documentation. */
static int monitor_loop(fdctx_conn *conn, struct seen *s)
{
    fdctx_msg *msg;
    int r;
    while ((r = fdctx_conn_recv(conn, &msg)) == 1) {
        if (fdctx_msg_status(msg) < 0)
            reply_error(s, msg, fdctx_msg_error(msg));
        else
            dispatch(s, msg);
        next_slot(s)->finish = fdctx_msg_finish(msg);
        s->n++;
    }
    return r;
}

/* ---- the client side ---------------------------------------------------- */

static int sp[2]; /* sp[0]: monitor side, sp[1]: client side */

static void open_pair(int type)
{
    if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sp) != 0) {
        printf("harness: socketpair: %s\n", strerror(errno));
        exit(2);
    }
}

static void close_pair(void)
{
    close(sp[0]);
    close(sp[1]);
}

/* Send text with fresh pipes carrying the given payloads; our copies of
 * the pipes are closed once sent. */
static void send_with(const char *text, const char *const *payloads, size_t n)
{
    int fds[8];
    size_t i;
    for (i = 0; i < n; i++)
        fds[i] = h_pipe_with(payloads[i]);
    CHECK_OK(fdctx_send(sp[1], text, strlen(text), n ? fds : NULL, n));
    for (i = 0; i < n; i++)
        close(fds[i]);
}

static void send_text(const char *text)
{
    send_with(text, NULL, 0);
}

static void send_1(const char *text, const char *payload)
{
    send_with(text, &payload, 1);
}

/* The qemu.qmp style: a lone space carrying a fresh pipe, then the command. */
static void send_ahead_1(const char *payload)
{
    int fd = h_pipe_with(payload);
    CHECK_EQ(h_sendmsg_raw(sp[1], " ", &fd, 1), 1);
    close(fd);
}

/* Run the monitor on everything sent so far, up to end of stream. */
static int run_monitor(fdctx_framing framing, const fdctx_limits *limits, struct seen *s)
{
    fdctx_conn *conn;
    int r;
    memset(s, 0, sizeof *s);
    shutdown(sp[1], SHUT_WR);
    conn = fdctx_conn_new(sp[0], framing, limits);
    CHECK(conn != NULL);
    if (!conn)
        return -999;
    r = monitor_loop(conn, s);
    fdctx_conn_free(conn);
    /* The connection never closes the socket it was given. */
    CHECK(h_is_open(sp[0]));
    return r;
}

/* Compare a message's bytes with the command sent, ignoring the
 * whitespace that separated commands on the stream. */
static int data_is(const struct seen_msg *g, const char *want)
{
    size_t wl = strlen(want);
    size_t gl = g->len;
    while (gl > 0 && (g->data[gl - 1] == '\n' || g->data[gl - 1] == '\r' ||
                      g->data[gl - 1] == ' '))
        gl--;
    while (wl > 0 && (want[wl - 1] == '\n' || want[wl - 1] == '\r' || want[wl - 1] == ' '))
        wl--;
    if (gl != wl || memcmp(g->data, want, wl) != 0) {
        printf("    data \"%s\" (len %zu), expected \"%.*s\"\n", g->data, g->len, (int)wl, want);
        return 0;
    }
    return 1;
}

/* ---- tests ------------------------------------------------------------ */

static void test_json_messages_with_fds(void)
{
    static const char c0[] =
        "{\"execute\":\"blockdev-add\",\"arguments\":{\"filename\":\"/dev/fd/0\"},\"id\":1}\n";
    static const char c1[] = "{\"execute\":\"query-status\",\"id\":2}\n";
    static const char c2[] = "  {\"execute\":\"two\",\"arguments\":{\"a\":\"/dev/fd/0\","
                             "\"b\":\"/dev/fd/1\"},\"id\":3}\r\n";
    static const char *const two[] = {"p2a", "p2b"};
    struct seen s;
    int r;

    open_pair(SOCK_STREAM);
    send_1(c0, "p0");
    send_text(c1);
    send_with(c2, two, 2);
    r = run_monitor(FDCTX_FRAMING_JSON, NULL, &s);
    CHECK_EQ(r, 0);
    CHECK_EQ(s.n, 3);
    if (s.n == 3) {
        CHECK_EQ(s.m[0].status, 0);
        CHECK(data_is(&s.m[0], c0));
        CHECK(s.m[0].nul_ok);
        CHECK(!s.m[0].has_error);
        CHECK_EQ(s.m[0].nfds, 1);
        CHECK(s.m[0].fd0_ok);
        CHECK_STREQ(s.m[0].fd0, "p0");
        CHECK_EQ(s.m[0].finish, 0);

        CHECK_EQ(s.m[1].status, 0);
        CHECK(data_is(&s.m[1], c1));
        CHECK_EQ(s.m[1].nfds, 0);
        CHECK_EQ(s.m[1].finish, 0);

        CHECK_EQ(s.m[2].status, 0);
        CHECK(data_is(&s.m[2], c2 + 2));
        CHECK_EQ(s.m[2].nfds, 2);
        CHECK_STREQ(s.m[2].fd0, "p2a");
        /* /dev/fd/1 was never used: finish closes it and counts it. */
        CHECK_EQ(s.m[2].finish, 1);
    }
    close_pair();
}

/* A malformed command is delivered with a status; the next command gets
 * its own fds, never the bad one's. */
static void test_malformed_then_good(void)
{
    static const char bad[] = "{\"execute\": oops}\n";
    static const char good[] = "{\"execute\":\"ok\",\"arguments\":{\"f\":\"/dev/fd/0\"}}\n";
    struct seen s;
    int r;

    open_pair(SOCK_STREAM);
    send_1(bad, "bad-fd");
    send_1(good, "good-fd");
    r = run_monitor(FDCTX_FRAMING_JSON, NULL, &s);
    CHECK_EQ(r, 0);
    CHECK_EQ(s.n, 2);
    if (s.n == 2) {
        CHECK_ERR(s.m[0].status, EBADMSG);
        CHECK(s.m[0].has_error);
        CHECK_EQ(s.m[1].status, 0);
        CHECK(!s.m[1].has_error);
        CHECK(data_is(&s.m[1], good));
        CHECK_EQ(s.m[1].nfds, 1);
        CHECK_STREQ(s.m[1].fd0, "good-fd");
    }
    close_pair();
}

/* Every kind of bad JSON command has its status; the stream goes on. */
static void test_bad_json_kinds(void)
{
    fdctx_limits lim = {.max_depth = 4};
    struct seen s;
    int r;

    open_pair(SOCK_STREAM);
    send_1("[1,2,3]\n", "arr");                                          /* not an object */
    send_text("{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":1}}}}}}}\n"); /* too deep */
    send_1("{\"a\":\"\xff\xfe\"}\n", "utf8");                            /* invalid UTF-8 */
    send_text("{\"a\":1,}\n");                                           /* malformed */
    send_1("{\"execute\":\"fine\"}\n", "fine");
    r = run_monitor(FDCTX_FRAMING_JSON, &lim, &s);
    CHECK_EQ(r, 0);
    CHECK_EQ(s.n, 5);
    if (s.n == 5) {
        CHECK_ERR(s.m[0].status, EBADMSG);
        CHECK_ERR(s.m[1].status, EBADMSG);
        CHECK_ERR(s.m[2].status, EILSEQ);
        CHECK_ERR(s.m[3].status, EBADMSG);
        CHECK(s.m[0].has_error && s.m[1].has_error && s.m[2].has_error && s.m[3].has_error);
        CHECK_EQ(s.m[4].status, 0);
        CHECK_EQ(s.m[4].nfds, 1);
        CHECK_STREQ(s.m[4].fd0, "fine");
    }
    close_pair();
}

/* A /dev/fd/N argument that names no fd of the command makes it bad. */
static void test_devfd_argument_without_fd(void)
{
    struct seen s;
    int r;

    open_pair(SOCK_STREAM);
    send_1("{\"execute\":\"x\",\"arguments\":{\"filename\":\"/dev/fd/3\"}}\n", "one");
    send_1("{\"execute\":\"y\",\"arguments\":{\"filename\":\"/dev/fd/0\"}}\n", "next");
    r = run_monitor(FDCTX_FRAMING_JSON, NULL, &s);
    CHECK_EQ(r, 0);
    CHECK_EQ(s.n, 2);
    if (s.n == 2) {
        CHECK_NEG(s.m[0].status);
        CHECK_ERR(s.m[0].status, EBADF);
        CHECK(s.m[0].has_error);
        CHECK_EQ(s.m[1].status, 0);
        CHECK_STREQ(s.m[1].fd0, "next");
    }
    close_pair();
}

static void test_too_many_fds(void)
{
    static const char *const three[] = {"a", "b", "c"};
    static const char *const two[] = {"d", "e"};
    fdctx_limits lim = {.max_fds = 2};
    struct seen s;
    int r;

    open_pair(SOCK_STREAM);
    send_with("{\"execute\":\"three\"}\n", three, 3);
    send_with("{\"execute\":\"two\"}\n", two, 2);
    r = run_monitor(FDCTX_FRAMING_JSON, &lim, &s);
    CHECK_EQ(r, 0);
    CHECK_EQ(s.n, 2);
    if (s.n == 2) {
        CHECK_ERR(s.m[0].status, ETOOMANYREFS);
        CHECK(s.m[0].has_error);
        CHECK_EQ(s.m[1].status, 0);
        CHECK_EQ(s.m[1].nfds, 2);
        CHECK_STREQ(s.m[1].fd0, "d");
        CHECK_EQ(s.m[1].finish, 1);
    }
    close_pair();
}

static void test_too_large(void)
{
    fdctx_limits lim = {.max_msg_bytes = 64};
    char big[300];
    struct seen s;
    int r;

    memset(big, 0, sizeof big);
    strcpy(big, "{\"execute\":\"big\",\"arguments\":{\"pad\":\"");
    memset(big + strlen(big), 'x', 200);
    strcat(big, "\"}}\n");
    open_pair(SOCK_STREAM);
    send_1(big, "big-fd");
    send_1("{\"execute\":\"small\"}\n", "small-fd");
    r = run_monitor(FDCTX_FRAMING_JSON, &lim, &s);
    CHECK_EQ(r, 0);
    CHECK_EQ(s.n, 2);
    if (s.n == 2) {
        CHECK_ERR(s.m[0].status, EMSGSIZE);
        CHECK(s.m[0].has_error);
        CHECK_EQ(s.m[1].status, 0);
        CHECK_STREQ(s.m[1].fd0, "small-fd");
    }
    close_pair();
}

/* qemu.qmp sends one space with the fd, then the command without: the fd
 * waits for the next command (the association rule of fdctx_conn_feed()
 * and src/monitor/assoc.rs). */
static void test_fd_before_command(void)
{
    struct seen s;
    int r;

    open_pair(SOCK_STREAM);
    send_ahead_1("early");
    send_text("{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"x\"}}\n");
    send_text("{\"execute\":\"query-status\"}\n");
    r = run_monitor(FDCTX_FRAMING_JSON, NULL, &s);
    CHECK_EQ(r, 0);
    CHECK_EQ(s.n, 2);
    if (s.n == 2) {
        CHECK_EQ(s.m[0].status, 0);
        CHECK_EQ(s.m[0].nfds, 1);
        CHECK_STREQ(s.m[0].fd0, "early");
        CHECK_EQ(s.m[1].nfds, 0);
    }
    close_pair();
}

static void test_line_framing(void)
{
    struct seen s;
    int r;

    open_pair(SOCK_STREAM);
    send_1("add-fd file=/dev/fd/0\n", "line-fd");
    send_text("info status\n");
    r = run_monitor(FDCTX_FRAMING_LINE, NULL, &s);
    CHECK_EQ(r, 0);
    CHECK_EQ(s.n, 2);
    if (s.n == 2) {
        CHECK_EQ(s.m[0].status, 0);
        CHECK(data_is(&s.m[0], "add-fd file=/dev/fd/0"));
        CHECK(s.m[0].nul_ok);
        CHECK_EQ(s.m[0].nfds, 1);
        CHECK_STREQ(s.m[0].fd0, "line-fd");
        CHECK_EQ(s.m[1].status, 0);
        CHECK(data_is(&s.m[1], "info status"));
        CHECK_EQ(s.m[1].nfds, 0);
    }
    close_pair();
}

/* One packet is one message; an oversized packet is detected and its fds
 * closed. */
static void test_packet_framing(void)
{
    static const char p0[] = "{\"execute\":\"first\"}";
    static const char p2[] = "{\"execute\":\"third\"}";
    static const char *const two[] = {"big-a", "big-b"};
    fdctx_limits lim = {.max_msg_bytes = 128};
    char big[400];
    struct seen s;
    int r;

    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = '\0';
    open_pair(SOCK_SEQPACKET);
    send_1(p0, "pk0");
    send_with(big, two, 2);
    send_1(p2, "pk2");
    r = run_monitor(FDCTX_FRAMING_PACKET, &lim, &s);
    CHECK_EQ(r, 0);
    CHECK_EQ(s.n, 3);
    if (s.n == 3) {
        CHECK_EQ(s.m[0].status, 0);
        CHECK_EQ(s.m[0].len, strlen(p0));
        CHECK_STREQ(s.m[0].data, p0);
        CHECK_EQ(s.m[0].nfds, 1);
        CHECK_STREQ(s.m[0].fd0, "pk0");
        CHECK_ERR(s.m[1].status, EMSGSIZE);
        CHECK(s.m[1].has_error);
        CHECK_EQ(s.m[2].status, 0);
        CHECK_STREQ(s.m[2].data, p2);
        CHECK_STREQ(s.m[2].fd0, "pk2");
    }
    close_pair();
}

/* A command whose fds need several SCM_RIGHTS writes (over 253 fds). */
static void test_many_fds_one_command(void)
{
    enum { N = 300 };
    static int mine[N];
    static ino_t ino[N];
    fdctx_limits lim = {.max_fds = N};
    fdctx_conn *conn;
    fdctx_msg *msg = NULL;
    int i, r, ok = 1;
    static const char cmd[] = "{\"execute\":\"many\"}\n";

    h_raise_nofile(4096);
    for (i = 0; i < N; i++) {
        struct stat st;
        mine[i] = h_pipe_with("");
        fstat(mine[i], &st);
        ino[i] = st.st_ino;
    }
    open_pair(SOCK_STREAM);
    CHECK_OK(fdctx_send(sp[1], cmd, strlen(cmd), mine, N));
    for (i = 0; i < N; i++)
        close(mine[i]);
    shutdown(sp[1], SHUT_WR);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, &lim);
    CHECK(conn != NULL);
    if (!conn) {
        close_pair();
        return;
    }
    r = fdctx_conn_recv(conn, &msg);
    CHECK_EQ(r, 1);
    if (r == 1) {
        fdctx *ctx = fdctx_msg_fds(msg);
        CHECK_EQ(fdctx_msg_status(msg), 0);
        CHECK_EQ(fdctx_count(ctx), N);
        for (i = 0; i < N && (size_t)i < fdctx_count(ctx); i++) {
            struct stat st;
            int fd = fdctx_get(ctx, (size_t)i);
            if (fd < 0 || fstat(fd, &st) != 0 || st.st_ino != ino[i]) {
                if (ok)
                    h_fail(__FILE__, __LINE__, "fd %d of the command is not the %d-th sent", i, i);
                ok = 0;
            }
        }
        CHECK_EQ(fdctx_msg_finish(msg), 0);
        CHECK_EQ(fdctx_conn_recv(conn, &msg), 0);
    }
    fdctx_conn_free(conn);
    close_pair();
}

/* The same fd attached twice arrives as two fds of the command (the
 * kernel installs one per entry); both work, finish closes both. And a
 * message's context is finished only through the message. */
static void test_same_fd_twice(void)
{
    static const char cmd[] = "{\"execute\":\"twice\"}\n";
    int rd = h_pipe_with("same");
    int both[2];
    fdctx_conn *conn;
    fdctx_msg *msg = NULL;
    int r;

    both[0] = rd;
    both[1] = rd;
    open_pair(SOCK_STREAM);
    CHECK_OK(fdctx_send(sp[1], cmd, strlen(cmd), both, 2));
    close(rd);
    shutdown(sp[1], SHUT_WR);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, NULL);
    CHECK(conn != NULL);
    if (!conn) {
        close_pair();
        return;
    }
    r = fdctx_conn_recv(conn, &msg);
    CHECK_EQ(r, 1);
    if (r == 1) {
        fdctx *ctx = fdctx_msg_fds(msg);
        int a, b;
        CHECK_EQ(fdctx_msg_status(msg), 0);
        CHECK_EQ(fdctx_count(ctx), 2);
        a = fdctx_get(ctx, 0);
        b = fdctx_get(ctx, 1);
        CHECK(a >= 0 && b >= 0 && a != b);
        CHECK(h_same_file(a, b));
        CHECK(h_cloexec(a) && h_cloexec(b));
        /* Not the way to end a message's context. */
        CHECK_ERR(fdctx_finish(ctx), EINVAL);
        CHECK(h_is_open(a) && h_is_open(b));
        /* Entered, then the message finished: no dangling current context. */
        CHECK(fdctx_enter(ctx) == NULL);
        CHECK_EQ(fdctx_msg_finish(msg), 0);
        CHECK(fdctx_current() == NULL);
        fdctx_leave(NULL);
    }
    CHECK_EQ(fdctx_conn_recv(conn, &msg), 0);
    fdctx_conn_free(conn);
    close_pair();
}

/* -EAGAIN on a non-blocking socket keeps what was received so far. */
static void test_nonblocking_partial(void)
{
    fdctx_conn *conn;
    fdctx_msg *msg = NULL;
    int r;

    open_pair(SOCK_STREAM);
    CHECK_EQ(fcntl(sp[0], F_SETFL, fcntl(sp[0], F_GETFL) | O_NONBLOCK), 0);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, NULL);
    CHECK(conn != NULL);
    if (!conn) {
        close_pair();
        return;
    }
    CHECK_ERR(fdctx_conn_recv(conn, &msg), EAGAIN);
    send_1("{\"execute\":\"split\",", "half");
    CHECK_ERR(fdctx_conn_recv(conn, &msg), EAGAIN);
    send_text("\"arguments\":{\"f\":\"/dev/fd/0\"}}\n");
    r = fdctx_conn_recv(conn, &msg);
    CHECK_EQ(r, 1);
    if (r == 1) {
        int fd;
        size_t len = 0;
        const char *d = fdctx_msg_data(msg, &len);
        CHECK_EQ(fdctx_msg_status(msg), 0);
        CHECK(d != NULL && strncmp(d, "{\"execute\":\"split\",\"arguments\"", 30) == 0);
        CHECK_EQ(fdctx_count(fdctx_msg_fds(msg)), 1);
        fd = fdctx_open(fdctx_msg_fds(msg), "/dev/fd/0", O_RDONLY, 0);
        CHECK_OK(fd);
        if (fd >= 0) {
            CHECK(h_reads(fd, "half"));
            close(fd);
        }
        CHECK_EQ(fdctx_msg_finish(msg), 0);
    }
    CHECK_ERR(fdctx_conn_recv(conn, &msg), EAGAIN);
    shutdown(sp[1], SHUT_WR);
    CHECK_EQ(fdctx_conn_recv(conn, &msg), 0);
    fdctx_conn_free(conn);
    close_pair();
}

/* fds waiting for a command are closed by fdctx_conn_free, which leaves
 * the socket open. */
static void test_conn_free_closes_waiting_fds(void)
{
    int p[2];
    fdctx_conn *conn;
    fdctx_msg *msg = NULL;

    open_pair(SOCK_STREAM);
    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    CHECK_EQ(fcntl(sp[0], F_SETFL, O_NONBLOCK), 0);
    CHECK_EQ(h_sendmsg_raw(sp[1], " ", &p[0], 1), 1);
    close(p[0]);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, NULL);
    CHECK(conn != NULL);
    if (conn) {
        CHECK_ERR(fdctx_conn_recv(conn, &msg), EAGAIN);
        /* The library holds the only read end now. */
        CHECK_EQ(write(p[1], "x", 1), 1);
        fdctx_conn_free(conn);
    }
    CHECK(h_is_open(sp[0]));
    errno = 0;
    CHECK(write(p[1], "x", 1) == -1 && errno == EPIPE);
    close(p[1]);
    close_pair();
}

/* End of stream in the middle of a command closes that command's fds. */
static void test_eof_mid_command(void)
{
    int p[2];
    fdctx_conn *conn;
    fdctx_msg *msg = NULL;
    int r, guard = 0;
    static const char part[] = "{\"execute\":\"cut\",\"arguments\":{\"f\":\"/dev/fd/0\"";

    open_pair(SOCK_STREAM);
    CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
    CHECK_OK(fdctx_send(sp[1], part, strlen(part), &p[0], 1));
    close(p[0]);
    shutdown(sp[1], SHUT_WR);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, NULL);
    CHECK(conn != NULL);
    if (!conn) {
        close(p[1]);
        close_pair();
        return;
    }
    /* A truncated command may be reported as a bad message; never as good. */
    while ((r = fdctx_conn_recv(conn, &msg)) == 1 && guard++ < 4) {
        CHECK_NEG(fdctx_msg_status(msg));
        fdctx_msg_finish(msg);
    }
    CHECK_EQ(r, 0);
    errno = 0;
    CHECK(write(p[1], "x", 1) == -1 && errno == EPIPE);
    fdctx_conn_free(conn);
    close(p[1]);
    close_pair();
}

/* RFC 6901 accessors on a JSON message. */
static void test_json_pointer(void)
{
    static const char cmd[] =
        "{\"execute\":\"blockdev-add\",\"arguments\":{\"filename\":\"/dev/fd/0\","
        "\"read-only\":true,\"size\":42,\"neg\":-7,\"max\":9223372036854775807,"
        "\"min\":-9223372036854775808,\"big\":18446744073709551615,"
        "\"esc\":\"a\\\"b\\u00e9\\u0000z\",\"nul\":null,"
        "\"obj\":{\"a\":[1,2,{\"b\":null}]},\"t~\":{\"s/l\":5}},\"id\":\"c1\"}\n";
    struct seen s_unused;
    fdctx_conn *conn;
    fdctx_msg *msg = NULL;
    int r;
    (void)s_unused;

    open_pair(SOCK_STREAM);
    send_1(cmd, "jp");
    send_text("{\"execute\" oops}\n");
    shutdown(sp[1], SHUT_WR);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, NULL);
    CHECK(conn != NULL);
    if (!conn) {
        close_pair();
        return;
    }
    r = fdctx_conn_recv(conn, &msg);
    CHECK_EQ(r, 1);
    if (r == 1) {
        size_t len = 0;
        const char *str, *str2;
        bool b = false;
        int64_t v = 0;

        CHECK_EQ(fdctx_msg_status(msg), 0);
        str = fdctx_msg_get_str(msg, "/execute", &len);
        CHECK_STREQ(str, "blockdev-add");
        CHECK_EQ(len, 12);
        str2 = fdctx_msg_get_str(msg, "/arguments/filename", NULL);
        CHECK_STREQ(str2, "/dev/fd/0");
        /* Strings stay valid until finish. */
        CHECK_STREQ(str, "blockdev-add");
        CHECK_STREQ(fdctx_msg_get_str(msg, "/id", NULL), "c1");
        len = 0;
        str = fdctx_msg_get_str(msg, "/arguments/esc", &len);
        CHECK(str != NULL);
        CHECK_EQ(len, 7);
        if (str && len == 7)
            CHECK(memcmp(str, "a\"b\xc3\xa9\0z", 8) == 0);
        CHECK(fdctx_msg_get_str(msg, "/arguments/size", &len) == NULL);
        CHECK(fdctx_msg_get_str(msg, "/arguments/absent", &len) == NULL);
        CHECK(fdctx_msg_get_str(msg, "/arguments/t~0/s~1l", &len) == NULL);

        str = fdctx_msg_get_json(msg, "/arguments/obj", &len);
        CHECK_STREQ(str, "{\"a\":[1,2,{\"b\":null}]}");
        CHECK_EQ(len, strlen("{\"a\":[1,2,{\"b\":null}]}"));
        CHECK_STREQ(fdctx_msg_get_json(msg, "/arguments/obj/a/2/b", NULL), "null");
        CHECK_STREQ(fdctx_msg_get_json(msg, "/arguments/t~0/s~1l", NULL), "5");
        CHECK_STREQ(fdctx_msg_get_json(msg, "/execute", NULL), "\"blockdev-add\"");
        CHECK(fdctx_msg_get_json(msg, "/arguments/obj/a/5", NULL) == NULL);
        CHECK(fdctx_msg_get_json(msg, "/arguments/obj/a/01", NULL) == NULL);
        str = fdctx_msg_get_json(msg, "", &len);
        CHECK(str != NULL && str[0] == '{' && strlen(str) == len && str[len - 1] == '}');
        CHECK(str != NULL && strchr(str, '\n') == NULL);

        CHECK_EQ(fdctx_msg_get_bool(msg, "/arguments/read-only", &b), 0);
        CHECK(b == true);
        CHECK_ERR(fdctx_msg_get_bool(msg, "/arguments/size", &b), ENOMSG);
        CHECK_ERR(fdctx_msg_get_bool(msg, "/arguments/nul", &b), ENOMSG);
        CHECK_ERR(fdctx_msg_get_bool(msg, "/arguments/nope", &b), ENOENT);

        CHECK_EQ(fdctx_msg_get_int(msg, "/arguments/size", &v), 0);
        CHECK_EQ(v, 42);
        CHECK_EQ(fdctx_msg_get_int(msg, "/arguments/neg", &v), 0);
        CHECK_EQ(v, -7);
        CHECK_EQ(fdctx_msg_get_int(msg, "/arguments/max", &v), 0);
        CHECK(v == INT64_MAX);
        CHECK_EQ(fdctx_msg_get_int(msg, "/arguments/min", &v), 0);
        CHECK(v == INT64_MIN);
        CHECK_EQ(fdctx_msg_get_int(msg, "/arguments/obj/a/1", &v), 0);
        CHECK_EQ(v, 2);
        CHECK_ERR(fdctx_msg_get_int(msg, "/arguments/big", &v), ERANGE);
        CHECK_ERR(fdctx_msg_get_int(msg, "/arguments/filename", &v), ENOMSG);
        CHECK_ERR(fdctx_msg_get_int(msg, "/arguments/read-only", &v), ENOMSG);
        CHECK_ERR(fdctx_msg_get_int(msg, "/nothing/here", &v), ENOENT);
        CHECK_NEG(fdctx_msg_get_int(msg, "arguments/size", &v)); /* no leading '/' */

        /* NULL arguments. */
        CHECK(fdctx_msg_get_str(NULL, "/execute", NULL) == NULL);
        CHECK(fdctx_msg_get_str(msg, NULL, NULL) == NULL);
        CHECK(fdctx_msg_get_json(NULL, "", NULL) == NULL);
        CHECK(fdctx_msg_get_json(msg, NULL, NULL) == NULL);
        CHECK_ERR(fdctx_msg_get_bool(NULL, "/x", &b), EINVAL);
        CHECK_ERR(fdctx_msg_get_bool(msg, NULL, &b), EINVAL);
        CHECK_ERR(fdctx_msg_get_bool(msg, "/arguments/read-only", NULL), EINVAL);
        CHECK_ERR(fdctx_msg_get_int(NULL, "/x", &v), EINVAL);
        CHECK_ERR(fdctx_msg_get_int(msg, NULL, &v), EINVAL);
        CHECK_ERR(fdctx_msg_get_int(msg, "/arguments/size", NULL), EINVAL);

        /* The accessors used no fd. */
        CHECK_EQ(fdctx_msg_finish(msg), 1);
    }
    /* On a message that is not valid JSON the accessors say so. */
    r = fdctx_conn_recv(conn, &msg);
    CHECK_EQ(r, 1);
    if (r == 1) {
        bool b;
        int64_t v;
        CHECK_ERR(fdctx_msg_status(msg), EBADMSG);
        CHECK_ERR(fdctx_msg_get_bool(msg, "/execute", &b), EBADMSG);
        CHECK_ERR(fdctx_msg_get_int(msg, "", &v), EBADMSG);
        CHECK(fdctx_msg_get_str(msg, "/execute", NULL) == NULL);
        CHECK(fdctx_msg_get_json(msg, "", NULL) == NULL);
        fdctx_msg_finish(msg);
    }
    CHECK_EQ(fdctx_conn_recv(conn, &msg), 0);
    fdctx_conn_free(conn);
    close_pair();

    /* A LINE message is not JSON. */
    open_pair(SOCK_STREAM);
    send_text("hello monitor\n");
    shutdown(sp[1], SHUT_WR);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_LINE, NULL);
    CHECK(conn != NULL);
    if (conn) {
        r = fdctx_conn_recv(conn, &msg);
        CHECK_EQ(r, 1);
        if (r == 1) {
            int64_t v;
            CHECK_EQ(fdctx_msg_status(msg), 0);
            CHECK_ERR(fdctx_msg_get_int(msg, "/a", &v), EBADMSG);
            CHECK(fdctx_msg_get_json(msg, "", NULL) == NULL);
            fdctx_msg_finish(msg);
        }
        fdctx_conn_free(conn);
    }
    close_pair();
}

struct worker {
    fdctx_msg *msg;
    char data[256];
    char execute[64];
    char fd0[64];
    int open_r;
    int finish;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const char *d = fdctx_msg_data(w->msg, NULL);
    const char *e = fdctx_msg_get_str(w->msg, "/execute", NULL);
    snprintf(w->data, sizeof w->data, "%s", d ? d : "(null)");
    snprintf(w->execute, sizeof w->execute, "%s", e ? e : "(null)");
    w->open_r = fdctx_open(fdctx_msg_fds(w->msg), "/dev/fd/0", O_RDONLY, 0);
    if (w->open_r >= 0) {
        h_read_all(w->open_r, w->fd0, sizeof w->fd0);
        close(w->open_r);
    }
    w->finish = fdctx_msg_finish(w->msg);
    return NULL;
}

/* A message may outlive its connection and move to another thread. */
static void test_message_outlives_connection(void)
{
    static const char cmd[] = "{\"execute\":\"in-thread\",\"arguments\":{\"f\":\"/dev/fd/0\"}}\n";
    static const char *const two[] = {"thread-payload", "unused"};
    fdctx_conn *conn;
    struct worker w;
    pthread_t th;
    int r;

    memset(&w, 0, sizeof w);
    open_pair(SOCK_STREAM);
    send_with(cmd, two, 2);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, NULL);
    CHECK(conn != NULL);
    if (!conn) {
        close_pair();
        return;
    }
    r = fdctx_conn_recv(conn, &w.msg);
    CHECK_EQ(r, 1);
    fdctx_conn_free(conn);
    close_pair();
    if (r != 1)
        return;
    CHECK_EQ(pthread_create(&th, NULL, worker_main, &w), 0);
    pthread_join(th, NULL);
    CHECK(strncmp(w.data, cmd, strlen(cmd) - 1) == 0);
    CHECK_STREQ(w.execute, "in-thread");
    CHECK_OK(w.open_r);
    CHECK_STREQ(w.fd0, "thread-payload");
    CHECK_EQ(w.finish, 1);
}

static void test_null_and_bad_arguments(void)
{
    fdctx_msg *msg = NULL;
    size_t len = 5;
    fdctx_conn *conn;

    CHECK(fdctx_conn_new(-1, FDCTX_FRAMING_JSON, NULL) == NULL);
    CHECK(fdctx_last_error() != NULL);
    CHECK_ERR(fdctx_conn_recv(NULL, &msg), EINVAL);
    fdctx_conn_free(NULL);
    CHECK(fdctx_msg_data(NULL, &len) == NULL);
    CHECK(fdctx_msg_fds(NULL) == NULL);
    CHECK_ERR(fdctx_msg_status(NULL), EINVAL);
    CHECK(fdctx_msg_error(NULL) == NULL);
    CHECK_ERR(fdctx_msg_finish(NULL), EINVAL);

    open_pair(SOCK_STREAM);
    /* A framing value outside the enum is refused, not undefined. */
    conn = fdctx_conn_new(sp[0], (fdctx_framing)7, NULL);
    CHECK(conn == NULL);
    fdctx_conn_free(conn);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, NULL);
    CHECK(conn != NULL);
    if (conn) {
        CHECK_ERR(fdctx_conn_recv(conn, NULL), EINVAL);
        fdctx_conn_free(conn);
    }
    CHECK_ERR(fdctx_send(sp[1], NULL, 3, NULL, 0), EINVAL);
    CHECK_ERR(fdctx_send(sp[1], "abc", 3, NULL, 2), EINVAL);
    CHECK_NEG(fdctx_send(-1, "abc", 3, NULL, 0));
    CHECK(fdctx_last_error() != NULL);
    close_pair();
}

/* A client sends its own end of the monitor socket with an unfinished
 * command, then exits. The monitor's copy would keep the socket open for
 * ever; the blocking receive must still end: at once where the kernel can
 * name the peer (the fd is refused), at the hold deadline otherwise. */
static void test_self_referencing_client_cannot_hang_the_monitor(void)
{
    fdctx_limits limits = {0};
    fdctx_conn *conn;
    fdctx_msg *msg;
    int r;

    limits.max_hold_ms = 2000;
    open_pair(SOCK_STREAM);
    CHECK_OK(fdctx_send(sp[1], "{\"execute\":\"x\",", 15, &sp[1], 1));
    close(sp[1]);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, &limits);
    CHECK(conn != NULL);
    r = fdctx_conn_recv(conn, &msg);
    if (r == 1) {
        /* No Unix sock_diag here: the deadline answered. */
        CHECK_EQ(fdctx_msg_status(msg), -ETIMEDOUT);
        CHECK_EQ(fdctx_count(fdctx_msg_fds(msg)), 0);
        fdctx_msg_finish(msg);
        r = fdctx_conn_recv(conn, &msg);
    }
    CHECK_EQ(r, 0);
    fdctx_conn_free(conn);
    close(sp[0]);
}

/* The same fd with a complete command: that command fails with -EDEADLK
 * (where the kernel can tell), the connection goes on. */
static void test_peer_socket_with_a_command_is_refused(void)
{
    struct seen s;
    int r;
    open_pair(SOCK_STREAM);
    CHECK_OK(fdctx_send(sp[1], "{\"execute\":\"x\"}\n", 16, &sp[1], 1));
    send_text("{\"execute\":\"y\"}\n");
    r = run_monitor(FDCTX_FRAMING_JSON, NULL, &s);
    CHECK_EQ(r, 0);
    CHECK_EQ(s.n, 2);
    if (s.m[0].status == 0) {
        h_skip("this kernel cannot name a Unix socket's peer (no sock_diag)");
    } else {
        CHECK_EQ(s.m[0].status, -EDEADLK);
        CHECK(s.m[0].has_error);
        CHECK_EQ(s.m[0].nfds, 0);
    }
    CHECK_EQ(s.m[1].status, 0);
    close_pair();
}

/* An object smuggled after a malformed one on the same line is discarded
 * with it (a non-UTF-8 one too), and so is the fd it came with; the next
 * line is served. */
static void test_json_smuggled_after_a_malformed_object_is_discarded(void)
{
    static const char *const bad[] = {"{\"a\":1,}", "{\"a\":\"\xff\"}"};
    static const int errs[] = {EBADMSG, EILSEQ};
    for (int i = 0; i < 2; i++) {
        char line[200];
        struct seen s;
        snprintf(line, sizeof line, "%s {\"execute\":\"smuggled\",\"arguments\":{\"f\":\"/dev/fd/0\"}}\n",
                 bad[i]);
        open_pair(SOCK_STREAM);
        send_1(line, "smuggled");
        send_text("{\"execute\":\"next\"}\n");
        CHECK_EQ(run_monitor(FDCTX_FRAMING_JSON, NULL, &s), 0);
        CHECK_EQ(s.n, 2);
        if (s.n == 2) {
            CHECK_EQ(s.m[0].status, -errs[i]);
            CHECK_EQ(s.m[0].nfds, 0);
            CHECK(data_is(&s.m[1], "{\"execute\":\"next\"}"));
            CHECK_EQ(s.m[1].status, 0);
            CHECK_EQ(s.m[1].nfds, 0);
        }
        close_pair();
    }
}

/* PACKET framing bounds JSON nesting by max_depth too. */
static void test_packet_json_deeper_than_max_depth(void)
{
    static const char deep[] = "{\"a\":[[[[1]]]]}"; /* 5 levels */
    static const char ok[] = "{\"a\":[[[1]]]}";     /* 4 levels */
    fdctx_limits lim = {.max_depth = 4};
    struct seen s;
    for (int t = 0; t < 2; t++) {
        open_pair(t ? SOCK_DGRAM : SOCK_SEQPACKET);
        send_1(deep, "deep");
        send_text(ok);
        if (t) /* a datagram socket has no end: shut this side for reading */
            shutdown(sp[0], SHUT_RD);
        CHECK_EQ(run_monitor(FDCTX_FRAMING_PACKET, &lim, &s), 0);
        CHECK_EQ(s.n, 2);
        CHECK_EQ(s.m[0].status, -EBADMSG);
        CHECK_EQ(s.m[0].nfds, 0);
        CHECK_EQ(s.m[1].status, 0);
        close_pair();
    }
}

/* SEQPACKET: an empty packet, an empty packet with an fd, then the peer
 * closes: each packet is a message, then the end. */
static void test_seqpacket_empty_packets_then_close(void)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr mh;
    struct cmsghdr *c;
    struct seen s;
    int fd;

    open_pair(SOCK_SEQPACKET);
    CHECK_EQ(send(sp[1], "", 0, 0), 0);
    fd = h_pipe_with("empty");
    memset(&mh, 0, sizeof mh);
    memset(cbuf, 0, sizeof cbuf);
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    CHECK_EQ(sendmsg(sp[1], &mh, 0), 0);
    close(fd);
    CHECK_EQ(run_monitor(FDCTX_FRAMING_PACKET, NULL, &s), 0);
    CHECK_EQ(s.n, 2);
    CHECK_EQ(s.m[0].len, 0);
    CHECK_EQ(s.m[0].nfds, 0);
    CHECK_EQ(s.m[1].len, 0);
    CHECK_EQ(s.m[1].nfds, 1);
    CHECK_STREQ(s.m[1].fd0, "empty");
    close_pair();
}

int main(void)
{
    h_init();
    RUN(test_json_messages_with_fds);
    RUN(test_malformed_then_good);
    RUN(test_bad_json_kinds);
    RUN(test_devfd_argument_without_fd);
    RUN(test_too_many_fds);
    RUN(test_too_large);
    RUN(test_fd_before_command);
    RUN(test_line_framing);
    RUN(test_packet_framing);
    RUN(test_many_fds_one_command);
    RUN(test_same_fd_twice);
    RUN(test_nonblocking_partial);
    RUN(test_conn_free_closes_waiting_fds);
    RUN(test_eof_mid_command);
    RUN(test_json_pointer);
    RUN(test_message_outlives_connection);
    RUN(test_null_and_bad_arguments);
    RUN(test_self_referencing_client_cannot_hang_the_monitor);
    RUN(test_peer_socket_with_a_command_is_refused);
    RUN(test_json_smuggled_after_a_malformed_object_is_discarded);
    RUN(test_packet_json_deeper_than_max_depth);
    RUN(test_seqpacket_empty_packets_then_close);
    return h_finish();
}
