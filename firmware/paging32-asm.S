/*
 * 32-bit half of the paging guest: main32 (instead of lib/golong.S) installs a
 * small 32-bit IDT whose #PF and #GP handlers record the vector, error code and
 * CR2 and resume at p32_resume, runs the 32-bit and PAE paging checks
 * (paging32.m32.c, compiled as 32-bit code), turns paging off again and
 * continues into long mode, where test_main reports the recorded results.
 */
        .text
        .code32
        .globl main32
        .type main32, @function
main32:
        /* IDT: vectors 0-31 -> p32_other, 13 -> p32_gp, 14 -> p32_pf. */
        xorl %ecx, %ecx
1:      movl $p32_other, %eax
        cmpl $13, %ecx
        jne 2f
        movl $p32_gp, %eax
2:      cmpl $14, %ecx
        jne 3f
        movl $p32_pf, %eax
3:      movw %ax, idt32(,%ecx,8)
        movw $0x08, idt32+2(,%ecx,8)
        movw $0x8E00, idt32+4(,%ecx,8)
        shrl $16, %eax
        movw %ax, idt32+6(,%ecx,8)
        incl %ecx
        cmpl $32, %ecx
        jb 1b
        lidt idt32_desc
        call p32_tests
        /* Paging off, PAE/PSE off, NXE off: go_long starts from a clean state. */
        movl %cr0, %eax
        andl $0x7fffffff, %eax
        movl %eax, %cr0
        movl %cr4, %eax
        andl $~0x30, %eax
        movl %eax, %cr4
        movl $0xC0000080, %ecx
        rdmsr
        andl $~(1 << 11), %eax
        wrmsr
        jmp go_long
        .size main32, . - main32

p32_pf: popl p32_err
        pushl %eax
        movl %cr2, %eax
        movl %eax, p32_cr2
        movl $14, p32_vec
        jmp 9f
p32_gp: popl p32_err
        pushl %eax
        movl $13, p32_vec
        jmp 9f
p32_other:
        pushl %eax
        movl $0xff, p32_vec
9:      movl p32_resume, %eax
        movl %eax, 4(%esp)
        popl %eax
        iret

        .data
        .p2align 3
idt32_desc:
        .word 32 * 8 - 1
        .long idt32
        .globl p32_vec, p32_err, p32_cr2, p32_resume
p32_vec:    .long 0
p32_err:    .long 0
p32_cr2:    .long 0
p32_resume: .long 0
        .bss
        .p2align 3
idt32:  .skip 32 * 8
