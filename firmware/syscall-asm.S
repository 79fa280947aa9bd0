/* syscall: kernel entry points and user code for syscall.c */
        .text
        .code64
/* LSTAR: record what SYSCALL left, then SYSRETQ back to the user (RCX, R11 intact). */
        .globl sc_entry
sc_entry:
        movq %rcx, sc_rcx(%rip)
        movq %r11, sc_r11(%rip)
        movl %cs, %eax
        movq %rax, sc_cs(%rip)
        movl %ss, %eax
        movq %rax, sc_ss(%rip)
        pushfq
        popq %rax
        movq %rax, sc_flags(%rip)
        movq %rsp, sc_rsp(%rip)
        sysretq

/* user: SYSCALL, then record CS/SS/RFLAGS after SYSRET */
        .globl u_syscall, u_syscall_ret
u_syscall:
        movq %rsp, u_rsp_before(%rip)
        syscall
u_syscall_ret:
        movl %cs, %eax
        movq %rax, u_cs_after(%rip)
        movl %ss, %eax
        movq %rax, u_ss_after(%rip)
        pushfq
        popq %rax
        movq %rax, u_flags_after(%rip)
        ret

/* 32-bit compatibility-mode user code (entered by SYSRETL) */
        .code32
        .globl c32_cs, c32_syscall
c32_cs:
        movl %cs, %eax
        movl %eax, c32_cs_val
        movl %ss, %eax
        movl %eax, c32_ss_val
        int $0x80
c32_syscall:
        syscall
        int $0x80
        .code64

/* SYSENTER/SYSEXIT: sx_run(user_rip = rdi, 64-bit = esi) SYSEXITs to user_rip at CPL 3;
   the user code records its CS/SS and SYSENTERs back to sx_entry, which returns. */
        .globl sx_run
sx_run:
        push %rbx
        push %rbp
        push %r12
        push %r13
        push %r14
        push %r15
        movq %rsp, sx_ksp(%rip)
        movq %rdi, %rdx
        movabsq $user_stack_top, %rcx
        testl %esi, %esi
        jz 1f
        sysexitq
1:      sysexitl

        .globl sx_entry
sx_entry:
        movl %cs, %eax
        movq %rax, sx_k_cs(%rip)
        movl %ss, %eax
        movq %rax, sx_k_ss(%rip)
        movq %rsp, sx_k_rsp(%rip)
        pushfq
        popq %rax
        movq %rax, sx_k_flags(%rip)
        movq sx_ksp(%rip), %rsp
        movw $0x20, %cx
        movw %cx, %ss
        pop %r15
        pop %r14
        pop %r13
        pop %r12
        pop %rbp
        pop %rbx
        ret

        .globl sx_user64
sx_user64:
        movl %cs, %eax
        movq %rax, sx_u_cs(%rip)
        movl %ss, %eax
        movq %rax, sx_u_ss(%rip)
        movq %rsp, sx_u_rsp(%rip)
        sysenter

        .code32
        .globl sx_user32
sx_user32:
        movl %cs, %eax
        movl %eax, sx_u_cs
        movl %ss, %eax
        movl %eax, sx_u_ss
        sysenter
        .code64

        .data
        .p2align 3
        .globl sc_rcx, sc_r11, sc_cs, sc_ss, sc_flags, sc_rsp, u_rsp_before, u_cs_after, u_ss_after, u_flags_after
        .globl c32_cs_val, c32_ss_val, sx_ksp, sx_k_cs, sx_k_ss, sx_k_rsp, sx_k_flags, sx_u_cs, sx_u_ss, sx_u_rsp
sc_rcx: .quad 0
sc_r11: .quad 0
sc_cs: .quad 0
sc_ss: .quad 0
sc_flags: .quad 0
sc_rsp: .quad 0
u_rsp_before: .quad 0
u_cs_after: .quad 0
u_ss_after: .quad 0
u_flags_after: .quad 0
c32_cs_val: .quad 0
c32_ss_val: .quad 0
sx_ksp: .quad 0
sx_k_cs: .quad 0
sx_k_ss: .quad 0
sx_k_rsp: .quad 0
sx_k_flags: .quad 0
sx_u_cs: .quad 0
sx_u_ss: .quad 0
sx_u_rsp: .quad 0
