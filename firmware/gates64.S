/*
 * gates (part 2, long mode): ring-3 code and ring-0 gate targets. u3_run(fn)
 * (SysV, ring 0) IRETQs to fn at ring 3 (CS 0x33, SS 0x3b, RSP ustack64_top);
 * fn comes back through the 64-bit call gate 0x60 to back64, which returns
 * from u3_run. Results go to res64[] (gates.c checks them).
 */
        .text
        .code64
.macro R n, src
        movq \src, res64 + 8 * (\n)(%rip)
.endm
.macro BACK
        lcall *back_ptr(%rip)
.endm

        .globl u3_run
        .type u3_run, @function
u3_run:
        pushq %rbx
        pushq %rbp
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rsp, k64_rsp(%rip)
        pushq $0x3b
        movabsq $ustack64_top, %rax
        pushq %rax
        pushfq
        pushq $0x33
        pushq %rdi
        iretq
        .size u3_run, . - u3_run

/* ring 0 through gate 0x60 */
        .globl back64
back64:
        movq %rsp, %rax; R 40, %rax
        movq 8(%rsp), %rax; R 41, %rax      /* caller CS */
        movq 24(%rsp), %rax; R 42, %rax     /* caller SS */
        movl %ss, %eax; R 43, %rax
        movw $0x10, %ax
        movw %ax, %ss
        movw %ax, %ds
        movw %ax, %es
        movq k64_rsp(%rip), %rsp
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbp
        popq %rbx
        ret

/* ring 3: the main sequence */
        .globl r3_main64
r3_main64:
        movl %cs, %eax; R 0, %rax
        movl %ss, %eax; R 1, %rax
        movl %ds, %eax; R 2, %rax           /* DS 0x10 (DPL0) nulled by IRETQ */
        movq %rsp, %rbp
        R 3, %rbp
        lcall *gate_ptr(%rip)               /* 64-bit call gate 0x50 to ring 0 */
        .globl r3_after_gate64
r3_after_gate64:
        movq %rsp, %rax; subq %rbp, %rax; R 4, %rax
        movl %cs, %eax; R 5, %rax
        movl %ss, %eax; R 6, %rax
        movl %ds, %eax; R 7, %rax           /* loaded with 0x10 at ring 0, nulled by RET */
        movl %es, %eax; R 8, %rax           /* loaded with 0x3b at ring 0, kept */
        xorl %eax, %eax
        int $0x80
        .globl r3_after_int64
r3_after_int64:
        R 9, %rax
        movq %rsp, %rax; subq %rbp, %rax; R 10, %rax
        int $0x81                           /* IST 1 */
        R 11, %rax
        BACK

/* ring 0 through gate 0x50 */
        .globl gate_target64
gate_target64:
        movl %cs, %eax; R 12, %rax
        movl %ss, %eax; R 13, %rax          /* null selector, RPL 0 */
        movq %rsp, %rax; R 14, %rax
        movq (%rsp), %rax; R 15, %rax       /* RIP */
        movq 8(%rsp), %rax; R 16, %rax      /* CS */
        movq 16(%rsp), %rax; R 17, %rax     /* RSP */
        movq 24(%rsp), %rax; R 18, %rax     /* SS */
        movw $0x10, %ax
        movw %ax, %ds
        movw $0x3b, %ax
        movw %ax, %es
        lretq

        .globl int80_64, int81_64
int80_64:
        movq %rsp, %rax; R 19, %rax
        movq (%rsp), %rax; R 20, %rax       /* RIP */
        movq 8(%rsp), %rax; R 21, %rax      /* CS */
        movq 24(%rsp), %rax; R 22, %rax     /* RSP */
        movq 32(%rsp), %rax; R 23, %rax     /* SS */
        movl %ss, %eax; R 24, %rax
        movl $0x80c0ffee, %eax
        iretq
int81_64:
        movq %rsp, %rax
        iretq

/* ring-3 fault cases: each arms the handler, faults, resumes at 1: and goes back */
.macro F3 name, vec, insn:vararg
        .globl \name
\name:
        movl $\vec, exc_expect_vec(%rip)
        leaq 1f(%rip), %rax
        movq %rax, exc_resume_rip(%rip)
        \insn
1:      BACK
.endm
F3 f64_gate_dpl, 13, lcall *gp_dpl0(%rip)
F3 f64_gate_np, 11, lcall *gp_np(%rip)
F3 f64_code_np, 11, lcall *gp_code_np(%rip)
F3 f64_code32, 13, lcall *gp_code32(%rip)
F3 f64_gate_hi, 13, lcall *gp_hi(%rip)
F3 f64_jmp_inner, 13, ljmp *gate_ptr(%rip)
F3 f64_int_dpl, 13, int $0x82

        .data
        .p2align 3
        .globl k64_rsp, res64
k64_rsp:    .quad 0
gate_ptr:   .long 0, 0x53
back_ptr:   .long 0, 0x63
gp_dpl0:    .long 0, 0x73
gp_np:      .long 0, 0x83
gp_code_np: .long 0, 0x93
gp_code32:  .long 0, 0xab
gp_hi:      .long 0, 0xbb
res64:      .fill 64, 8, 0xdeadbeef

        .bss
        .p2align 4
        .globl kstack64_top, istack64_top, ustack64_top
        .skip 8192
kstack64_top:
        .skip 4096
istack64_top:
        .skip 8192
ustack64_top:
