// The header from C++: it must compile warning-free and link without name
// mangling (extern "C"), through pkg-config like any C++ user would.
#include <fdctx.h>

#include <cstdio>

int main()
{
    int passed = 0, failed = 0;
    fdctx *ctx = fdctx_new();
    (ctx != nullptr ? passed : failed)++;
    (fdctx_count(ctx) == 0 ? passed : failed)++;
    fdctx_framing f = FDCTX_FRAMING_PACKET;
    (static_cast<int>(f) == 2 ? passed : failed)++;
    fdctx_limits lim = {0, 0, 0, 0};
    (lim.max_fds == 0 ? passed : failed)++;
    (fdctx_finish(ctx) == 0 ? passed : failed)++;
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
