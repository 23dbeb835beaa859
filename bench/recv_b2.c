/* B2, what a C VMM author writes: B1's recvmsg loop plus parsing every
 * command with jansson (json_loadb), as a QMP monitor would before
 * dispatching it. */
#include "rx_main.h"
#include <jansson.h>

struct rx_conn {
    int fd;
    struct linebuf lb;
};

static const char *rx_name(void) { return "B2"; }

static rx_conn *rx_open(int fd, const struct rx_cfg *cfg)
{
    (void)cfg;
    rx_conn *c = malloc(sizeof *c);
    if (!c || linebuf_init(&c->lb) < 0) {
        fprintf(stderr, "B2: out of memory\n");
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
            json_error_t err;
            json_t *cmd = json_loadb(line, n, 0, &err);
            *nfds = c->lb.nfds;
            linebuf_close_fds(&c->lb);
            if (!cmd || !json_is_object(cmd)) {
                fprintf(stderr, "B2: bad command: %s\n", cmd ? "not an object" : err.text);
                json_decref(cmd);
                return -EBADMSG;
            }
            json_decref(cmd);
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
