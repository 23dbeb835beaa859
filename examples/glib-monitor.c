/*
 * glib-monitor - a QMP monitor on a GLib main loop that reads its clients
 * with GLib itself and feeds fdctx: the shape of a VMM whose I/O layer owns
 * the socket (QEMU's chardevs, any GSocket program).
 *
 * Usage: glib-monitor SOCKET_PATH   (prints "ready" once listening;
 *        EXAMPLE_MAX_HOLD_MS shortens fdctx's 10 s hold deadline)
 *
 * The shape, per client:
 *   - a GSocket source on the listening socket accepts each client (the
 *     GSocket flavour of g_unix_fd_add(); a GSocketService works as well,
 *     but its accept machinery leaves GLib-internal eventfds open at exit,
 *     which valgrind --track-fds reports); fdctx_conn_new_fed() gives each
 *     client a connection that fdctx never reads;
 *   - on G_IO_IN, one g_socket_receive_message() (one recvmsg(2)) brings
 *     bytes and, in a GUnixFDMessage, the fds that came with them; exactly
 *     that read goes to one fdctx_conn_feed(), with FDCTX_FEED_FDS_LOST
 *     when the read reported MSG_CTRUNC and FDCTX_FEED_END at end of
 *     stream. The fds belong to fdctx from that call on;
 *   - fdctx_conn_recv() then returns every command completed so far, each
 *     with its own fds, until -EAGAIN;
 *   - a timer set from fdctx_conn_deadline_ms() (g_timeout_add()'s source,
 *     on the loop's own context) calls fdctx_conn_recv() when fds have been
 *     held too long for an unfinished command: the command is answered
 *     (-ETIMEDOUT) and its fds closed.
 * Replies are queued and written as the socket takes them; a client that
 * never reads them is dropped once 1 MiB is waiting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gunixfdmessage.h>
#include <gio/gunixsocketaddress.h>

#include <fdctx.h>

#include "qmp-common.h"

#define MAX_PENDING_OUTPUT (1 << 20)

struct client {
    GSocket *socket;
    fdctx_conn *conn;
    struct qmp_session qmp;
    char name[32];
    GSource *reader, *writer;
    GSource *deadline; /* the hold deadline's timer, or NULL */
    GString *out;      /* replies not yet written */
};

static GMainLoop *loop;
static GList *clients;

static void stop_timer(struct client *c)
{
    if (c->deadline) {
        g_source_destroy(c->deadline);
        g_source_unref(c->deadline);
        c->deadline = NULL;
    }
}

static void client_free(struct client *c)
{
    fprintf(stderr, "%s: gone\n", c->name);
    clients = g_list_remove(clients, c);
    stop_timer(c);
    g_source_destroy(c->reader);
    g_source_unref(c->reader);
    if (c->writer) {
        g_source_destroy(c->writer);
        g_source_unref(c->writer);
    }
    fdctx_conn_free(c->conn);  /* closes the fds of a command cut off half way */
    g_socket_close(c->socket, NULL);
    g_object_unref(c->socket);
    g_string_free(c->out, TRUE);
    g_free(c);
}

static gboolean on_writable(GSocket *socket, GIOCondition cond, gpointer data);
static gboolean on_deadline(gpointer data);

/* Writes what the socket takes now; a G_IO_OUT source waits for the rest.
 * Returns FALSE when the client is gone or reads too little. */
static gboolean flush(struct client *c)
{
    while (c->out->len) {
        GError *err = NULL;
        gssize n = g_socket_send(c->socket, c->out->str, c->out->len, NULL, &err);
        if (n < 0) {
            gboolean later = g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
            g_error_free(err);
            if (!later)
                return FALSE;
            break;
        }
        g_string_erase(c->out, 0, n);
    }
    if (c->out->len && !c->writer) {
        c->writer = g_socket_create_source(c->socket, G_IO_OUT, NULL);
        g_source_set_callback(c->writer, G_SOURCE_FUNC(on_writable), c, NULL);
        g_source_attach(c->writer, g_main_loop_get_context(loop));
    } else if (!c->out->len && c->writer) {
        g_source_destroy(c->writer);
        g_source_unref(c->writer);
        c->writer = NULL;
    }
    return c->out->len <= MAX_PENDING_OUTPUT;
}

/* Serves every command fed so far, then sets the deadline timer. Returns
 * FALSE when the client is done. */
static gboolean serve(struct client *c)
{
    fdctx_msg *msg;
    int r;
    while ((r = fdctx_conn_recv(c->conn, &msg)) == 1) {
        char *reply = qmp_run(msg, &c->qmp, c->name);
        fdctx_msg_finish(msg);
        g_string_append(c->out, reply);
        free(reply);
        if (c->qmp.quit)
            g_main_loop_quit(loop);
    }
    /* g_timeout_add(ms, ...), on this loop's context rather than the default one */
    stop_timer(c);
    int ms = fdctx_conn_deadline_ms(c->conn);
    if (ms >= 0) {
        c->deadline = g_timeout_source_new((guint)ms);
        g_source_set_callback(c->deadline, on_deadline, c, NULL);
        g_source_attach(c->deadline, g_main_loop_get_context(loop));
    }
    return flush(c) && r == -EAGAIN;
}

static gboolean on_deadline(gpointer data)
{
    struct client *c = data;
    stop_timer(c);  /* fdctx_conn_recv() below expires what is due */
    if (!serve(c))
        client_free(c);
    return G_SOURCE_REMOVE;
}

static gboolean on_writable(GSocket *socket, GIOCondition cond, gpointer data)
{
    struct client *c = data;
    (void)socket;
    (void)cond;
    if (!flush(c))
        client_free(c);
    return G_SOURCE_CONTINUE;  /* flush() or client_free() removed it if done */
}

/* One read of GLib's, fed to fdctx exactly as it came. */
static gboolean on_readable(GSocket *socket, GIOCondition cond, gpointer data)
{
    struct client *c = data;
    char buf[4096];
    GInputVector vec = { buf, sizeof buf };
    GSocketControlMessage **cmsgs = NULL;
    gint ncmsgs = 0, flags = 0;
    GError *err = NULL;
    (void)cond;

    gssize n = g_socket_receive_message(socket, NULL, &vec, 1, &cmsgs, &ncmsgs, &flags, NULL, &err);
    if (n < 0) {
        if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
            fprintf(stderr, "%s: %s\n", c->name, err->message);
            client_free(c);  /* destroys this source too */
        }
        g_error_free(err);
        return G_SOURCE_CONTINUE;
    }

    GArray *fds = g_array_new(FALSE, FALSE, sizeof(int));
    for (gint i = 0; i < ncmsgs; i++) {
        if (G_IS_UNIX_FD_MESSAGE(cmsgs[i])) {
            gint nfds;
            gint *got = g_unix_fd_message_steal_fds(G_UNIX_FD_MESSAGE(cmsgs[i]), &nfds);
            g_array_append_vals(fds, got, nfds);
            g_free(got);
        }
        g_object_unref(cmsgs[i]);
    }
    g_free(cmsgs);

    unsigned feed_flags = (flags & MSG_CTRUNC ? FDCTX_FEED_FDS_LOST : 0) | (n == 0 ? FDCTX_FEED_END : 0);
    int r = fdctx_conn_feed(c->conn, buf, (size_t)n, (const int *)(void *)fds->data, fds->len, feed_flags);
    g_array_free(fds, TRUE);  /* the fds themselves are fdctx's now */
    if (r < 0)
        fprintf(stderr, "%s: fdctx_conn_feed: %s\n", c->name, fdctx_last_error());
    if (r < 0 || !serve(c))
        client_free(c);
    return G_SOURCE_CONTINUE;
}

static gboolean on_incoming(GSocket *listener, GIOCondition cond, gpointer data)
{
    static unsigned serial;
    fdctx_limits limits = qmp_limits();
    GError *err = NULL;
    (void)cond;
    (void)data;

    GSocket *socket = g_socket_accept(listener, NULL, &err);
    if (!socket) {
        if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            fprintf(stderr, "glib-monitor: accept: %s\n", err->message);
        g_error_free(err);
        return G_SOURCE_CONTINUE;
    }
    struct client *c = g_new0(struct client, 1);
    c->conn = fdctx_conn_new_fed(FDCTX_FRAMING_JSON, &limits);
    if (!c->conn) {
        fprintf(stderr, "glib-monitor: %s\n", fdctx_last_error());
        g_object_unref(socket);
        g_free(c);
        return G_SOURCE_CONTINUE;
    }
    c->socket = socket;
    g_socket_set_blocking(socket, FALSE);
    snprintf(c->name, sizeof c->name, "client %u", ++serial);
    c->out = g_string_new(qmp_greeting);
    c->reader = g_socket_create_source(socket, G_IO_IN, NULL);
    g_source_set_callback(c->reader, G_SOURCE_FUNC(on_readable), c, NULL);
    g_source_attach(c->reader, g_main_loop_get_context(loop));
    clients = g_list_prepend(clients, c);
    fprintf(stderr, "%s: connected\n", c->name);
    if (!flush(c))
        client_free(c);
    return G_SOURCE_CONTINUE;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: glib-monitor SOCKET_PATH\n");
        return 2;
    }
    /* A context of our own, freed at the end, so nothing stays open at exit;
     * every source below is attached to it. */
    GMainContext *ctx = g_main_context_new();
    loop = g_main_loop_new(ctx, FALSE);

    GError *err = NULL;
    GSocket *listener = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, &err);
    GSocketAddress *addr = g_unix_socket_address_new(argv[1]);
    if (!listener || !g_socket_bind(listener, addr, FALSE, &err) || !g_socket_listen(listener, &err)) {
        fprintf(stderr, "glib-monitor: cannot listen on %s: %s\n", argv[1], err->message);
        return 1;
    }
    g_object_unref(addr);
    g_socket_set_blocking(listener, FALSE);
    GSource *accepting = g_socket_create_source(listener, G_IO_IN, NULL);
    g_source_set_callback(accepting, G_SOURCE_FUNC(on_incoming), NULL, NULL);
    g_source_attach(accepting, ctx);
    printf("ready\n");
    fflush(stdout);

    g_main_loop_run(loop);

    /* quit: the last replies go out while the clients are still there */
    for (GList *l = clients; l; l = l->next)
        flush(l->data);
    while (clients)
        client_free(clients->data);
    qmp_close_nodes();
    g_source_destroy(accepting);
    g_source_unref(accepting);
    g_socket_close(listener, NULL);
    g_object_unref(listener);
    g_main_loop_unref(loop);
    g_main_context_unref(ctx);
    unlink(argv[1]);
    fprintf(stderr, "glib-monitor: quit\n");
    return 0;
}
