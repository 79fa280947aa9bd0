/*
 * Shared declarations and test macros for C test guests.
 *
 * The same test source is compiled two ways:
 *  - as a guest (default): checks print PASS/FAIL on COM1; check_tab()
 *    compares against NAME.expect.h, a table recorded on real hardware;
 *  - with -DHOST as a native Linux program (see `make regen`), where
 *    check_tab() prints the table entries that become NAME.expect.h, and
 *    literal checks (check/check3) report mismatches to stderr.
 * Guest-only code (exceptions, privileged instructions, absolute addresses)
 * goes inside #ifndef HOST.
 */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long s64;

struct expect {
    const char *name;
    u64 r, r2, f;
};
extern const struct expect expect_table[];

void putc_ser(char c);
void puts_ser(const char *s);
void puthex(u64 v);
void putdec(u64 v);
void pass(const char *name);
void pass_skip(const char *name, const char *why);
void fail_msg(const char *name, const char *msg);
void check(const char *name, u64 got, u64 exp);
void check3(const char *name, u64 r, u64 r2, u64 f, u64 er, u64 er2, u64 ef);
void check_tab(const char *name, u64 r, u64 r2, u64 f, u64 mask);
void debug_exit(u32 code);
void finish(void);

extern int failures;
/* exception bookkeeping (lib/long.S) */
extern volatile int exc_expect_vec, exc_last_vec, exc_count;
extern volatile u64 exc_resume_rip, exc_last_err, exc_last_rip;

/* RFLAGS bits */
#define CF 0x001
#define PF 0x004
#define AF 0x010
#define ZF 0x040
#define SF 0x080
#define DF 0x400
#define OF 0x800
#define ARITH (CF | PF | AF | ZF | SF | OF)
#define LOGIC (CF | PF | ZF | SF | OF) /* AF undefined */

/* input flag patterns for POPFQ (bit 1 is always 1) */
#define F0 0x002UL
#define FC 0x003UL
#define FALL (0x002UL | ARITH)

/*
 * T: run `insn` with %[d] (in/out register, initial d0), %[s] (input
 * register s0), RCX = c0 (for CL counts), flags = fin; record d and flags & mask.
 * Use size modifiers in insn: %b[d] %w[d] %k[d] %q[d]; CL is literally %%cl.
 */
#define T(name, insn, d0, s0, c0, fin, mask) do { \
    u64 d_ = (u64)(d0), f_; \
    __asm__ volatile("push %[fi]\n\tpopfq\n\t" insn "\n\tpushfq\n\tpop %[f]" \
        : [d] "+r"(d_), [f] "=&r"(f_) \
        : [s] "r"((u64)(s0)), "c"((u64)(c0)), [fi] "r"((u64)(fin)) : "cc", "memory"); \
    check_tab(name, d_, 0, f_, mask); } while (0)

/* TAD: RAX = a0, RDX = d0, %[s] = s0, flags = fin; record RAX, RDX, flags & mask. */
#define TAD(name, insn, a0, d0, s0, fin, mask) do { \
    u64 a_ = (u64)(a0), dd_ = (u64)(d0), f_; \
    __asm__ volatile("push %[fi]\n\tpopfq\n\t" insn "\n\tpushfq\n\tpop %[f]" \
        : "+a"(a_), "+d"(dd_), [f] "=&r"(f_) \
        : [s] "r"((u64)(s0)), [fi] "r"((u64)(fin)) : "cc", "memory"); \
    check_tab(name, a_, dd_, f_, mask); } while (0)

static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline u32 cpuid_ecx(u32 leaf) { u32 a, b, c, d; cpuid(leaf, 0, &a, &b, &c, &d); return c; }
static inline u32 cpuid_edx(u32 leaf) { u32 a, b, c, d; cpuid(leaf, 0, &a, &b, &c, &d); return d; }
static inline u32 cpuid_ebx(u32 leaf) { u32 a, b, c, d; cpuid(leaf, 0, &a, &b, &c, &d); return b; }

/*
 * In inline asm: arm the IDT handler to expect exception `vec` and resume at
 * `label` (a local label such as "1f"; "0" resumes at the saved RIP).
 */
#define EXPECT_EXC(vec, label) \
    "movl $" #vec ", exc_expect_vec(%%rip)\n\tmovq $" label ", exc_resume_rip(%%rip)\n\t"

#endif
