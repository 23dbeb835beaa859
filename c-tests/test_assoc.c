/*
 * The association service from C, written from the header alone: a VMM
 * whose own parser decides where a command ends (as QEMU's QMP parser
 * does) reports each read and each command to fdctx_assoc_*, and each
 * command gets exactly its own fds, within max_fds, with lost fds, the
 * client's own socket end and held fds past the deadline failing that
 * command. The parser here is a small stand-in for QEMU's: it counts
 * braces outside strings, reports a lexical error on a 0xff byte and then
 * skips input up to a line break or a '{'.
 */
#include "harness.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define MAX_CMDS 16

/* ---- the stand-in parser and the VMM around it ------------------------ */

struct vmm {
    fdctx_assoc *assoc;
    /* parser state */
    int depth, in_string, escape, recovering;
    char cur[256];
    size_t cur_len;
    /* what came out */
    int n, errors;
    char data[MAX_CMDS][256];
    int status[MAX_CMDS];
    size_t nfds[MAX_CMDS];
    char fd0[MAX_CMDS][64];
    char text[MAX_CMDS][256];
};

static void on_command(struct vmm *v)
{
    fdctx *ctx = NULL;
    int i = v->n < MAX_CMDS ? v->n : MAX_CMDS - 1;
    int status = fdctx_assoc_complete(v->assoc, &ctx);
    const char *text = fdctx_assoc_error(v->assoc);

    CHECK(ctx != NULL);
    snprintf(v->data[i], sizeof v->data[i], "%.*s", (int)v->cur_len, v->cur);
    v->status[i] = status;
    snprintf(v->text[i], sizeof v->text[i], "%s", text ? text : "");
    CHECK(status == 0 ? text == NULL : text != NULL);
    v->nfds[i] = fdctx_count(ctx);
    v->fd0[i][0] = '\0';
    if (v->nfds[i] > 0) {
        int fd = fdctx_take(ctx, 0);
        CHECK_OK(fd);
        if (fd >= 0) {
            CHECK(h_read_all(fd, v->fd0[i], sizeof v->fd0[i]) >= 0);
            close(fd);
        }
    }
    CHECK_OK(fdctx_finish(ctx));
    v->n++;
    v->cur_len = 0;
}

static void on_error(struct vmm *v)
{
    CHECK_OK(fdctx_assoc_complete(v->assoc, NULL));
    v->errors++;
    v->cur_len = 0;
    v->depth = v->in_string = v->escape = 0;
    v->recovering = 1;
}

static void parser_feed(struct vmm *v, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if ((unsigned char)c == 0xff) {
            on_error(v);
            continue;
        }
        if (v->recovering) {
            if (c == '\n') {
                v->recovering = 0;
                continue;
            }
            if (c != '{')
                continue;
            v->recovering = 0;
        }
        if (v->depth == 0 && (c == ' ' || c == '\t' || c == '\r' || c == '\n'))
            continue;
        if (v->cur_len < sizeof v->cur)
            v->cur[v->cur_len++] = c;
        if (v->in_string) {
            if (v->escape)
                v->escape = 0;
            else if (c == '\\')
                v->escape = 1;
            else if (c == '"')
                v->in_string = 0;
        } else if (c == '"') {
            v->in_string = 1;
        } else if (c == '{') {
            v->depth++;
        } else if (c == '}') {
            if (--v->depth == 0)
                on_command(v);
        }
    }
}

/* The parser holds no partial command (in recovery it holds none). */
static int parser_idle(const struct vmm *v)
{
    return v->depth == 0;
}

/* The feeding loop of the header's example, for one read. */
static void vmm_read(struct vmm *v, const char *buf, size_t len, int *fds, size_t nfds, unsigned flags)
{
    size_t at = (size_t)-1;
    CHECK_EQ(fdctx_assoc_read(v->assoc, buf, len, fds, nfds, flags, &at), 0);
    CHECK(at <= len);
    parser_feed(v, buf, at);
    CHECK_EQ(fdctx_assoc_attach(v->assoc), 0);
    parser_feed(v, buf + at, len - at);
    if (parser_idle(v))
        CHECK(fdctx_assoc_idle(v->assoc) >= 0);
}

static void vmm_init(struct vmm *v, int sock, const fdctx_limits *limits)
{
    memset(v, 0, sizeof *v);
    v->assoc = fdctx_assoc_new(sock, limits);
    CHECK(v->assoc != NULL);
}

/* Reads everything queued on sock (non-blocking at the end) in reads of
 * cap bytes, through the feeding loop. */
static void serve_queued(struct vmm *v, int sock, size_t cap, size_t max_fds)
{
    char buf[4096];
    int fds[253];
    size_t nfds;
    unsigned flags;
    for (;;) {
        ssize_t n;
        int queued = 0;
        if (ioctl(sock, FIONREAD, &queued) != 0 || queued == 0)
            break;
        n = h_recv_fds(sock, buf, cap < sizeof buf ? cap : sizeof buf, fds, max_fds, &nfds, &flags);
        if (n <= 0)
            break;
        vmm_read(v, buf, (size_t)n, fds, nfds, flags);
    }
}

static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        printf("    socketpair: %s\n", strerror(errno));
        exit(2);
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- tests ---------------------------------------------------------------- */

/* Pipelined commands in one read: the fds ride on the second command's
 * write, so the first, completed before the attach point, gets none. */
static void test_assoc_pipelined_commands_get_only_their_own_fds(void)
{
    size_t caps[] = {1, 3, 4096};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        int sv[2];
        struct vmm v;
        int a = h_pipe_with("A"), b = h_pipe_with("B");
        pair(sv);
        vmm_init(&v, sv[1], NULL);
        CHECK(h_sendmsg_raw(sv[0], "{\"execute\":\"one\"}", NULL, 0) > 0);
        CHECK(h_sendmsg_raw(sv[0], "{\"execute\":\"two\"}\r\n", &a, 1) > 0);
        CHECK(h_sendmsg_raw(sv[0], " ", &b, 1) > 0);
        CHECK(h_sendmsg_raw(sv[0], "{\"execute\":\"three\"}\n", NULL, 0) > 0);
        close(a);
        close(b);
        serve_queued(&v, sv[1], caps[k], 16);
        CHECK_EQ(v.n, 3);
        CHECK_STREQ(v.data[0], "{\"execute\":\"one\"}");
        CHECK_EQ(v.nfds[0], 0);
        CHECK_EQ(v.nfds[1], 1);
        CHECK_STREQ(v.fd0[1], "A");
        CHECK_EQ(v.nfds[2], 1);
        CHECK_STREQ(v.fd0[2], "B");
        CHECK_EQ(fdctx_assoc_deadline_ms(v.assoc), -1);
        fdctx_assoc_free(v.assoc);
        close(sv[0]);
        close(sv[1]);
    }
}

/* An fd sent ahead of its command on a lone space waits for it, and is
 * held (with a deadline) meanwhile. */
static void test_assoc_fd_on_a_lone_space_waits_for_the_next_command(void)
{
    struct vmm v;
    int fd = h_pipe_with("ahead");
    vmm_init(&v, -1, NULL);
    vmm_read(&v, " ", 1, &fd, 1, 0);
    CHECK_EQ(v.n, 0);
    CHECK(fdctx_assoc_deadline_ms(v.assoc) > 0);
    vmm_read(&v, "{\"execute\":\"getfd\"}", 19, NULL, 0, 0);
    CHECK_EQ(v.n, 1);
    CHECK_EQ(v.status[0], 0);
    CHECK_STREQ(v.fd0[0], "ahead");
    CHECK_EQ(fdctx_assoc_deadline_ms(v.assoc), -1);
    fdctx_assoc_free(v.assoc);
}

/* max_fds is counted per command, over all its reads. */
static void test_assoc_more_fds_than_max_fds_fail_the_command_and_close(void)
{
    fdctx_limits limits = {0};
    struct vmm v;
    int f1[2] = {h_pipe_with("1"), h_pipe_with("2")};
    int f2[1] = {h_pipe_with("3")};
    int keep[3] = {f1[0], f1[1], f2[0]};
    limits.max_fds = 2;
    vmm_init(&v, -1, &limits);
    vmm_read(&v, "{\"execute\":", 11, f1, 2, 0);
    vmm_read(&v, "\"x\", \"id\": 7}", 13, f2, 1, 0);
    CHECK_EQ(v.n, 1);
    CHECK_EQ(v.status[0], -ETOOMANYREFS);
    CHECK_EQ(v.nfds[0], 0);
    CHECK(strstr(v.text[0], "more than 2") != NULL);
    for (int i = 0; i < 3; i++)
        CHECK(!h_is_open(keep[i]));
    /* The next command starts anew. */
    int f3 = h_pipe_with("4");
    vmm_read(&v, "{}", 2, &f3, 1, 0);
    CHECK_EQ(v.n, 2);
    CHECK_EQ(v.status[1], 0);
    CHECK_STREQ(v.fd0[1], "4");
    fdctx_assoc_free(v.assoc);
}

/* More fds in one write than the VMM's read can take: the kernel drops the
 * rest and reports MSG_CTRUNC; the command fails rather than run with
 * fewer, and the fds that did arrive are closed. */
static void test_assoc_fds_lost_in_transit_fail_their_command(void)
{
    int sv[2];
    struct vmm v;
    int fds[5];
    pair(sv);
    for (int i = 0; i < 5; i++)
        fds[i] = h_pipe_with("x");
    vmm_init(&v, sv[1], NULL);
    CHECK(h_sendmsg_raw(sv[0], "{\"execute\":\"add-fd\",\"id\":1}", fds, 5) > 0);
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    serve_queued(&v, sv[1], 4096, 3);
    CHECK_EQ(v.n, 1);
    CHECK_EQ(v.status[0], -ECOMM);
    CHECK_EQ(v.nfds[0], 0);
    CHECK(strlen(v.text[0]) > 0);
    /* The flag alone, with no fd arriving, fails the command too. */
    vmm_read(&v, "{}", 2, NULL, 0, FDCTX_FEED_FDS_LOST);
    CHECK_EQ(v.status[1], -ECOMM);
    fdctx_assoc_free(v.assoc);
    close(sv[0]);
    close(sv[1]);
}

/* A client sends its own socket end with an unfinished command and exits:
 * refused at once, so the connection ends instead of staying open. */
static void test_assoc_the_clients_own_socket_end_is_refused_at_once(void)
{
    int sv[2];
    struct vmm v;
    char buf[64];
    pair(sv);
    vmm_init(&v, sv[1], NULL);
    CHECK(h_sendmsg_raw(sv[0], "{\"execute\":", &sv[0], 1) > 0);
    close(sv[0]);
    serve_queued(&v, sv[1], 4096, 16);
    /* The end arrived and was closed: the stream ends now. */
    CHECK_EQ(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), 0);
    CHECK_EQ(fdctx_assoc_deadline_ms(v.assoc), -1);
    vmm_read(&v, "}", 1, NULL, 0, 0);
    CHECK_EQ(v.n, 1);
    if (v.status[0] == 0)
        h_skip("this kernel has no Unix sock_diag (CONFIG_UNIX_DIAG)");
    else
        CHECK_EQ(v.status[0], -EDEADLK);
    fdctx_assoc_free(v.assoc);
    close(sv[1]);
}

/* After a lexical error the parser skips input: an fd sent with the
 * skipped bytes is closed, and the next command does not get it. */
static void test_assoc_fd_sent_with_bytes_the_parser_drops_is_closed(void)
{
    struct vmm v;
    int fd = h_pipe_with("stale");
    vmm_init(&v, -1, NULL);
    vmm_read(&v, "\xff", 1, NULL, 0, 0);
    CHECK_EQ(v.errors, 1);
    vmm_read(&v, "zzz", 3, &fd, 1, 0);
    CHECK(!h_is_open(fd));
    CHECK_EQ(fdctx_assoc_deadline_ms(v.assoc), -1);
    vmm_read(&v, "\n", 1, NULL, 0, 0);
    vmm_read(&v, "{\"execute\":\"x\"}", 15, NULL, 0, 0);
    CHECK_EQ(v.n, 1);
    CHECK_EQ(v.status[0], 0);
    CHECK_EQ(v.nfds[0], 0);
    /* An fd that rides on the error byte itself closes with the error. */
    fd = h_pipe_with("err");
    vmm_read(&v, "\xff", 1, &fd, 1, 0);
    CHECK(!h_is_open(fd));
    CHECK_EQ(v.errors, 2);
    fdctx_assoc_free(v.assoc);
}

/* A partial command holding fds past max_hold_ms is handed back to be
 * answered; waiting fds past it fail the next command. */
static void test_assoc_hold_deadline_driven_like_a_timer(void)
{
    fdctx_limits limits = {0};
    struct vmm v;
    int fd = h_pipe_with("held");
    int ms;
    limits.max_hold_ms = 60;
    vmm_init(&v, -1, &limits);
    CHECK_EQ(fdctx_assoc_deadline_ms(v.assoc), -1);
    CHECK_EQ(fdctx_assoc_expire(v.assoc), 0);
    vmm_read(&v, "{\"execute\":", 11, &fd, 1, 0);
    ms = fdctx_assoc_deadline_ms(v.assoc);
    CHECK(ms > 0 && ms <= 60);
    CHECK_EQ(fdctx_assoc_expire(v.assoc), 0);
    CHECK(h_is_open(fd));
    sleep_ms(ms);
    CHECK_EQ(fdctx_assoc_deadline_ms(v.assoc), 0);
    CHECK_EQ(fdctx_assoc_expire(v.assoc), 1);
    CHECK(fdctx_assoc_error(v.assoc) != NULL);
    CHECK(!h_is_open(fd));
    CHECK_EQ(fdctx_assoc_deadline_ms(v.assoc), -1);
    /* The VMM resets its parser; the next command is clean. */
    v.depth = v.in_string = v.escape = 0;
    v.cur_len = 0;
    vmm_read(&v, "{}", 2, NULL, 0, 0);
    CHECK_EQ(v.n, 1);
    CHECK_EQ(v.status[0], 0);
    /* Waiting fds past the deadline: closed, the next command fails. */
    fd = h_pipe_with("waiting");
    vmm_read(&v, " ", 1, &fd, 1, 0);
    sleep_ms(fdctx_assoc_deadline_ms(v.assoc) + 1);
    CHECK_EQ(fdctx_assoc_expire(v.assoc), 0);
    CHECK(!h_is_open(fd));
    vmm_read(&v, "{}", 2, NULL, 0, 0);
    CHECK_EQ(v.n, 2);
    CHECK_EQ(v.status[1], -ETIMEDOUT);
    fdctx_assoc_free(v.assoc);
}

/* NULL and bad arguments are errors, and the fds handed over are closed
 * whatever happens. */
static void test_assoc_misuse_closes_the_fds(void)
{
    fdctx_limits limits = {0};
    fdctx_assoc *a = fdctx_assoc_new(-1, NULL);
    fdctx *ctx = (fdctx *)&limits;
    size_t at = 99;
    int fd = h_pipe_with("x");
    int twice[2];

    CHECK_ERR(fdctx_assoc_read(NULL, "{}", 2, &fd, 1, 0, &at), EINVAL);
    CHECK(!h_is_open(fd));
    fd = h_pipe_with("x");
    CHECK_ERR(fdctx_assoc_read(a, "{}", 2, &fd, 1, 4, &at), EINVAL);
    CHECK(!h_is_open(fd));
    fd = h_pipe_with("x");
    CHECK_ERR(fdctx_assoc_read(a, NULL, 2, &fd, 1, 0, &at), EINVAL);
    CHECK(!h_is_open(fd));
    fd = h_pipe_with("x");
    twice[0] = twice[1] = fd;
    CHECK_ERR(fdctx_assoc_read(a, "{}", 2, twice, 2, 0, &at), EINVAL);
    CHECK(!h_is_open(fd));
    fd = -1;
    CHECK_ERR(fdctx_assoc_read(a, "{}", 2, &fd, 1, 0, &at), EBADF);
    CHECK_ERR(fdctx_assoc_read(a, "{}", 2, NULL, 1, 0, &at), EINVAL);
    CHECK_ERR(fdctx_assoc_attach(NULL), EINVAL);
    CHECK_ERR(fdctx_assoc_complete(NULL, &ctx), EINVAL);
    CHECK(ctx == NULL);
    CHECK_ERR(fdctx_assoc_idle(NULL), EINVAL);
    CHECK_ERR(fdctx_assoc_expire(NULL), EINVAL);
    CHECK_ERR(fdctx_assoc_deadline_ms(NULL), EINVAL);
    CHECK(fdctx_assoc_error(NULL) == NULL);
    fdctx_assoc_free(NULL);
    /* Whitespace only: the attach point is the end; none with no bytes. */
    CHECK_EQ(fdctx_assoc_read(a, " \r\n", 3, NULL, 0, 0, &at), 0);
    CHECK_EQ(at, 3);
    CHECK_EQ(fdctx_assoc_read(a, "{} \n", 4, NULL, 0, 0, &at), 0);
    CHECK_EQ(at, 1);
    CHECK_EQ(fdctx_assoc_read(a, NULL, 0, NULL, 0, 0, NULL), 0);
    limits.max_hold_ms = 3600001;
    CHECK(fdctx_assoc_new(-1, &limits) == NULL);
    CHECK(fdctx_assoc_new(-5, NULL) == NULL);
    fdctx_assoc_free(a);
}

/* Ending the association closes what it holds: a partial command's fds,
 * fds waiting, a read's fds not yet attached. */
static void test_assoc_free_closes_held_fds(void)
{
    fdctx_assoc *a = fdctx_assoc_new(-1, NULL);
    int f1 = h_pipe_with("1"), f2 = h_pipe_with("2"), f3 = h_pipe_with("3");
    size_t at;
    CHECK_EQ(fdctx_assoc_read(a, "{\"a\":", 5, &f1, 1, 0, &at), 0);
    CHECK_EQ(fdctx_assoc_attach(a), 0);
    CHECK_EQ(fdctx_assoc_read(a, " ", 1, &f2, 1, 0, &at), 0);
    CHECK_EQ(fdctx_assoc_attach(a), 0);
    CHECK_EQ(fdctx_assoc_read(a, "1}", 2, &f3, 1, 0, &at), 0);
    fdctx_assoc_free(a);
    CHECK(!h_is_open(f1));
    CHECK(!h_is_open(f2));
    CHECK(!h_is_open(f3));
}

int main(void)
{
    h_init();
    RUN(test_assoc_pipelined_commands_get_only_their_own_fds);
    RUN(test_assoc_fd_on_a_lone_space_waits_for_the_next_command);
    RUN(test_assoc_more_fds_than_max_fds_fail_the_command_and_close);
    RUN(test_assoc_fds_lost_in_transit_fail_their_command);
    RUN(test_assoc_the_clients_own_socket_end_is_refused_at_once);
    RUN(test_assoc_fd_sent_with_bytes_the_parser_drops_is_closed);
    RUN(test_assoc_hold_deadline_driven_like_a_timer);
    RUN(test_assoc_misuse_closes_the_fds);
    RUN(test_assoc_free_closes_held_fds);
    return h_finish();
}
