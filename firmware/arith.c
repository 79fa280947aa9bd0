/*
 * arith: 64-bit integer ALU instructions, results and flags.
 *
 * Most checks run an instruction from a known register/flags state and
 * compare the result and RFLAGS & (flags the SDM defines for it) with
 * arith.expect.h, recorded by running this same file natively on real
 * x86-64 hardware (`make regen`). Flags an instruction leaves unaffected
 * are checked by entering with all arithmetic flags set (FALL) and clear
 * (F0). #DE cases (guest only) are checked against literal expectations.
 */
#include "guest.h"

/* like T but records only flags (destination undefined, e.g. BSF of 0) */
#define TFLAGS(name, insn, d0, s0, fin, mask) do { \
    u64 d_ = (u64)(d0), f_; \
    __asm__ volatile("push %[fi]\n\tpopfq\n\t" insn "\n\tpushfq\n\tpop %[f]" \
        : [d] "+r"(d_), [f] "=&r"(f_) \
        : [s] "r"((u64)(s0)), [fi] "r"((u64)(fin)) : "cc", "memory"); \
    (void)d_; check_tab(name, 0, 0, f_, mask); } while (0)

/* both %[d] and %[s] are in/out (XADD, XCHG) */
#define T2(name, insn, d0, s0, fin, mask) do { \
    u64 d_ = (u64)(d0), s_ = (u64)(s0), f_; \
    __asm__ volatile("push %[fi]\n\tpopfq\n\t" insn "\n\tpushfq\n\tpop %[f]" \
        : [d] "+r"(d_), [s] "+r"(s_), [f] "=&r"(f_) \
        : [fi] "r"((u64)(fin)) : "cc", "memory"); \
    check_tab(name, d_, s_, f_, mask); } while (0)

/* 8/16/32/64-bit forms of a two-operand ALU instruction, register-register */
#define BIN4(op, tag, a, b, fin, mask) do { \
    T(op "8 " tag,  op "b %b[s],%b[d]", a, b, 0, fin, mask); \
    T(op "16 " tag, op "w %w[s],%w[d]", a, b, 0, fin, mask); \
    T(op "32 " tag, op "l %k[s],%k[d]", a, b, 0, fin, mask); \
    T(op "64 " tag, op "q %q[s],%q[d]", a, b, 0, fin, mask); } while (0)

#define UN4(op, tag, a, fin, mask) do { \
    T(op "8 " tag,  op "b %b[d]", a, 0, 0, fin, mask); \
    T(op "16 " tag, op "w %w[d]", a, 0, 0, fin, mask); \
    T(op "32 " tag, op "l %k[d]", a, 0, 0, fin, mask); \
    T(op "64 " tag, op "q %q[d]", a, 0, 0, fin, mask); } while (0)

static const u64 pa[] = {
    0x7f7f7f7f7f7f7f7fUL, 0xffffffffffffffffUL, 0x8000000080008080UL,
    0x0123456789abcdefUL, 0, 0xdeadbeef0000000fUL,
};
static const u64 pb[] = {
    0x0101010101010101UL, 0x1UL, 0x8000000080008080UL,
    0xfedcba9876543210UL, 0, 0x0000000100000001UL,
};
static const char *const ptag[] = { "p0", "p1", "p2", "p3", "p4", "p5" };

static char namebuf[64];
/* names built at run time (for loops): "<prefix> <tag>" */
static const char *nm(const char *prefix, const char *tag)
{
    int i = 0;
    while (*prefix && i < 40) namebuf[i++] = *prefix++;
    namebuf[i++] = ' ';
    while (*tag && i < 62) namebuf[i++] = *tag++;
    namebuf[i] = 0;
    return namebuf;
}

static void alu_tests(void)
{
    for (int i = 0; i < 6; i++) {
        u64 a = pa[i], b = pb[i];
        const char *t = ptag[i];
#define LOOPBIN(op, suffix, fin, mask) do { char tg[16]; int k = 0; \
        for (const char *q = t; *q; q++) tg[k++] = *q; \
        for (const char *q = suffix; *q; q++) tg[k++] = *q; \
        tg[k] = 0; \
        T(nm(op "8", tg), op "b %b[s],%b[d]", a, b, 0, fin, mask); \
        T(nm(op "16", tg), op "w %w[s],%w[d]", a, b, 0, fin, mask); \
        T(nm(op "32", tg), op "l %k[s],%k[d]", a, b, 0, fin, mask); \
        T(nm(op "64", tg), op "q %q[s],%q[d]", a, b, 0, fin, mask); } while (0)
        LOOPBIN("add", "", F0, ARITH);
        LOOPBIN("adc", " cf0", F0, ARITH);
        LOOPBIN("adc", " cf1", FC, ARITH);
        LOOPBIN("sub", "", F0, ARITH);
        LOOPBIN("sbb", " cf0", F0, ARITH);
        LOOPBIN("sbb", " cf1", FC, ARITH);
        LOOPBIN("cmp", "", F0, ARITH);
        LOOPBIN("and", "", FALL, LOGIC);
        LOOPBIN("or", "", FALL, LOGIC);
        LOOPBIN("xor", "", FALL, LOGIC);
        LOOPBIN("test", "", FALL, LOGIC);
        /* reversed operands for the non-commutative ones */
        u64 tmp = a; a = b; b = tmp;
        LOOPBIN("sub", " rev", FALL, ARITH);
        LOOPBIN("sbb", " rev cf1", FC, ARITH);
        LOOPBIN("cmp", " rev", FALL, ARITH);
#undef LOOPBIN
    }
    /* immediate and memory forms */
    T("add8 imm", "addb $0x81,%b[d]", 0x1234567890abcd7fUL, 0, 0, F0, ARITH);
    T("add32 imm8 sx", "addl $-1,%k[d]", 0xffffffff00000000UL, 0, 0, F0, ARITH);
    T("add64 imm32 sx", "addq $-0x80000000,%q[d]", 0x80000000UL, 0, 0, F0, ARITH);
    T("sub16 imm", "subw $0x8000,%w[d]", 0x1111111111117fffUL, 0, 0, F0, ARITH);
    T("and64 imm32 sx", "andq $-16,%q[d]", 0xffffffffffffffffUL, 0, 0, FALL, LOGIC);
    T("or32 zero-extends", "orl $0,%k[d]", 0xffffffff80000000UL, 0, 0, FALL, LOGIC);
    T("xor32 self", "xorl %k[d],%k[d]", 0x123456789UL, 0, 0, FALL, LOGIC);
    T("cmp8 imm", "cmpb $0x80,%b[d]", 0x7f, 0, 0, F0, ARITH);
    T("test64 imm", "testq $-0x80000000,%q[d]", 0xffffffff80000000UL, 0, 0, F0, LOGIC);
    {
        u64 m = 0x00000000fffffffeUL;
        TFLAGS("add64 mem dst", "addq %q[s],(%[d])", (u64)&m, 2, F0, ARITH);
        check("add64 mem dst value", m, 0x100000000UL);
        m = 0x80;
        T("sub8 mem src", "subb (%[s]),%b[d]", 0x7f, (u64)&m, 0, F0, ARITH);
        m = 0x5555;
        TFLAGS("adc16 mem dst", "adcw $0x2aaa,(%[d])", (u64)&m, 0, FC, ARITH);
        check("adc16 mem dst value", m, 0x8000);
    }

    /* INC/DEC (CF unaffected), NEG, NOT (no flags) */
    static const u64 uv[] = { 0, 1, 0x7f7f7f7f7f7f7f7fUL, 0x8000800080008080UL, 0xffffffffffffffffUL };
    static const char *const ut[] = { "0", "1", "7f", "80", "ff" };
    for (int i = 0; i < 5; i++) {
        u64 a = uv[i];
        T(nm("inc8", ut[i]), "incb %b[d]", a, 0, 0, F0, ARITH);
        T(nm("inc16 cf1", ut[i]), "incw %w[d]", a, 0, 0, FC, ARITH);
        T(nm("inc32", ut[i]), "incl %k[d]", a, 0, 0, F0, ARITH);
        T(nm("inc64 cf1", ut[i]), "incq %q[d]", a, 0, 0, FC, ARITH);
        T(nm("dec8 cf1", ut[i]), "decb %b[d]", a, 0, 0, FC, ARITH);
        T(nm("dec16", ut[i]), "decw %w[d]", a, 0, 0, F0, ARITH);
        T(nm("dec32 cf1", ut[i]), "decl %k[d]", a, 0, 0, FC, ARITH);
        T(nm("dec64", ut[i]), "decq %q[d]", a, 0, 0, F0, ARITH);
        T(nm("neg8", ut[i]), "negb %b[d]", a, 0, 0, F0, ARITH);
        T(nm("neg16", ut[i]), "negw %w[d]", a, 0, 0, FALL, ARITH);
        T(nm("neg32", ut[i]), "negl %k[d]", a, 0, 0, F0, ARITH);
        T(nm("neg64", ut[i]), "negq %q[d]", a, 0, 0, FALL, ARITH);
        T(nm("not8", ut[i]), "notb %b[d]", a, 0, 0, FALL, ARITH);
        T(nm("not16", ut[i]), "notw %w[d]", a, 0, 0, F0, ARITH);
        T(nm("not32", ut[i]), "notl %k[d]", a, 0, 0, FALL, ARITH);
        T(nm("not64", ut[i]), "notq %q[d]", a, 0, 0, F0, ARITH);
    }
}

static void muldiv_tests(void)
{
    static const u64 ma[] = { 0x7f, 0xff, 0x1234567890abcdefUL, 0x8000000000000000UL, 0xffffffffffffffffUL, 3 };
    static const u64 mb[] = { 0x2, 0xff, 0xfedcba9876543210UL, 0x8000000000000000UL, 0xffffffffffffffffUL, 5 };
    static const char *const mt[] = { "a", "b", "c", "d", "e", "f" };
    for (int i = 0; i < 6; i++) {
        u64 a = ma[i], b = mb[i];
        const char *t = mt[i];
        TAD(nm("mul8", t), "mulb %b[s]", a, 0x5555, b, F0, CF | OF);
        TAD(nm("mul16", t), "mulw %w[s]", a, 0x5555, b, F0, CF | OF);
        TAD(nm("mul32", t), "mull %k[s]", a, 0x5555, b, FALL, CF | OF);
        TAD(nm("mul64", t), "mulq %q[s]", a, 0x5555, b, F0, CF | OF);
        TAD(nm("imul1op8", t), "imulb %b[s]", a, 0x5555, b, F0, CF | OF);
        TAD(nm("imul1op16", t), "imulw %w[s]", a, 0x5555, b, FALL, CF | OF);
        TAD(nm("imul1op32", t), "imull %k[s]", a, 0x5555, b, F0, CF | OF);
        TAD(nm("imul1op64", t), "imulq %q[s]", a, 0x5555, b, F0, CF | OF);
        T(nm("imul2op16", t), "imulw %w[s],%w[d]", a, b, 0, F0, CF | OF);
        T(nm("imul2op32", t), "imull %k[s],%k[d]", a, b, 0, FALL, CF | OF);
        T(nm("imul2op64", t), "imulq %q[s],%q[d]", a, b, 0, F0, CF | OF);
        T(nm("imul3op16 imm8", t), "imulw $-3,%w[s],%w[d]", a, b, 0, F0, CF | OF);
        T(nm("imul3op32 imm32", t), "imull $0x12345,%k[s],%k[d]", a, b, 0, F0, CF | OF);
        T(nm("imul3op64 imm32", t), "imulq $-0x70000000,%q[s],%q[d]", a, b, 0, F0, CF | OF);
    }
    /* DIV/IDIV: all flags undefined; quotient in RAX, remainder in RDX */
    TAD("div8", "divb %b[s]", 0xabcd0403UL, 0x77, 0x10, F0, 0);
    TAD("div16", "divw %w[s]", 0x11112345UL, 0x0012, 0x1234, F0, 0);
    TAD("div32", "divl %k[s]", 0xffffffff89abcdefUL, 0xffffffff00000123UL, 0x12345678, F0, 0);
    TAD("div64", "divq %q[s]", 0x0123456789abcdefUL, 0x0fedcba987654321UL, 0xfedcba9876543210UL, F0, 0);
    TAD("div64 by1", "divq %q[s]", 0xdeadbeefUL, 0, 1, F0, 0);
    TAD("idiv8 neg", "idivb %b[s]", 0xff9cUL, 0x77, 0x07, F0, 0);            /* -100 / 7 */
    TAD("idiv8 -128", "idivb %b[s]", 0xff80UL, 0x77, 0x01, F0, 0);
    TAD("idiv16 neg/neg", "idivw %w[s]", 0xfc18UL, 0xffffUL, 0xfff9, F0, 0); /* -1000/-7 */
    TAD("idiv32", "idivl %k[s]", 0x80000000UL, 0xffffffffUL, 0x7fffffff, F0, 0);
    TAD("idiv32 rem sign", "idivl %k[s]", 0xfffffff9UL, 0xffffffffUL, 2, F0, 0); /* -7/2 */
    TAD("idiv64", "idivq %q[s]", 0x8000000000000000UL, 0xffffffffffffffffUL, 0x10, F0, 0);
    TAD("idiv64 min/1", "idivq %q[s]", 0x8000000000000000UL, 0xffffffffffffffffUL, 1, F0, 0);
}

#ifndef HOST
/* #DE: fault RIP is the DIV itself, RAX/RDX unchanged */
#define DE_TEST(name, insn, a0, d0, s0) do { \
    u64 a_ = (a0), dd_ = (d0), ip_; \
    exc_last_vec = -1; \
    __asm__ volatile("lea 1f(%%rip), %[ip]\n\t" EXPECT_EXC(0, "2f") "1: " insn "\n\t2:" \
        : "+a"(a_), "+d"(dd_), [ip] "=&r"(ip_) : [s] "r"((u64)(s0)) : "cc", "memory"); \
    if (exc_last_vec != 0) fail_msg(name, "no #DE"); \
    else if (exc_last_rip != ip_) check(name " fault rip", exc_last_rip, ip_); \
    else check3(name, a_, dd_, 0, (a0), (d0), 0); } while (0)

static void de_tests(void)
{
    DE_TEST("#DE div8 by 0", "divb %b[s]", 0x1234, 0x5678, 0);
    DE_TEST("#DE div16 by 0", "divw %w[s]", 0x1234, 0x5678, 0);
    DE_TEST("#DE div32 by 0", "divl %k[s]", 0x1234, 0x5678, 0);
    DE_TEST("#DE div32 by 0 upper bits set", "divl %k[s]", 0x1234, 0x5678, 0xffffffff00000000UL);
    DE_TEST("#DE idiv64 by 0", "idivq %q[s]", 0x1234, 0x5678, 0);
    DE_TEST("#DE div8 overflow", "divb %b[s]", 0x1000, 0, 0x10);
    DE_TEST("#DE div16 overflow", "divw %w[s]", 0, 0x10, 0x10);
    DE_TEST("#DE div32 overflow", "divl %k[s]", 0, 1, 1);
    DE_TEST("#DE div64 overflow", "divq %q[s]", 0, 0x10, 0x10);
    DE_TEST("#DE idiv8 -128/-1", "idivb %b[s]", 0xff80, 0, 0xff);
    DE_TEST("#DE idiv16 min/-1", "idivw %w[s]", 0x8000, 0xffff, 0xffff);
    DE_TEST("#DE idiv32 min/-1", "idivl %k[s]", 0x80000000UL, 0xffffffffUL, 0xffffffffUL);
    DE_TEST("#DE idiv64 min/-1", "idivq %q[s]", 0x8000000000000000UL, 0xffffffffffffffffUL, 0xffffffffffffffffUL);
    DE_TEST("#DE idiv32 positive overflow", "idivl %k[s]", 0, 0x40000000UL, 0x7fffffffUL);
    check("#DE exception count", (u64)exc_count, 14);
}
#endif

/* defined flags for shifts: count 0 = nothing changes */
static u64 shmask(int kind, int width, u64 cnt)
{
    /* kind: 0 SHL/SHR, 1 SAR, 2 ROL/ROR, 3 RCL/RCR, 4 SHLD/SHRD */
    u64 c = cnt & (width == 64 ? 63 : 31);
    if (c == 0)
        return ARITH;
    if (kind == 2 || kind == 3)
        return CF | PF | AF | ZF | SF | (c == 1 ? OF : 0);
    u64 m = PF | ZF | SF | (c == 1 ? OF : 0);
    if (kind == 1 || kind == 4 || c < (u64)width)
        m |= CF;
    return m;
}

#define SH4(op, kind, val, cnt, fin) do { \
    T(nm(op "8", tg), op "b %%cl,%b[d]", val, 0, cnt, fin, shmask(kind, 8, cnt)); \
    T(nm(op "16", tg), op "w %%cl,%w[d]", val, 0, cnt, fin, shmask(kind, 16, cnt)); \
    T(nm(op "32", tg), op "l %%cl,%k[d]", val, 0, cnt, fin, shmask(kind, 32, cnt)); \
    T(nm(op "64", tg), op "q %%cl,%q[d]", val, 0, cnt, fin, shmask(kind, 64, cnt)); } while (0)

static void shift_tests(void)
{
    static const u64 cnts[] = { 0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 255 };
    static const char *const ct[] = { "c0", "c1", "c3", "c7", "c8", "c9", "c15", "c16", "c17", "c31", "c32", "c33", "c63", "c64", "c255" };
    static const u64 vals[] = { 0x8123456789abcdefUL, 0x40000000c0004081UL };
    for (int v = 0; v < 2; v++) {
        for (int i = 0; i < 15; i++) {
            char tg[24];
            int k = 0;
            for (const char *q = ct[i]; *q; q++) tg[k++] = *q;
            tg[k++] = ' '; tg[k++] = v ? 'b' : 'a'; tg[k] = 0;
            u64 c = cnts[i], x = vals[v];
            u64 fin = (i & 1) ? FALL : F0;
            SH4("shl", 0, x, c, fin);
            SH4("shr", 0, x, c, fin);
            SH4("sar", 1, x, c, fin);
            SH4("rol", 2, x, c, fin);
            SH4("ror", 2, x, c, fin);
            SH4("rcl", 3, x, c, fin);
            SH4("rcr", 3, x, c, fin ^ CF);
            /* SHLD/SHRD: skip counts the SDM leaves undefined (> operand size) */
            u64 s = 0xfedcba9876543210UL;
            u64 m32 = c & 31, m64 = c & 63;
            if (m32 < 16) {
                T(nm("shld16", tg), "shldw %%cl,%w[s],%w[d]", x, s, c, fin, shmask(4, 16, c));
                T(nm("shrd16", tg), "shrdw %%cl,%w[s],%w[d]", x, s, c, fin, shmask(4, 16, c));
            }
            (void)m64;
            T(nm("shld32", tg), "shldl %%cl,%k[s],%k[d]", x, s, c, fin, shmask(4, 32, c));
            T(nm("shrd32", tg), "shrdl %%cl,%k[s],%k[d]", x, s, c, fin, shmask(4, 32, c));
            T(nm("shld64", tg), "shldq %%cl,%q[s],%q[d]", x, s, c, fin, shmask(4, 64, c));
            T(nm("shrd64", tg), "shrdq %%cl,%q[s],%q[d]", x, s, c, fin, shmask(4, 64, c));
        }
    }
    /* immediate and by-1 encodings */
    T("shl32 by1 enc", "shll $1,%k[d]", 0xc0000000UL, 0, 0, F0, shmask(0, 32, 1));
    T("sar8 imm", "sarb $3,%b[d]", 0x80, 0, 0, F0, shmask(1, 8, 3));
    T("shr64 imm", "shrq $63,%q[d]", 0x8000000000000001UL, 0, 0, F0, shmask(0, 64, 63));
    T("rol16 imm", "rolw $4,%w[d]", 0xf00f, 0, 0, F0, shmask(2, 16, 4));
    T("rcr32 by1 enc", "rcrl $1,%k[d]", 0x1, 0, 0, FC, shmask(3, 32, 1));
    T("rcl8 by1 enc", "rclb $1,%b[d]", 0x80, 0, 0, F0, shmask(3, 8, 1));
    T("shld32 imm", "shldl $12,%k[s],%k[d]", 0x12345678, 0x9abcdef0, 0, F0, shmask(4, 32, 12));
    T("shrd64 imm", "shrdq $1,%q[s],%q[d]", 0x2, 0x1, 0, F0, shmask(4, 64, 1));
}

static void bit_tests(void)
{
    static const u64 offs[] = { 0, 5, 15, 16, 31, 33, 63, 64 + 7 };
    static const char *const ot[] = { "0", "5", "15", "16", "31", "33", "63", "71" };
    u64 v = 0xa5a5a5a55a5a5a5aUL;
    for (int i = 0; i < 8; i++) {
        u64 o = offs[i];
        T(nm("bt16 reg", ot[i]), "btw %w[s],%w[d]", v, o, 0, FALL, CF);
        T(nm("bt32 reg", ot[i]), "btl %k[s],%k[d]", v, o, 0, F0, CF);
        T(nm("bt64 reg", ot[i]), "btq %q[s],%q[d]", v, o, 0, FALL, CF);
        T(nm("bts16 reg", ot[i]), "btsw %w[s],%w[d]", v, o, 0, F0, CF);
        T(nm("bts32 reg", ot[i]), "btsl %k[s],%k[d]", v, o, 0, F0, CF);
        T(nm("btr32 reg", ot[i]), "btrl %k[s],%k[d]", v, o, 0, FALL, CF);
        T(nm("btr64 reg", ot[i]), "btrq %q[s],%q[d]", v, o, 0, F0, CF);
        T(nm("btc16 reg", ot[i]), "btcw %w[s],%w[d]", v, o, 0, F0, CF);
        T(nm("btc64 reg", ot[i]), "btcq %q[s],%q[d]", v, o, 0, FALL, CF);
    }
    T("bt32 imm masked", "btl $37,%k[d]", 0x20, 0, 0, F0, CF);
    T("bts64 imm", "btsq $63,%q[d]", 0, 0, 0, F0, CF);

    /* memory forms: register bit offsets address beyond the operand (signed) */
    static const s64 moffs[] = { 0, 37, 100, 200, -1, -33, -64, -129 };
    static const char *const mot[] = { "0", "37", "100", "200", "-1", "-33", "-64", "-129" };
    for (int i = 0; i < 8; i++) {
        static u64 buf[8];
        u64 f;
#define BTM(op, sfx, wreg) do { \
        for (int j = 0; j < 8; j++) buf[j] = 0x0123456789abcdefUL * (u64)(j + 1); \
        __asm__ volatile("push %[fi]\n\tpopfq\n\t" op " " wreg ",(%[p])\n\tpushfq\n\tpop %[f]" \
            : [f] "=&r"(f) : [p] "r"(&buf[4]), [o] "r"(moffs[i]), [fi] "r"(F0) : "cc", "memory"); \
        u64 h = 0; for (int j = 0; j < 8; j++) h = h * 31 + buf[j]; \
        check_tab(nm(op sfx " mem", mot[i]), h, buf[4], f, CF); } while (0)
        BTM("btw", "", "%w[o]");
        BTM("btl", "", "%k[o]");
        BTM("btq", "", "%q[o]");
        BTM("btsw", "", "%w[o]");
        BTM("btsl", "", "%k[o]");
        BTM("btsq", "", "%q[o]");
        BTM("btrl", "", "%k[o]");
        BTM("btrq", "", "%q[o]");
        BTM("btcw", "", "%w[o]");
        BTM("btcq", "", "%q[o]");
#undef BTM
    }
    {
        static u64 m = 0x10;
        TFLAGS("btsl imm mem masked", "btsl $36,(%[d])", (u64)&m, 0, F0, CF);
        check("btsl imm mem value", m, 0x10);
        TFLAGS("btrq imm mem", "btrq $4,(%[d])", (u64)&m, 0, F0, CF);
        check("btrq imm mem value", m, 0);
    }

    /* BSF/BSR: ZF defined only; destination undefined when source is 0 */
    static const u64 bv[] = { 1, 0x80, 0x8000, 0x00f0000000000000UL, 0x8000000000000001UL, 0x0001000000010000UL };
    static const char *const bt[] = { "1", "80", "8000", "f0..", "8..1", "1..10000" };
    for (int i = 0; i < 6; i++) {
        T(nm("bsf16", bt[i]), "bsfw %w[s],%w[d]", 0x5555555555555555UL, bv[i] | 0x8000, 0, FALL, ZF);
        T(nm("bsf32", bt[i]), "bsfl %k[s],%k[d]", 0x5555555555555555UL, bv[i] | 0x80000000UL, 0, F0, ZF);
        T(nm("bsf64", bt[i]), "bsfq %q[s],%q[d]", 0x5555555555555555UL, bv[i], 0, F0, ZF);
        T(nm("bsr16", bt[i]), "bsrw %w[s],%w[d]", 0x5555555555555555UL, bv[i] | 1, 0, F0, ZF);
        T(nm("bsr32", bt[i]), "bsrl %k[s],%k[d]", 0x5555555555555555UL, bv[i] | 1, 0, FALL, ZF);
        T(nm("bsr64", bt[i]), "bsrq %q[s],%q[d]", 0x5555555555555555UL, bv[i], 0, F0, ZF);
    }
    TFLAGS("bsf32 zero src", "bsfl %k[s],%k[d]", 1, 0, F0, ZF);
    TFLAGS("bsr64 zero src", "bsrq %q[s],%q[d]", 1, 0, F0, ZF);
    TFLAGS("bsf16 zero src upper bits", "bsfw %w[s],%w[d]", 1, 0xffff0000UL, F0, ZF);

    /* POPCNT / LZCNT / TZCNT, gated on CPUID */
    static const u64 cv[] = { 0, 1, 0x8000000000000000UL, 0x00ff00ff0000f00fUL, 0xffffffffffffffffUL, 0x0000000100000000UL };
    static const char *const cvt[] = { "0", "1", "msb", "mix", "ones", "bit32" };
    if (cpuid_ecx(1) & (1u << 23)) {
        for (int i = 0; i < 6; i++) {
            T(nm("popcnt16", cvt[i]), "popcntw %w[s],%w[d]", 0x5555555555555555UL, cv[i], 0, FALL, ARITH);
            T(nm("popcnt32", cvt[i]), "popcntl %k[s],%k[d]", 0x5555555555555555UL, cv[i], 0, FALL, ARITH);
            T(nm("popcnt64", cvt[i]), "popcntq %q[s],%q[d]", 0x5555555555555555UL, cv[i], 0, FALL, ARITH);
        }
    } else {
        pass_skip("popcnt", "CPUID.1:ECX.POPCNT=0");
    }
    if (cpuid_ecx(0x80000001) & (1u << 5)) {
        for (int i = 0; i < 6; i++) {
            T(nm("lzcnt16", cvt[i]), "lzcntw %w[s],%w[d]", 0x5555555555555555UL, cv[i], 0, FALL, CF | ZF);
            T(nm("lzcnt32", cvt[i]), "lzcntl %k[s],%k[d]", 0x5555555555555555UL, cv[i], 0, F0, CF | ZF);
            T(nm("lzcnt64", cvt[i]), "lzcntq %q[s],%q[d]", 0x5555555555555555UL, cv[i], 0, F0, CF | ZF);
        }
    } else {
        pass_skip("lzcnt", "CPUID.80000001H:ECX.ABM=0");
    }
    if (cpuid_ebx(7) & (1u << 3)) {
        for (int i = 0; i < 6; i++) {
            T(nm("tzcnt16", cvt[i]), "tzcntw %w[s],%w[d]", 0x5555555555555555UL, cv[i], 0, FALL, CF | ZF);
            T(nm("tzcnt32", cvt[i]), "tzcntl %k[s],%k[d]", 0x5555555555555555UL, cv[i], 0, F0, CF | ZF);
            T(nm("tzcnt64", cvt[i]), "tzcntq %q[s],%q[d]", 0x5555555555555555UL, cv[i], 0, F0, CF | ZF);
        }
    } else {
        pass_skip("tzcnt", "CPUID.07H:EBX.BMI1=0");
    }
}

/* flag pattern i (0..31) -> CF, PF, ZF, SF, OF */
static u64 pat(int i)
{
    return 0x2 | ((i & 1) ? CF : 0) | ((i & 2) ? PF : 0) | ((i & 4) ? ZF : 0) | ((i & 8) ? SF : 0) | ((i & 16) ? OF : 0);
}

#define SETCC(cc) do { u64 r = 0, z = 0; \
    for (int i = 0; i < 32; i++) { u64 d = 0xffffffffffffff55UL; \
        __asm__ volatile("push %[fi]\n\tpopfq\n\tset" cc " %b[d]" : [d] "+r"(d) : [fi] "r"(pat(i)) : "cc"); \
        if ((d & 0xff) == 1) r |= 1UL << i; else if ((d & 0xff) != 0) z |= 1UL << i; \
        if ((d >> 8) != 0xffffffffffffffUL) z |= 1UL << (32 + i); } \
    check_tab("set" cc, r, z, 0, 0); } while (0)

#define CMOVCC(cc) do { u64 r = 0, z = 0, f; \
    for (int i = 0; i < 32; i++) { u64 d = 0xffffffff00000000UL, d16 = 0x1111111111110000UL; \
        __asm__ volatile("push %[fi]\n\tpopfq\n\tcmov" cc "l %k[s],%k[d]\n\tcmov" cc "w %w[s],%w[d16]\n\tpushfq\n\tpop %[f]" \
            : [d] "+r"(d), [d16] "+r"(d16), [f] "=&r"(f) : [s] "r"(0x12345678abcdUL), [fi] "r"(pat(i)) : "cc"); \
        if (d == 0x5678abcdUL) r |= 1UL << i; else if (d != 0) z |= 1UL << i; /* 32-bit: upper half cleared either way */ \
        if (d16 != ((r >> i) & 1 ? 0x111111111111abcdUL : 0x1111111111110000UL)) z |= 1UL << (32 + i); \
        if ((f & ARITH) != (pat(i) & ARITH)) z |= 1UL << 63; } \
    check_tab("cmov" cc, r, z, 0, 0); } while (0)

static void cc_tests(void)
{
    SETCC("o"); SETCC("no"); SETCC("b"); SETCC("ae"); SETCC("e"); SETCC("ne"); SETCC("be"); SETCC("a");
    SETCC("s"); SETCC("ns"); SETCC("p"); SETCC("np"); SETCC("l"); SETCC("ge"); SETCC("le"); SETCC("g");
    CMOVCC("o"); CMOVCC("no"); CMOVCC("b"); CMOVCC("ae"); CMOVCC("e"); CMOVCC("ne"); CMOVCC("be"); CMOVCC("a");
    CMOVCC("s"); CMOVCC("ns"); CMOVCC("p"); CMOVCC("np"); CMOVCC("l"); CMOVCC("ge"); CMOVCC("le"); CMOVCC("g");
    T("cmovq mem taken", "cmovzq (%[s]),%q[d]", 1, (u64)&pa[3], 0, ZF | 2, 0);
    T("cmovq mem not taken", "cmovnzq (%[s]),%q[d]", 1, (u64)&pa[3], 0, ZF | 2, 0);
}

static void xchg_tests(void)
{
    T2("xadd8", "xaddb %b[s],%b[d]", 0x11111111111111f0UL, 0x2222222222222220UL, F0, ARITH);
    T2("xadd16", "xaddw %w[s],%w[d]", 0x7fff, 0x1, F0, ARITH);
    T2("xadd32", "xaddl %k[s],%k[d]", 0xffffffffffffffffUL, 0x1111111100000001UL, F0, ARITH);
    T2("xadd64", "xaddq %q[s],%q[d]", 0x8000000000000000UL, 0x8000000000000000UL, F0, ARITH);
    T2("xchg32 zero-extends", "xchgl %k[s],%k[d]", 0xaaaaaaaa11111111UL, 0xbbbbbbbb22222222UL, FALL, ARITH);
    T2("xchg8", "xchgb %b[s],%b[d]", 0xaaaaaaaa11111111UL, 0xbbbbbbbb22222222UL, F0, ARITH);
    {
        static u64 m;
        u64 s, f;
        m = 0x100; s = 0x23;
        __asm__ volatile("push %[fi]\n\tpopfq\n\tlock xaddq %[s],(%[p])\n\tpushfq\n\tpop %[f]"
            : [s] "+r"(s), [f] "=&r"(f) : [p] "r"(&m), [fi] "r"(F0) : "cc", "memory");
        check_tab("lock xadd64 mem", m, s, f, ARITH);
    }
    /* CMPXCHG: RAX compared with dest; flags as CMP */
#define CX(name, insn, a0, d0, s0) do { u64 a_ = (a0), d_ = (d0), f_; \
    __asm__ volatile("push %[fi]\n\tpopfq\n\t" insn "\n\tpushfq\n\tpop %[f]" \
        : "+a"(a_), [d] "+r"(d_), [f] "=&r"(f_) : [s] "r"((u64)(s0)), [fi] "r"(F0) : "cc", "memory"); \
    check_tab(name, a_, d_, f_, ARITH); } while (0)
    CX("cmpxchg8 equal", "cmpxchgb %b[s],%b[d]", 0x1234567890abcd42UL, 0xffffffffffffff42UL, 0x99);
    CX("cmpxchg8 differ", "cmpxchgb %b[s],%b[d]", 0x1234567890abcd41UL, 0xffffffffffffff42UL, 0x99);
    CX("cmpxchg16 equal", "cmpxchgw %w[s],%w[d]", 0x8000, 0x8000, 0x1);
    CX("cmpxchg16 differ", "cmpxchgw %w[s],%w[d]", 0x7fff, 0x8000, 0x1);
    CX("cmpxchg32 equal", "cmpxchgl %k[s],%k[d]", 0xaaaaaaaa12345678UL, 0xbbbbbbbb12345678UL, 0xcccccccc87654321UL);
    CX("cmpxchg32 differ", "cmpxchgl %k[s],%k[d]", 0xaaaaaaaa12345678UL, 0xbbbbbbbb12345679UL, 0xcccccccc87654321UL);
    CX("cmpxchg64 equal", "cmpxchgq %q[s],%q[d]", 0x1UL, 0x1UL, 0x2);
    CX("cmpxchg64 differ", "cmpxchgq %q[s],%q[d]", 0x1UL, 0x8000000000000000UL, 0x2);
#undef CX
    {
        static u64 m8;
        u64 a, d, b, c, f;
        m8 = 0x1111111122222222UL; a = 0xffffffff22222222UL; d = 0xffffffff11111111UL; b = 0x33333333; c = 0x44444444;
        __asm__ volatile("push %[fi]\n\tpopfq\n\tlock cmpxchg8b (%[p])\n\tpushfq\n\tpop %[f]"
            : "+a"(a), "+d"(d), [f] "=&r"(f) : "b"(b), "c"(c), [p] "r"(&m8), [fi] "r"(FALL & ~ZF) : "cc", "memory");
        check_tab("cmpxchg8b equal", m8, a ^ (d << 1), f, ARITH);
        m8 = 0x1111111122222222UL; a = 0x22222223; d = 0x11111111;
        __asm__ volatile("push %[fi]\n\tpopfq\n\tcmpxchg8b (%[p])\n\tpushfq\n\tpop %[f]"
            : "+a"(a), "+d"(d), [f] "=&r"(f) : "b"(b), "c"(c), [p] "r"(&m8), [fi] "r"(F0 | ZF) : "cc", "memory");
        check_tab("cmpxchg8b differ", m8, a ^ (d << 1), f, ARITH);
    }
    if (cpuid_ecx(1) & (1u << 13)) {
        static u64 m16[2] __attribute__((aligned(16)));
        u64 a, d, f;
        m16[0] = 0x1111; m16[1] = 0x2222; a = 0x1111; d = 0x2222;
        __asm__ volatile("push %[fi]\n\tpopfq\n\tlock cmpxchg16b (%[p])\n\tpushfq\n\tpop %[f]"
            : "+a"(a), "+d"(d), [f] "=&r"(f) : "b"(0x3333UL), "c"(0x4444UL), [p] "r"(m16), [fi] "r"(F0) : "cc", "memory");
        check_tab("cmpxchg16b equal", m16[0] ^ (m16[1] << 1), a ^ (d << 1), f, ARITH);
        m16[0] = 0x1111; m16[1] = 0x2222; a = 0x1111; d = 0x2223;
        __asm__ volatile("push %[fi]\n\tpopfq\n\tcmpxchg16b (%[p])\n\tpushfq\n\tpop %[f]"
            : "+a"(a), "+d"(d), [f] "=&r"(f) : "b"(0x3333UL), "c"(0x4444UL), [p] "r"(m16), [fi] "r"(FALL) : "cc", "memory");
        check_tab("cmpxchg16b differ", m16[0] ^ (m16[1] << 1), a ^ (d << 1), f, ARITH);
    } else {
        pass_skip("cmpxchg16b", "CPUID.1:ECX.CX16=0");
    }
}

static void misc_tests(void)
{
    T("bswap32", "bswapl %k[d]", 0xffffffff12345678UL, 0, 0, FALL, ARITH);
    T("bswap64", "bswapq %q[d]", 0x0123456789abcdefUL, 0, 0, F0, ARITH);
    if (cpuid_ecx(1) & (1u << 22)) {
        static u64 mb = 0x0123456789abcdefUL;
        T("movbe16 load", "movbew (%[s]),%w[d]", 0xffffffffffffffffUL, (u64)&mb, 0, F0, ARITH);
        T("movbe32 load", "movbel (%[s]),%k[d]", 0xffffffffffffffffUL, (u64)&mb, 0, FALL, ARITH);
        T("movbe64 load", "movbeq (%[s]),%q[d]", 0, (u64)&mb, 0, F0, ARITH);
        TFLAGS("movbe32 store", "movbel %k[s],(%[d])", (u64)&mb, 0xaabbccdd, F0, ARITH);
        check_tab("movbe32 store value", mb, 0, 0, 0);
    } else {
        pass_skip("movbe", "CPUID.1:ECX.MOVBE=0");
    }
    TAD("cbw", "cbtw", 0x1111111111111180UL, 0x2222, 0, F0, ARITH);
    TAD("cwde", "cwtl", 0x111111111111ff7fUL, 0x2222, 0, FALL, ARITH);
    TAD("cwde neg", "cwtl", 0x1111111111118000UL, 0x2222, 0, F0, ARITH);
    TAD("cdqe", "cltq", 0x1111111180000000UL, 0x2222, 0, F0, ARITH);
    TAD("cwd", "cwtd", 0x1111111111118000UL, 0x3333333333333333UL, 0, F0, ARITH);
    TAD("cwd pos", "cwtd", 0x1111111111117fffUL, 0x3333333333333333UL, 0, F0, ARITH);
    TAD("cdq", "cltd", 0x11111111f0000000UL, 0x3333333333333333UL, 0, F0, ARITH);
    TAD("cdq pos", "cltd", 0x1111111170000000UL, 0x3333333333333333UL, 0, F0, ARITH);
    TAD("cqo", "cqto", 0x8000000000000000UL, 0x3333333333333333UL, 0, F0, ARITH);
    TAD("cqo pos", "cqto", 0x7000000000000000UL, 0x3333333333333333UL, 0, F0, ARITH);
    if (cpuid_ecx(0x80000001) & 1) {
        TAD("lahf all", "lahf", 0x1111111111111111UL, 0, 0, FALL, ARITH);
        TAD("lahf none", "lahf", 0x1111111111111111UL, 0, 0, F0, ARITH);
        TAD("lahf cf zf", "lahf", 0x1111111111111111UL, 0, 0, F0 | CF | ZF, ARITH);
        TAD("sahf all", "sahf", 0xffff, 0, 0, F0, ARITH);
        TAD("sahf none keeps of", "sahf", 0x0000, 0, 0, FALL, ARITH);
        TAD("sahf sf pf", "sahf", 0x8400, 0, 0, F0, ARITH);
    } else {
        pass_skip("lahf/sahf", "CPUID.80000001H:ECX.LAHF=0");
    }
    /* LEA and MOVSX/MOVZX do not touch flags */
    T("lea 32-bit truncates", "leal 0x10(%q[d],%q[s],4),%k[d]", 0xfffffffffffffff0UL, 0x100000000UL, 0, FALL, ARITH);
    T("movsx8to64", "movsbq %b[s],%q[d]", 0, 0x80, 0, F0, ARITH);
    T("movzx16to64", "movzwq %w[s],%q[d]", 0xffffffffffffffffUL, 0xffff8000UL, 0, F0, ARITH);
    T("movsxd", "movslq %k[s],%q[d]", 0, 0xffffffff80000001UL, 0, FALL, ARITH);
}

#ifndef HOST
const struct expect expect_table[] = {
#include "arith.expect.h"
    { 0, 0, 0, 0 }
};
#endif

void test_main(void)
{
    alu_tests();
    muldiv_tests();
#ifndef HOST
    de_tests();
#endif
    shift_tests();
    bit_tests();
    cc_tests();
    xchg_tests();
    misc_tests();
}
