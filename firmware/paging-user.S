/*
 * Ring-3 support for the paging guest.
 *
 * user_stub (one page, position-independent; the guest maps it at a user
 * address): RDI = address, ESI = operation (0 read, 1 write, 2 execute via
 * jmp *%rdi with RCX = the return point, 3 STAC); then INT 0x81 returns to
 * ring 0. user_stub_done is where a faulting access resumes (exc_resume_rip).
 *
 * enter_user(rip, rsp, addr, op): saves the kernel context and IRETQs to ring 3
 * (CS 0x3b, SS 0x33). user_return (IDT vector 0x81, DPL 3) restores it and
 * returns from enter_user.
 */
        .section .text.user, "ax"
        .p2align 12
        .globl user_stub, user_stub_done
user_stub:
        cmpl $1, %esi
        je 1f
        cmpl $2, %esi
        je 2f
        cmpl $3, %esi
        je 3f
        movq (%rdi), %rax
        jmp user_stub_done
1:      movq $0x55, (%rdi)
        jmp user_stub_done
2:      leaq user_stub_done(%rip), %rcx
        jmp *%rdi
3:      stac
user_stub_done:
        int $0x81
        ud2
        .p2align 12

        .text
        .globl enter_user, user_return
        .type enter_user, @function
enter_user:
        pushq %rbx
        pushq %rbp
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rsp, kern_rsp(%rip)
        pushq $0x33             /* SS */
        pushq %rsi              /* RSP */
        pushfq                  /* RFLAGS (IF stays clear) */
        pushq $0x3b             /* CS */
        pushq %rdi              /* RIP */
        movq %rdx, %rdi
        movq %rcx, %rsi
        iretq
        .size enter_user, . - enter_user

        .type user_return, @function
user_return:
        movq kern_rsp(%rip), %rsp
        movw $0x10, %ax
        movw %ax, %ss
        movw %ax, %ds
        movw %ax, %es
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbp
        popq %rbx
        ret
        .size user_return, . - user_return

        .bss
        .p2align 3
kern_rsp: .quad 0
