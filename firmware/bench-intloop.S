/*
 * bench-intloop: integer ALU loop on registers.
 * 10 instructions per iteration (add/sub/xor/shl/add/shr/xor/add/dec/jnz)
 * x 30,000,000 iterations = ~300 million instructions (+ a few hundred of
 * setup/reporting). Prints RESULT <hex> (the xor of the live registers).
 */
        .text
        .code64
        .globl test_main
        .type test_main, @function
test_main:
        movl $30000000, %ecx
        movq $0x0123456789abcdef, %rax
        movq $2, %rdx
        movq $3, %rsi
        movq $4, %rdi
        movq $5, %r8
1:      addq %rdx, %rax
        subq %rsi, %rdx
        xorq %rax, %rsi
        shlq $3, %rdi
        addq %rax, %rdi
        shrq $2, %r8
        xorq %rdi, %r8
        addq $7, %rsi
        decq %rcx
        jnz 1b
        xorq %rdx, %rax
        xorq %rsi, %rax
        xorq %rdi, %rax
        xorq %r8, %rax
        movq %rax, %rdi
        call bench_result
        .size test_main, . - test_main
