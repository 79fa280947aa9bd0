/* main32 for pure 64-bit guests: go straight to long mode (lib/long.S). */
        .text
        .code32
        .globl main32
        .type main32, @function
main32:
        jmp go_long
        .size main32, . - main32
