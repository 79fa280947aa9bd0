/*
 * modes2: mode transitions. main32 (32-bit protected mode, multiboot entry)
 * checks the CR0/EFER faults, then makes trip 1: PM32 -> PM16 (selector 0x20)
 * -> real mode (stub copied to 0x8000) -> PM32, and enters long mode. From
 * 64-bit code, mode_trip() makes trip 2: long mode -> compatibility mode ->
 * leave long mode (CR0.PG = 0, then EFER.LME = 0) -> PM16 -> real mode -> PM32
 * -> long mode again, and returns to its C caller. The real-mode stub records
 * into 0x7000 + 4*n; PM32 copies those into res32[16..] (trip 1) and
 * res32[32..] (trip 2). modes2.c checks everything.
 */
#include "pm32.inc"

#define STUB 0x8000
#define RBUF 0x7000
#define FARPTR 0x7ff0
#define S(x) (STUB + (x) - rm_stub)

        .text
        .code32
        .globl main32
        .type main32, @function
main32:
        call idt32_init
        movl %esp, saved_esp
        movl %cs, %eax; REC 0, %eax
        movl %cr0, %eax; andl $1, %eax; REC 1, %eax
        /* CR0/EFER faults in protected mode */
        EXPECT32 13, 1f
        movl %cr0, %eax
        andl $~1, %eax
        orl $0x80000000, %eax               /* PG without PE */
        movl %eax, %cr0
1:      RECM 2, exc32_vec; RECM 3, exc32_err
        EXPECT32 13, 1f
        movl %cr0, %eax
        orl $0x20000000, %eax               /* NW without CD */
        andl $~0x40000000, %eax
        movl %eax, %cr0
1:      RECM 4, exc32_vec; RECM 5, exc32_err
        EXPECT32 13, 1f
        movl $0xc0000080, %ecx
        rdmsr
        orl $0x100, %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000000, %eax               /* LME with CR4.PAE clear */
        movl %eax, %cr0
1:      RECM 6, exc32_eip; movl $0xc0000080, %ecx; rdmsr; REC 7, %eax
        movl %cr0, %eax; REC 8, %eax
        movl $0xc0000080, %ecx
        rdmsr
        andl $~0x100, %eax
        wrmsr
        RECM 9, exc32_count
        /* copy the real-mode stub below 1 MiB */
        movl $rm_stub, %esi
        movl $STUB, %edi
        movl $rm_stub_end - rm_stub, %ecx
        rep movsb
        /* trip 1 */
        movl $pm32_back1, FARPTR
        movw $0x08, FARPTR + 4
        ljmp $0x20, $STUB
        .globl pm32_back1
pm32_back1:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw %ax, %gs
        movl saved_esp, %esp
        movl %cs, %eax; REC 10, %eax
        movl %cr0, %eax; andl $1, %eax; REC 11, %eax
        movl %fs, %eax; REC 12, %eax        /* 0: loaded in real mode */
        movl $RBUF, %esi
        movl $res32 + 16*4, %edi
        movl $16, %ecx
        rep movsl
        movw $0x10, %ax
        movw %ax, %fs
        jmp go_long
        .size main32, . - main32

/* ---- real-mode stub, copied to STUB; entered in 16-bit PM at CS 0x20 (base 0) ---- */
        .code16
        .globl rm_stub, rm_stub_end
rm_stub:
        movl %cs, %eax
        movl %eax, RBUF + 4*0
        movl %esp, %ebx
        pushw %ax                           /* 16-bit code: push is 2 bytes */
        subl %esp, %ebx
        popw %ax
        movl %ebx, RBUF + 4*1
        /* real-mode style segments: 64 KiB data; FS flat 4 GiB for unreal mode */
        movw $0x28, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %gs
        movw %ax, %ss
        movw $0x10, %ax
        movw %ax, %fs
        movl %cr0, %eax
        andl $~1, %eax
        movl %eax, %cr0
        ljmp $0, $S(rm_real)
rm_real:
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movl $0x7c00, %esp
        lidtw S(rm_idtr)
        movl %cr0, %eax
        andl $1, %eax
        movl %eax, RBUF + 4*2
        movl %cs, %eax
        movl %eax, RBUF + 4*3
        movl %esp, %ebx
        pushw %ax
        subl %esp, %ebx
        popw %ax
        movl %ebx, RBUF + 4*4
        /* unreal mode: FS keeps its 4 GiB limit in real mode */
        movl $u_magic, %ebx
        addr32 movl %fs:(%ebx), %eax
        movl %eax, RBUF + 4*5
        xorw %ax, %ax
        movw %ax, %fs                       /* a real-mode load keeps the limit */
        addr32 movl %fs:(%ebx), %eax
        movl %eax, RBUF + 4*6
        /* DS kept the 64 KiB limit: #GP through the IVT */
        movw $S(rm_gp), 13*4
        movw $0, 13*4 + 2
        movl $0, RBUF + 4*7
        movl $0x10000, %ebx
        addr32 movl (%ebx), %eax
        movl $0x1234, RBUF + 4*7            /* skipped by the handler */
rm_gp_resume:
        /* INT n through the IVT */
        movw $S(rm_int50), 0x50*4
        movw $0, 0x50*4 + 2
        movl $0, %eax
        int $0x50
        movl %eax, RBUF + 4*8
        /* segment arithmetic: ES = 0x700 reaches linear 0x7000 */
        movw $0x700, %ax
        movw %ax, %es
        movl %es:4*8, %eax                  /* = RBUF + 4*8 */
        movl %eax, RBUF + 4*9
        /* back to protected mode */
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmpl *FARPTR

rm_gp:
        pushw %bp
        movw %sp, %bp
        movw 4(%bp), %ax
        movw %ax, RBUF + 4*10               /* the faulting IP */
        movw $S(rm_gp_resume), 2(%bp)
        movl $13, RBUF + 4*7
        popw %bp
        iret
rm_int50:
        movl $0x50505050, %eax
        iret
rm_idtr:
        .word 0x3ff
        .long 0
rm_stub_end:

/* ---- trip 2, from 64-bit code ---- */
        .code64
        .globl mode_trip
        .type mode_trip, @function
mode_trip:
        pushq %rbx
        pushq %rbp
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rsp, trip_rsp(%rip)
        sidt trip_idtr(%rip)
        ljmpl *compat_ptr(%rip)
        .size mode_trip, . - mode_trip

        .code32
compat_entry:
        movl %cs, %eax; REC 48, %eax
        movl $0xc0000080, %ecx
        rdmsr
        andl $0x500, %eax; REC 49, %eax     /* LME | LMA */
        movl %cr0, %eax; shrl $31, %eax; REC 50, %eax
        movl %esp, %ebx
        pushl %eax
        subl %esp, %ebx
        popl %eax
        REC 51, %ebx
        /* leave long mode: paging off in compatibility mode clears LMA */
        movl %cr0, %eax
        andl $0x7fffffff, %eax
        movl %eax, %cr0
        movl $0xc0000080, %ecx
        rdmsr
        andl $0x500, %eax; REC 52, %eax
        andl $~0x100, %eax
        wrmsr
        rdmsr
        andl $0x500, %eax; REC 53, %eax
        movl %cs, %eax; REC 54, %eax
        movl $pm32_back2, FARPTR
        movw $0x08, FARPTR + 4
        ljmp $0x20, $STUB
pm32_back2:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw %ax, %gs
        movl trip_rsp, %esp
        movl %cs, %eax; REC 55, %eax
        movl $RBUF, %esi
        movl $res32 + 32*4, %edi
        movl $16, %ecx
        rep movsl
        movw $0x10, %ax
        movw %ax, %fs
        /* long mode again: PAE and CR3 are still set */
        movl $0xc0000080, %ecx
        rdmsr
        orl $0x100, %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        ljmp $0x18, $long_back
        .code64
long_back:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movq trip_rsp(%rip), %rsp
        lidt trip_idtr(%rip)
        movl %cs, %eax; REC 56, %eax
        movl $0xc0000080, %ecx
        rdmsr
        andl $0x500, %eax; REC 57, %eax
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbp
        popq %rbx
        ret

        .data
        .p2align 3
        .globl u_magic
saved_esp:  .long 0
u_magic:    .long 0x0c0ffee5
compat_ptr: .long compat_entry, 0x08
trip_rsp:   .quad 0
trip_idtr:  .word 0
            .quad 0
