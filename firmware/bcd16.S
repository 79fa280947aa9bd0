/*
 * bcd16: real-mode (16-bit) tests as a raw 64 KiB reset-vector ROM.
 * Entered at F000:FFF0 (far jump to start). Runs in real mode with
 * SS:SP = 0:0x7000, sets up its own IVT at 0 and COM1, and checks
 * DAA/DAS/AAA/AAS/AAM/AAD (bcd16-cases.inc, from the SDM pseudo-code,
 * verified on hardware), AAM 0 / DIV 0 -> #DE through the IVT, 16-bit
 * arithmetic, 16-bit addressing modes and segment defaults, PUSHA/POPA,
 * segment arithmetic, LES, XLAT, LOOP/JCXZ with CX, and 32-bit operand/address
 * size prefixes. Output: PASS/FAIL lines; exit through isa-debug-exit.
 */
        .code16

        .set FAILS,    0x500            /* RAM variables (segment 0) */
        .set CHECKS,   0x502
        .set DE_COUNT, 0x504
        .set DE_IP,    0x506
        .set DE_SKIP,  0x508
        .set SCRATCH,  0x520
        .set COM1,     0x3f8

/* CHK2 name, got1, exp1, got2, exp2: one PASS/FAIL line; preserves everything */
        .macro CHK2 name, g1, e1, g2, e2
        pushw \g2
        pushw $\e2
        pushw \g1
        pushw $\e1
        pushw $9f
        call check2
        .pushsection .rodata
9:      .asciz "\name"
        .popsection
        .endm
        .macro CHK name, g, e
        CHK2 "\name", \g, \e, $0, 0
        .endm

        .text
        .globl start
        .type start, @function
start:
        cli
        cld
        xorw %ax, %ax
        movw %ax, %ss
        movw $0x7000, %sp
        movw %ax, %ds
        movw %ax, %es
        movw %ax, FAILS
        movw %ax, CHECKS
        movw %ax, DE_COUNT
        movw $2, DE_SKIP
        call ser_init
        /* IVT: every vector -> unexpected_int, then #DE and INT 40h */
        xorw %di, %di
        movw $256, %cx
1:      movw $unexpected_int, %ax
        stosw
        movw $0xf000, %ax
        stosw
        loop 1b
        movw $de_handler, 0
        movw $int40_handler, 0x40*4
        movw $hello_msg, %si
        call puts_cs

#include "bcd16-cases.inc"

        call misc_tests
        call addr_tests
        call stack_seg_tests
        call prefix32_tests
        jmp finish
        .size start, . - start

/* #DE via the IVT */
        .type misc_tests, @function
misc_tests:
        movw $0x1234, %ax
        movw $0, DE_COUNT
1:      aam $0
        CHK "aam 0 raises #DE", DE_COUNT, 1
        CHK "aam 0 #DE return ip is the aam", DE_IP, 1b
        CHK "aam 0 leaves ax", %ax, 0x1234
        movw $0x00ff, %ax
        movw $0x0001, %dx
        xorw %bx, %bx
2:      divw %bx
        CHK2 "div16 by 0 raises #DE", DE_COUNT, 2, DE_IP, 2b
        movw $0x0200, %ax
        movb $2, %bl
3:      divb %bl                        /* 0x200 / 2 = 0x100: quotient overflow */
        CHK2 "div8 overflow raises #DE", DE_COUNT, 3, DE_IP, 3b
        movw $0x8000, %ax
        movw $0xffff, %dx
        movw $0xffff, %bx
4:      idivw %bx
        CHK "idiv16 -32768/-1 raises #DE", DE_COUNT, 4
        /* INT n through the IVT */
        xorw %dx, %dx
        int $0x40
        CHK "int 40h via ivt", %dx, 0xbeef
        /* 16-bit MUL/IMUL/DIV/IDIV */
        movw $0x1234, %ax
        movw $0x0100, %bx
        pushw $2
        popfw
        mulw %bx
        pushfw
        popw %cx
        andw $0x801, %cx
        CHK2 "mul16 dx:ax", %ax, 0x3400, %dx, 0x0012
        CHK "mul16 cf of", %cx, 0x801
        movw $0x0080, %ax
        movb $2, %bl
        mulb %bl
        pushfw
        popw %cx
        andw $0x801, %cx
        CHK2 "mul8", %ax, 0x0100, %cx, 0x801
        movw $0x0000, %ax
        movw $0x0001, %dx
        movw $0x0010, %bx
        divw %bx
        CHK2 "div16", %ax, 0x1000, %dx, 0
        movw $0xfc18, %ax
        movw $0xffff, %dx
        movw $7, %bx
        idivw %bx
        CHK2 "idiv16 -1000/7", %ax, 0xff72, %dx, 0xfffa
        movw $100, %bx
        imulw $-3, %bx, %ax
        pushfw
        popw %cx
        andw $0x801, %cx
        CHK2 "imul16 3-operand", %ax, 0xfed4, %cx, 0
        movw $0x4000, %ax
        movw $4, %bx
        imulw %bx
        pushfw
        popw %cx
        andw $0x801, %cx
        CHK2 "imul16 1-operand overflow", %ax, 0, %cx, 0x801
        CHK "imul16 1-operand dx", %dx, 1
        movw $0x1234, %ax
        shlw $4, %ax
        CHK "shl16", %ax, 0x2340
        movw $0x8001, %ax
        movb $1, %cl
        pushw $3
        popfw
        rcrw %cl, %ax
        pushfw
        popw %cx
        andw $0x801, %cx
        CHK2 "rcr16 1 (of = old msb ^ cf)", %ax, 0xc000, %cx, 0x001
        ret
        .size misc_tests, . - misc_tests

/* 16-bit addressing modes: SS default for BP-based forms, DS otherwise */
        .type addr_tests, @function
addr_tests:
        movw $0x1111, 0x600             /* SS:0x600 (SS=0) */
        movw $0x3333, 0x604             /* SS:0x604 */
        movw $0x2222, 0xb00             /* DS:0x600 with DS=0x50 */
        movw $0x4444, 0xb04             /* DS:0x604 */
        movw $0x0050, %ax
        movw %ax, %ds
        movw $0x600, %bx
        movw (%bx), %ax
        CHK "[bx] uses ds", %ax, 0x2222
        movw $0x5fc, %bx
        movw $4, %si
        movw (%bx,%si), %ax
        CHK "[bx+si] uses ds", %ax, 0x2222
        movw $0x5f0, %bx
        movw $0x10, %di
        movw 4(%bx,%di), %ax
        CHK "[bx+di+disp8] uses ds", %ax, 0x4444
        movw $0x5fc, %bp
        movw $8, %di
        movw (%bp,%di), %ax
        CHK "[bp+di] uses ss", %ax, 0x3333
        movw $0x5fc, %bp
        xorw %si, %si
        movw 4(%bp,%si), %ax
        CHK "[bp+si+disp8] uses ss", %ax, 0x1111
        movw $0x600, %bp
        movw (%bp), %ax
        CHK "[bp] (disp8 0) uses ss", %ax, 0x1111
        movw $0x608, %bp
        movw -4(%bp), %ax
        CHK "[bp-4] uses ss", %ax, 0x3333
        movw $0x100, %bp
        movw 0x504(%bp), %ax
        CHK "[bp+disp16] uses ss", %ax, 0x3333
        movw $0x600, %bp
        xorw %si, %si
        movw %ds:(%bp,%si), %ax
        CHK "ds:[bp+si] override", %ax, 0x2222
        movw $0x604, %bx
        movw %ss:(%bx), %ax
        CHK "ss:[bx] override", %ax, 0x3333
        movw 0x604, %ax
        CHK "[disp16] uses ds", %ax, 0x4444
        movw $0x604, %si
        movw (%si), %ax
        CHK "[si]", %ax, 0x4444
        movw $0x600, %di
        movw (%di), %ax
        CHK "[di]", %ax, 0x2222
        movw $0xffff, %bx
        movw $0x605, %si
        movw (%bx,%si), %ax
        CHK "[bx+si] wraps at 64K", %ax, 0x4444
        movw $0x1000, %bx
        movw 0xf600(%bx), %ax
        CHK "[bx+disp16] wraps at 64K", %ax, 0x2222
        movw $0xfff0, %bx
        movw $0x20, %si
        leaw 0x10(%bx,%si), %ax
        CHK "lea 16-bit wraps", %ax, 0x0020
        /* 0x67: 32-bit addressing in real mode */
        movl $0x600, %ebx
        addr32 movw (%ebx), %ax
        CHK "addr32 [ebx] uses ds", %ax, 0x2222
        movl $0x604, %ebp
        addr32 movw (%ebp), %ax
        CHK "addr32 [ebp] uses ss", %ax, 0x3333
        movl $0x5fc, %eax
        movl $2, %ecx
        addr32 movw (%eax,%ecx,2), %ax
        CHK "addr32 [eax+ecx*2]", %ax, 0x2222
        movl $0x10000, %ebx
        movl $0x5fc, %esi
        addr32 leaw 8(%ebx,%esi), %ax
        CHK "addr32 lea, 16-bit destination", %ax, 0x0604
        /* XLAT: DS:[BX+AL], and with a CS override on a table in ROM */
        movw $0x1122, %ax
        movw $SCRATCH, %bx
        movb $0xa5, 5(%bx)
        movb $5, %al
        xlat
        CHK "xlat ds", %ax, 0x11a5
        movw $xlat_tab, %bx
        movb $3, %al
        xlat %cs:(%bx)
        CHK "xlat cs override", %ax, 0x1130
        xorw %ax, %ax
        movw %ax, %ds
        ret
        .size addr_tests, . - addr_tests

        .type stack_seg_tests, @function
stack_seg_tests:
        /* PUSHA/POPA */
        movw $1, %ax
        movw $2, %cx
        movw $3, %dx
        movw $4, %bx
        movw $5, %bp
        movw $6, %si
        movw $7, %di
        movw %sp, SCRATCH+16
        pushaw
        movw %sp, SCRATCH+18
        movw %sp, %bp
        movw 14(%bp), %ax
        movw %ax, SCRATCH+0
        movw 12(%bp), %ax
        movw %ax, SCRATCH+2
        movw 6(%bp), %ax
        movw %ax, SCRATCH+4           /* saved SP */
        movw 0(%bp), %ax
        movw %ax, SCRATCH+6           /* DI lowest */
        movw $0xdead, 6(%bp)            /* POPA ignores the saved SP */
        xorw %ax, %ax
        xorw %bx, %bx
        popaw
        movw %sp, SCRATCH+20
        CHK2 "pusha ax cx order", SCRATCH+0, 1, SCRATCH+2, 2
        movw SCRATCH+16, %cx
        CHK2 "pusha saved sp / di", SCRATCH+4, 0x6ffe, SCRATCH+6, 7
        movw SCRATCH+16, %cx
        subw SCRATCH+18, %cx
        CHK "pusha sp -16", %cx, 16
        CHK2 "popa restores ax bx", %ax, 1, %bx, 4
        CHK2 "popa restores bp di", %bp, 5, %di, 7
        CHK "popa skips sp", SCRATCH+20, 0x6ffe
        movw %sp, SCRATCH+28
        pushal
        movw %sp, SCRATCH+30
        popal
        movw SCRATCH+28, %cx
        subw SCRATCH+30, %cx
        CHK "pushad sp -32", %cx, 32
        /* segment arithmetic: 0060:0100 == 0070:0000 == 006F:0010 */
        movw $0x0060, %ax
        movw %ax, %es
        movw $0x100, %di
        movw $0x5a5a, %es:(%di)
        movw $0x0070, %ax
        movw %ax, %ds
        movw 0, %bx
        movw $0x006f, %ax
        movw %ax, %ds
        movw 0x10, %cx
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %es
        CHK2 "segment arithmetic seg*16+off", %bx, 0x5a5a, %cx, 0x5a5a
        /* FFFF:0010 wraps to 0 only without A20; use FFFF:0000 = 0xFFFF0 (ROM alias) */
        movw $0xffff, %ax
        movw %ax, %es
        movw %es:0, %ax
        movw %cs:reset_vector, %bx
        xorw %cx, %cx
        movw %cx, %es
        subw %bx, %ax
        CHK "ffff:0000 aliases f000:fff0", %ax, 0
        /* LES/LDS */
        movw $0x1234, SCRATCH+24
        movw $0x5678, SCRATCH+26
        lesw SCRATCH+24, %bx
        movw %es, %ax
        xorw %cx, %cx
        movw %cx, %es
        CHK2 "les", %bx, 0x1234, %ax, 0x5678
        /* LOOP / JCXZ use CX in 16-bit address size */
        movw $5, %cx
        xorw %ax, %ax
1:      incw %ax
        loop 1b
        CHK2 "loop cx=5", %ax, 5, %cx, 0
        movl $0x12340003, %ecx
        xorw %ax, %ax
2:      incw %ax
        loop 2b
        movl %ecx, %edx
        shrl $16, %edx
        CHK2 "loop uses cx only", %ax, 3, %dx, 0x1234
        movl $0x00010003, %ecx
        xorw %ax, %ax
3:      incw %ax
        cmpw $10, %ax
        addr32 loopne 3b
        CHK2 "addr32 loopne uses ecx", %ax, 10, %cx, 0xfff9
        movl $0x10000, %ecx
        xorw %ax, %ax
        jcxz 4f
        movw $1, %ax
4:      CHK "jcxz with cx=0 (ecx=0x10000)", %ax, 0
        ret
        .size stack_seg_tests, . - stack_seg_tests

/* 32-bit operand size (0x66) in real mode */
        .type prefix32_tests, @function
prefix32_tests:
        movl $0x12345678, %eax
        addl $0x88888888, %eax
        pushfw
        popw %cx
        andw $0x8d5, %cx
        movl %eax, %edx
        shrl $16, %edx
        CHK2 "add32 in real mode", %ax, 0xdf00, %dx, 0x9abc
        CHK "add32 flags", %cx, 0x94
        movw %sp, %cx
        pushl $0x12345678
        movw %sp, %bx
        popw %ax
        popw %dx
        subw %bx, %cx
        CHK2 "pushl imm32 value", %ax, 0x5678, %dx, 0x1234
        CHK "pushl sp -4", %cx, 4
        movl $0x10000, %eax
        mull %eax
        CHK2 "mul32 edx:eax", %ax, 0, %dx, 1
        movl $0xfffffff9, %eax
        cltd
        movl $2, %ebx
        idivl %ebx
        movl %eax, %ecx
        shrl $16, %ecx
        CHK2 "idiv32 -7/2 quotient", %ax, 0xfffd, %cx, 0xffff
        CHK "idiv32 -7/2 remainder", %dx, 0xffff
        movl $0x80000000, %eax
        movl $0x1, %edx
        shldl $4, %edx, %eax
        movl %eax, %edx
        shrl $16, %edx
        CHK2 "shld32", %ax, 0x0000, %dx, 0x0000
        movl $0x00008001, %eax
        bswapl %eax
        movl %eax, %edx
        shrl $16, %edx
        CHK2 "bswap32", %ax, 0x0000, %dx, 0x0180
        movl $0xffff0000, %eax
        movw $0x7fff, %ax
        incw %ax
        pushfw
        popw %cx
        andw $0x8d5, %cx
        movl %eax, %edx
        shrl $16, %edx
        CHK2 "inc16 keeps eax upper", %dx, 0xffff, %ax, 0x8000
        CHK "inc16 flags", %cx, 0x894
        movl $0xffffffff, %eax
        movzbl %al, %ebx
        movsbl %al, %ecx
        shrl $16, %ecx
        CHK2 "movzx/movsx 32", %bx, 0xff, %cx, 0xffff
        ret
        .size prefix32_tests, . - prefix32_tests

        .type finish, @function
finish:
        xorw %ax, %ax
        movw %ax, %ds
        movw $done_msg, %si
        call puts_cs
        movw CHECKS, %ax
        call puthex16
        movw $fails_msg, %si
        call puts_cs
        movw FAILS, %ax
        call puthex16
        movb $'\n', %al
        call putc
        xorl %eax, %eax
        cmpw $0, FAILS
        je 1f
        incl %eax
1:      movw $0xf4, %dx
        outl %eax, %dx
2:      cli
        hlt
        jmp 2b
        .size finish, . - finish

/* check2: args (pushed in this order) got2, exp2, got1, exp1, name */
        .type check2, @function
check2:
        pushw %bp
        movw %sp, %bp
        pushfw
        pushaw
        pushw %ds
        xorw %ax, %ax
        movw %ax, %ds
        incw CHECKS
        movw 8(%bp), %ax
        cmpw 6(%bp), %ax
        jne 1f
        movw 12(%bp), %ax
        cmpw 10(%bp), %ax
        jne 1f
        movw $pass_msg, %si
        call puts_cs
        movw 4(%bp), %si
        call puts_cs
        jmp 2f
1:      incw FAILS
        movw $fail_msg, %si
        call puts_cs
        movw 4(%bp), %si
        call puts_cs
        movw $exp_msg, %si
        call puts_cs
        movw 6(%bp), %ax
        call puthex16
        movw $got_msg, %si
        call puts_cs
        movw 8(%bp), %ax
        call puthex16
        movw $exp2_msg, %si
        call puts_cs
        movw 10(%bp), %ax
        call puthex16
        movw $got_msg, %si
        call puts_cs
        movw 12(%bp), %ax
        call puthex16
2:      movb $'\n', %al
        call putc
        popw %ds
        popaw
        popfw
        popw %bp
        ret $10
        .size check2, . - check2

        .type de_handler, @function
de_handler:
        pushw %bp
        movw %sp, %bp
        pushw %ax
        pushw %ds
        xorw %ax, %ax
        movw %ax, %ds
        incw DE_COUNT
        movw 2(%bp), %ax                /* IP of the faulting instruction */
        movw %ax, DE_IP
        movw DE_SKIP, %ax
        addw %ax, 2(%bp)
        popw %ds
        popw %ax
        popw %bp
        iret
        .size de_handler, . - de_handler

        .type int40_handler, @function
int40_handler:
        movw $0xbeef, %dx
        iret
        .size int40_handler, . - int40_handler

        .type unexpected_int, @function
unexpected_int:
        xorw %ax, %ax
        movw %ax, %ds
        incw FAILS
        movw $unexp_msg, %si
        call puts_cs
        movw %sp, %bp
        movw 2(%bp), %ax
        call puthex16
        movb $':', %al
        call putc
        movw 0(%bp), %ax
        call puthex16
        movb $'\n', %al
        call putc
        jmp finish
        .size unexpected_int, . - unexpected_int

        .type ser_init, @function
ser_init:
        movw $COM1+1, %dx
        xorb %al, %al
        outb %al, %dx
        movw $COM1+3, %dx
        movb $0x80, %al
        outb %al, %dx
        movw $COM1, %dx
        movb $1, %al
        outb %al, %dx
        movw $COM1+1, %dx
        xorb %al, %al
        outb %al, %dx
        movw $COM1+3, %dx
        movb $3, %al
        outb %al, %dx
        movw $COM1+2, %dx
        movb $0xc7, %al
        outb %al, %dx
        movw $COM1+4, %dx
        movb $3, %al
        outb %al, %dx
        ret
        .size ser_init, . - ser_init

/* putc: AL; preserves all but flags */
        .type putc, @function
putc:
        pushw %dx
        pushw %ax
        movw $COM1+5, %dx
1:      inb %dx, %al
        testb $0x20, %al
        jz 1b
        popw %ax
        movw $COM1, %dx
        outb %al, %dx
        popw %dx
        ret
        .size putc, . - putc

/* puts_cs: CS:SI, NUL-terminated */
        .type puts_cs, @function
puts_cs:
        pushw %ax
        pushw %si
1:      movb %cs:(%si), %al
        testb %al, %al
        jz 2f
        call putc
        incw %si
        jmp 1b
2:      popw %si
        popw %ax
        ret
        .size puts_cs, . - puts_cs

/* puthex16: AX as 0xNNNN */
        .type puthex16, @function
puthex16:
        pushw %ax
        pushw %bx
        pushw %cx
        movw %ax, %bx
        movb $'0', %al
        call putc
        movb $'x', %al
        call putc
        movw $4, %cx
1:      rolw $4, %bx
        movw %bx, %ax
        andw $15, %ax
        pushw %bx
        movw %ax, %bx
        movb %cs:hexdigits(%bx), %al
        popw %bx
        call putc
        loop 1b
        popw %cx
        popw %bx
        popw %ax
        ret
        .size puthex16, . - puthex16

        .section .rodata
        .type xlat_tab, @object
xlat_tab: .byte 0x00, 0x10, 0x20, 0x30, 0x40
        .size xlat_tab, . - xlat_tab
hexdigits: .ascii "0123456789abcdef"
hello_msg: .asciz "# bcd16: real-mode tests from the reset vector\n"
pass_msg: .asciz "PASS "
fail_msg: .asciz "FAIL "
exp_msg: .asciz ": expected "
exp2_msg: .asciz ", second expected "
got_msg: .asciz " got "
unexp_msg: .asciz "FAIL unexpected-interrupt: at "
done_msg: .asciz "# checks "
fails_msg: .asciz " failures "

        .section .reset, "ax"
        .globl reset_vector
        .type reset_vector, @function
reset_vector:
        ljmp $0xf000, $start
        .size reset_vector, . - reset_vector
