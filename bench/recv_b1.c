/* B1, the floor: a hand-written recvmsg(2) loop with SCM_RIGHTS parsing and
 * newline framing; every fd is closed when its command completes. No JSON
 * parsing: this is the cost of the system calls themselves. */
#include "rx_main.h"

struct rx_conn {
    int fd;
    struct linebuf lb;
};

static const char *rx_name(void) { return "B1"; }

static rx_conn *rx_open(int fd, const struct rx_cfg *cfg)
{
    (void)cfg;
    rx_conn *c = malloc(sizeof *c);
    if (!c || linebuf_init(&c->lb) < 0) {
        fprintf(stderr, "B1: out of memory\n");
        return NULL;
    }
    c->fd = fd;
    return c;
}

static int rx_next(rx_conn *c, size_t *nfds)
{
    const char *line;
    size_t n;
    for (;;) {
        if (linebuf_line(&c->lb, &line, &n)) {
            *nfds = c->lb.nfds;
            linebuf_close_fds(&c->lb);
            return 1;
        }
        ssize_t r = linebuf_recvmsg(&c->lb, c->fd);
        if (r < 0)
            return (int)r;
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
