/* Ring-3 harness for 64-bit guests (see lib/sys64.h). */
        .text
        .code64
/* run_user(fn = rdi, flags = rsi): save callee-saved state, SYSRETQ to user_entry at
   CPL 3 with RDI = fn; user_entry calls fn and comes back with INT 0x80. */
        .globl run_user
        .type run_user, @function
run_user:
        push %rbx
        push %rbp
        push %r12
        push %r13
        push %r14
        push %r15
        movq %rsp, saved_ksp(%rip)
        sidt saved_idt(%rip)
        lidt uidt_desc(%rip)
        movq %rsi, %r11
        leaq user_entry(%rip), %rcx
        movabsq $user_stack_top, %rsp
        sysretq
        .size run_user, . - run_user

/* run_user_compat(fn32 = rdi, flags = rsi): SYSRETL to a 32-bit entry (its address must
   be below 4 GiB, as every address of the guest is). */
        .globl run_user_compat
        .type run_user_compat, @function
run_user_compat:
        push %rbx
        push %rbp
        push %r12
        push %r13
        push %r14
        push %r15
        movq %rsp, saved_ksp(%rip)
        sidt saved_idt(%rip)
        lidt uidt_desc(%rip)
        movq %rsi, %r11
        movq %rdi, %rcx
        movabsq $user_stack_top, %rsp
        sysretl
        .size run_user_compat, . - run_user_compat

        .globl user_entry
        .type user_entry, @function
user_entry:
        call *%rdi
        int $0x80
        ud2
        .size user_entry, . - user_entry

/* Every vector of the user IDT (uidt): 0-31 record the exception; 0x80 is the normal way
   back. Stack: [rsp]=vector [rsp+8]=error [rsp+16]=rip [rsp+24]=cs ... */
        .p2align 4
        .globl user_stubs
user_stubs:
        .set vec, 0
        .rept 32
        .p2align 4
        .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
        .else
        pushq $0
        .endif
        pushq $vec
        jmp user_return
        .set vec, vec + 1
        .endr
        .p2align 4
        .globl user_int80
user_int80:
        pushq $0
        pushq $0x80
        jmp user_return

/* Back to run_user's caller on the kernel stack; returns the vector (0x80: no fault). */
        .globl user_return
        .type user_return, @function
user_return:
        movq (%rsp), %rax
        movl %eax, u_vec(%rip)
        movq 8(%rsp), %rax
        movq %rax, u_err(%rip)
        movq 16(%rsp), %rax
        movq %rax, u_rip(%rip)
        movq 24(%rsp), %rax
        movq %rax, u_cs(%rip)
        movq 32(%rsp), %rax
        movq %rax, u_flags(%rip)
        movl u_vec(%rip), %eax
        lidt saved_idt(%rip)
        movq saved_ksp(%rip), %rsp
        movw $0x20, %cx
        movw %cx, %ss
        pop %r15
        pop %r14
        pop %r13
        pop %r12
        pop %rbp
        pop %rbx
        ret
        .size user_return, . - user_return

        .data
        .p2align 3
        .globl saved_ksp, u_vec, u_err, u_rip, u_cs, u_flags, uidt_desc
saved_ksp: .quad 0
u_vec: .quad 0
u_err: .quad 0
u_rip: .quad 0
u_cs: .quad 0
u_flags: .quad 0
saved_idt: .word 0
        .quad 0
uidt_desc: .word 256 * 16 - 1
        .quad uidt
        .bss
        .p2align 12
        .globl user_stack, user_stack_top, kstack0, kstack0_top, uidt
uidt:   .skip 256 * 16
user_stack: .skip 16384
user_stack_top:
kstack0: .skip 16384
kstack0_top:
