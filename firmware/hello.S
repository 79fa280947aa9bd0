/*
 * hello: multiboot entry -> long mode (lib) -> greeting on COM1 -> ACPI
 * power-off (SLP_TYP=5 | SLP_EN written to PM1a_CNT at port 0x604).
 * Expected: the line below on COM1, then the VM powers off (exit status 0).
 *
 * twinvm's S5 is SLP_TYP=5 (0x3400). QEMU's pc machine uses SLP_TYP=0 for
 * soft-off (its DSDT \_S5 package is 0) and ignores 5, so if the first write
 * returns we also write SLP_EN with SLP_TYP=0 (0x2000).
 */
        .text
        .code64
        .globl test_main
        .type test_main, @function
test_main:
        leaq hello_msg(%rip), %rdi
        call puts_ser
        movw $0x604, %dx
        movw $0x2000 | (5 << 10), %ax       /* 0x3400 */
        outw %ax, %dx
        movw $0x2000, %ax                   /* QEMU: SLP_TYP=0 | SLP_EN */
        outw %ax, %dx
1:      cli
        hlt
        jmp 1b
        .size test_main, . - test_main

        .section .rodata
        .type hello_msg, @object
hello_msg:
        .asciz "Hello from twinvm guest (64-bit long mode)\n"
        .size hello_msg, . - hello_msg
