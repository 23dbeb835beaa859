/* B3, what a GLib-based VMM uses: GSocket and g_socket_receive_message()
 * with GUnixFDMessage control messages, newline framing; every fd is closed
 * when its command completes. */
#include "rx_main.h"
#include <gio/gio.h>
#include <gio/gunixfdmessage.h>

struct rx_conn {
    GSocket *sock;
    struct linebuf lb;
};

static const char *rx_name(void) { return "B3"; }

static rx_conn *rx_open(int fd, const struct rx_cfg *cfg)
{
    (void)cfg;
    rx_conn *c = malloc(sizeof *c);
    if (!c || linebuf_init(&c->lb) < 0) {
        fprintf(stderr, "B3: out of memory\n");
        return NULL;
    }
    /* A GSocket owns (and closes) its fd: give it a duplicate. */
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    GError *err = NULL;
    c->sock = dfd < 0 ? NULL : g_socket_new_from_fd(dfd, &err);
    if (!c->sock) {
        fprintf(stderr, "B3: g_socket_new_from_fd: %s\n", err ? err->message : strerror(errno));
        return NULL;
    }
    return c;
}

static int rx_read(rx_conn *c)
{
    char *at;
    size_t room;
    int r = linebuf_room(&c->lb, &at, &room);
    if (r < 0)
        return r;
    GInputVector vec = { at, room };
    GSocketControlMessage **msgs = NULL;
    gint nmsgs = 0, flags = 0;
    GError *err = NULL;
    gssize n = g_socket_receive_message(c->sock, NULL, &vec, 1, &msgs, &nmsgs, &flags, NULL, &err);
    if (n < 0) {
        fprintf(stderr, "B3: g_socket_receive_message: %s\n", err->message);
        g_error_free(err);
        return -EIO;
    }
    for (gint i = 0; i < nmsgs; i++) {
        if (G_IS_UNIX_FD_MESSAGE(msgs[i])) {
            gint k = 0;
            gint *fds = g_unix_fd_message_steal_fds(G_UNIX_FD_MESSAGE(msgs[i]), &k);
            r = linebuf_add_fds(&c->lb, fds, (size_t)k);
            g_free(fds);
        }
        g_object_unref(msgs[i]);
    }
    g_free(msgs);
    if (r < 0)
        return r;
    c->lb.len += (size_t)n;
    return (int)(n > 0);
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
        int r = rx_read(c);
        if (r < 0)
            return r;
        if (r == 0) {
            linebuf_close_fds(&c->lb);
            return c->lb.len > c->lb.start ? -EPIPE : 0;
        }
    }
}

static void rx_close(rx_conn *c)
{
    g_object_unref(c->sock);
    linebuf_free(&c->lb);
    free(c);
}
