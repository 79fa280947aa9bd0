/*
 * control: control transfer and miscellaneous system-ish instructions in
 * 64-bit mode: Jcc (all 16 conditions, rel8 and rel32, over 32 flag
 * patterns), LOOP/LOOPE/LOOPNE, JRCXZ/JECXZ, near CALL/JMP (direct,
 * register, memory), RET imm16, far JMP/CALL/RET through m16:32 and
 * m16:64 pointers, ENTER/LEAVE, PUSH/POP forms, PUSHFQ/POPFQ, INT3 / INT n /
 * UD2 caught by the IDT, CPUID, RDTSC. All expectations are literal (or
 * computed by a reference function); the non-privileged parts also run
 * natively with -DHOST as a cross-check.
 */
#include "guest.h"

extern u64 far_rsp, far_ret, far_cs, far_curcs, near_target_ptr;
extern char fp32_callee[], fp64_callee[];
u64 ret_imm16_fn(void);
u64 near_target(void);

/* flag pattern i (0..31) -> CF, PF, ZF, SF, OF */
static u64 pat(int i)
{
    return 0x2 | ((i & 1) ? CF : 0) | ((i & 2) ? PF : 0) | ((i & 4) ? ZF : 0) | ((i & 8) ? SF : 0) | ((i & 16) ? OF : 0);
}

/* reference condition evaluation, cc numbered as in the opcode (0=O ... 15=G) */
static int cond(int cc, u64 f)
{
    int cf = !!(f & CF), pf = !!(f & PF), zf = !!(f & ZF), sf = !!(f & SF), of = !!(f & OF);
    int r;
    switch (cc >> 1) {
    case 0: r = of; break;
    case 1: r = cf; break;
    case 2: r = zf; break;
    case 3: r = cf | zf; break;
    case 4: r = sf; break;
    case 5: r = pf; break;
    case 6: r = sf != of; break;
    default: r = zf | (sf != of); break;
    }
    return (cc & 1) ? !r : r;
}

static u64 ref_mask(int cc)
{
    u64 m = 0;
    for (int i = 0; i < 32; i++)
        if (cond(cc, pat(i)))
            m |= 1UL << i;
    return m;
}

#define JCC(cc, n) do { u64 m8 = 0, m32 = 0; \
    for (int i = 0; i < 32; i++) { u64 t8 = 0, t32 = 0; \
        __asm__ volatile("push %[fi]\n\tpopfq\n\tj" cc " 1f\n\tjmp 2f\n1:\tmov $1,%[t8]\n2:\n\t" \
                         "j" cc " 3f\n\tjmp 4f\n\t.skip 200, 0x90\n3:\tmov $1,%[t32]\n4:" \
            : [t8] "+r"(t8), [t32] "+r"(t32) : [fi] "r"(pat(i)) : "cc"); \
        m8 |= t8 << i; m32 |= t32 << i; } \
    check("j" cc " rel8", m8, ref_mask(n)); check("j" cc " rel32", m32, ref_mask(n)); } while (0)

static void jcc_tests(void)
{
    JCC("o", 0); JCC("no", 1); JCC("b", 2); JCC("ae", 3); JCC("e", 4); JCC("ne", 5); JCC("be", 6); JCC("a", 7);
    JCC("s", 8); JCC("ns", 9); JCC("p", 10); JCC("np", 11); JCC("l", 12); JCC("ge", 13); JCC("le", 14); JCC("g", 15);
}

static void loop_tests(void)
{
    u64 c, n;
    c = 5; n = 0;
    __asm__ volatile("1: inc %[n]\n\tloop 1b" : "+c"(c), [n] "+r"(n) :: "cc");
    check("loop 5 iterations", n, 5);
    check("loop rcx final", c, 0);
    c = 0x100000003UL; n = 0;
    __asm__ volatile("1: inc %[n]\n\taddr32 loop 1b" : "+c"(c), [n] "+r"(n) :: "cc");
    check("loop addr32 uses ecx", n, 3);
    check("loop addr32 ecx final", c & 0xffffffffUL, 0);
    /* LOOPE stops when ZF=0 or count exhausted; LOOPNE when ZF=1 */
    c = 10; n = 0;
    __asm__ volatile("1: inc %[n]\n\tcmp $4,%[n]\n\tloope 1b" : "+c"(c), [n] "+r"(n) :: "cc");
    check("loope exits on zf=0", n, 1);
    c = 10; n = 3;
    __asm__ volatile("1: inc %[n]\n\tcmp $4,%[n]\n\tloope 1b" : "+c"(c), [n] "+r"(n) :: "cc");
    check("loope rcx", c, 8);
    check("loope n", n, 5);
    c = 10; n = 0;
    __asm__ volatile("1: inc %[n]\n\tcmp $4,%[n]\n\tloopne 1b" : "+c"(c), [n] "+r"(n) :: "cc");
    check("loopne exits on zf=1", n, 4);
    check("loopne rcx", c, 6);
    c = 3; n = 0;
    __asm__ volatile("1: inc %[n]\n\tcmp $100,%[n]\n\tloopne 1b" : "+c"(c), [n] "+r"(n) :: "cc");
    check("loopne exhausts count", n, 3);
    /* LOOP does not modify flags */
    u64 f;
    c = 2;
    __asm__ volatile("push %[fi]\n\tpopfq\n1:\tloop 1b\n\tpushfq\n\tpop %[f]" : "+c"(c), [f] "=r"(f) : [fi] "r"(FALL) : "cc");
    check("loop keeps flags", f & ARITH, ARITH);
    /* JRCXZ / JECXZ */
    u64 t;
    c = 0x100000000UL; t = 0;
    __asm__ volatile("jrcxz 1f\n\tmov $1,%[t]\n1:" : [t] "+r"(t) : "c"(c));
    check("jrcxz not taken (rcx=2^32)", t, 1);
    t = 0;
    __asm__ volatile("jecxz 1f\n\tmov $1,%[t]\n1:" : [t] "+r"(t) : "c"(c));
    check("jecxz taken (ecx=0)", t, 0);
    t = 0;
    __asm__ volatile("jrcxz 1f\n\tmov $1,%[t]\n1:" : [t] "+r"(t) : "c"(0UL));
    check("jrcxz taken", t, 0);
}

static void call_tests(void)
{
    u64 r, sp0, sp1, ret, lbl;
    /* (the Jcc rel32 forms are forced by the 200-byte gap to their target) */
    /* near direct call: pushed return address, RSP restored */
    __asm__ volatile("lea 2f(%%rip),%[l]\n\tmov %%rsp,%[s0]\n\tcall 1f\n2:\tjmp 3f\n1:\tmov (%%rsp),%[ret]\n\tmov %%rsp,%[s1]\n\tret\n3:"
        : [l] "=&r"(lbl), [s0] "=&r"(sp0), [s1] "=&r"(sp1), [ret] "=&r"(ret) :: "memory");
    check("call rel32 return address", ret, lbl);
    check("call rel32 rsp -8", sp0 - sp1, 8);
    r = 0;
    __asm__ volatile("call *%[p]" : "=a"(r) : [p] "r"(near_target) : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
    check("call *reg", r, 0x5a5a);
    r = 0;
    __asm__ volatile("call *near_target_ptr(%%rip)" : "=a"(r) :: "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
    check("call *mem rip-relative", r, 0x5a5a);
    r = 0;
    static u64 (*const fns[4])(void) = { 0, 0, 0, near_target };
    __asm__ volatile("call *(%[p],%[i],8)" : "=a"(r) : [p] "r"(fns), [i] "r"(3UL) : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
    check("call *mem sib", r, 0x5a5a);
    /* RET imm16 pops the arguments */
    __asm__ volatile("mov %%rsp,%[s0]\n\tpush $0x1000\n\tpush $0x234\n\tcall ret_imm16_fn\n\tmov %%rsp,%[s1]"
        : "=a"(r), [s0] "=&r"(sp0), [s1] "=&r"(sp1) :: "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
    check("ret imm16 result", r, 0x1234);
    check("ret imm16 rsp balanced", sp1, sp0);
    /* indirect jumps */
    r = 0;
    __asm__ volatile("lea 1f(%%rip),%%rdx\n\tjmp *%%rdx\n\tmov $1,%[r]\n1:" : [r] "+r"(r) :: "rdx");
    check("jmp *reg", r, 0);
    {
        static u64 table[3];
        u64 out;
        __asm__ volatile("lea 10f(%%rip),%%rdx\n\tmov %%rdx,0(%[t])\n\tlea 11f(%%rip),%%rdx\n\tmov %%rdx,8(%[t])\n\t"
                         "lea 12f(%%rip),%%rdx\n\tmov %%rdx,16(%[t])\n\tjmp *(%[t],%[i],8)\n"
                         "10:\tmov $10,%[o]\n\tjmp 13f\n11:\tmov $11,%[o]\n\tjmp 13f\n12:\tmov $12,%[o]\n13:"
            : [o] "=&r"(out) : [t] "r"(table), [i] "r"(2UL) : "rdx", "memory");
        check("jmp *mem jump table", out, 12);
    }
    /* call pushes the address of the next instruction even for call *%rsp-relative */
    __asm__ volatile("push %[p]\n\tcall *(%%rsp)\n\tpop %%rcx" : "=a"(r) : [p] "r"(near_target) : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
    check("call *(rsp)", r, 0x5a5a);
}

#ifndef HOST
static void far_tests(void)
{
    u64 sp0, sp1, lbl, t = 0;
    /* far jmp m16:32 to the 64-bit code selector */
    __asm__ volatile(".pushsection .data\n\t.p2align 3\n7:\t.long 1f\n\t.word 0x18\n\t.popsection\n\t"
                     "ljmpl *7b(%%rip)\n\tmov $1,%[t]\n1:" : [t] "+r"(t));
    check("far jmp m16:32", t, 0);
    t = 0;
    __asm__ volatile(".pushsection .data\n\t.p2align 3\n7:\t.quad 1f\n\t.word 0x18\n\t.popsection\n\t"
                     "rex64 ljmp *7b(%%rip)\n\tmov $1,%[t]\n1:" : [t] "+r"(t));
    check("far jmp m16:64 (REX.W)", t, 0);
    /* far call m16:32: pushes CS and EIP as 4-byte slots */
    __asm__ volatile("lea 1f(%%rip),%[l]\n\tmov %%rsp,%[s0]\n\tlcalll *fp32_callee(%%rip)\n1:\tmov %%rsp,%[s1]"
        : [l] "=&r"(lbl), [s0] "=&r"(sp0), [s1] "=&r"(sp1) :: "rax", "memory");
    check("far call m16:32 pushes 8 bytes", sp0 - far_rsp, 8);
    check("far call m16:32 return eip", far_ret, lbl);
    check("far call m16:32 pushed cs", far_cs, 0x18);
    check("far call m16:32 callee cs", far_curcs, 0x18);
    check("far ret 32 rsp restored", sp1, sp0);
    __asm__ volatile("lea 1f(%%rip),%[l]\n\tmov %%rsp,%[s0]\n\trex64 lcall *fp64_callee(%%rip)\n1:\tmov %%rsp,%[s1]"
        : [l] "=&r"(lbl), [s0] "=&r"(sp0), [s1] "=&r"(sp1) :: "rax", "memory");
    check("far call m16:64 pushes 16 bytes", sp0 - far_rsp, 16);
    check("far call m16:64 return rip", far_ret, lbl);
    check("far call m16:64 pushed cs", far_cs, 0x18);
    check("far ret 64 rsp restored", sp1, sp0);
    /* LRETQ to a pushed CS:RIP */
    t = 0;
    __asm__ volatile("mov %%rsp,%[s0]\n\tpushq $0x18\n\tlea 1f(%%rip),%%rax\n\tpush %%rax\n\tlretq\n\tmov $1,%[t]\n1:\tmov %%rsp,%[s1]"
        : [t] "+r"(t), [s0] "=&r"(sp0), [s1] "=&r"(sp1) :: "rax", "memory");
    check("lretq to pushed cs:rip", t, 0);
    check("lretq rsp", sp1, sp0);
    /* IRETQ to the next instruction (same privilege: pops SS:RSP too) */
    __asm__ volatile("mov %%rsp,%[s0]\n\tmov %%ss,%%eax\n\tpush %%rax\n\tpush %[s0]\n\tpushfq\n\tpushq $0x18\n\t"
                     "lea 1f(%%rip),%%rax\n\tpush %%rax\n\tiretq\n1:\tmov %%rsp,%[s1]"
        : [s0] "=&r"(sp0), [s1] "=&r"(sp1) :: "rax", "memory");
    check("iretq same-level rsp", sp1, sp0);
}

static void exc_tests(void)
{
    u64 lbl;
    int cnt0 = exc_count;
    __asm__ volatile(EXPECT_EXC(3, "0") "int3\n1:\tlea 1b(%%rip),%[l]" : [l] "=r"(lbl) :: "memory");
    check("int3 vector", (u64)exc_last_vec, 3);
    check("int3 saved rip is next insn", exc_last_rip, lbl);
    __asm__ volatile(EXPECT_EXC(3, "0") "int $3\n1:\tlea 1b(%%rip),%[l]" : [l] "=r"(lbl) :: "memory");
    check("int $3 (CD 03) saved rip", exc_last_rip, lbl);
    __asm__ volatile(EXPECT_EXC(0x80, "0") "int $0x80\n1:\tlea 1b(%%rip),%[l]" : [l] "=r"(lbl) :: "memory");
    check("int $0x80 vector", (u64)exc_last_vec, 0x80);
    check("int $0x80 saved rip", exc_last_rip, lbl);
    __asm__ volatile("lea 1f(%%rip),%[l]\n\t" EXPECT_EXC(6, "2f") "1:\tud2\n2:" : [l] "=&r"(lbl) :: "memory");
    check("ud2 #UD", (u64)exc_last_vec, 6);
    check("ud2 fault rip", exc_last_rip, lbl);
    __asm__ volatile("lea 1f(%%rip),%[l]\n\t" EXPECT_EXC(6, "2f") "1:\t.byte 0xce\n2:" : [l] "=&r"(lbl) :: "memory");
    check("into is #UD in 64-bit mode", (u64)exc_last_vec, 6);
    check("into fault rip", exc_last_rip, lbl);
    __asm__ volatile("lea 1f(%%rip),%[l]\n\t" EXPECT_EXC(6, "2f") "1:\t.byte 0x37\n2:" : [l] "=&r"(lbl) :: "memory");
    check("aaa is #UD in 64-bit mode", (u64)exc_last_vec, 6);
    /* the handler keeps flags and general registers */
    u64 f, r = 0x1234;
    __asm__ volatile("push %[fi]\n\tpopfq\n\t" EXPECT_EXC(6, "2f") "ud2\n2:\tpushfq\n\tpop %[f]"
        : [f] "=&r"(f), "+b"(r) : [fi] "r"(FALL) : "memory", "cc");
    check("exception preserves flags", f & ARITH, ARITH);
    check("exception preserves rbx", r, 0x1234);
    check("exception count", (u64)(exc_count - cnt0), 7);
}
#endif

static void enter_tests(void)
{
    static u64 stk[64] __attribute__((aligned(16)));
    u64 *top = &stk[64];
    u64 *fake = &stk[16];   /* caller's display: [rbp0-8], [rbp0-16] */
    u64 rsp1, rbp1, rsp2, rbp2;
    fake[-1] = 0x1111;
    fake[-2] = 0x2222;
#define ENTER_RUN(insn) \
    __asm__ volatile("mov %%rsp,%%r8\n\tmov %%rbp,%%r9\n\tmov %[top],%%rsp\n\tmov %[rbp0],%%rbp\n\t" insn "\n\t" \
                     "mov %%rsp,%[s1]\n\tmov %%rbp,%[b1]\n\tleave\n\tmov %%rsp,%[s2]\n\tmov %%rbp,%[b2]\n\t" \
                     "mov %%r8,%%rsp\n\tmov %%r9,%%rbp" \
        : [s1] "=&r"(rsp1), [b1] "=&r"(rbp1), [s2] "=&r"(rsp2), [b2] "=&r"(rbp2) \
        : [top] "r"(top), [rbp0] "r"(fake) : "r8", "r9", "memory")
    ENTER_RUN("enter $24,$0");
    check("enter 24,0 rbp", (u64)rbp1, (u64)(top - 1));
    check("enter 24,0 rsp", (u64)rsp1, (u64)(top - 1) - 24);
    check("enter 24,0 saved rbp", top[-1], (u64)fake);
    check("leave rsp", (u64)rsp2, (u64)top);
    check("leave rbp", (u64)rbp2, (u64)fake);
    ENTER_RUN("enter $8,$1");
    check("enter 8,1 rbp", (u64)rbp1, (u64)(top - 1));
    check("enter 8,1 rsp", (u64)rsp1, (u64)(top - 2) - 8);
    check("enter 8,1 frame ptr", top[-2], (u64)(top - 1));
    check("enter 8,1 leave", (u64)rsp2 ^ (u64)rbp2, (u64)top ^ (u64)fake);
    ENTER_RUN("enter $32,$3");
    check("enter 32,3 rbp", (u64)rbp1, (u64)(top - 1));
    check("enter 32,3 rsp", (u64)rsp1, (u64)(top - 4) - 32);
    check("enter 32,3 saved rbp", top[-1], (u64)fake);
    check("enter 32,3 display 1", top[-2], 0x1111);
    check("enter 32,3 display 2", top[-3], 0x2222);
    check("enter 32,3 frame ptr", top[-4], (u64)(top - 1));
    check("enter 32,3 leave rsp", (u64)rsp2, (u64)top);
    check("enter 32,3 leave rbp", (u64)rbp2, (u64)fake);
#undef ENTER_RUN
}

static void push_pop_tests(void)
{
    u64 a, b, sp0, sp1;
    __asm__ volatile("mov %%rsp,%[s0]\n\tpushq $-2\n\tpop %[a]\n\tpushq $0x12345678\n\tpop %[b]\n\tmov %%rsp,%[s1]"
        : [a] "=&r"(a), [b] "=&r"(b), [s0] "=&r"(sp0), [s1] "=&r"(sp1) :: "memory");
    check("push imm8 sign-extends", a, 0xfffffffffffffffeUL);
    check("push imm32", b, 0x12345678);
    check("push/pop balanced", sp1, sp0);
    __asm__ volatile("mov %%rsp,%[s0]\n\tpushw $0x1234\n\tmov %%rsp,%[s1]\n\tpopw %w[a]\n\tmov %%rsp,%[b]"
        : [a] "=&r"(a), [b] "=&r"(b), [s0] "=&r"(sp0), [s1] "=&r"(sp1) :: "memory");
    check("pushw decrements by 2", sp0 - sp1, 2);
    check("popw value", a & 0xffff, 0x1234);
    check("popw increments by 2", b, sp0);
    __asm__ volatile("mov %%rsp,%[s0]\n\tpush %%rsp\n\tpop %[a]" : [a] "=&r"(a), [s0] "=&r"(sp0) :: "memory");
    check("push rsp pushes old value", a, sp0);
    {
        static u64 m = 0xfeedfacecafebeefUL, m2;
        __asm__ volatile("pushq %[m]\n\tpopq %[m2]" : [m2] "=m"(m2) : [m] "m"(m) : "memory");
        check("push mem / pop mem", m2, 0xfeedfacecafebeefUL);
    }
    /* pop into an RSP-relative memory operand uses RSP after the increment */
    __asm__ volatile("sub $16,%%rsp\n\tmovq $0,8(%%rsp)\n\tpushq $0x77\n\tpopq (%%rsp)\n\tmov (%%rsp),%[a]\n\tmov 8(%%rsp),%[b]\n\tadd $16,%%rsp"
        : [a] "=&r"(a), [b] "=&r"(b) :: "memory");
    check("pop (rsp) uses incremented rsp", a, 0x77);
    check("pop (rsp) slot above untouched", b, 0);
    /* PUSHFQ/POPFQ: reserved bits 1=1, 3,5,15=0; DF round-trips */
    __asm__ volatile("pushfq\n\tpush %[v]\n\tpopfq\n\tpushfq\n\tpop %[a]\n\tpopfq" : [a] "=&r"(a) : [v] "r"(0x8028UL | ARITH | DF) : "memory", "cc");
    check("popfq/pushfq reserved bits and df", a & 0xfdff, 0x2 | ARITH | DF);
    __asm__ volatile("pushfq\n\tpushq $0\n\tpopfq\n\tpushfq\n\tpop %[a]\n\tpopfq" : [a] "=&r"(a) :: "memory", "cc");
    check("popfq 0 -> 0x2", a & 0xfdff, 0x2); /* (IF masked: user mode cannot clear it natively) */
    /* PUSH/POP 16-bit and 64-bit register forms with REX */
    __asm__ volatile("mov $0x1122334455667788,%%r12\n\tpush %%r12\n\tpop %%r13\n\tmov %%r13,%[a]" : [a] "=r"(a) :: "r12", "r13", "memory");
    check("push r12 / pop r13", a, 0x1122334455667788UL);
    __asm__ volatile("mov $-1,%[a]\n\tpushq $0x5678\n\tpopw %w[a]\n\tadd $6,%%rsp" : [a] "=&r"(a) :: "memory");
    check("popw keeps upper bits", a, 0xffffffffffff5678UL);
}

static void cpuid_tsc_tests(void)
{
    u32 a, b, c, d;
    cpuid(0, 0, &a, &b, &c, &d);
    check("cpuid 0 max leaf >= 1", a >= 1, 1);
    int ok = 1;
    u32 v[3] = { b, d, c };
    for (int i = 0; i < 12; i++) {
        u8 ch = (u8)(v[i / 4] >> (8 * (i % 4)));
        if (ch < 0x20 || ch > 0x7e)
            ok = 0;
    }
    check("cpuid 0 vendor is printable ascii", ok, 1);
    cpuid(1, 0, &a, &b, &c, &d);
    check("cpuid 1 family nonzero", ((a >> 8) & 0xf) != 0, 1);
    /* Only what a general-purpose guest relies on: x87/SSE bits are advertised by CPU
     * models that implement them, and this guest is built without x87/SSE code. */
    check("cpuid 1 edx tsc msr pae cx8 cmov", d & 0x00008170, 0x00008170);
    cpuid(0x80000000, 0, &a, &b, &c, &d);
    check("cpuid 80000000 max >= 80000001", a >= 0x80000001, 1);
    cpuid(0x80000001, 0, &a, &b, &c, &d);
    check("cpuid 80000001 edx lm", (d >> 29) & 1, 1);
    /* CPUID zero-extends into the full 64-bit registers */
    u64 ra = 0xffffffff00000000UL, rb = ra, rc = ra, rd = ra;
    __asm__ volatile("xor %%eax,%%eax\n\tmov %%rcx,%%rcx\n\tcpuid" : "+a"(ra), "+b"(rb), "+c"(rc), "+d"(rd));
    check("cpuid clears upper halves", (ra | rb | rc | rd) >> 32, 0);
    /* RDTSC strictly increasing, EDX:EAX zero-extended */
    u64 prev = 0, bad = 0, lo, hi;
    for (int i = 0; i < 1000; i++) {
        lo = 0xffffffff00000000UL; hi = 0xffffffff00000000UL;
        __asm__ volatile("rdtsc" : "+a"(lo), "+d"(hi));
        if ((lo | hi) >> 32)
            bad |= 1;
        u64 t = (hi << 32) | lo;
        if (t <= prev)
            bad |= 2;
        prev = t;
    }
    check("rdtsc monotonic and zero-extended", bad, 0);
}

void test_main(void)
{
    jcc_tests();
    loop_tests();
    call_tests();
#ifndef HOST
    far_tests();
    exc_tests();
#endif
    enter_tests();
    push_pop_tests();
    cpuid_tsc_tests();
}
