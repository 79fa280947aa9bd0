/*
 * smp: the application processor's way from the start-up IPI to 64-bit C.
 *
 * ap_tramp..ap_tramp_end is copied to 0x8000 by the BSP; the SIPI vector 0x08
 * starts the AP in real mode at 0800:0000. It loads the guest's GDT (32-bit
 * base, through a descriptor inside the trampoline), enters 32-bit protected
 * mode at ap_pm32 in the image, then long mode with the BSP's page tables, and
 * calls ap_main() on its own stack.
 */
#define TRAMP 0x8000

        .section .rodata
        .code16
        .globl ap_tramp, ap_tramp_end
ap_tramp:
        cli
        movw %cs, %ax
        movw %ax, %ds
        lgdtl ap_gdt_desc - ap_tramp
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmpl $0x08, $ap_pm32
        .p2align 2
ap_gdt_desc:
        .word 6 * 8 - 1
        .long gdt
ap_tramp_end:

        .text
        .code32
        .type ap_pm32, @function
ap_pm32:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movl $ap_stack_top, %esp
        movl %cr4, %eax
        orl $(1 << 5) | (1 << 9) | (1 << 10), %eax
        movl %eax, %cr4
        movl $pml4, %eax
        movl %eax, %cr3
        movl $0xC0000080, %ecx
        rdmsr
        orl $(1 << 8), %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000003, %eax
        andl $~(1 << 2), %eax
        movl %eax, %cr0
        ljmp $0x18, $ap_long
        .size ap_pm32, . - ap_pm32

        .code64
        .type ap_long, @function
ap_long:
        movabsq $ap_stack_top, %rsp
        lidt ap_idt_desc(%rip)
        call ap_main
1:      cli
        hlt
        jmp 1b
        .size ap_long, . - ap_long

        .data
ap_idt_desc:
        .word 256 * 16 - 1
        .quad idt

        .bss
        .p2align 4
ap_stack:
        .skip 16384
ap_stack_top:
