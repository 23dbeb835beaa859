/*
 * minivmm - a minimal QMP monitor that shows how a hypervisor uses fdctx.
 *
 * Usage: minivmm [--confine] SOCKET_PATH
 *
 * Environment: MINIVMM_MAX_HOLD_MS, when set, is the connection's
 * max_hold_ms (how long a client's fds may be held for an unfinished
 * command; fdctx's default, 10 s, otherwise). Tests shorten it.
 *
 * It listens on a Unix stream socket, prints "ready" on stdout once
 * listening, and serves clients one after another until one sends "quit".
 *
 * --confine: once listening (and before anything else: it has no threads),
 * the monitor calls fdctx_confine() with an empty allow list and
 * FDCTX_CONFINE_REQUIRE, so that from then on it can open no file by path
 * at all: images reach it only as fds passed with commands ("/dev/fd/N"),
 * and a blockdev-add naming a file is refused by the kernel. Without
 * Landlock it refuses to start. Confined, it cannot remove its socket file
 * at exit either: that is left to whoever made the socket's directory.
 * Commands: qmp_capabilities, blockdev-add, query-block, blockdev-del, quit.
 *
 * Everything about file descriptors is fdctx's job:
 *
 *   - fdctx_conn_recv() frames each command and gives it its own context
 *     holding exactly the fds the client sent with that command;
 *   - the dispatcher makes that context current on the thread
 *     (fdctx_enter/fdctx_leave), so the block layer below can open
 *     "/dev/fd/N" with fdctx_open(NULL, ...) without being handed anything;
 *   - fdctx_msg_finish() closes every fd the command did not keep.
 *
 * Commands are read with the library's JSON Pointer accessors
 * (fdctx_msg_get_str/get_bool/get_json): no JSON parser here.  Replies are
 * written by hand with a small string escaper.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <fdctx.h>

#define MAX_NODES 64
#define MAX_NODE_NAME 31

/* ------------------------------------------------------------------ */
/* A growable byte buffer and a JSON string writer                     */
/* ------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "minivmm: out of memory\n");
            exit(1);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void buf_fmt(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    char *tmp = malloc((size_t)n + 1);
    if (!tmp) {
        fprintf(stderr, "minivmm: out of memory\n");
        exit(1);
    }
    va_start(ap, fmt);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, (size_t)n);
    free(tmp);
}

/* Appends s (UTF-8, n bytes) as a quoted JSON string. */
static void buf_json_str(struct buf *b, const char *s, size_t n)
{
    buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':  buf_add(b, "\\\"", 2); break;
        case '\\': buf_add(b, "\\\\", 2); break;
        case '\n': buf_add(b, "\\n", 2); break;
        case '\r': buf_add(b, "\\r", 2); break;
        case '\t': buf_add(b, "\\t", 2); break;
        case '\b': buf_add(b, "\\b", 2); break;
        case '\f': buf_add(b, "\\f", 2); break;
        default:
            if (c < 0x20 || c == 0x7f)
                buf_fmt(b, "\\u%04x", c);
            else
                buf_add(b, (const char *)&s[i], 1);
        }
    }
    buf_add(b, "\"", 1);
}

static void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------ */
/* The "block layer"                                                   */
/* ------------------------------------------------------------------ */

struct node {
    char name[MAX_NODE_NAME + 1];
    const char *format; /* "qcow2" or "raw" */
    int64_t virtual_size;
    bool read_only;
    int fd; /* owned by the node until blockdev-del */
};

static struct node nodes[MAX_NODES];
static size_t n_nodes;

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/*
 * Opens and probes an image.  This is the deep code of a VMM: it knows
 * nothing about monitors, sockets or contexts.  fdctx_open(NULL, ...) is its
 * open(2); for "/dev/fd/N" it resolves against the context of the command
 * being dispatched on this thread, for anything else it opens the path.
 *
 * Returns 0 and fills *out, or -1 with a message in *err.
 */
static int block_open(const char *filename, bool read_only, struct node *out, struct buf *err)
{
    int fd = fdctx_open(NULL, filename, read_only ? O_RDONLY : O_RDWR, 0);
    if (fd < 0) {
        const char *why = fdctx_last_error();
        buf_fmt(err, "Could not open '%s': %s", filename, strerror(-fd));
        if (why && *why)
            buf_fmt(err, " (%s)", why);
        return -1;
    }

    struct stat st;
    int64_t size;
    if (fstat(fd, &st) < 0) {
        buf_fmt(err, "Could not stat '%s': %s", filename, strerror(errno));
        goto fail;
    }
    if (S_ISREG(st.st_mode)) {
        size = st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(fd, 0, SEEK_END);
        if (end < 0) {
            buf_fmt(err, "Could not get the size of '%s': %s", filename, strerror(errno));
            goto fail;
        }
        size = end;
    } else {
        buf_fmt(err, "'%s' is not a regular file or a block device", filename);
        goto fail;
    }

    /* Probe the format through the fd itself. */
    unsigned char hdr[32];
    ssize_t n;
    do
        n = pread(fd, hdr, sizeof hdr, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        buf_fmt(err, "Could not read the image header of '%s': %s", filename, strerror(errno));
        goto fail;
    }
    if ((size_t)n == sizeof hdr && memcmp(hdr, "QFI\xfb", 4) == 0) {
        uint32_t version = be32(hdr + 4);
        uint64_t vsize = be64(hdr + 24);
        if (version < 2 || version > 3) {
            buf_fmt(err, "Unsupported qcow2 version %u in '%s'", version, filename);
            goto fail;
        }
        if (vsize > INT64_MAX) {
            buf_fmt(err, "Invalid qcow2 virtual size in '%s'", filename);
            goto fail;
        }
        out->format = "qcow2";
        out->virtual_size = (int64_t)vsize;
    } else {
        out->format = "raw";
        out->virtual_size = size;
    }
    out->read_only = read_only;
    out->fd = fd;
    return 0;

fail:
    close(fd);
    return -1;
}

static struct node *find_node(const char *name)
{
    for (size_t i = 0; i < n_nodes; i++)
        if (strcmp(nodes[i].name, name) == 0)
            return &nodes[i];
    return NULL;
}

static bool valid_node_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NODE_NAME || !isalpha((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.')
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* QMP                                                                 */
/* ------------------------------------------------------------------ */

struct request {
    fdctx_msg *msg;
    struct buf reply; /* the reply line, built before the message is finished */
    bool failed;      /* the reply is an error */
};

/* Appends ', "id": <id>' when the command has an id. */
static void add_id(struct request *rq)
{
    size_t len;
    const char *id = fdctx_msg_get_json(rq->msg, "/id", &len);
    if (id) {
        buf_str(&rq->reply, ", \"id\": ");
        buf_add(&rq->reply, id, len);
    }
}

/* {"return": <value>} where value is JSON text. */
static void reply_return(struct request *rq, const char *value)
{
    buf_str(&rq->reply, "{\"return\": ");
    buf_str(&rq->reply, value);
    add_id(rq);
    buf_str(&rq->reply, "}\r\n");
}

__attribute__((format(printf, 2, 3)))
static void reply_error(struct request *rq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *desc = malloc(n < 0 ? 1 : (size_t)n + 1);
    if (!desc) {
        fprintf(stderr, "minivmm: out of memory\n");
        exit(1);
    }
    desc[0] = '\0';
    if (n >= 0) {
        va_start(ap, fmt);
        vsnprintf(desc, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    rq->failed = true;
    buf_str(&rq->reply, "{\"error\": {\"class\": \"GenericError\", \"desc\": ");
    buf_json_str(&rq->reply, desc, strlen(desc));
    buf_str(&rq->reply, "}");
    add_id(rq);
    buf_str(&rq->reply, "}\r\n");
    free(desc);
}

/*
 * Reads /arguments/NAME as a string.  Returns 1 when present, 0 when absent
 * and optional, -1 after replying with an error.
 */
static int arg_str(struct request *rq, const char *name, bool required, const char **out)
{
    char ptr[64];
    snprintf(ptr, sizeof ptr, "/arguments/%s", name);
    size_t len;
    const char *s = fdctx_msg_get_str(rq->msg, ptr, &len);
    if (!s) {
        if (fdctx_msg_get_json(rq->msg, ptr, NULL)) {
            reply_error(rq, "Invalid parameter type for '%s', expected: string", name);
            return -1;
        }
        if (required) {
            reply_error(rq, "Parameter '%s' is missing", name);
            return -1;
        }
        return 0;
    }
    if (strlen(s) != len) {
        reply_error(rq, "Parameter '%s' must not contain a NUL character", name);
        return -1;
    }
    *out = s;
    return 1;
}

/* Reads /arguments/NAME as a boolean, same returns as arg_str. */
static int arg_bool(struct request *rq, const char *name, bool *out)
{
    char ptr[64];
    snprintf(ptr, sizeof ptr, "/arguments/%s", name);
    int r = fdctx_msg_get_bool(rq->msg, ptr, out);
    if (r == 0)
        return 1;
    if (r == -ENOENT)
        return 0;
    reply_error(rq, "Invalid parameter type for '%s', expected: boolean", name);
    return -1;
}

static void cmd_blockdev_add(struct request *rq)
{
    const char *name, *driver, *filename;
    bool read_only = false;
    if (arg_str(rq, "node-name", true, &name) < 0 ||
        arg_str(rq, "driver", true, &driver) < 0 ||
        arg_str(rq, "filename", true, &filename) < 0 ||
        arg_bool(rq, "read-only", &read_only) < 0)
        return;
    if (strcmp(driver, "file") != 0) {
        reply_error(rq, "Driver '%s' is not supported (only 'file')", driver);
        return;
    }
    if (!valid_node_name(name)) {
        reply_error(rq, "Invalid node-name: '%s'", name);
        return;
    }
    if (find_node(name)) {
        reply_error(rq, "Duplicate nodes with node-name='%s'", name);
        return;
    }
    if (n_nodes == MAX_NODES) {
        reply_error(rq, "Too many block nodes (at most %d)", MAX_NODES);
        return;
    }

    struct node node = { .fd = -1 };
    struct buf err = { 0 };
    if (block_open(filename, read_only, &node, &err) < 0) {
        reply_error(rq, "%s", err.p);
        buf_free(&err);
        return;
    }
    snprintf(node.name, sizeof node.name, "%s", name);
    nodes[n_nodes++] = node;
    fprintf(stderr, "minivmm:    node '%s': %s, %lld bytes, %s, fd %d\n", node.name, node.format,
            (long long)node.virtual_size, read_only ? "read-only" : "read-write", node.fd);
    reply_return(rq, "{}");
}

static void cmd_blockdev_del(struct request *rq)
{
    const char *name;
    if (arg_str(rq, "node-name", true, &name) < 0)
        return;
    struct node *node = find_node(name);
    if (!node) {
        reply_error(rq, "Failed to find node with node-name='%s'", name);
        return;
    }
    close(node->fd);
    size_t i = (size_t)(node - nodes);
    memmove(&nodes[i], &nodes[i + 1], (n_nodes - i - 1) * sizeof nodes[0]);
    n_nodes--;
    reply_return(rq, "{}");
}

static void cmd_query_block(struct request *rq)
{
    struct buf list = { 0 };
    buf_str(&list, "[");
    for (size_t i = 0; i < n_nodes; i++) {
        buf_str(&list, i ? ", {\"node-name\": " : "{\"node-name\": ");
        buf_json_str(&list, nodes[i].name, strlen(nodes[i].name));
        buf_fmt(&list, ", \"format\": \"%s\", \"virtual-size\": %lld, \"read-only\": %s}",
                nodes[i].format, (long long)nodes[i].virtual_size,
                nodes[i].read_only ? "true" : "false");
    }
    buf_str(&list, "]");
    reply_return(rq, list.p);
    buf_free(&list);
}

struct session {
    bool negotiated;
    bool quit;
};

static void dispatch(struct request *rq, struct session *s, const char *cmd)
{
    const char *args = fdctx_msg_get_json(rq->msg, "/arguments", NULL);
    if (!cmd) {
        if (fdctx_msg_get_json(rq->msg, "/execute", NULL))
            reply_error(rq, "QMP input member 'execute' must be a string");
        else
            reply_error(rq, "QMP input lacks member 'execute'");
        return;
    }
    if (args && args[0] != '{') {
        reply_error(rq, "QMP input member 'arguments' must be an object");
        return;
    }
    if (strcmp(cmd, "qmp_capabilities") == 0) {
        if (s->negotiated) {
            reply_error(rq, "Capabilities negotiation is already complete, command ignored");
            return;
        }
        s->negotiated = true;
        reply_return(rq, "{}");
        return;
    }
    if (!s->negotiated) {
        reply_error(rq, "Expecting capabilities negotiation with 'qmp_capabilities'");
        return;
    }
    if (strcmp(cmd, "blockdev-add") == 0)
        cmd_blockdev_add(rq);
    else if (strcmp(cmd, "blockdev-del") == 0)
        cmd_blockdev_del(rq);
    else if (strcmp(cmd, "query-block") == 0)
        cmd_query_block(rq);
    else if (strcmp(cmd, "quit") == 0) {
        s->quit = true;
        reply_return(rq, "{}");
    } else
        reply_error(rq, "The command %s has not been found", cmd);
}

/* ------------------------------------------------------------------ */
/* The monitor loop                                                    */
/* ------------------------------------------------------------------ */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A printable copy of the command name for the log. */
static void log_name(char *dst, size_t size, const char *cmd)
{
    if (!cmd) {
        snprintf(dst, size, "(no command name)");
        return;
    }
    size_t i = 0;
    for (; cmd[i] && i + 1 < size; i++)
        dst[i] = isprint((unsigned char)cmd[i]) ? cmd[i] : '?';
    dst[i] = '\0';
}

/* Serves one client until it disconnects; returns true after "quit". */
static bool serve(int client)
{
    static const char greeting[] =
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 1, \"major\": 0}, "
        "\"package\": \"minivmm (fdctx demo)\"}, \"capabilities\": []}}\r\n";
    if (write_all(client, greeting, sizeof greeting - 1) < 0) {
        fprintf(stderr, "minivmm: client left before the greeting\n");
        return false;
    }

    fdctx_limits limits = { 0 };
    const char *hold = getenv("MINIVMM_MAX_HOLD_MS");
    if (hold && *hold)
        limits.max_hold_ms = (uint32_t)strtoul(hold, NULL, 10);
    fdctx_conn *conn = fdctx_conn_new(client, FDCTX_FRAMING_JSON, &limits);
    if (!conn) {
        fprintf(stderr, "minivmm: fdctx_conn_new: %s\n", fdctx_last_error());
        return false;
    }

    struct session s = { 0 };
    fdctx_msg *msg;
    int r;
    while (!s.quit && (r = fdctx_conn_recv(conn, &msg)) == 1) {
        struct request rq = { .msg = msg };
        fdctx *ctx = fdctx_msg_fds(msg);
        size_t nfds = fdctx_count(ctx);
        char name[64];
        const char *cmd = fdctx_msg_get_str(msg, "/execute", NULL);
        log_name(name, sizeof name, cmd);

        int status = fdctx_msg_status(msg);
        if (status < 0) {
            const char *why = fdctx_msg_error(msg);
            /* A rejected message holds no fds: fdctx closed any sent with it. */
            fprintf(stderr, "minivmm: <- %s, rejected, its fds closed: %s\n", name,
                    why ? why : strerror(-status));
            reply_error(&rq, "%s", why ? why : strerror(-status));
        } else {
            fprintf(stderr, "minivmm: <- %s, %zu fd%s\n", name, nfds, nfds == 1 ? "" : "s");
            /* The block layer finds this command's fds through the thread. */
            fdctx *prev = fdctx_enter(ctx);
            dispatch(&rq, &s, cmd);
            fdctx_leave(prev);
        }

        /* Close every fd the command did not keep, then answer: by the time
         * the client reads the reply, the monitor holds only what it keeps. */
        int unused = fdctx_msg_finish(msg);
        /* The block layer keeps a duplicate of what it opens, never the
         * command's own fd: finishing closes every fd of the command. */
        size_t used = unused >= 0 && (size_t)unused <= nfds ? nfds - (size_t)unused : 0;
        if (status == 0 && rq.failed && used > 0)
            fprintf(stderr, "minivmm:    %zu fd%s used by the failed command, kept by nothing: closed\n",
                    used, used == 1 ? "" : "s");
        if (unused > 0)
            fprintf(stderr, "minivmm:    %d fd%s passed but never used: closed\n", unused,
                    unused == 1 ? "" : "s");
        else if (unused < 0)
            fprintf(stderr, "minivmm:    fdctx_msg_finish: %s\n", strerror(-unused));

        if (rq.reply.len && write_all(client, rq.reply.p, rq.reply.len) < 0)
            fprintf(stderr, "minivmm: client left before its reply\n");
        buf_free(&rq.reply);

        if (s.quit) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            struct buf ev = { 0 };
            buf_fmt(&ev,
                    "{\"timestamp\": {\"seconds\": %lld, \"microseconds\": %ld}, \"event\": \"SHUTDOWN\", "
                    "\"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n",
                    (long long)ts.tv_sec, ts.tv_nsec / 1000);
            write_all(client, ev.p, ev.len);
            buf_free(&ev);
        }
    }
    if (!s.quit) {
        if (r == 0)
            fprintf(stderr, "minivmm: client disconnected\n");
        else
            fprintf(stderr, "minivmm: connection dropped: %s\n", strerror(-r));
    }
    /* Closes the fds of a command cut off half way, if any. */
    fdctx_conn_free(conn);
    return s.quit;
}

/* True when path is a socket file that nothing listens on any more. */
static bool stale_socket(const struct sockaddr_un *addr)
{
    struct stat st;
    if (lstat(addr->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return false;
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return false;
    bool refused = connect(probe, (const struct sockaddr *)addr, sizeof *addr) < 0 && errno == ECONNREFUSED;
    close(probe);
    return refused;
}

static int listen_on(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "minivmm: socket path too long: %s\n", path);
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("minivmm: socket");
        return -1;
    }
    int r = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    if (r < 0 && errno == EADDRINUSE && stale_socket(&addr)) {
        /* left behind by a monitor that is gone */
        unlink(path);
        r = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    }
    if (r < 0 || listen(fd, 16) < 0) {
        fprintf(stderr, "minivmm: cannot listen on %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    bool confine = argc == 3 && strcmp(argv[1], "--confine") == 0;
    if (argc != 2 + confine || argv[argc - 1][0] == '-') {
        fprintf(stderr, "usage: minivmm [--confine] SOCKET_PATH\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    const char *path = argv[argc - 1];
    int lfd = listen_on(path);
    if (lfd < 0)
        return 1;
    if (confine) {
        /* Nothing allowed by path; fail rather than run unconfined. */
        int abi = fdctx_confine(NULL, 0, FDCTX_CONFINE_REQUIRE);
        if (abi < 0) {
            fprintf(stderr, "minivmm: cannot confine: %s\n", fdctx_last_error());
            close(lfd);
            unlink(path);
            return 1;
        }
        fprintf(stderr, "minivmm: confined by Landlock (ABI %d): no file opens by path, "
                        "images arrive as fds\n", abi);
    }
    printf("ready\n");
    fflush(stdout);
    fprintf(stderr, "minivmm: listening on %s (pid %ld)\n", path, (long)getpid());

    bool quit = false;
    while (!quit) {
        int client = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("minivmm: accept");
            break;
        }
        fprintf(stderr, "minivmm: client connected\n");
        quit = serve(client);
        close(client);
    }

    for (size_t i = 0; i < n_nodes; i++)
        close(nodes[i].fd);
    n_nodes = 0;
    close(lfd);
    if (unlink(path) < 0 && confine)
        fprintf(stderr, "minivmm: confined, so %s stays (%s): its directory's owner removes it\n",
                path, strerror(errno));
    fprintf(stderr, "minivmm: quit\n");
    return quit ? 0 : 1;
}
