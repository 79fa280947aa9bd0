/*
 * 32-bit protected-mode COM1 routines (cdecl: args on the stack, EAX/ECX/EDX
 * clobbered), for the 32-bit entry variant and for 32-bit code in mixed guests.
 */
#define COM1 0x3f8

        .text
        .code32

        .globl ser_init32
        .type ser_init32, @function
ser_init32:
        movw $COM1+1, %dx; xorb %al, %al; outb %al, %dx     /* IER = 0 */
        movw $COM1+3, %dx; movb $0x80, %al; outb %al, %dx   /* DLAB */
        movw $COM1+0, %dx; movb $1, %al; outb %al, %dx      /* 115200 */
        movw $COM1+1, %dx; xorb %al, %al; outb %al, %dx
        movw $COM1+3, %dx; movb $0x03, %al; outb %al, %dx   /* 8N1 */
        movw $COM1+2, %dx; movb $0xc7, %al; outb %al, %dx   /* FIFO on */
        movw $COM1+4, %dx; movb $0x03, %al; outb %al, %dx   /* DTR|RTS */
        ret
        .size ser_init32, . - ser_init32

/* putc32(char c) */
        .globl putc32
        .type putc32, @function
putc32:
        movw $COM1+5, %dx
1:      inb %dx, %al
        testb $0x20, %al
        jz 1b
        movb 4(%esp), %al
        movw $COM1, %dx
        outb %al, %dx
        ret
        .size putc32, . - putc32

/* puts32(const char *s) */
        .globl puts32
        .type puts32, @function
puts32:
        pushl %esi
        movl 8(%esp), %esi
1:      movzbl (%esi), %eax
        testl %eax, %eax
        jz 2f
        pushl %eax
        call putc32
        addl $4, %esp
        incl %esi
        jmp 1b
2:      popl %esi
        ret
        .size puts32, . - puts32

/* puthex32(uint32 v): prints 0x%08x */
        .globl puthex32
        .type puthex32, @function
puthex32:
        pushl %ebx
        pushl %esi
        movl 12(%esp), %ebx
        pushl $'0'; call putc32; addl $4, %esp
        pushl $'x'; call putc32; addl $4, %esp
        movl $8, %esi
1:      roll $4, %ebx
        movl %ebx, %eax
        andl $15, %eax
        movzbl hexdigits32(%eax), %eax
        pushl %eax; call putc32; addl $4, %esp
        decl %esi
        jnz 1b
        popl %esi
        popl %ebx
        ret
        .size puthex32, . - puthex32

/* exit32(uint32 failures): isa-debug-exit with 0 (all passed) or 1 */
        .globl exit32
        .type exit32, @function
exit32:
        movl 4(%esp), %eax
        testl %eax, %eax
        setnz %al
        movzbl %al, %eax
        movw $0xf4, %dx
        outl %eax, %dx
1:      cli
        hlt
        jmp 1b
        .size exit32, . - exit32

        .section .rodata
        .type hexdigits32, @object
hexdigits32: .ascii "0123456789abcdef"
        .size hexdigits32, 16
