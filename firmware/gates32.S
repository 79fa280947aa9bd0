/*
 * gates (part 1, legacy 32-bit protected mode): privilege transitions through
 * 32- and 16-bit call gates, IRET and far RET to ring 3, INT from ring 3 with
 * the stack from TSS.SS0:ESP0, and the faults of gate transfers. Results go to
 * res32[] (lib/pm32.inc); gates.c checks them after go_long.
 *
 * GDT (gdt_pm, the shared 0x08-0x28 entries copied first):
 *   0x30 code32 DPL3     0x38 data DPL3       0x40 TSS32 (SS0:ESP0 = 0x10:kstack32_top)
 *   0x48 call gate32 DPL3 -> 0x08:gate_target32, 2 parameters
 *   0x50 call gate32 DPL0 -> 0x08:gate_same32
 *   0x58 call gate32 DPL3, not present
 *   0x60 call gate32 DPL3 -> 0x68 (code not present)
 *   0x68 code32 DPL0 not present
 *   0x70 call gate32 DPL3 -> 0x10 (a data segment)
 *   0x78 call gate16 DPL3 -> 0x88:0, 1 parameter
 *   0x80 call gate32 DPL3 -> 0x08:back32 (return to ring 0)
 *   0x88 code16 DPL0, base gate16_code
 */
#include "pm32.inc"

        .text
        .code32
        .globl main32
        .type main32, @function
main32:
        call idt32_init
        movl $gdt, %esi
        movl $gdt_pm, %edi
        movl $12, %ecx
        rep movsl
        /* descriptors */
        xorl %ebx, %ebx
        movl $0xfffff, %ecx
        leal gdt_pm+0x30, %edi; movw $0x0cfa, %dx; call set_desc
        leal gdt_pm+0x38, %edi; movw $0x0cf2, %dx; call set_desc
        leal gdt_pm+0x68, %edi; movw $0x0c1a, %dx; call set_desc
        movl $tss32, %ebx
        movl $0x67, %ecx
        leal gdt_pm+0x40, %edi; movw $0x0089, %dx; call set_desc
        movl $gate16_code, %ebx
        movl $0xffff, %ecx
        leal gdt_pm+0x88, %edi; movw $0x009a, %dx; call set_desc
        /* gates */
        leal gdt_pm+0x48, %edi; movl $gate_target32, %ebx; movw $0x08, %cx; movw $0x02ec, %dx; call set_gate
        leal gdt_pm+0x50, %edi; movl $gate_same32, %ebx;   movw $0x08, %cx; movw $0x008c, %dx; call set_gate
        leal gdt_pm+0x58, %edi; movl $gate_target32, %ebx; movw $0x08, %cx; movw $0x006c, %dx; call set_gate
        leal gdt_pm+0x60, %edi; movl $gate_target32, %ebx; movw $0x68, %cx; movw $0x00ec, %dx; call set_gate
        leal gdt_pm+0x70, %edi; movl $gate_target32, %ebx; movw $0x10, %cx; movw $0x00ec, %dx; call set_gate
        leal gdt_pm+0x78, %edi; xorl %ebx, %ebx;           movw $0x88, %cx; movw $0x01e4, %dx; call set_gate
        leal gdt_pm+0x80, %edi; movl $back32, %ebx;        movw $0x08, %cx; movw $0x00ec, %dx; call set_gate
        /* INT 0x80: DPL3 interrupt gate */
        leal idt32+0x80*8, %edi; movl $int80_32, %ebx; movw $0x08, %cx; movw $0x00ee, %dx; call set_gate
        movl $kstack32_top, tss32+4
        movl $0x10, tss32+8
        movw $0x68, tss32+0x66
        lgdt gdt_pm_desc
        movw $0x40, %ax
        ltr %ax
        movl %esp, k32_esp

        /* 1. IRET to ring 3; the ring-3 code calls back through gates */
        RING3 r3_main

/* ring 3 */
r3_main:
        movl %cs, %eax; REC 0, %eax
        movl %ss, %eax; REC 1, %eax
        movl %ds, %eax; REC 2, %eax         /* nulled by IRET to outer level */
        movl %es, %eax; REC 3, %eax
        movl %esp, %eax; REC 4, %eax
        movw $0x3b, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        /* 2. CALL through a 32-bit gate with 2 parameters to ring 0 */
        movl %esp, %ebp
        pushl $0x11111111
        pushl $0x22222222
        lcall $0x4b, $0
        .globl r3_after_gate
r3_after_gate:
        movl %esp, %eax; subl %ebp, %eax; REC 5, %eax   /* lret $8 released the parameters */
        movl %cs, %eax; REC 6, %eax
        movl %ss, %eax; REC 7, %eax
        movl %es, %eax; REC 8, %eax         /* ES = 0x10 (DPL0) nulled by RET */
        movl %fs, %eax; REC 9, %eax         /* FS = 0x3b kept */
        movl %ds, %eax; REC 10, %eax
        /* 3. INT 0x80 from ring 3 */
        movl %esp, %ebp
        movl $0, %eax
        int $0x80
        .globl r3_after_int
r3_after_int:
        REC 11, %eax
        movl %esp, %eax; subl %ebp, %eax; REC 12, %eax
        movl %cs, %eax; REC 13, %eax
        /* 4. back to ring 0 through a gate with no parameters */
        lcall $0x83, $0

/* ring 0, reached from ring 3 through gate 0x80 */
        .globl back32
back32:
        movl %esp, %eax; REC 14, %eax
        movl 4(%esp), %eax; REC 15, %eax    /* caller CS */
        movl 12(%esp), %eax; REC 16, %eax   /* caller SS */
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movl k32_esp, %esp

        /* 5. CALL through a DPL0 gate at ring 0: no stack switch */
        movl %esp, %ebp
        lcall $0x50, $0
        .globl r0_after_gate
r0_after_gate:
        movl %esp, %eax; subl %ebp, %eax; REC 17, %eax

        /* 6. faults, from ring 3 */
        EXPECT32 13, 1f
        RING3 f_gate_dpl
1:      RECM 40, exc32_vec; RECM 41, exc32_err
        EXPECT32 11, 1f
        RING3 f_gate_np
1:      RECM 42, exc32_vec; RECM 43, exc32_err
        EXPECT32 11, 1f
        RING3 f_code_np
1:      RECM 44, exc32_vec; RECM 45, exc32_err
        EXPECT32 13, 1f
        RING3 f_code_data
1:      RECM 46, exc32_vec; RECM 47, exc32_err
        EXPECT32 13, 1f
        RING3 f_jmp_inner
1:      RECM 48, exc32_vec; RECM 49, exc32_err
        EXPECT32 13, 1f
        RING3 f_int_dpl
1:      RECM 50, exc32_vec; RECM 51, exc32_err
        EXPECT32 14, 1f                     /* 14 never comes: ljmp below leaves */
        RING3 r3_gate16
1:
        /* faults at ring 0 */
        EXPECT32 13, 1f                     /* IRET to CS RPL3 whose DPL is 0 */
        pushl $0x3b; pushl $ustack32_top; pushfl; pushl $0x0b; pushl $1f
        iret
1:      RECM 52, exc32_vec; RECM 53, exc32_err
        EXPECT32 13, 1f                     /* RET to ring 3 with SS RPL 0 */
        pushl $0x38; pushl $ustack32_top; pushl $0x33; pushl $1f
        lret
1:      RECM 54, exc32_vec; RECM 55, exc32_err
        EXPECT32 13, 1f                     /* RET to ring 3 with SS DPL 0 */
        pushl $0x13; pushl $ustack32_top; pushl $0x33; pushl $1f
        lret
1:      RECM 56, exc32_vec; RECM 57, exc32_err
        EXPECT32 11, 1f                     /* RET to a not-present code segment */
        pushl $0x68; pushl $1f
        lret
1:      RECM 58, exc32_vec; RECM 59, exc32_err
        movl k32_esp, %esp
        RECM 60, exc32_count

        /* restore the shared GDT and enter long mode */
        lgdt gdt_desc
        jmp go_long
        .size main32, . - main32

/* ring-3 fault cases */
f_gate_dpl:  lcall $0x53, $0                /* gate DPL0 < CPL3: #GP(gate) */
f_gate_np:   lcall $0x5b, $0                /* gate not present: #NP(gate) */
f_code_np:   lcall $0x63, $0                /* target code not present: #NP(code) */
f_code_data: lcall $0x73, $0                /* gate names a data segment: #GP(0x10) */
f_jmp_inner: ljmp $0x4b, $0                 /* JMP cannot raise privilege: #GP(code) */
f_int_dpl:   int $0x81                      /* IDT gate DPL0: #GP(0x81*8+2) */

/* 16-bit gate from ring 3: one word parameter */
r3_gate16:
        movl %esp, %eax; REC 25, %eax
        pushw $0x1234
        lcallw $0x7b, $0
        .globl r3_after_gate16
r3_after_gate16:
        .long 0x0b0f0b0f                    /* not reached: ud2 */

/* ring 0 through gate 0x48 */
        .globl gate_target32
gate_target32:
        movl %cs, %eax; REC 18, %eax
        movl %ss, %eax; REC 19, %eax
        movl %esp, %eax; REC 20, %eax
        movl (%esp), %eax; REC 21, %eax     /* return EIP */
        movl 4(%esp), %eax; REC 22, %eax    /* CS */
        movl 8(%esp), %eax; REC 23, %eax    /* parameter 2 (pushed last) */
        movl 12(%esp), %eax; REC 24, %eax   /* parameter 1 */
        movl 16(%esp), %eax; REC 26, %eax   /* caller ESP */
        movl 20(%esp), %eax; REC 27, %eax   /* caller SS */
        movw $0x10, %ax
        movw %ax, %es
        movw $0x3b, %ax
        movw %ax, %fs
        lret $8

/* ring 0 through gate 0x50 called at ring 0 */
gate_same32:
        movl %esp, %eax; REC 28, %eax
        movl (%esp), %eax; REC 29, %eax
        movl 4(%esp), %eax; REC 30, %eax
        lret

/* INT 0x80 from ring 3 */
int80_32:
        movl %esp, %eax; REC 31, %eax
        movl (%esp), %eax; REC 32, %eax     /* EIP */
        movl 4(%esp), %eax; REC 33, %eax    /* CS */
        movl 12(%esp), %eax; REC 34, %eax   /* ESP */
        movl 16(%esp), %eax; REC 35, %eax   /* SS */
        movl %ss, %eax; REC 36, %eax
        movl $0x80c0ffee, %eax
        iret

/* 16-bit ring-0 code through gate 0x78 (selector 0x88, base gate16_code) */
        .code16
        .globl gate16_code
gate16_code:
        addr32 movl %esp, %ss:res32 + 4*37
        movl %esp, %ebx
        addr32 movl %ss:(%ebx), %eax        /* IP, CS */
        addr32 movl %eax, %ss:res32 + 4*38
        addr32 movl %ss:4(%ebx), %eax       /* parameter, SP */
        addr32 movl %eax, %ss:res32 + 4*39
        addr32 movw %ss:8(%ebx), %ax        /* SS */
        addr32 movw %ax, %ss:res32 + 4*61
        movl %cs, %eax
        addr32 movw %ax, %ss:res32 + 4*61 + 2
        ljmpl $0x08, $back16
        .code32
back16:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        movl %ss:exc32_esp, %esp
        movl $-1, exc32_expect
        jmp *exc32_resume

        .data
        .p2align 3
        .globl gdt_pm, tss32, k32_esp
gdt_pm: .fill 18, 8, 0
gdt_pm_desc:
        .word 18 * 8 - 1
        .long gdt_pm
k32_esp: .long 0
        .p2align 4
tss32:  .fill 0x68, 1, 0
