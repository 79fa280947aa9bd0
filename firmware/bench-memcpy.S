/*
 * bench-memcpy: copy a 1 MiB buffer back and forth between two buffers with
 * a simple qword mov loop (no REP MOVS): 6 instructions per 8 bytes
 * (load, store, add, add, dec, jnz) = 786,432 per pass; 382 passes
 * = ~300.4 million instructions (+ ~0.8 million to fill the source once).
 * Prints RESULT <hex> (a checksum sampled from the final buffer).
 */
        .set BUFSZ, 1 << 20
        .set PASSES, 382

        .text
        .code64
        .globl test_main
        .type test_main, @function
test_main:
        /* fill buf_a with a pattern */
        leaq buf_a(%rip), %rdi
        movl $BUFSZ / 8, %ecx
        movq $0x9e3779b97f4a7c15, %rax
        movq $0x632be59bd9b4e019, %rdx
1:      movq %rax, (%rdi)
        addq %rdx, %rax
        addq $8, %rdi
        decq %rcx
        jnz 1b
        xorl %r9d, %r9d                 /* pass number */
        leaq buf_a(%rip), %r10
        leaq buf_b(%rip), %r11
2:      movq %r10, %rsi
        movq %r11, %rdi
        movl $BUFSZ / 8, %ecx
3:      movq (%rsi), %rax
        movq %rax, (%rdi)
        addq $8, %rsi
        addq $8, %rdi
        decq %rcx
        jnz 3b
        addq %r9, (%r11)                /* make every pass matter */
        xchgq %r10, %r11
        incq %r9
        cmpq $PASSES, %r9
        jb 2b
        /* checksum: every 4 KiB-th qword of the last destination */
        xorl %eax, %eax
        movq %r10, %rsi
        movl $BUFSZ / 4096, %ecx
4:      rolq $5, %rax
        xorq (%rsi), %rax
        addq $4096, %rsi
        decq %rcx
        jnz 4b
        movq %rax, %rdi
        call bench_result
        .size test_main, . - test_main

        .bss
        .p2align 12
        .type buf_a, @object
buf_a:  .skip BUFSZ
        .size buf_a, BUFSZ
        .type buf_b, @object
buf_b:  .skip BUFSZ
        .size buf_b, BUFSZ
