/*
 * triple: triple-faults on purpose. Prints a greeting and the address of the faulting
 * instruction, loads an empty IDT (limit 0) and executes UD2: #UD cannot be delivered
 * (#GP for the IDT limit), neither can that #GP (→ #DF), nor the #DF: shutdown.
 * twinvm --no-reboot: "triple fault at 0x18:<address of ud2>", status 4; without it the
 * machine resets and the greeting is printed again. QEMU -no-reboot: exits (status 0).
 */
        .text
        .code64
        .globl test_main
        .type test_main, @function
test_main:
        leaq greeting(%rip), %rdi
        call puts_ser
        leaq at_msg(%rip), %rdi
        call puts_ser
        leaq fault_insn(%rip), %rdi
        call puthex
        movl $'\n', %edi
        call putc_ser
        lidt empty_idt(%rip)
fault_insn:
        ud2
1:      cli
        hlt
        jmp 1b
        .size test_main, . - test_main

        .section .rodata
greeting:
        .asciz "triple: booted, about to triple-fault\n"
at_msg:
        .asciz "# ud2 at "
        .p2align 3
empty_idt:
        .word 0
        .quad 0
