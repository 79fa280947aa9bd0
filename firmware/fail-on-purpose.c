/*
 * fail-on-purpose: the conformance runner's own negative test. One check passes,
 * one fails on purpose, so the guest prints a FAIL line and exits with status 3
 * ((1 << 1) | 1). Not in firmware/manifest; listed in firmware/selftest.manifest.
 */
#include "guest.h"

void test_main(void)
{
    check("fail-on-purpose-ok", 1, 1);
    check("fail-on-purpose", 2, 1);
}
