/*
 * fdctx_send from C: every write that carries fds starts at a
 * non-whitespace byte of the command, so the receiver gives the command
 * exactly its fds even when it is pipelined behind a command that fills a
 * read; a command with fewer such bytes than batches of 253 fds is refused
 * with -EINVAL and nothing is sent.
 */
#include "harness.h"

#include <sys/ioctl.h>
#include <sys/socket.h>

static int sp[2];

static void open_pair(void)
{
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
}

static void close_pair(void)
{
    close(sp[0]);
    close(sp[1]);
}

/* Bytes queued for the monitor end and not yet read. */
static int queued(void)
{
    int n = -1;
    if (ioctl(sp[0], FIONREAD, &n) != 0)
        return -1;
    return n;
}

/* `n` copies of one fd: the kernel installs each as a separate fd. */
static int *copies(int fd, size_t n)
{
    int *fds = malloc(n * sizeof *fds);
    size_t i;
    if (!fds) {
        printf("harness: out of memory\n");
        exit(2);
    }
    for (i = 0; i < n; i++)
        fds[i] = fd;
    return fds;
}

static void test_too_few_command_bytes_is_einval_and_sends_nothing(void)
{
    int p = h_pipe_with("x");
    int *fds = copies(p, 600);

    open_pair();
    /* LINE "a\n" with 300 fds: 2 batches, 1 command byte. */
    CHECK_ERR(fdctx_send(sp[1], "a\n", 2, fds, 300), EINVAL);
    /* JSON "{}\r\n" with 600 fds: 3 batches, 2 command bytes. */
    CHECK_ERR(fdctx_send(sp[1], "{}\r\n", 4, fds, 600), EINVAL);
    /* Whitespace only: no byte of a command to ride on. */
    CHECK_ERR(fdctx_send(sp[1], " ", 1, fds, 1), EINVAL);
    CHECK_ERR(fdctx_send(sp[1], "\r\n", 2, fds, 1), EINVAL);
    CHECK_EQ(queued(), 0);
    /* Enough command bytes: sent. */
    CHECK_OK(fdctx_send(sp[1], "{}\r\n", 4, fds, 506));
    CHECK_EQ(queued(), 4);
    free(fds);
    close(p);
    close_pair();
}

/* A 300-fd line goes out in two batches on its two command bytes; the
 * monitor gives all 300 to it and none to the next line. */
static void test_300_fds_on_a_two_byte_line(void)
{
    int p = h_pipe_with("x");
    int *fds = copies(p, 300);
    fdctx_limits limits = { .max_fds = 1000 };
    fdctx_conn *conn;
    fdctx_msg *msg = NULL;

    open_pair();
    CHECK_OK(fdctx_send(sp[1], "ab\n", 3, fds, 300));
    CHECK_OK(fdctx_send(sp[1], "c\n", 2, NULL, 0));
    shutdown(sp[1], SHUT_WR);
    free(fds);
    close(p);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_LINE, &limits);
    CHECK(conn != NULL);
    if (conn) {
        CHECK_EQ(fdctx_conn_recv(conn, &msg), 1);
        if (msg) {
            CHECK_STREQ(fdctx_msg_data(msg, NULL), "ab");
            CHECK_EQ(fdctx_count(fdctx_msg_fds(msg)), 300);
            CHECK_EQ(fdctx_msg_finish(msg), 300);
            msg = NULL;
        }
        CHECK_EQ(fdctx_conn_recv(conn, &msg), 1);
        if (msg) {
            CHECK_STREQ(fdctx_msg_data(msg, NULL), "c");
            CHECK_EQ(fdctx_count(fdctx_msg_fds(msg)), 0);
            fdctx_msg_finish(msg);
            msg = NULL;
        }
        CHECK_EQ(fdctx_conn_recv(conn, &msg), 0);
        fdctx_conn_free(conn);
    }
    close_pair();
}

/* Command 1, without fds, fills a 64 KiB read minus one byte; command 2
 * begins with `lead` and carries one fd. Command 2 must get it. */
static void pipelined_after_64k_minus_one(const char *lead)
{
    static char fill[65536];
    static const char head[] = "{\"execute\":\"fill\",\"arguments\":{\"pad\":\"";
    static const char tail[] = "\"}}";
    static const char open0[] = "{\"execute\":\"blockdev-add\",\"arguments\":{\"filename\":\"/dev/fd/0\"}}";
    const size_t len = 65535;
    char cmd2[256];
    char got[16] = "";
    int p = h_pipe_with("mine");
    fdctx_conn *conn;
    fdctx_msg *msg = NULL;

    memset(fill, 'x', len);
    memcpy(fill, head, strlen(head));
    memcpy(fill + len - strlen(tail), tail, strlen(tail));
    snprintf(cmd2, sizeof cmd2, "%s%s", lead, open0);

    open_pair();
    CHECK_OK(fdctx_send(sp[1], fill, len, NULL, 0));
    CHECK_OK(fdctx_send(sp[1], cmd2, strlen(cmd2), &p, 1));
    close(p);
    shutdown(sp[1], SHUT_WR);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, NULL);
    CHECK(conn != NULL);
    if (conn) {
        CHECK_EQ(fdctx_conn_recv(conn, &msg), 1);
        if (msg) {
            size_t n = 0;
            fdctx_msg_data(msg, &n);
            CHECK_EQ(n, len);
            CHECK_EQ(fdctx_msg_status(msg), 0);
            CHECK_EQ(fdctx_count(fdctx_msg_fds(msg)), 0);
            fdctx_msg_finish(msg);
            msg = NULL;
        }
        CHECK_EQ(fdctx_conn_recv(conn, &msg), 1);
        if (msg) {
            int fd;
            CHECK_EQ(fdctx_msg_status(msg), 0);
            CHECK_EQ(fdctx_count(fdctx_msg_fds(msg)), 1);
            fd = fdctx_open(fdctx_msg_fds(msg), "/dev/fd/0", O_RDONLY, 0);
            CHECK(fd >= 0);
            if (fd >= 0) {
                CHECK(read(fd, got, sizeof got - 1) == 4);
                close(fd);
            }
            CHECK_STREQ(got, "mine");
            fdctx_msg_finish(msg);
            msg = NULL;
        }
        CHECK_EQ(fdctx_conn_recv(conn, &msg), 0);
        fdctx_conn_free(conn);
    }
    close_pair();
}

static void test_pipelined_leading_space_after_64k_minus_one(void)
{
    pipelined_after_64k_minus_one(" ");
}

static void test_pipelined_leading_crlf_after_64k_minus_one(void)
{
    pipelined_after_64k_minus_one("\r\n");
}

int main(void)
{
    h_init();
    RUN(test_too_few_command_bytes_is_einval_and_sends_nothing);
    RUN(test_300_fds_on_a_two_byte_line);
    RUN(test_pipelined_leading_space_after_64k_minus_one);
    RUN(test_pipelined_leading_crlf_after_64k_minus_one);
    return h_finish();
}
