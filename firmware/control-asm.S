/* control: asm helpers (far-call targets, RET imm16) for control.c */
        .text
        .code64

/* far-called with a 32-bit operand size: stack holds EIP (4 bytes) then CS (4) */
        .globl farcallee32
        .type farcallee32, @function
farcallee32:
        movq %rsp, far_rsp(%rip)
        movl (%rsp), %eax
        movq %rax, far_ret(%rip)
        movzwl 4(%rsp), %eax
        movq %rax, far_cs(%rip)
        movl %cs, %eax
        movq %rax, far_curcs(%rip)
        lretl
        .size farcallee32, . - farcallee32

/* far-called with REX.W: stack holds RIP (8 bytes) then CS (8) */
        .globl farcallee64
        .type farcallee64, @function
farcallee64:
        movq %rsp, far_rsp(%rip)
        movq (%rsp), %rax
        movq %rax, far_ret(%rip)
        movq 8(%rsp), %rax
        movq %rax, far_cs(%rip)
        movl %cs, %eax
        movq %rax, far_curcs(%rip)
        lretq
        .size farcallee64, . - farcallee64

/* returns with RET imm16, popping 16 bytes of arguments */
        .globl ret_imm16_fn
        .type ret_imm16_fn, @function
ret_imm16_fn:
        movq 8(%rsp), %rax
        addq 16(%rsp), %rax
        ret $16
        .size ret_imm16_fn, . - ret_imm16_fn

        .globl near_target
        .type near_target, @function
near_target:
        movq $0x5a5a, %rax
        ret
        .size near_target, . - near_target

        .data
        .p2align 3
        .globl fp32_callee, fp64_callee, far_rsp, far_ret, far_cs, far_curcs, near_target_ptr
        .type fp32_callee, @object
fp32_callee:
        .long farcallee32
        .word 0x18
        .size fp32_callee, . - fp32_callee
        .p2align 3
        .type fp64_callee, @object
fp64_callee:
        .quad farcallee64
        .word 0x18
        .size fp64_callee, . - fp64_callee
        .p2align 3
        .type near_target_ptr, @object
near_target_ptr:
        .quad near_target
        .size near_target_ptr, 8
        .type far_rsp, @object
far_rsp: .quad 0
        .size far_rsp, 8
        .type far_ret, @object
far_ret: .quad 0
        .size far_ret, 8
        .type far_cs, @object
far_cs: .quad 0
        .size far_cs, 8
        .type far_curcs, @object
far_curcs: .quad 0
        .size far_curcs, 8
