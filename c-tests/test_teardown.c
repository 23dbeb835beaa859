/*
 * Calls made while a thread is being torn down.
 *
 * glibc runs pthread key destructors after Rust's own thread-local
 * destructors, so a VMM whose per-thread cleanup calls into fdctx reaches
 * the library when its thread-locals (last error text, current context,
 * receive buffers) are gone. Every call must still work or fail cleanly:
 * no panic may escape, no abort.
 */
#include "harness.h"

#include <pthread.h>
#include <sys/socket.h>

static pthread_key_t key;

struct teardown_result {
    int open_missing;   /* fdctx_open of a missing file */
    int open_devfd;     /* fdctx_open(NULL, "/dev/fd/0") with no context */
    int recv;           /* fdctx_conn_recv of one command */
    int recv_fds;       /* fds that command brought */
    int finish;         /* fdctx_msg_finish */
    int ran;
};

static struct teardown_result result;

static void in_destructor(void *arg)
{
    int *sp = arg;
    fdctx_msg *msg = NULL;
    const char *err;

    /* The first call of a failing function sets the error text; the
     * thread-local that holds it may already be destroyed. */
    result.open_missing = fdctx_open(NULL, "/nonexistent/fdctx-teardown", O_RDONLY, 0);
    err = fdctx_last_error();
    (void)err;
    result.open_devfd = fdctx_open(NULL, "/dev/fd/0", O_RDONLY, 0);
    (void)fdctx_current();

    fdctx_conn *conn = fdctx_conn_new(sp[1], FDCTX_FRAMING_JSON, NULL);
    if (conn) {
        result.recv = fdctx_conn_recv(conn, &msg);
        if (result.recv == 1) {
            result.recv_fds = (int)fdctx_count(fdctx_msg_fds(msg));
            result.finish = fdctx_msg_finish(msg);
        }
        fdctx_conn_free(conn);
    }
    result.ran = 1;
}

static void *thread_main(void *arg)
{
    /* Use the library first, so its thread-locals exist and are destroyed
     * before the key destructor runs. (A thread-local first touched during
     * teardown registers a destructor that never runs: its buffer is lost
     * once per thread. That is the Rust runtime's rule, not fdctx's.) */
    int sp[2];
    fdctx_msg *msg = NULL;
    (void)fdctx_open(NULL, "/nonexistent/fdctx-teardown", O_RDONLY, 0);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0) {
        fdctx_conn *conn = fdctx_conn_new(sp[1], FDCTX_FRAMING_JSON, NULL);
        if (fdctx_send(sp[0], "{}", 2, NULL, 0) == 0 && fdctx_conn_recv(conn, &msg) == 1)
            fdctx_msg_finish(msg);
        fdctx_conn_free(conn);
        close(sp[0]);
        close(sp[1]);
    }
    pthread_setspecific(key, arg);
    return NULL;
}

static void test_calls_during_thread_teardown(void)
{
    int sp[2], pipefd[2];
    pthread_t t;
    const char cmd[] = "{\"execute\":\"x\"}";

    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    CHECK_OK(pipe2(pipefd, O_CLOEXEC));
    CHECK_EQ(fdctx_send(sp[0], cmd, sizeof cmd - 1, &pipefd[0], 1), 0);
    close(pipefd[0]);
    close(pipefd[1]);

    memset(&result, 0, sizeof result);
    CHECK_EQ(pthread_key_create(&key, in_destructor), 0);
    CHECK_EQ(pthread_create(&t, NULL, thread_main, sp), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    pthread_key_delete(key);

    CHECK_EQ(result.ran, 1);
    CHECK_EQ(result.open_missing, -ENOENT);
    CHECK_EQ(result.open_devfd, -EBADF);
    CHECK_EQ(result.recv, 1);
    CHECK_EQ(result.recv_fds, 1);
    CHECK_EQ(result.finish, 1);
    close(sp[0]);
    close(sp[1]);
}

int main(void)
{
    h_init();
    RUN(test_calls_during_thread_teardown);
    return h_finish();
}
