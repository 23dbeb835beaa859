/* fdctx: fdctx_conn_recv() with JSON framing; fdctx_msg_data() (the
 * command's bytes, as a monitor reads them); fdctx_take() of every fd the
 * command brought, close it, fdctx_msg_finish(). */
#include "rx_main.h"
#include <fdctx.h>

struct rx_conn {
    fdctx_conn *conn;
};

static const char *rx_name(void) { return "fdctx"; }

static rx_conn *rx_open(int fd, const struct rx_cfg *cfg)
{
    /* Defaults (1 MiB, 32 fds) unless the workload needs more. */
    fdctx_limits lim = { 0 }; /* every field 0: its default */
    if (cfg->max_bytes > 1024 * 1024)
        lim.max_msg_bytes = cfg->max_bytes;
    if (cfg->fds > 32)
        lim.max_fds = cfg->fds;
    rx_conn *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    c->conn = fdctx_conn_new(fd, FDCTX_FRAMING_JSON, &lim);
    if (!c->conn) {
        fprintf(stderr, "fdctx: fdctx_conn_new: %s\n", fdctx_last_error());
        free(c);
        return NULL;
    }
    return c;
}

static int rx_next(rx_conn *c, size_t *nfds)
{
    fdctx_msg *msg;
    int r = fdctx_conn_recv(c->conn, &msg);
    if (r != 1)
        return r;
    if (fdctx_msg_status(msg) < 0) {
        fprintf(stderr, "fdctx: bad command: %s\n", fdctx_msg_error(msg));
        r = fdctx_msg_status(msg);
        fdctx_msg_finish(msg);
        return r;
    }
    /* A monitor reads the command: its bytes, NUL-terminated. */
    size_t len = 0;
    const char *text = fdctx_msg_data(msg, &len);
    if (!text || len == 0 || text[len] != '\0') {
        fprintf(stderr, "fdctx: fdctx_msg_data gave no command\n");
        fdctx_msg_finish(msg);
        return -EBADMSG;
    }
    fdctx *ctx = fdctx_msg_fds(msg);
    size_t n = fdctx_count(ctx);
    for (size_t i = 0; i < n; i++) {
        int fd = fdctx_take(ctx, i);
        if (fd < 0) {
            fprintf(stderr, "fdctx: fdctx_take(%zu): %s\n", i, fdctx_last_error());
            fdctx_msg_finish(msg);
            return fd;
        }
        close(fd);
    }
    *nfds = n;
    r = fdctx_msg_finish(msg);
    if (r != 0) {
        fprintf(stderr, "fdctx: fdctx_msg_finish: %d unused fds after taking all\n", r);
        return r < 0 ? r : -EBADFD;
    }
    return 1;
}

static void rx_close(rx_conn *c)
{
    fdctx_conn_free(c->conn);
    free(c);
}
