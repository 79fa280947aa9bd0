/*
 * modes (part 2, 64-bit): reports the 32-bit and 16-bit protected-mode
 * results recorded by modes.S, then checks operand/address-size defaults and
 * prefixes, PUSH/POP and CALL/RET widths in 64-bit mode and in
 * compatibility mode (far call to compat_fn through selector 0x08).
 */
#include "guest.h"

extern u32 modes_res[16], modes_ran32;

static void report32(void)
{
    check("pm32 ran", modes_ran32, 1);
    check("pm32 push r32 = 4 bytes", modes_res[0], 4);
    check("pm32 push r16 (0x66) = 2 bytes", modes_res[1], 2);
    check("pm32 near call = 4 bytes", modes_res[2], 4);
    check("pm32 0x66 mov keeps eax[31:16]", modes_res[3], 0x1234ffff);
    check("pm32 0x67 16-bit address wraps", modes_res[4], 0x1);
    check("pm32 0x48 is dec eax", modes_res[5], 4);
    check("pm32 push imm8 sign-extends", modes_res[6], 0xfffffffe);
    check("pm16 push r16 = 2 bytes", modes_res[7] & 0xff, 2);
    check("pm16 push r32 (0x66) = 4 bytes", (modes_res[7] >> 8) & 0xff, 4);
    check("pm16 near call = 2 bytes", (modes_res[7] >> 16) & 0xff, 2);
    check("pm16 16-bit lea wraps", modes_res[8], 0x1);
    check("pm16 0x67 32-bit lea", modes_res[9], 0x10001);
    check("pm16 16-bit mov keeps edx[31:16]", modes_res[10], 0x89ab1111);
    check("pm16 cs", modes_res[11], 0x20);
    check("pm32 far call/lretl balanced", modes_res[12], 0);
    check("pm32 cs after return", modes_res[13], 0x08);
}

static void long64(void)
{
    u64 a, b, s0;
    __asm__ volatile("mov %%rsp,%[s]\n\tpush %%rax\n\tsub %%rsp,%[s]\n\tpop %%rax" : [s] "=&r"(a) :: "rax", "memory");
    check("lm64 push r64 = 8 bytes", a, 8);
    __asm__ volatile("mov %%rsp,%[s]\n\tpushw %%ax\n\tsub %%rsp,%[s]\n\tpopw %%ax" : [s] "=&r"(a) :: "rax", "memory");
    check("lm64 push r16 (0x66) = 2 bytes", a, 2);
    __asm__ volatile("mov %%rsp,%[s]\n\tcall 1f\n\tjmp 2f\n1:\tsub %%rsp,%[s]\n\tret\n2:" : [s] "=&r"(a) :: "memory");
    check("lm64 near call = 8 bytes", a, 8);
    a = 0xffffffffffffffffUL;
    __asm__ volatile("movl $0x80000000,%k0" : "+r"(a));
    check("lm64 32-bit op zero-extends", a, 0x80000000UL);
    a = 0xffffffffffffffffUL;
    __asm__ volatile("movw $0x1234,%w0" : "+r"(a));
    check("lm64 16-bit op keeps upper", a, 0xffffffffffff1234UL);
    a = 0xffffffffffffffffUL;
    __asm__ volatile("movb $0x12,%b0" : "+r"(a));
    check("lm64 8-bit op keeps upper", a, 0xffffffffffffff12UL);
    __asm__ volatile("leaq (%k[x],%k[y]),%[r]" : [r] "=r"(a) : [x] "r"(0xffffffffUL), [y] "r"(2UL));
    check("lm64 0x67 address wraps at 4 GiB", a, 1);
    __asm__ volatile("leaq (%[x],%[y]),%[r]" : [r] "=r"(a) : [x] "r"(0xffffffffUL), [y] "r"(2UL));
    check("lm64 default 64-bit address", a, 0x100000001UL);
    __asm__ volatile("leal (%[x],%[y]),%k[r]" : [r] "=r"(a) : [x] "r"(0xffffffffUL), [y] "r"(2UL));
    check("lm64 32-bit lea result", a, 1);
    a = 5;
    __asm__ volatile(".byte 0x48\n\tnop" : "+a"(a));
    check("lm64 0x48 is REX.W", a, 5);
    __asm__ volatile("pushq $-2\n\tpop %0" : "=r"(a));
    check("lm64 push imm8 sign-extends to 64", a, 0xfffffffffffffffeUL);
    __asm__ volatile("mov %%rsp,%[s0]\n\tpushq $0x7fffffff\n\tmov %%rsp,%[b]\n\tpop %[a]" : [a] "=&r"(a), [b] "=&r"(b), [s0] "=&r"(s0) :: "memory");
    check("lm64 push imm32", a, 0x7fffffff);
    check("lm64 push imm = 8 bytes", s0 - b, 8);
    u32 cs;
    __asm__ volatile("mov %%cs,%0" : "=r"(cs));
    check("lm64 cs", cs, 0x18);
}

static void compat(void)
{
    u64 a = 0xffffffffffffffffUL, d = 0, s0, s1;
    __asm__ volatile("mov %%rsp,%[s0]\n\tlcalll *compat_ptr(%%rip)\n\tmov %%rsp,%[s1]"
        : "+a"(a), "=d"(d), [s0] "=&r"(s0), [s1] "=&r"(s1) :: "rcx", "rdi", "memory", "cc");
    check("compat push r32 = 4 bytes", a & 0xff, 4);
    check("compat push r16 (0x66) = 2 bytes", (a >> 8) & 0xff, 2);
    check("compat near call = 4 bytes", (a >> 16) & 0xff, 4);
    check("compat 0x48 is dec eax", (a >> 24) & 0xff, 4 << 0);
    check("compat cs", d & 0xffff, 0x08);
    check("compat far call/ret balanced", s1, s0);
    u32 cs;
    __asm__ volatile("mov %%cs,%0" : "=r"(cs));
    check("back in 64-bit cs", cs, 0x18);
}

void test_main(void)
{
    report32();
    long64();
    compat();
}
