/* B1, B1s and B2, one source.
 *
 * B1, the floor: a hand-written recvmsg(2) loop with SCM_RIGHTS parsing and
 * newline framing; every fd is closed when its command completes. No JSON
 * parsing: this is the cost of the system calls themselves.
 *
 * B1s (built with -DWITH_SO_TYPE), the floor that keeps fdctx's promise to
 * refuse the client's own socket end: B1 plus one getsockopt(SO_TYPE) per
 * received fd, the question that tells a socket from any other file
 * without reaching a file system. Only a socket would then need its inode
 * compared with the peer's; the workloads send /dev/null, so the one
 * system call per fd is the whole cost here, as it is in fdctx.
 *
 * B2 (built with -DWITH_JANSSON), what a C VMM author writes: the same loop
 * plus parsing every command with jansson (json_loadb), as a QMP monitor
 * would before dispatching it. */
#include "rx_main.h"
#ifdef WITH_JANSSON
#include <jansson.h>
#define RX_NAME "B2"
#elif defined(WITH_SO_TYPE)
#define RX_NAME "B1s"
#else
#define RX_NAME "B1"
#endif

struct rx_conn {
    int fd;
    struct linebuf lb;
};

static const char *rx_name(void) { return RX_NAME; }

static rx_conn *rx_open(int fd, const struct rx_cfg *cfg)
{
    (void)cfg;
    rx_conn *c = malloc(sizeof *c);
    if (!c || linebuf_init(&c->lb) < 0) {
        fprintf(stderr, RX_NAME ": out of memory\n");
        return NULL;
    }
    c->fd = fd;
    return c;
}

/* B2's work on one command: parse it; B1 does nothing. */
static int parse_command(const char *line, size_t n)
{
#ifdef WITH_JANSSON
    json_error_t err;
    json_t *cmd = json_loadb(line, n, 0, &err);
    if (!cmd || !json_is_object(cmd)) {
        fprintf(stderr, "B2: bad command: %s\n", cmd ? "not an object" : err.text);
        json_decref(cmd);
        return -EBADMSG;
    }
    json_decref(cmd);
#else
    (void)line;
    (void)n;
#endif
    return 0;
}

/* B1s's work on the fds of one read: is each a socket? A socket would be
 * compared with the connection's peer; B1 and B2 do nothing. */
static void check_fds(const int *fds, size_t n)
{
#ifdef WITH_SO_TYPE
    for (size_t i = 0; i < n; i++) {
        int type;
        socklen_t len = sizeof type;
        if (getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &type, &len) == 0) {
            fprintf(stderr, "B1s: a socket was received; the workloads send none\n");
            abort();
        }
    }
#else
    (void)fds;
    (void)n;
#endif
}

static int rx_next(rx_conn *c, size_t *nfds)
{
    const char *line;
    size_t n;
    for (;;) {
        if (linebuf_line(&c->lb, &line, &n)) {
            int r = parse_command(line, n);
            *nfds = c->lb.nfds;
            linebuf_close_fds(&c->lb);
            return r < 0 ? r : 1;
        }
        size_t had = c->lb.nfds;
        ssize_t r = linebuf_recvmsg(&c->lb, c->fd);
        if (r < 0)
            return (int)r;
        check_fds(c->lb.fds + had, c->lb.nfds - had);
        if (r == 0) {
            linebuf_close_fds(&c->lb);
            return c->lb.len > c->lb.start ? -EPIPE : 0;
        }
    }
}

static void rx_close(rx_conn *c)
{
    linebuf_free(&c->lb);
    free(c);
}
