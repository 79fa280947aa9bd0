/*
 * Shared multiboot v1 entry (32-bit part).
 *
 * The loader enters _start in 32-bit flat protected mode, paging off,
 * EAX=0x2BADB002, EBX=multiboot info.  We load our own GDT (the loader's
 * may be anywhere), clear .bss, set up a stack, initialise COM1 and call
 * main32.  A 32-bit-only guest defines main32 and returns its failure
 * count in EAX; 64-bit guests link lib/golong.S, whose main32 switches to
 * long mode (lib/long.S) and never returns.
 *
 * GDT selectors (shared by every guest):
 *   0x08 32-bit code (D=1)      0x10 32/64-bit data
 *   0x18 64-bit code (L=1)      0x20 16-bit code (D=0, limit 64K)
 *   0x28 16-bit data (limit 64K)
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003      /* page-align modules + memory info; bit 16 clear */

        .section .multiboot, "a"
        .p2align 2
        .globl mb_header
        .type mb_header, @object
mb_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)
        .size mb_header, . - mb_header

        .section .text.entry, "ax"
        .code32
        .globl _start
        .type _start, @function
_start:
        cli
        cld
        movl %eax, mb_magic
        movl %ebx, mb_info
        lgdt gdt_desc
        ljmp $0x08, $1f
1:      movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw %ax, %fs
        movw %ax, %gs
        movl $stack_top, %esp
        /* clear .bss (the ELF loader should have, but be safe); keep mb_* */
        movl $__bss_start, %edi
        movl $__bss_end, %ecx
        subl %edi, %ecx
        xorl %eax, %eax
        rep stosb
        call ser_init32
        call main32
        /* 32-bit guests return their failure count */
        pushl %eax
        call exit32
        .size _start, . - _start

        .data
        .p2align 3
        .globl gdt
        .type gdt, @object
gdt:
        .quad 0
        .quad 0x00CF9A000000FFFF        /* 0x08 code32 */
        .quad 0x00CF92000000FFFF        /* 0x10 data   */
        .quad 0x00AF9A000000FFFF        /* 0x18 code64 */
        .quad 0x00009A000000FFFF        /* 0x20 code16 */
        .quad 0x000092000000FFFF        /* 0x28 data16 */
        .size gdt, . - gdt
        .globl gdt_desc
        .type gdt_desc, @object
gdt_desc:
        .word gdt_desc - gdt - 1
        .quad gdt                       /* 8-byte base works for lgdt in both modes */
        .size gdt_desc, . - gdt_desc

        .globl mb_magic, mb_info
        .type mb_magic, @object
mb_magic: .long 0
        .size mb_magic, 4
        .type mb_info, @object
mb_info: .long 0
        .size mb_info, 4

        .bss
        .p2align 4
        .globl stack_bottom, stack_top
        .type stack_bottom, @object
stack_bottom:
        .skip 65536
        .size stack_bottom, . - stack_bottom
        .type stack_top, @object
stack_top:
        .size stack_top, 0
