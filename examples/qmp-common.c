/*
 * qmp-common.c - the QMP commands of the event-loop examples; see
 * qmp-common.h. Replies are written with open_memstream(3); arguments are
 * read with fdctx's JSON Pointer accessors, so there is no JSON parser here.
 */
#define _GNU_SOURCE
#include "qmp-common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char qmp_greeting[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 0}, "
    "\"package\": \"fdctx event-loop example\"}, \"capabilities\": []}}\r\n";

struct node {
    char name[32];
    int fd;
    bool read_only;
    struct stat st;
};

static struct node nodes[32];
static size_t n_nodes;

fdctx_limits qmp_limits(void)
{
    fdctx_limits l = { 0 };
    const char *ms = getenv("EXAMPLE_MAX_HOLD_MS");
    if (ms && *ms)
        l.max_hold_ms = (uint32_t)strtoul(ms, NULL, 10);
    return l;
}

void qmp_close_nodes(void)
{
    for (size_t i = 0; i < n_nodes; i++)
        close(nodes[i].fd);
    n_nodes = 0;
}

/* Writes `s` as a JSON string: quotes, backslashes and control bytes escaped. */
static void put_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* A reply being written: its stream, and the request's id to echo. */
struct reply {
    FILE *out;
    char *text;
    size_t len;
    const char *id;  /* the id's JSON text, or NULL */
    size_t id_len;
};

static void reply_begin(struct reply *r, fdctx_msg *msg)
{
    r->text = NULL;
    r->out = open_memstream(&r->text, &r->len);
    if (!r->out) {
        perror("open_memstream");
        exit(1);
    }
    r->id = fdctx_msg_get_json(msg, "/id", &r->id_len);
}

static char *reply_end(struct reply *r)
{
    if (r->id) {
        fputs(", \"id\": ", r->out);
        fwrite(r->id, 1, r->id_len, r->out);
    }
    fputs("}\r\n", r->out);
    if (fclose(r->out) != 0) {
        perror("open_memstream");
        exit(1);
    }
    return r->text;
}

static char *error_reply(struct reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *error_reply(struct reply *r, const char *fmt, ...)
{
    char *desc = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&desc, fmt, ap) < 0)
        desc = NULL;
    va_end(ap);
    fputs("{\"error\": {\"class\": \"GenericError\", \"desc\": ", r->out);
    put_str(r->out, desc ? desc : "out of memory");
    fputs("}", r->out);
    free(desc);
    return reply_end(r);
}

/* The string at /arguments/NAME, or NULL when absent or not a string. */
static const char *arg(fdctx_msg *msg, const char *name)
{
    char ptr[64];
    size_t len;
    snprintf(ptr, sizeof ptr, "/arguments/%s", name);
    const char *s = fdctx_msg_get_str(msg, ptr, &len);
    return s && strlen(s) == len ? s : NULL;
}

static struct node *find(const char *name)
{
    for (size_t i = 0; i < n_nodes; i++)
        if (strcmp(nodes[i].name, name) == 0)
            return &nodes[i];
    return NULL;
}

static void put_node(FILE *out, const struct node *n)
{
    fputs("{\"node-name\": ", out);
    put_str(out, n->name);
    fprintf(out, ", \"inode\": %" PRIu64 ", \"size\": %" PRId64 ", \"read-only\": %s}",
            (uint64_t)n->st.st_ino, (int64_t)n->st.st_size, n->read_only ? "true" : "false");
}

static char *blockdev_add(struct reply *r, fdctx_msg *msg, const char *who)
{
    const char *name = arg(msg, "node-name"), *file = arg(msg, "filename");
    bool ro = false;
    if (!name || !file)
        return error_reply(r, "blockdev-add needs the strings 'node-name' and 'filename'");
    if (fdctx_msg_get_bool(msg, "/arguments/read-only", &ro) < 0 &&
        fdctx_msg_get_json(msg, "/arguments/read-only", NULL))
        return error_reply(r, "'read-only' must be a boolean");
    if (strlen(name) >= sizeof nodes[0].name || find(name))
        return error_reply(r, "Invalid or duplicate node-name '%s'", name);
    if (n_nodes == sizeof nodes / sizeof nodes[0])
        return error_reply(r, "Too many block nodes");

    /* "/dev/fd/N" is fd N sent with this very command; anything else is a path. */
    int fd = fdctx_open(fdctx_msg_fds(msg), file, ro ? O_RDONLY : O_RDWR, 0);
    if (fd < 0)
        return error_reply(r, "Could not open '%s': %s", file, fdctx_last_error());
    struct node *n = &nodes[n_nodes];
    if (fstat(fd, &n->st) < 0) {
        int e = errno;
        close(fd);
        return error_reply(r, "Could not stat '%s': %s", file, strerror(e));
    }
    snprintf(n->name, sizeof n->name, "%s", name);
    n->fd = fd;
    n->read_only = ro;
    n_nodes++;
    fprintf(stderr, "%s:    node '%s' holds fd %d (inode %" PRIu64 ")\n", who, name, fd,
            (uint64_t)n->st.st_ino);
    fputs("{\"return\": ", r->out);
    put_node(r->out, n);
    return reply_end(r);
}

static char *blockdev_del(struct reply *r, fdctx_msg *msg)
{
    const char *name = arg(msg, "node-name");
    struct node *n = name ? find(name) : NULL;
    if (!n)
        return error_reply(r, "No node named '%s'", name ? name : "");
    close(n->fd);
    *n = nodes[--n_nodes];
    fputs("{\"return\": {}", r->out);
    return reply_end(r);
}

static char *query_block(struct reply *r)
{
    fputs("{\"return\": [", r->out);
    for (size_t i = 0; i < n_nodes; i++) {
        if (i)
            fputs(", ", r->out);
        put_node(r->out, &nodes[i]);
    }
    fputs("]", r->out);
    return reply_end(r);
}

char *qmp_run(fdctx_msg *msg, struct qmp_session *s, const char *who)
{
    struct reply r;
    reply_begin(&r, msg);
    size_t nfds = fdctx_count(fdctx_msg_fds(msg));
    int status = fdctx_msg_status(msg);
    if (status < 0) {
        /* Malformed, too large, fds lost or held too long: answer and go on. */
        const char *why = fdctx_msg_error(msg) ? fdctx_msg_error(msg) : strerror(-status);
        fprintf(stderr, "%s: <- rejected (%zu fds): %s\n", who, nfds, why);
        return error_reply(&r, "%s", why);
    }
    const char *cmd = fdctx_msg_get_str(msg, "/execute", NULL);
    fprintf(stderr, "%s: <- %s, %zu fd%s\n", who, cmd ? cmd : "(no execute)", nfds, nfds == 1 ? "" : "s");
    if (!cmd)
        return error_reply(&r, "QMP input lacks a string member 'execute'");
    if (strcmp(cmd, "qmp_capabilities") == 0) {
        if (s->negotiated)
            return error_reply(&r, "Capabilities negotiation is already complete");
        s->negotiated = true;
        fputs("{\"return\": {}", r.out);
        return reply_end(&r);
    }
    if (!s->negotiated)
        return error_reply(&r, "Expecting capabilities negotiation with 'qmp_capabilities'");
    if (strcmp(cmd, "blockdev-add") == 0)
        return blockdev_add(&r, msg, who);
    if (strcmp(cmd, "blockdev-del") == 0)
        return blockdev_del(&r, msg);
    if (strcmp(cmd, "query-block") == 0)
        return query_block(&r);
    if (strcmp(cmd, "quit") == 0) {
        s->quit = true;
        fputs("{\"return\": {}", r.out);
        return reply_end(&r);
    }
    return error_reply(&r, "The command %s has not been found", cmd);
}
