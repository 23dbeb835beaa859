/*
 * Link check: a program that calls every function of the C API once, built
 * only with `pkg-config --cflags --libs fdctx` (and once with --static).
 * Prints "N passed, N failed" like the other C tests.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fdctx.h>

static int passed, failed;

#define EXPECT(cond)                                                        \
    do {                                                                    \
        if (cond) {                                                         \
            passed++;                                                       \
        } else {                                                            \
            failed++;                                                       \
            printf("FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond,      \
                   fdctx_last_error() ? fdctx_last_error() : "no error text"); \
        }                                                                   \
    } while (0)

int main(void)
{
    int p[2], sp[2], fds[2], fd, t, d;
    size_t idx = 0, len = 0;
    fdctx *ctx, *prev;
    fdctx_conn *conn;
    fdctx_msg *msg = NULL;
    fdctx_limits limits = {0, 0, 0, 0};
    bool b = false;
    int64_t v = 0;
    static const char cmd[] =
        "{\"execute\":\"blockdev-add\",\"arguments\":{\"filename\":\"/dev/fd/0\",\"ro\":true,\"n\":3}}\n";

    printf("fdctx %s (header %d.%d.%d, ABI %d)\n", FDCTX_VERSION, FDCTX_VERSION_MAJOR,
           FDCTX_VERSION_MINOR, FDCTX_VERSION_PATCH, FDCTX_ABI_VERSION);

    /* Context calls. */
    EXPECT(pipe2(p, O_CLOEXEC) == 0);
    fds[0] = p[0];
    fds[1] = p[1];
    ctx = fdctx_new();
    EXPECT(ctx != NULL);
    EXPECT(fdctx_adopt(ctx, fds, 2) == 2);
    EXPECT(fdctx_count(ctx) == 2);
    EXPECT(fdctx_index("/dev/fd/1", &idx) == 1 && idx == 1);
    EXPECT(fdctx_get(ctx, 0) == p[0]);
    t = fdctx_take(ctx, 1);
    EXPECT(t >= 0);
    d = fdctx_dup(ctx, 0);
    EXPECT(d >= 0);
    prev = fdctx_enter(ctx);
    EXPECT(fdctx_current() == ctx);
    fd = fdctx_open(NULL, "/dev/fd/0", O_RDONLY, 0);
    EXPECT(fd >= 0);
    fdctx_leave(prev);
    EXPECT(fdctx_current() == prev);
    EXPECT(fdctx_take(ctx, 1) == -EBADFD);
    EXPECT(fdctx_last_error() != NULL);
    EXPECT(fdctx_finish(ctx) == 0);
    close(t);
    close(d);
    close(fd);

    /* Connection calls. */
    EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
    EXPECT(pipe2(p, O_CLOEXEC) == 0);
    EXPECT(fdctx_send(sp[1], cmd, strlen(cmd), &p[0], 1) == 0);
    close(p[0]);
    close(p[1]);
    shutdown(sp[1], SHUT_WR);
    conn = fdctx_conn_new(sp[0], FDCTX_FRAMING_JSON, &limits);
    EXPECT(conn != NULL);
    EXPECT(fdctx_conn_recv(conn, &msg) == 1);
    if (msg) {
        const char *data = fdctx_msg_data(msg, &len);
        EXPECT(data != NULL && len >= strlen(cmd) - 1 && data[len] == '\0');
        EXPECT(fdctx_msg_status(msg) == 0);
        EXPECT(fdctx_msg_error(msg) == NULL);
        EXPECT(fdctx_count(fdctx_msg_fds(msg)) == 1);
        EXPECT(strcmp(fdctx_msg_get_str(msg, "/execute", NULL), "blockdev-add") == 0);
        EXPECT(strcmp(fdctx_msg_get_json(msg, "/arguments/n", NULL), "3") == 0);
        EXPECT(fdctx_msg_get_bool(msg, "/arguments/ro", &b) == 0 && b);
        EXPECT(fdctx_msg_get_int(msg, "/arguments/n", &v) == 0 && v == 3);
        EXPECT(fdctx_msg_finish(msg) == 1);
    }
    EXPECT(fdctx_conn_recv(conn, &msg) == 0);
    fdctx_conn_free(conn);
    close(sp[0]);
    close(sp[1]);

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
