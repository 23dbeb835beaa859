/*
 * qmp-common.h - the small QMP command set the event-loop examples share
 * (examples/epoll-monitor.c, examples/glib-monitor.c).
 *
 * Each example owns its loop and its reads; this file only runs commands.
 * A command's fds are the ones fdctx gave its message: "/dev/fd/N" in its
 * arguments is opened with fdctx_open() against that message's context.
 *
 * Commands:
 *   qmp_capabilities
 *   blockdev-add  {"node-name": S, "filename": S, "read-only": B}
 *                 opens the file (fdctx_open) and keeps the fd; returns
 *                 {"node-name": S, "inode": N, "size": N} so a client sees
 *                 which file it got (QEMU returns {})
 *   blockdev-del  {"node-name": S}   closes the node's fd
 *   query-block   [{"node-name", "inode", "size", "read-only"}, ...]
 *   quit
 */
#ifndef QMP_COMMON_H
#define QMP_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include <fdctx.h>

/* One client's protocol state. */
struct qmp_session {
    bool negotiated;
    bool quit;  /* the client asked the monitor to quit */
};

/* What a QMP server sends first, "\r\n"-terminated. */
extern const char qmp_greeting[];

/*
 * Runs one message fdctx delivered and returns its reply line (malloc'd,
 * "\r\n"-terminated, never NULL). A message with a bad status (malformed,
 * too many fds, fds held past max_hold_ms, ...) gets an error reply. The
 * caller finishes the message afterwards: fdctx_msg_finish() closes every
 * fd the command did not keep. `who` names the client in the log.
 */
char *qmp_run(fdctx_msg *msg, struct qmp_session *s, const char *who);

/* The limits every example connection uses: fdctx's defaults, except
 * max_hold_ms when EXAMPLE_MAX_HOLD_MS is set (tests shorten it). */
fdctx_limits qmp_limits(void);

/* Closes the fds of every block node (at exit). */
void qmp_close_nodes(void);

#endif
