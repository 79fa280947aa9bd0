/*
 * spin-forever: the conformance runner's time-out test. Prints one line, then loops
 * forever with interrupts off and never reports, so only a time-out ends it.
 * Not in firmware/manifest; listed in firmware/selftest.manifest.
 */
        .text
        .code64
        .globl test_main
        .type test_main, @function
test_main:
        leaq msg(%rip), %rdi
        call puts_ser
        cli
1:      pause
        jmp 1b
        .size test_main, . - test_main

        .section .rodata
        .type msg, @object
msg:
        .asciz "# spin-forever: looping until killed\n"
        .size msg, . - msg
