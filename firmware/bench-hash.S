/*
 * bench-hash: 64-bit FNV-1a over a 1 MiB buffer, 48 passes chained.
 * 6 instructions per byte (movzbl, xor, imul, inc, dec, jnz) x 1 MiB x 48
 * = ~302 million instructions (+ ~0.5 million to fill the buffer).
 * Prints RESULT <hex> (the final hash).
 */
        .set BUFSZ, 1 << 20
        .set PASSES, 48

        .text
        .code64
        .globl test_main
        .type test_main, @function
test_main:
        /* xorshift64 fill */
        leaq hbuf(%rip), %rdi
        movl $BUFSZ / 8, %ecx
        movq $0x2545f4914f6cdd1d, %rax
1:      movq %rax, %rdx
        shlq $13, %rdx
        xorq %rdx, %rax
        movq %rax, %rdx
        shrq $7, %rdx
        xorq %rdx, %rax
        movq %rax, %rdx
        shlq $17, %rdx
        xorq %rdx, %rax
        movq %rax, (%rdi)
        addq $8, %rdi
        decq %rcx
        jnz 1b
        movq $0xcbf29ce484222325, %rdx  /* FNV offset basis */
        movq $0x100000001b3, %r8        /* FNV prime */
        movl $PASSES, %r9d
2:      leaq hbuf(%rip), %rsi
        movl $BUFSZ, %ecx
3:      movzbl (%rsi), %eax
        xorq %rax, %rdx
        imulq %r8, %rdx
        incq %rsi
        decq %rcx
        jnz 3b
        decl %r9d
        jnz 2b
        movq %rdx, %rdi
        call bench_result
        .size test_main, . - test_main

        .bss
        .p2align 12
        .type hbuf, @object
hbuf:   .skip BUFSZ
        .size hbuf, BUFSZ
