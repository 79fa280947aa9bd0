/*
 * Long-mode entry and 64-bit IDT.
 *
 * go_long (32-bit code, flat protected mode, GDT from start.S): identity-maps
 * the first 4 GiB with 2 MiB pages (PML4 -> PDPT -> 4 PDs), sets CR4.PAE
 * (+OSFXSR/OSXMMEXCPT), CR3, EFER.LME, CR0.PG, far-jumps to the 64-bit code
 * selector 0x18, installs the IDT, and calls test_main (64-bit, SysV ABI).
 * When test_main returns, finish() reports the result via isa-debug-exit.
 *
 * Exceptions: every vector 0-255 has a stub. The handler records
 * exc_last_vec/exc_last_err/exc_last_rip and increments exc_count. If the
 * vector equals exc_expect_vec, the expectation is consumed (reset to -1) and
 * execution resumes at exc_resume_rip (or at the saved RIP when that is 0,
 * e.g. for INT3 traps). Otherwise it prints a FAIL line and exits with 1.
 * See EXPECT_EXC in lib/guest.h / lib/macros64.inc.
 */
        .text
        .code32
        .globl go_long
        .type go_long, @function
go_long:
        /* PML4[0] -> PDPT */
        movl $pdpt, %eax
        orl $0x3, %eax
        movl %eax, pml4
        /* PDPT[0..3] -> PD0..PD3 */
        xorl %ecx, %ecx
1:      movl %ecx, %eax
        shll $12, %eax
        addl $pd, %eax
        orl $0x3, %eax
        movl %eax, pdpt(,%ecx,8)
        incl %ecx
        cmpl $4, %ecx
        jb 1b
        /* 2048 PDEs: 2 MiB pages, P|RW|PS; upper dword (bits 32+) = 0 */
        xorl %ecx, %ecx
2:      movl %ecx, %eax
        shll $21, %eax
        orl $0x83, %eax
        movl %eax, pd(,%ecx,8)
        movl $0, pd+4(,%ecx,8)
        incl %ecx
        cmpl $2048, %ecx
        jb 2b
        /* CR4: PAE | OSFXSR | OSXMMEXCPT */
        movl %cr4, %eax
        orl $(1 << 5) | (1 << 9) | (1 << 10), %eax
        movl %eax, %cr4
        movl $pml4, %eax
        movl %eax, %cr3
        /* EFER.LME */
        movl $0xC0000080, %ecx
        rdmsr
        orl $(1 << 8), %eax
        wrmsr
        /* CR0: PG | PE, clear EM, set MP */
        movl %cr0, %eax
        orl $0x80000003, %eax
        andl $~(1 << 2), %eax
        movl %eax, %cr0
        ljmp $0x18, $long_entry
        .size go_long, . - go_long

        .code64
        .globl long_entry
        .type long_entry, @function
long_entry:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw %ax, %fs
        movw %ax, %gs
        movabsq $stack_top, %rsp
        lgdt gdt_desc(%rip)
        call idt_init
        call test_main
        call finish
1:      cli
        hlt
        jmp 1b
        .size long_entry, . - long_entry

/* idt_init: fill the 256 IDT gates (64-bit interrupt gates, selector 0x18). */
        .globl idt_init
        .type idt_init, @function
idt_init:
        leaq idt(%rip), %rdi
        leaq exc_stubs(%rip), %rsi
        xorl %ecx, %ecx
1:      movq %rcx, %rax
        shlq $4, %rax
        addq %rsi, %rax
        movw %ax, (%rdi)                /* offset 15:0 */
        movw $0x18, 2(%rdi)             /* selector */
        movw $0x8E00, 4(%rdi)           /* P, DPL0, 64-bit interrupt gate, IST0 */
        shrq $16, %rax
        movw %ax, 6(%rdi)               /* offset 31:16 */
        shrq $16, %rax
        movl %eax, 8(%rdi)              /* offset 63:32 */
        movl $0, 12(%rdi)
        addq $16, %rdi
        incl %ecx
        cmpl $256, %ecx
        jb 1b
        lidt idt_desc(%rip)
        movl $-1, exc_expect_vec(%rip)
        ret
        .size idt_init, . - idt_init

/* Exception stubs, 16 bytes each (exc_stubs + 16*vector): push a dummy error
   code where the CPU pushes none, then the vector number. */
        .p2align 4
        .globl exc_stubs
        .type exc_stubs, @function
exc_stubs:
        .set vec, 0
        .rept 256
        .p2align 4
        .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
        .else
        pushq $0
        .endif
        pushq $vec
        jmp exc_common
        .set vec, vec + 1
        .endr
        .size exc_stubs, . - exc_stubs

/* Stack at entry: [rsp]=vec [rsp+8]=err [rsp+16]=rip [rsp+24]=cs [rsp+32]=rflags [rsp+40]=rsp [rsp+48]=ss */
        .type exc_common, @function
exc_common:
        pushq %rax
        movq 8(%rsp), %rax
        movl %eax, exc_last_vec(%rip)
        movq 16(%rsp), %rax
        movq %rax, exc_last_err(%rip)
        movq 24(%rsp), %rax
        movq %rax, exc_last_rip(%rip)
        incl exc_count(%rip)
        movl 8(%rsp), %eax
        cmpl exc_expect_vec(%rip), %eax
        jne exc_unexpected
        movl $-1, exc_expect_vec(%rip)
        movq exc_resume_rip(%rip), %rax
        testq %rax, %rax
        jz 1f
        movq %rax, 24(%rsp)
1:      movq $0, exc_resume_rip(%rip)
        popq %rax
        addq $16, %rsp
        iretq
exc_unexpected:
        andq $~15, %rsp
        movl exc_last_vec(%rip), %edi
        movq exc_last_err(%rip), %rsi
        movq exc_last_rip(%rip), %rdx
        call report_unexpected_exception       /* lib64.c, does not return */
1:      cli
        hlt
        jmp 1b
        .size exc_common, . - exc_common

        .data
        .p2align 3
        .globl exc_expect_vec, exc_resume_rip, exc_last_vec, exc_last_err, exc_last_rip, exc_count
        .type exc_expect_vec, @object
exc_expect_vec: .long -1
        .size exc_expect_vec, 4
        .type exc_last_vec, @object
exc_last_vec: .long -1
        .size exc_last_vec, 4
        .type exc_count, @object
exc_count: .long 0
        .size exc_count, 4
        .p2align 3
        .type exc_resume_rip, @object
exc_resume_rip: .quad 0
        .size exc_resume_rip, 8
        .type exc_last_err, @object
exc_last_err: .quad 0
        .size exc_last_err, 8
        .type exc_last_rip, @object
exc_last_rip: .quad 0
        .size exc_last_rip, 8
        .type idt_desc, @object
idt_desc:
        .word 256 * 16 - 1
        .quad idt
        .size idt_desc, . - idt_desc

        .bss
        .p2align 12
        .globl pml4, pdpt, pd, idt
        .type pml4, @object
pml4:   .skip 4096
        .size pml4, 4096
        .type pdpt, @object
pdpt:   .skip 4096
        .size pdpt, 4096
        .type pd, @object
pd:     .skip 4 * 4096
        .size pd, 4 * 4096
        .type idt, @object
idt:    .skip 256 * 16
        .size idt, 256 * 16
