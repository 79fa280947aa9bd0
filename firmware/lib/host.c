/* Native (Linux user-mode) side of the test framework: records expectations. */
#include <stdio.h>
#include "guest.h"

int failures;
void pass(const char *name) { (void)name; }
void pass_skip(const char *name, const char *why) { (void)name; (void)why; }
void fail_msg(const char *name, const char *msg) { fprintf(stderr, "HOST FAIL %s: %s\n", name, msg); failures++; }
void check(const char *name, u64 got, u64 exp)
{
    if (got != exp) {
        fprintf(stderr, "HOST FAIL %s: expected %#lx got %#lx\n", name, exp, got);
        failures++;
    }
}
void check3(const char *name, u64 r, u64 r2, u64 f, u64 er, u64 er2, u64 ef)
{
    if (r != er || r2 != er2 || f != ef) {
        fprintf(stderr, "HOST FAIL %s: expected %#lx %#lx %#lx got %#lx %#lx %#lx\n", name, er, er2, ef, r, r2, f);
        failures++;
    }
}
void check_tab(const char *name, u64 r, u64 r2, u64 f, u64 mask)
{
    printf("    { \"%s\", %#lx, %#lx, %#lx },\n", name, r, r2, f & mask);
}
void test_main(void);
int main(void)
{
    test_main();
    return failures != 0;
}
