/*
 * segments: 32-bit case bodies run in compatibility mode (limits and types are
 * checked there, unlike 64-bit mode). segments.c far-calls c32_case through a
 * 32-bit code selector with EBX = case body; EAX/ECX/EDX/ESI are the inputs,
 * EAX/EDX the outputs. A deliberate fault resumes at c32_fault (the 64-bit
 * handler's resume address), which restores the stack and segments.
 */
        .text
        .code32
        .globl c32_case, c32_fault
        .type c32_case, @function
c32_case:
        pushl %ebp
        pushl %ds
        pushl %es
        pushl %fs
        pushl %gs
        movl %esp, c32_saved_esp
        movl $0, c32_faulted
        call *%ebx
        jmp 2f
c32_fault:
        movw $0x10, %bx
        movw %bx, %ds
        movw %bx, %es
        movw %bx, %ss
        movl c32_saved_esp, %esp
        movl $1, c32_faulted
2:      movw $0x10, %bx
        movw %bx, %ss
        popl %gs
        popl %fs
        popl %es
        popl %ds
        popl %ebp
        lret
        .size c32_case, . - c32_case

#define CASE(name) .globl name; .type name, @function; name:
/* loads: selector in EAX */
CASE(k_mov_ds)    movw %ax, %ds; ret
CASE(k_mov_ss)    movw %ax, %ss; movw $0x10, %ax; movw %ax, %ss; ret
CASE(k_lds)       movl %eax, c32_farptr+4; ldsl c32_farptr, %eax; ret
CASE(k_pop_es)    pushl %eax; popl %es; ret
/* accesses: selector EAX into DS (ES for writes), offset ESI */
CASE(k_read_ds)   movw %ax, %ds; movl (%esi), %eax; ret
CASE(k_readb_ds)  movw %ax, %ds; movb (%esi), %al; ret
CASE(k_write_ds)  movw %ax, %ds; movl %ecx, (%esi); ret
CASE(k_add_ds)    movw %ax, %ds; addl %ecx, (%esi); ret
CASE(k_movs_es)   movw %ax, %es; movl %esi, %edi; movl $c32_scratch, %esi; movsl; ret
CASE(k_read_cs)   movl %cs:(%esi), %eax; ret
CASE(k_write_cs)  movl %ecx, %cs:(%esi); ret
/* stack: SS = EAX, then an EBP-based (SS) read at ESI, or a push with ESP = ESI */
CASE(k_read_ss)   movl %esp, %edi; movw %ax, %ss; movl %esi, %ebp; movl (%ebp), %eax; movw $0x10, %ax; movw %ax, %ss; ret
CASE(k_push_ss)   movl %esp, %edi; movw %ax, %ss; movl %esi, %esp; pushl %eax; movw $0x10, %ax; movw %ax, %ss; movl %edi, %esp; ret
/* inspection: selector in ECX; EAX = result, EDX = ZF */
CASE(k_lar)       movl $0x5555, %eax; larl %ecx, %eax; setz %dl; movzbl %dl, %edx; ret
CASE(k_lsl)       movl $0x5555, %eax; lsll %ecx, %eax; setz %dl; movzbl %dl, %edx; ret
CASE(k_verr)      verr %cx; setz %dl; movzbl %dl, %edx; ret
CASE(k_verw)      verw %cx; setz %dl; movzbl %dl, %edx; ret
CASE(k_arpl)      movl %ecx, %edx; arpl %ax, %dx; setz %al; movzbl %al, %eax; ret
/* far transfers: selector in EAX */
CASE(k_lcall)     movl %eax, c32_farptr+4; movl $k_far_target, c32_farptr; lcall *c32_farptr; ret
CASE(k_ljmp)      movl %eax, c32_farptr+4; movl $k_far_target_jmp, c32_farptr; ljmp *c32_farptr
k_far_target:     movl %cs, %eax; lret
k_far_target_jmp: movl %cs, %eax; ljmp *c32_back
        .globl k_back
k_back:           ret
/* CS limit: jump to offset ESI in code selector EAX (fault expected) */
CASE(k_jmp_limit) movl %eax, c32_farptr+4; movl %esi, c32_farptr; ljmp *c32_farptr

        .data
        .p2align 3
        .globl c32_saved_esp, c32_faulted, c32_farptr, c32_scratch
c32_saved_esp:  .long 0
c32_faulted:    .long 0
c32_farptr:     .long 0, 0
c32_back:       .long k_back, 0x08
c32_scratch:    .long 0x11223344
