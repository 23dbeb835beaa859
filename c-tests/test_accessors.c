/*
 * What a failed accessor leaves behind, as the header promises: a VMM that
 * reads an optional argument into a variable holding its default must find
 * the default still there when the argument is absent, malformed or named
 * by a mistyped pointer; and it can always ask fdctx_last_error() why.
 */
#include "harness.h"

#include <stdbool.h>

/* One command fed to a fed connection, its message returned (or NULL). */
static fdctx_conn *conn;

static fdctx_msg *one_message(const char *text)
{
    fdctx_msg *msg = NULL;
    conn = fdctx_conn_new_fed(FDCTX_FRAMING_JSON, NULL);
    CHECK(conn != NULL);
    if (!conn)
        return NULL;
    CHECK_OK(fdctx_conn_feed(conn, text, strlen(text), NULL, 0, 0));
    CHECK_EQ(fdctx_conn_recv(conn, &msg), 1);
    return msg;
}

static void done(fdctx_msg *msg)
{
    if (msg)
        CHECK_EQ(fdctx_msg_finish(msg), 0);
    fdctx_conn_free(conn);
    conn = NULL;
}

/* fdctx_last_error() tells this failure: it names the pointer looked up. */
static void check_error_names(const char *pointer)
{
    const char *e = fdctx_last_error();
    if (!e || !strstr(e, pointer))
        h_fail(__FILE__, __LINE__, "fdctx_last_error() \"%s\" does not name %s", e ? e : "(null)", pointer);
}

/* A failed fdctx_msg_get_int or _get_bool never writes *out. */
static void test_failed_scalar_lookup_keeps_the_callers_default(void)
{
    fdctx_msg *msg = one_message("{\"execute\": \"x\", \"arguments\": {\"size\": 42, \"ro\": true, "
                                 "\"name\": \"a\", \"half\": 1.5}}\n");
    if (!msg) {
        done(msg);
        return;
    }
    const char *int_misses[] = { "/arguments/absent", "/arguments/name", "/arguments/half",
                                 "/arguments/ro" };
    for (size_t i = 0; i < sizeof int_misses / sizeof *int_misses; i++) {
        int64_t v = 4096;
        CHECK_NEG(fdctx_msg_get_int(msg, int_misses[i], &v));
        CHECK_EQ(v, 4096);
        check_error_names(int_misses[i]);
    }
    const char *bool_misses[] = { "/arguments/absent", "/arguments/size", "/arguments/name" };
    for (size_t i = 0; i < sizeof bool_misses / sizeof *bool_misses; i++) {
        bool b = false;
        CHECK_NEG(fdctx_msg_get_bool(msg, bool_misses[i], &b));
        CHECK(b == false);
        check_error_names(bool_misses[i]);
    }
    /* NULL message or pointer: -EINVAL, *out untouched, the text set. */
    int64_t v = 7;
    CHECK_ERR(fdctx_msg_get_int(NULL, "/arguments/size", &v), EINVAL);
    CHECK_EQ(v, 7);
    CHECK(fdctx_last_error()[0] != '\0');
    CHECK_ERR(fdctx_msg_get_int(msg, NULL, &v), EINVAL);
    CHECK_EQ(v, 7);
    done(msg);
}

/* A pointer without its leading '/' is a typo, not a lookup from the root:
 * it finds nothing (-ENOENT), however well the rest of it would match. */
static void test_pointer_without_leading_slash_finds_nothing(void)
{
    fdctx_msg *msg = one_message("{\"execute\": \"x\", \"arguments\": {\"size\": 42, \"ro\": true}}\n");
    if (!msg) {
        done(msg);
        return;
    }
    int64_t v = -1;
    bool b = false;
    size_t len = 99;
    CHECK_ERR(fdctx_msg_get_int(msg, "arguments/size", &v), ENOENT);
    CHECK_EQ(v, -1);
    check_error_names("arguments/size");
    CHECK_ERR(fdctx_msg_get_bool(msg, "arguments/ro", &b), ENOENT);
    CHECK(b == false);
    CHECK(fdctx_msg_get_str(msg, "execute", &len) == NULL);
    CHECK_EQ(len, 99);
    CHECK(fdctx_msg_get_json(msg, "arguments", &len) == NULL);
    CHECK_EQ(len, 99);
    /* With it, the same lookups succeed. */
    CHECK_EQ(fdctx_msg_get_int(msg, "/arguments/size", &v), 0);
    CHECK_EQ(v, 42);
    done(msg);
}

/* fdctx_msg_data(NULL, &len) returns NULL and leaves len alone. */
static void test_data_of_null_message_leaves_len(void)
{
    size_t len = 12345;
    CHECK(fdctx_msg_data(NULL, &len) == NULL);
    CHECK_EQ(len, 12345);
    CHECK(fdctx_last_error()[0] != '\0');
    CHECK(fdctx_msg_get_str(NULL, "/execute", &len) == NULL);
    CHECK_EQ(len, 12345);
}

int main(void)
{
    h_init();
    RUN(test_failed_scalar_lookup_keeps_the_callers_default);
    RUN(test_pointer_without_leading_slash_finds_nothing);
    RUN(test_data_of_null_message_leaves_len);
    return h_finish();
}
