/*
 * tasks (part 1, legacy 32-bit protected mode): hardware task switches.
 * Results go to res32[] (lib/pm32.inc); tasks.c checks them after go_long.
 *
 * GDT (gdt_t, the shared 0x08-0x28 entries copied first), all TSSs 32-bit:
 *   0x30 TSS A (the main task)  0x38 TSS B   0x40 TSS C   0x48 task gate -> B
 *   0x50 TSS with limit 0x60 (too small)     0x58 TSS E (#DE handler task)
 *   0x60 TSS F (other CR3)      0x68 task gate -> 0x10 (not a TSS)
 *   0x70 LDT (entry 0: flat data)            0x78 TSS G (#GP handler task)
 */
#include "pm32.inc"

#define TSS_LINK 0x00
#define TSS_CR3 0x1c
#define TSS_EIP 0x20
#define TSS_EFL 0x24
#define TSS_EAX 0x28
#define TSS_ECX 0x2c
#define TSS_ESP 0x38
#define TSS_ES 0x48
#define TSS_LDT 0x60
#define NT 0x4000

/* busy nibble of the TSS descriptor at selector `sel` into res32[n] */
.macro TYPE n, sel
        movzbl gdt_t + \sel + 5, %eax
        andl $0xf, %eax
        REC \n, %eax
.endm
/* init_tss: EDI = TSS, EBX = EIP, ECX = ESP */
.macro INIT tss, eip, esp
        movl $\tss, %edi
        movl $\eip, %ebx
        movl $\esp, %ecx
        call init_tss
.endm

        .text
        .code32
        .globl main32
        .type main32, @function
main32:
        call idt32_init
        movl $gdt, %esi
        movl $gdt_t, %edi
        movl $12, %ecx
        rep movsl
        movl $0x67, %ecx
        movw $0x0089, %dx
        movl $tssA, %ebx; leal gdt_t+0x30, %edi; call set_desc
        movl $tssB, %ebx; leal gdt_t+0x38, %edi; call set_desc
        movl $tssC, %ebx; leal gdt_t+0x40, %edi; call set_desc
        movl $tssE, %ebx; leal gdt_t+0x58, %edi; call set_desc
        movl $tssF, %ebx; leal gdt_t+0x60, %edi; call set_desc
        movl $tssG, %ebx; leal gdt_t+0x78, %edi; call set_desc
        movl $0x60, %ecx
        movl $tssC, %ebx; leal gdt_t+0x50, %edi; call set_desc
        movl $ldt_t, %ebx; movl $7, %ecx; movw $0x0082, %dx; leal gdt_t+0x70, %edi; call set_desc
        xorl %ebx, %ebx; movw $0x38, %cx; movw $0x0085, %dx; leal gdt_t+0x48, %edi; call set_gate
        xorl %ebx, %ebx; movw $0x10, %cx; movw $0x0085, %dx; leal gdt_t+0x68, %edi; call set_gate
        lgdt gdt_t_desc
        movl $tssA, %edi
        movl $0x1a, %ecx
        xorl %eax, %eax
        rep stosl
        movw $0x68, tssA+0x66
        movl $pdA, tssA+TSS_CR3
        movw $0x30, %ax
        ltr %ax
        TYPE 0, 0x30                        /* LTR marks A busy */
        movl %esp, saved_esp

        /* 1. JMP to TSS B: registers saved in A's TSS, B's loaded */
        INIT tssB, taskB_jmp, stackB_top
        movw $0x70, tssB+TSS_LDT
        orl $1, tssB+TSS_EFL                /* CF */
        movl %esp, %ebp
        movl $0xa0000000, %eax
        movl $0xa0000001, %ecx
        movl $0xa0000002, %edx
        movl $0xa0000003, %ebx
        movl $0xa0000006, %esi
        movl $0xa0000007, %edi
        ljmp $0x38, $0
        .globl after_jmpB
after_jmpB:
        REC 20, %eax
        REC 21, %ecx
        REC 22, %edx
        REC 23, %ebx
        REC 24, %esi
        REC 25, %edi
        movl %esp, %eax; subl %ebp, %eax; REC 26, %eax
        TYPE 27, 0x30
        TYPE 28, 0x38
        str %eax; REC 29, %eax
        sldt %eax; REC 30, %eax
        movl tssB+TSS_EIP, %eax; REC 31, %eax   /* B saved where it left */
        movl tssB+TSS_EAX, %eax; REC 32, %eax
        clts

        /* 2. CALL to TSS C: back link, NT, busy bits; IRET returns */
        INIT tssC, taskC, stackC_top
        lcall $0x40, $0
        pushfl; popl %eax; andl $NT, %eax; REC 40, %eax
        TYPE 41, 0x40                       /* C available again */
        movl tssC+TSS_EFL, %eax; andl $NT, %eax; REC 42, %eax  /* IRET cleared C's saved NT */
        str %eax; REC 43, %eax

        /* 3. task gate: CALL and JMP */
        INIT tssB, taskB_call, stackB_top
        lcall $0x48, $0
        movzwl tssB+TSS_LINK, %eax; REC 44, %eax
        INIT tssB, taskB_gatejmp, stackB_top
        ljmp $0x48, $0
        str %eax; REC 46, %eax
        TYPE 47, 0x38

        /* 4. #DE through a task gate in the IDT: E fixes the divisor, IRET retries */
        INIT tssE, taskE, stackE_top
        movl $idt32, %edi
        xorl %ebx, %ebx; movw $0x58, %cx; movw $0x0085, %dx; call set_gate
        movl $100, %eax
        xorl %edx, %edx
        xorl %ecx, %ecx
        .globl div_insn
div_insn:
        divl %ecx
        REC 50, %eax
        REC 51, %ecx
        TYPE 52, 0x58
        /* #GP with an error code through a task gate: G takes the error code from its stack */
        INIT tssG, taskG, stackG_top
        leal idt32+13*8, %edi
        xorl %ebx, %ebx; movw $0x78, %cx; movw $0x0085, %dx; call set_gate
        movw $0x13, %ax                     /* RPL 3 > DPL 0 at CPL 0: #GP(0x10) */
        .globl gp_insn
gp_insn:
        movw %ax, %ds
        movw $0x10, %ax
        movw %ax, %ds
        leal idt32+13*8, %edi               /* back to the recording stub */
        movl $exc32_stubs+13*16, %ebx; movw $0x08, %cx; movw $0x008e, %dx; call set_gate

        /* 5. CR3 from the new TSS (32-bit paging with 4 MiB pages) */
        xorl %ecx, %ecx
1:      movl %ecx, %eax
        shll $22, %eax
        orl $0x83, %eax
        movl %eax, pdA(,%ecx,4)
        movl %eax, pdF(,%ecx,4)
        incl %ecx
        cmpl $1024, %ecx
        jb 1b
        movl $0x83, pdF + 0x100*4           /* F: linear 1 GiB -> physical 0 */
        movl $pdA, %eax
        movl %eax, %cr3
        movl %cr4, %eax
        orl $0x10, %eax
        movl %eax, %cr4
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        INIT tssF, taskF, stackF_top
        movl $pdF, tssF+TSS_CR3
        ljmp $0x60, $0
        movl %cr3, %eax; REC 60, %eax
        movl tssA+TSS_CR3, %eax; REC 61, %eax   /* CR3 is not saved */
        movl %cr0, %eax
        andl $0x7fffffff, %eax
        movl %eax, %cr0
        clts

        /* 6. faults */
        EXPECT32 10, 1f
        ljmp $0x50, $0                      /* TSS limit < 0x67: #TS(sel) */
1:      RECM 70, exc32_vec; RECM 71, exc32_err
        str %eax; REC 72, %eax
        EXPECT32 13, 1f
        ljmp $0x30, $0                      /* own TSS is busy: #GP(sel) */
1:      RECM 73, exc32_vec; RECM 74, exc32_err
        EXPECT32 13, 1f
        lcall $0x68, $0                     /* task gate to a data segment: #GP(0x10) */
1:      RECM 75, exc32_vec; RECM 76, exc32_err
        EXPECT32 10, 1f
        movw $0x38, tssA+TSS_LINK           /* back link to an available TSS: #TS(link) */
        pushfl
        orl $NT, (%esp)
        popfl
        iret
1:      RECM 77, exc32_vec; RECM 78, exc32_err
        movl saved_esp, %esp
        TYPE 79, 0x38
        RECM 80, exc32_count

        lgdt gdt_desc
        jmp go_long
        .size main32, . - main32

/* init_tss: EDI = TSS, EBX = EIP, ECX = ESP. GPRs k = 0xb0000000 + k (EAX..EDI order). */
init_tss:
        pushl %edi
        pushl %ecx
        xorl %eax, %eax
        movl $0x1a, %ecx
        rep stosl
        popl %ecx
        popl %edi
        movl %ebx, TSS_EIP(%edi)
        movl $2, TSS_EFL(%edi)
        xorl %eax, %eax
1:      leal 0xb0000000(%eax), %edx
        movl %edx, TSS_EAX(%edi,%eax,4)
        incl %eax
        cmpl $8, %eax
        jb 1b
        movl %ecx, TSS_ESP(%edi)
        movl $0x10, TSS_ES(%edi)
        movl $0x08, TSS_ES+4(%edi)
        movl $0x10, TSS_ES+8(%edi)
        movl $0x10, TSS_ES+12(%edi)
        movl $0x10, TSS_ES+16(%edi)
        movl $0x10, TSS_ES+20(%edi)
        movw $0x68, 0x66(%edi)
        movl %cr3, %eax
        movl %eax, TSS_CR3(%edi)
        ret

taskB_jmp:
        REC 1, %eax
        REC 2, %ebx
        REC 3, %ebp
        REC 4, %edi
        REC 5, %esp
        pushfl; popl %eax; REC 6, %eax
        str %eax; REC 7, %eax
        sldt %eax; REC 8, %eax
        movl %cr0, %eax; andl $8, %eax; REC 9, %eax
        TYPE 10, 0x30
        TYPE 11, 0x38
        movw $0x04, %ax                     /* LDT selector, entry 0 */
        movw %ax, %fs
        movl %fs, %eax; REC 12, %eax
        movl tssA+TSS_EIP, %eax; REC 13, %eax
        movl tssA+TSS_EAX, %eax; REC 14, %eax
        movl tssA+TSS_EAX+12, %eax; REC 15, %eax    /* EBX */
        movl tssA+TSS_EAX+24, %eax; REC 16, %eax    /* ESI */
        movl tssA+TSS_ESP, %eax; REC 17, %eax
        movl tssA+TSS_ES+4, %eax; REC 18, %eax      /* CS */
        movl tssA+TSS_ES+8, %eax; REC 19, %eax      /* SS */
        movl tssA+TSS_EFL, %eax; REC 39, %eax
        movl $0x55, %eax
        ljmp $0x30, $0
        .globl taskB_jmp_end
taskB_jmp_end:

taskC:
        pushfl; popl %eax; andl $NT, %eax; REC 33, %eax
        movzwl tssC+TSS_LINK, %eax; REC 34, %eax
        TYPE 35, 0x30
        TYPE 36, 0x40
        str %eax; REC 37, %eax
        iret

taskB_call:
        pushfl; popl %eax; andl $NT, %eax; REC 45, %eax
        iret

taskB_gatejmp:
        str %eax; REC 48, %eax
        ljmp $0x30, $0

taskE:
        movl tssA+TSS_EIP, %eax; REC 53, %eax
        movzwl tssE+TSS_LINK, %eax; REC 54, %eax
        pushfl; popl %eax; andl $NT, %eax; REC 55, %eax
        movl %esp, %eax; REC 56, %eax       /* no error code for #DE */
        movl $4, tssA+TSS_ECX
        iret

taskG:
        movl %esp, %eax; REC 57, %eax
        popl %eax; REC 58, %eax             /* the error code */
        movl tssA+TSS_EIP, %eax; REC 59, %eax
        addl $2, tssA+TSS_EIP               /* skip the faulting mov %ax,%ds (8e d8) */
        iret

taskF:
        movl %cr3, %eax; REC 62, %eax
        movl 0x40000000 + f_magic, %eax; REC 63, %eax
        ljmp $0x30, $0

        .data
        .p2align 3
gdt_t:  .fill 17, 8, 0
gdt_t_desc:
        .word 17 * 8 - 1
        .long gdt_t
saved_esp: .long 0
f_magic:   .long 0x7a5c0de3
ldt_t:     .quad 0x00cf92000000ffff
        .p2align 7
        .globl tssA, tssB, tssC, tssE, tssF, tssG
tssA:   .fill 0x68, 1, 0
tssB:   .fill 0x68, 1, 0
tssC:   .fill 0x68, 1, 0
tssE:   .fill 0x68, 1, 0
tssF:   .fill 0x68, 1, 0
tssG:   .fill 0x68, 1, 0

        .bss
        .globl pdA, pdF, stackB_top, stackE_top, stackG_top
        .p2align 12
pdA:    .skip 4096
pdF:    .skip 4096
        .skip 2048
stackB_top:
        .skip 2048
stackC_top:
        .skip 2048
stackE_top:
        .skip 2048
stackF_top:
        .skip 2048
stackG_top:
