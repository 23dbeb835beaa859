/*
 * The per-command fd context from C: new, adopt, count, get, take, dup,
 * finish, the /dev/fd/N grammar of fdctx_index, NULL arguments and
 * fdctx_last_error.
 */
#include "harness.h"

#include <pthread.h>

static void test_new_finish_empty(void)
{
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    CHECK_EQ(fdctx_count(ctx), 0);
    CHECK_EQ(fdctx_finish(ctx), 0);
}

/* Borrowed fds are the adopted ones and stay open until finish, which
 * closes every fd the context still owns. */
static void test_adopt_get_finish_closes(void)
{
    int fds[3];
    int i;
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    fds[0] = h_pipe_with("zero");
    fds[1] = h_pipe_with("one");
    fds[2] = h_pipe_with("two");
    CHECK_OK(fdctx_adopt(ctx, fds, 3));
    CHECK_EQ(fdctx_count(ctx), 3);
    /* Index 0 is left alone: finish must count it as never used. */
    for (i = 1; i < 3; i++)
        CHECK_EQ(fdctx_get(ctx, (size_t)i), fds[i]);
    /* Borrowing twice is fine and gives the same fd. */
    CHECK_EQ(fdctx_get(ctx, 1), fds[1]);
    CHECK(h_reads(fdctx_get(ctx, 2), "two"));
    /* Adopting more appends, in order. */
    {
        int more = h_pipe_with("three");
        CHECK_OK(fdctx_adopt(ctx, &more, 1));
        CHECK_EQ(fdctx_count(ctx), 4);
        CHECK_EQ(fdctx_get(ctx, 3), more);
        /* Only index 0 was never used. */
        CHECK_EQ(fdctx_finish(ctx), 1);
        CHECK(!h_is_open(more));
    }
    for (i = 0; i < 3; i++)
        CHECK(!h_is_open(fds[i]));
}

/* take moves ownership: finish leaves it open; a second take fails. */
static void test_take(void)
{
    int fds[2];
    int t;
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    fds[0] = h_pipe_with("a");
    fds[1] = h_pipe_with("b");
    CHECK_OK(fdctx_adopt(ctx, fds, 2));
    t = fdctx_take(ctx, 1);
    CHECK_OK(t);
    CHECK(h_same_file(t, fds[1]) || t == fds[1]);
    CHECK_ERR(fdctx_take(ctx, 1), EBADFD);
    CHECK(fdctx_last_error() != NULL);
    /* A taken fd is no longer the context's to lend or copy. */
    CHECK_ERR(fdctx_get(ctx, 1), EBADFD);
    CHECK_ERR(fdctx_dup(ctx, 1), EBADFD);
    /* Index 0 was never used; index 1 was. */
    CHECK_EQ(fdctx_finish(ctx), 1);
    CHECK(!h_is_open(fds[0]));
    CHECK(h_is_open(t));
    CHECK(h_reads(t, "b"));
    if (t >= 0)
        close(t);
}

/* dup gives a new close-on-exec fd to the same file; the original stays. */
static void test_dup(void)
{
    int fd = h_pipe_with("dup");
    int d;
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx) {
        close(fd);
        return;
    }
    /* The adopted fd must not need to be close-on-exec already. */
    fcntl(fd, F_SETFD, 0);
    CHECK_OK(fdctx_adopt(ctx, &fd, 1));
    d = fdctx_dup(ctx, 0);
    CHECK_OK(d);
    CHECK(d != fd);
    CHECK(h_cloexec(d));
    CHECK(h_same_file(d, fd));
    CHECK_EQ(fdctx_get(ctx, 0), fd);
    /* dup counts as a use. */
    CHECK_EQ(fdctx_finish(ctx), 0);
    CHECK(!h_is_open(fd));
    CHECK(h_is_open(d));
    CHECK(h_reads(d, "dup"));
    if (d >= 0)
        close(d);
}

/* An index that was not passed with the command: -EBADF everywhere. */
static void test_index_out_of_range(void)
{
    int fd = h_pipe_with("x");
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx) {
        close(fd);
        return;
    }
    CHECK_OK(fdctx_adopt(ctx, &fd, 1));
    CHECK_ERR(fdctx_get(ctx, 1), EBADF);
    CHECK_ERR(fdctx_take(ctx, 1), EBADF);
    CHECK_ERR(fdctx_dup(ctx, 1), EBADF);
    CHECK_ERR(fdctx_get(ctx, (size_t)-1), EBADF);
    CHECK_ERR(fdctx_take(ctx, 12345), EBADF);
    CHECK_ERR(fdctx_open(ctx, "/dev/fd/1", O_RDONLY, 0), EBADF);
    CHECK(fdctx_last_error() != NULL && fdctx_last_error()[0] != '\0');
    /* The failures did not consume index 0. */
    CHECK_EQ(fdctx_finish(ctx), 1);
    CHECK(!h_is_open(fd));
}

/* The finish count: fds neither borrowed, taken nor duplicated. */
static void test_finish_counts_unused(void)
{
    int fds[5];
    int i, t, d;
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    for (i = 0; i < 5; i++)
        fds[i] = h_pipe_with("u");
    CHECK_OK(fdctx_adopt(ctx, fds, 5));
    CHECK_OK(fdctx_get(ctx, 0));
    t = fdctx_take(ctx, 1);
    CHECK_OK(t);
    d = fdctx_dup(ctx, 2);
    CHECK_OK(d);
    CHECK_EQ(fdctx_finish(ctx), 2);
    for (i = 0; i < 5; i++)
        if (i != 1)
            CHECK(!h_is_open(fds[i]));
    if (t >= 0)
        close(t);
    if (d >= 0)
        close(d);
}

/* The context owns adopted fds from the call on, even when adopt fails. */
static void test_adopt_failure_still_owns(void)
{
    int fds[2];
    int r;
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    fds[0] = h_pipe_with("kept");
    fds[1] = -1; /* not an fd */
    r = fdctx_adopt(ctx, fds, 2);
    CHECK_NEG(r);
    CHECK(fdctx_last_error() != NULL);
    fdctx_finish(ctx);
    CHECK(!h_is_open(fds[0]));
    if (h_is_open(fds[0]))
        close(fds[0]);
}

/* The same fd twice is refused: owning it twice would close it twice. */
static void test_adopt_duplicate_refused(void)
{
    int a = h_pipe_with("a");
    int twice[2];
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx) {
        close(a);
        return;
    }
    twice[0] = a;
    twice[1] = a;
    CHECK_ERR(fdctx_adopt(ctx, twice, 2), EINVAL);
    CHECK_EQ(fdctx_count(ctx), 1);
    CHECK_EQ(fdctx_get(ctx, 0), a);
    CHECK_ERR(fdctx_adopt(ctx, &a, 1), EINVAL);
    CHECK_EQ(fdctx_count(ctx), 1);
    CHECK(h_is_open(a));
    CHECK_EQ(fdctx_finish(ctx), 0);
    CHECK(!h_is_open(a));
}

/* Finishing the current context makes the current context NULL. */
static void test_finish_current(void)
{
    fdctx *ctx = fdctx_new();
    fdctx *prev;
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    prev = fdctx_enter(ctx);
    CHECK(prev == NULL);
    CHECK(fdctx_current() == ctx);
    CHECK_EQ(fdctx_finish(ctx), 0);
    CHECK(fdctx_current() == NULL);
    fdctx_leave(prev);
}

/* Many fds in one context (more than one SCM_RIGHTS message could carry). */
static void test_many(void)
{
    enum { N = 300 };
    static int fds[N];
    int i, ok = 1;
    fdctx *ctx = fdctx_new();
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    h_raise_nofile(2048);
    for (i = 0; i < N; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fds[i] < 0) {
            h_fail(__FILE__, __LINE__, "open /dev/null: %s", strerror(errno));
            fdctx_adopt(ctx, fds, (size_t)i);
            fdctx_finish(ctx);
            return;
        }
    }
    CHECK_OK(fdctx_adopt(ctx, fds, N));
    CHECK_EQ(fdctx_count(ctx), N);
    for (i = 0; i < N; i++)
        ok &= fdctx_get(ctx, (size_t)i) == fds[i];
    CHECK(ok);
    CHECK_EQ(fdctx_finish(ctx), 0);
    for (i = 0; i < N; i++)
        ok &= !h_is_open(fds[i]);
    CHECK(ok);
}

/* The strict /dev/fd/N grammar (src/fds/fdpath.rs, docs/ARCHITECTURE.md). */
static void test_index_grammar(void)
{
    static const struct {
        const char *path;
        size_t index;
    } good[] = {
        {"/dev/fd/0", 0}, {"/dev/fd/1", 1}, {"/dev/fd/7", 7},
        {"/dev/fd/10", 10}, {"/dev/fd/252", 252}, {"/dev/fd/4096", 4096},
    };
    static const char *const malformed[] = {
        "/dev/fd/01", "/dev/fd/00", "/dev/fd/+1", "/dev/fd/-1", "/dev/fd/ 1",
        "/dev/fd/1 ", "/dev/fd/1/", "/dev/fd/1x", "/dev/fd/0x1", "/dev/fd/",
        "/dev/fd/99999999999999999999999", "/dev/fd/18446744073709551616",
        "/dev/fd/1.0", "/dev/fd/1\n", "/dev/fd/\xd9\xa1", "/dev/fd/1/..",
        "/dev/fd/../fd/1", "/dev/fd//1",
    };
    static const char *const not_fd[] = {
        "/tmp/x", "/dev/null", "relative/path", "dev/fd/1", "/var/dev/fd/1",
        "/dev/fdx/1", "",
    };
    size_t i, idx;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        idx = (size_t)-7;
        int r = fdctx_index(good[i].path, &idx);
        if (r != 1 || idx != good[i].index)
            h_fail(__FILE__, __LINE__, "fdctx_index(\"%s\") = %d, index %zu; want 1, %zu",
                   good[i].path, r, idx, good[i].index);
    }
    for (i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        int r = fdctx_index(malformed[i], &idx);
        if (r >= 0)
            h_fail(__FILE__, __LINE__, "fdctx_index(\"%s\") = %d; want < 0 (malformed)",
                   malformed[i], r);
        else if (r != -EINVAL)
            h_fail(__FILE__, __LINE__, "fdctx_index(\"%s\") = %d; want -EINVAL", malformed[i],
                   r);
    }
    for (i = 0; i < sizeof not_fd / sizeof not_fd[0]; i++) {
        int r = fdctx_index(not_fd[i], &idx);
        if (r != 0)
            h_fail(__FILE__, __LINE__, "fdctx_index(\"%s\") = %d; want 0 (not an fd path)",
                   not_fd[i], r);
    }
    CHECK_EQ(fdctx_index("/tmp/x", &idx), 0);
    CHECK_EQ(fdctx_index("/dev/fd/0", &idx), 1);
    CHECK_EQ(idx, 0);
    CHECK_ERR(fdctx_index(NULL, &idx), EINVAL);
    CHECK(fdctx_last_error() != NULL);
}

/* NULL arguments are -EINVAL (or a NULL/0 result), never a crash. */
static void test_null_arguments(void)
{
    int bad = -1;
    CHECK_ERR(fdctx_adopt(NULL, &bad, 1), EINVAL);
    CHECK_ERR(fdctx_adopt(NULL, NULL, 0), EINVAL);
    CHECK_ERR(fdctx_adopt(NULL, NULL, 1), EINVAL);
    {
        /* The fds are the library's even when ctx is NULL: closed. */
        int fd = h_pipe_with("orphan");
        CHECK_ERR(fdctx_adopt(NULL, &fd, 1), EINVAL);
        CHECK(!h_is_open(fd));
        if (h_is_open(fd))
            close(fd);
    }
    {
        fdctx *ctx = fdctx_new();
        CHECK(ctx != NULL);
        if (ctx) {
            CHECK_EQ(fdctx_adopt(ctx, NULL, 0), 0);
            CHECK_ERR(fdctx_adopt(ctx, NULL, 1), EINVAL);
            CHECK_ERR(fdctx_open(ctx, NULL, O_RDONLY, 0), EINVAL);
            CHECK_EQ(fdctx_finish(ctx), 0);
        }
    }
    CHECK_EQ(fdctx_count(NULL), 0);
    CHECK_ERR(fdctx_get(NULL, 0), EINVAL);
    CHECK_ERR(fdctx_take(NULL, 0), EINVAL);
    CHECK_ERR(fdctx_dup(NULL, 0), EINVAL);
    CHECK_ERR(fdctx_finish(NULL), EINVAL);
    {
        const char *e = fdctx_last_error();
        CHECK(e != NULL && e[0] != '\0');
    }
}

struct thread_err {
    const char *before;
    int r;
    const char *after;
};

static void *thread_last_error(void *arg)
{
    struct thread_err *te = arg;
    size_t idx;
    te->before = fdctx_last_error();
    te->r = fdctx_index("/dev/fd/01", &idx);
    te->after = fdctx_last_error();
    if (te->after && te->after[0] == '\0')
        te->after = NULL;
    return NULL;
}

/* fdctx_last_error is per thread: another thread's failure leaves ours. */
static void test_last_error_thread_local(void)
{
    pthread_t th;
    struct thread_err te = {0};
    char mine[256];
    const char *e;

    CHECK_ERR(fdctx_take(NULL, 0), EINVAL);
    e = fdctx_last_error();
    CHECK(e != NULL);
    snprintf(mine, sizeof mine, "%s", e ? e : "");
    CHECK_EQ(pthread_create(&th, NULL, thread_last_error, &te), 0);
    pthread_join(th, NULL);
    CHECK_NEG(te.r);
    CHECK(te.after != NULL);
    e = fdctx_last_error();
    CHECK(e != NULL && strcmp(e, mine) == 0);
}

int main(void)
{
    h_init();
    RUN(test_new_finish_empty);
    RUN(test_adopt_get_finish_closes);
    RUN(test_take);
    RUN(test_dup);
    RUN(test_index_out_of_range);
    RUN(test_finish_counts_unused);
    RUN(test_adopt_failure_still_owns);
    RUN(test_adopt_duplicate_refused);
    RUN(test_finish_current);
    RUN(test_many);
    RUN(test_index_grammar);
    RUN(test_null_arguments);
    RUN(test_last_error_thread_local);
    return h_finish();
}
