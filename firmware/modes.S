/*
 * modes (part 1): checks in 32-bit protected mode (the multiboot state) and
 * in a 16-bit protected-mode code segment (GDT selector 0x20, D=0, its base
 * patched to code16_start so that 16-bit offsets reach it), then enters long
 * mode (go_long). Measured values are stored in modes_res[] and compared in
 * 64-bit mode by modes64.c, which also runs the 64-bit and
 * compatibility-mode checks (compat_fn below, selector 0x08 under long mode).
 */
        .text
        .code32
        .globl main32
        .type main32, @function
main32:
        /* R0: PUSH r32 moves ESP by 4 */
        movl %esp, %ebx
        pushl %eax
        subl %esp, %ebx
        popl %eax
        movl %ebx, modes_res + 0*4
        /* R1: 0x66 PUSH r16 moves ESP by 2 */
        movl %esp, %ebx
        pushw %ax
        subl %esp, %ebx
        popw %ax
        movl %ebx, modes_res + 1*4
        /* R2: near CALL pushes 4 bytes */
        movl %esp, %ebx
        call 1f
        jmp 2f
1:      movl %ebx, %ecx
        subl %esp, %ecx
        movl %ecx, modes_res + 2*4
        ret
2:
        /* R3: 16-bit operand (0x66) preserves EAX[31:16] */
        movl $0x12340000, %eax
        movw $0xffff, %ax
        movl %eax, modes_res + 3*4
        /* R4: 0x67 16-bit addressing wraps at 64 KiB */
        movl $0x1234ffff, %ebx
        movl $0x56780002, %esi
        addr16 leal (%bx,%si), %eax
        movl %eax, modes_res + 4*4
        /* R5: opcode 0x48 is DEC EAX outside 64-bit mode */
        movl $5, %eax
        .byte 0x48
        nop
        movl %eax, modes_res + 5*4
        /* R6: PUSH imm8 sign-extends to 32 bits */
        pushl $-2
        popl %eax
        movl %eax, modes_res + 6*4
        /* 16-bit protected mode: patch the base of selector 0x20 */
        movl $code16_start, %eax
        movw %ax, gdt + 0x20 + 2
        shrl $16, %eax
        movb %al, gdt + 0x20 + 4
        movb %ah, gdt + 0x20 + 7
        movl %esp, %ebp
        xorl %eax, %eax
        xorl %ebx, %ebx
        xorl %ecx, %ecx
        xorl %edx, %edx
        xorl %esi, %esi
        lcall $0x20, $0                 /* -> code16_start, returns with 32-bit LRET */
        movl %eax, modes_res + 7*4
        movl %ebx, modes_res + 8*4
        movl %ecx, modes_res + 9*4
        movl %edx, modes_res + 10*4
        movl %esi, modes_res + 11*4
        movl %ebp, %eax
        subl %esp, %eax
        movl %eax, modes_res + 12*4     /* far call + 32-bit far ret balanced: 0 */
        movl %cs, %eax
        movl %eax, modes_res + 13*4
        movl $1, modes_ran32
        jmp go_long
        .size main32, . - main32

/*
 * 16-bit protected-mode code: CS base = code16_start, D=0. SS is still the
 * 32-bit data segment (B=1), so pushes use ESP but with 16-bit operand size.
 * Returns EAX = push16 delta | push32 delta << 8 | near-call delta << 16,
 * EBX = 16-bit LEA wrap, ECX = 32-bit (0x67) LEA, EDX = operand-size mix,
 * ESI = CS.
 */
        .code16
        .globl code16_start
        .type code16_start, @function
code16_start:
        movl %esp, %edi
        pushw %ax                       /* default operand size 16: 2 bytes */
        subl %esp, %edi
        popw %ax
        movl %esp, %ecx
        pushl %eax                      /* 0x66: 4 bytes */
        subl %esp, %ecx
        popl %eax
        shll $8, %ecx
        orl %ecx, %edi
        movl %esp, %ecx
        call c16_sub                    /* near call pushes a 16-bit IP */
        shll $16, %ecx
        orl %ecx, %edi
        movl %edi, %eax
        /* EBX: 16-bit addressing wraps at 64 KiB */
        movw $0xffff, %bx
        movw $2, %si
        leaw (%bx,%si), %bx
        /* ECX: 0x67 selects 32-bit addressing */
        movl $0xffff, %edx
        movl $2, %esi
        addr32 leal (%edx,%esi), %ecx
        /* EDX: 0x66 32-bit move, then default 16-bit move keeps EDX[31:16] */
        movl $0x89abcdef, %edx
        movw $0x1111, %dx
        /* ESI: CS */
        movw %cs, %si
        movzwl %si, %esi
        lretl                           /* 0x66 LRET: pops 32-bit EIP and CS */
        .size code16_start, . - code16_start

        .type c16_sub, @function
c16_sub:
        subl %esp, %ecx
        ret
        .size c16_sub, . - c16_sub

/*
 * Compatibility mode (selector 0x08 under long mode), far-called from 64-bit
 * code with a 32-bit operand size. Returns
 * EAX = push delta | 0x66 push delta << 8 | near call delta << 16 | dec-eax byte << 24
 * EDX = CS, and RAX[63:32] as the CPU leaves them (checked zero on return).
 */
        .code32
        .globl compat_fn
        .type compat_fn, @function
compat_fn:
        movl %esp, %edi
        pushl %eax
        subl %esp, %edi
        popl %eax
        movl %esp, %ecx
        pushw %ax
        subl %esp, %ecx
        popw %ax
        shll $8, %ecx
        orl %ecx, %edi
        movl %esp, %ecx
        call 1f
        jmp 2f
1:      subl %esp, %ecx
        ret
2:      shll $16, %ecx
        orl %ecx, %edi
        movl $5, %eax
        .byte 0x48                      /* DEC EAX in compatibility mode */
        nop
        shll $24, %eax
        orl %edi, %eax
        movl %cs, %edx
        lret
        .size compat_fn, . - compat_fn

        .data
        .p2align 3
        .globl modes_res, modes_ran32, compat_ptr
        .type modes_res, @object
modes_res:
        .skip 16*4
        .size modes_res, . - modes_res
        .type modes_ran32, @object
modes_ran32:
        .long 0
        .size modes_ran32, 4
        .p2align 3
        .type compat_ptr, @object
compat_ptr:
        .long compat_fn
        .word 0x08
        .size compat_ptr, . - compat_ptr
