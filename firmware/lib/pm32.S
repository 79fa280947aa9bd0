/*
 * 32-bit protected-mode support for guests that run legacy-mode checks in
 * main32 before go_long: descriptor/gate builders, a 256-entry IDT whose
 * handlers record the vector, error code and frame and resume at a chosen
 * ring-0 address (EXPECT32 in pm32.inc), and the res32[] result array.
 */
        .text
        .code32

/* set_desc: EDI = entry, EBX = base, ECX = limit (20 bits), DL = access, DH = flags (G D L AVL) */
        .globl set_desc
        .type set_desc, @function
set_desc:
        pushl %eax
        movw %cx, (%edi)
        movw %bx, 2(%edi)
        movl %ebx, %eax
        shrl $16, %eax
        movb %al, 4(%edi)
        movb %dl, 5(%edi)
        movl %ecx, %eax
        shrl $16, %eax
        andb $0xf, %al
        movb %dh, %ah
        shlb $4, %ah
        orb %ah, %al
        movb %al, 6(%edi)
        movl %ebx, %eax
        shrl $24, %eax
        movb %al, 7(%edi)
        popl %eax
        ret
        .size set_desc, . - set_desc

/* set_gate: EDI = entry, EBX = offset, CX = selector, DL = access, DH = parameter count */
        .globl set_gate
        .type set_gate, @function
set_gate:
        pushl %eax
        movw %bx, (%edi)
        movw %cx, 2(%edi)
        movb %dh, 4(%edi)
        movb %dl, 5(%edi)
        movl %ebx, %eax
        shrl $16, %eax
        movw %ax, 6(%edi)
        popl %eax
        ret
        .size set_gate, . - set_gate

/* idt32_init: 256 interrupt gates (DPL 0, selector 0x08) to the recording stubs;
   res32[] filled with 0xdeadbeef (never recorded). */
        .globl idt32_init
        .type idt32_init, @function
idt32_init:
        pushl %ebx
        pushl %edi
        xorl %esi, %esi
1:      leal idt32(,%esi,8), %edi
        movl %esi, %ebx
        shll $4, %ebx
        addl $exc32_stubs, %ebx
        movw $0x08, %cx
        movw $0x008e, %dx
        call set_gate
        incl %esi
        cmpl $256, %esi
        jb 1b
        lidt idt32_desc
        movl $-1, exc32_expect
        movl $res32, %edi
        movl $128, %ecx
        movl $0xdeadbeef, %eax
        rep stosl
        popl %edi
        popl %ebx
        ret
        .size idt32_init, . - idt32_init

        .p2align 4
        .globl exc32_stubs
        .type exc32_stubs, @function
exc32_stubs:
        .set vec, 0
        .rept 256
        .p2align 4
        .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
        .else
        pushl $0
        .endif
        pushl $vec
        jmp exc32_common
        .set vec, vec + 1
        .endr
        .size exc32_stubs, . - exc32_stubs

/* [esp]=vec [esp+4]=err [esp+8]=eip [esp+12]=cs [esp+16]=eflags ([esp+20]=esp [esp+24]=ss) */
        .type exc32_common, @function
exc32_common:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movl (%esp), %eax
        movl %eax, exc32_vec
        movl 4(%esp), %eax
        movl %eax, exc32_err
        movl 8(%esp), %eax
        movl %eax, exc32_eip
        movl 12(%esp), %eax
        movl %eax, exc32_cs
        incl exc32_count
        movl (%esp), %eax
        cmpl exc32_expect, %eax
        jne 1f
        movl $-1, exc32_expect
        movw $0x10, %ax
        movw %ax, %ss
        movl exc32_esp, %esp
        jmp *exc32_resume
1:      movw $0x10, %ax
        movw %ax, %ss
        movl $stack_top, %esp
        pushl $msg_unexp
        call puts32
        pushl exc32_vec
        call puthex32
        pushl $msg_err
        call puts32
        pushl exc32_err
        call puthex32
        pushl $msg_eip
        call puts32
        pushl exc32_eip
        call puthex32
        pushl $msg_cs
        call puts32
        pushl exc32_cs
        call puthex32
        pushl $msg_nl
        call puts32
        pushl $1
        call exit32
        .size exc32_common, . - exc32_common

        .section .rodata
msg_unexp: .asciz "FAIL unexpected-exception (32-bit): vector "
msg_err:   .asciz " error "
msg_eip:   .asciz " eip "
msg_cs:    .asciz " cs "
msg_nl:    .asciz "\n"

        .data
        .p2align 3
        .globl exc32_expect, exc32_resume, exc32_esp, exc32_vec, exc32_err, exc32_eip, exc32_cs, exc32_count
exc32_expect: .long -1
exc32_resume: .long 0
exc32_esp:    .long 0
exc32_vec:    .long -1
exc32_err:    .long 0
exc32_eip:    .long 0
exc32_cs:     .long 0
exc32_count:  .long 0
idt32_desc:
        .word 256 * 8 - 1
        .long idt32

        .bss
        .p2align 12
        .globl idt32, res32, ustack32_top, kstack32_top
idt32:  .skip 256 * 8
res32:  .skip 128 * 4
        .p2align 4
        .skip 8192
kstack32_top:
        .skip 8192
ustack32_top:
