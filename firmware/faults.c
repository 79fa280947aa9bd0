/*
 * faults: every exception with its error code, in 64-bit mode (and compatibility mode for
 * BOUND/INTO), nested faults (benign then contributory; contributory twice → #DF; #PF
 * while delivering #PF → #DF on an IST stack), faults through bad IDT gates with the IDT
 * and EXT bits of the error code, and the IDT limit.
 *
 * Error codes follow the SDM: a fault while delivering an exception or an external event
 * has EXT = 1 (bit 0); a fault caused by the IDT entry has IDT = 1 (bit 1) and the vector
 * in bits 3-15. Where QEMU 7.2 TCG (-cpu max) differs, the SDM value is expected:
 *  - INT1 (ICEBP, 0xF1) raises #UD on QEMU instead of the #DB trap;
 *  - a non-canonical RBP/RSP-based reference raises #GP(0) on QEMU, #SS(0) per the SDM;
 *  - faults through a 64-bit IDT gate carry vector*16 + IDT on QEMU (the byte offset of
 *    the 16-byte gate), vector*8 + IDT (+ EXT) per the SDM, and QEMU leaves EXT clear for
 *    an exception whose own gate is bad (#UD through a not-present gate: 0x62 vs 0x33).
 * Everything else here passes on QEMU too.
 */
#include "guest.h"
#include "sys64.h"

extern u8 idt[];

static void expect(const char *name, int vec, u64 err)
{
    if (exc_last_vec != vec) {
        fail_msg(name, "vector");
        puts_ser("#   expected ");
        puthex(vec);
        puts_ser(" got ");
        puthex((u64)exc_last_vec);
        putc_ser('\n');
        return;
    }
    check(name, exc_last_err, err);
}

static void reset(void)
{
    exc_last_vec = -1;
    exc_last_err = 0;
}

static u64 idt_type(int vec) { return idt[vec * 16 + 5]; }
static void set_idt_type(int vec, u8 v) { idt[vec * 16 + 5] = v; }

extern void bound32(void), into32(void);
extern u8 bound32_resume[], into32_resume[];
struct far32 { u32 off; u16 sel; } __attribute__((packed));

__asm__(
    ".text\n.code32\n"
    ".globl bound32, bound32_resume, into32, into32_resume\n"
    "bound32: movl $10, %eax\n bound %eax, bounds32\n"
    "bound32_resume: lret\n"
    "into32: movl $0x7fffffff, %eax\n addl $1, %eax\n into\n"
    "into32_resume: lret\n"
    ".code64\n"
    ".data\n.p2align 3\nbounds32: .long 0, 5\n.text\n");

static void far_call32(void (*fn)(void))
{
    static struct far32 p;
    p.off = (u32)(u64)fn;
    p.sel = 0x08;
    __asm__ volatile("lcall *%0" :: "m"(p) : "rax", "memory", "cc");
}

static void simple_faults(void)
{
    reset();
    __asm__ volatile(EXPECT_EXC(0, "1f") "xor %%ecx, %%ecx\n div %%ecx\n1:" ::: "rax", "rcx", "rdx", "cc");
    expect("#DE divide by zero", 0, 0);

    reset();
    u64 after;
    __asm__ volatile(EXPECT_EXC(1, "0") ".byte 0xf1\n1: lea 1b(%%rip), %0" : "=r"(after) :: "memory");
    expect("#DB INT1 (ICEBP)", 1, 0);
    check("#DB INT1 is a trap (RIP after it)", exc_last_rip, after);

    reset();
    __asm__ volatile(EXPECT_EXC(3, "0") "int3\n1: lea 1b(%%rip), %0" : "=r"(after) :: "memory");
    expect("#BP INT3", 3, 0);
    check("#BP is a trap (RIP after it)", exc_last_rip, after);

    reset();
    __asm__ volatile(EXPECT_EXC(4, "0") "int $4" ::: "memory");
    expect("#OF INT 4", 4, 0);

    reset();
    __asm__ volatile(EXPECT_EXC(6, "1f") ".byte 0xce\n1:" ::: "memory");
    expect("#UD INTO in 64-bit mode", 6, 0);

    reset();
    __asm__ volatile(EXPECT_EXC(6, "1f") "ud2\n1:" ::: "memory");
    expect("#UD UD2", 6, 0);

    reset();
    u64 at;
    __asm__ volatile(EXPECT_EXC(13, "2f") "lea 1f(%%rip), %0\n movabs $0x8000000000000000, %%rax\n"
                     "1: mov (%%rax), %%rax\n2:" : "=&r"(at) :: "rax", "memory");
    expect("#GP(0) non-canonical", 13, 0);
    check("#GP is a fault (RIP at it)", exc_last_rip, at);

    reset();
    __asm__ volatile("push %%rbp\n" EXPECT_EXC(12, "1f") "movabs $0x800000000000, %%rbp\n mov (%%rbp), %%rax\n1: pop %%rbp"
                     ::: "rax", "memory");
    expect("#SS(0) non-canonical stack reference", 12, 0);

    reset();
    u64 cr2;
    __asm__ volatile(EXPECT_EXC(14, "1f") "movabs $0x100000010, %%rax\n mov (%%rax), %%rax\n1:" ::: "rax", "memory");
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    expect("#PF read not present", 14, 0);
    check("#PF CR2", cr2, 0x100000010UL);
    reset();
    __asm__ volatile(EXPECT_EXC(14, "1f") "movabs $0x100000020, %%rax\n movq $1, (%%rax)\n1:" ::: "rax", "memory");
    expect("#PF write not present", 14, 2);

    /* Segment faults: a not-present data segment, a selector past the GDT limit, a code
       segment that is not readable. */
    gdt2[13] = 0x00CF12000000FFFFUL; /* 0x68: data, P = 0 */
    gdt2[14] = 0x00CF98000000FFFFUL; /* 0x70: execute-only code */
    reset();
    __asm__ volatile(EXPECT_EXC(11, "1f") "mov %0, %%ds\n1: mov $0x10, %%eax\n mov %%eax, %%ds" :: "r"(0x68) : "rax", "memory");
    expect("#NP(sel) not-present data segment", 11, 0x68);
    reset();
    __asm__ volatile(EXPECT_EXC(13, "1f") "mov %0, %%ds\n1: mov $0x10, %%eax\n mov %%eax, %%ds" :: "r"(0x400) : "rax", "memory");
    expect("#GP(sel) selector beyond the GDT limit", 13, 0x400);
    reset();
    __asm__ volatile(EXPECT_EXC(13, "1f") "mov %0, %%ds\n1: mov $0x10, %%eax\n mov %%eax, %%ds" :: "r"(0x70) : "rax", "memory");
    expect("#GP(sel) execute-only code into DS", 13, 0x70);
}

static void compat_faults(void)
{
    reset();
    exc_expect_vec = 5;
    exc_resume_rip = (u64)bound32_resume;
    far_call32(bound32);
    expect("#BR BOUND (compatibility mode)", 5, 0);
    reset();
    exc_expect_vec = 4;
    exc_resume_rip = 0;
    far_call32(into32);
    expect("#OF INTO with OF=1 (compatibility mode)", 4, 0);
    check("#OF is a trap (RIP after INTO)", exc_last_rip, (u64)into32_resume);
}

static void tss_fault(void)
{
    /* A second TSS whose limit ends before IST1: an interrupt through a gate with IST = 1
       raises #TS(TSS selector). For INT n the event is software: EXT = 0. */
    static u8 small_tss[0x68];
    u64 base = (u64)small_tss, limit = 0x20;
    gdt2[11] = limit | ((base & 0xffffff) << 16) | (0x89UL << 40) | (((base >> 24) & 0xff) << 56);
    gdt2[12] = base >> 32;
    __asm__ volatile("ltr %w0" :: "r"(0x58));
    extern void exc_stubs(void);
    set_gate(0x41, (void (*)(void))((u8 *)exc_stubs + 16 * 0x41), 0, 1, 0xE);
    reset();
    __asm__ volatile(EXPECT_EXC(10, "1f") "int $0x41\n1:" ::: "memory");
    expect("#TS(sel) IST beyond the TSS limit", 10, 0x58);
    reload_tr();
    set_gate(0x41, (void (*)(void))((u8 *)exc_stubs + 16 * 0x41), 0, 0, 0xE);
}

static void bad_gates(void)
{
    u8 t;
    /* INT n through a not-present gate: #NP(vector*8 + IDT), EXT = 0. */
    gate_present(0x42, 0);
    reset();
    __asm__ volatile(EXPECT_EXC(11, "1f") "int $0x42\n1:" ::: "memory");
    expect("#NP INT n through a not-present gate (IDT, EXT=0)", 11, 0x42 * 8 + 2);
    gate_present(0x42, 1);

    /* INT n through a gate of an invalid type (a 16-bit trap gate in long mode). */
    t = idt_type(0x43);
    set_idt_type(0x43, 0x87);
    reset();
    __asm__ volatile(EXPECT_EXC(13, "1f") "int $0x43\n1:" ::: "memory");
    expect("#GP INT n through an invalid gate type (IDT, EXT=0)", 13, 0x43 * 8 + 2);
    set_idt_type(0x43, t);

    /* INT n through a DPL 0 gate at CPL 0 is fine; at CPL 3 see `privilege`. */

    /* An exception (#UD) through a not-present gate: benign then contributory, delivered
       serially: #NP(6*8 + IDT + EXT). */
    gate_present(6, 0);
    reset();
    __asm__ volatile(EXPECT_EXC(11, "1f") "ud2\n1:" ::: "memory");
    expect("#NP #UD through a not-present gate (IDT, EXT=1)", 11, 6 * 8 + 3);
    gate_present(6, 1);

    /* #GP through a not-present gate: contributory twice → #DF(0). */
    gate_present(13, 0);
    reset();
    __asm__ volatile(EXPECT_EXC(8, "1f") "movabs $0x8000000000000000, %%rax\n mov (%%rax), %%rax\n1:" ::: "rax", "memory");
    expect("#DF #GP then #NP (contributory twice)", 8, 0);
    gate_present(13, 1);

    /* #PF while delivering #PF (the stack is unmapped) → #DF, taken on IST1. */
    static u8 ist_stack[4096] __attribute__((aligned(16)));
    tss.ist[0] = (u64)ist_stack + sizeof(ist_stack);
    extern void exc_stubs(void);
    set_gate(8, (void (*)(void))((u8 *)exc_stubs + 16 * 8), 0, 1, 0xE);
    reset();
    __asm__ volatile("mov %%rsp, %%r15\n" EXPECT_EXC(8, "1f")
                     "movabs $0x100001000, %%rsp\n mov (%%rsp), %%rax\n1: mov %%r15, %%rsp"
                     ::: "rax", "r15", "memory");
    expect("#DF #PF while delivering #PF", 8, 0);
    set_gate(8, (void (*)(void))((u8 *)exc_stubs + 16 * 8), 0, 0, 0xE);

    /* IDT limit: only vectors 0-31 inside it. */
    struct { u16 limit; u64 base; } __attribute__((packed)) old, small;
    __asm__ volatile("sidt %0" : "=m"(old));
    small = old;
    small.limit = 32 * 16 - 1;
    __asm__ volatile("lidt %0" :: "m"(small));
    reset();
    __asm__ volatile(EXPECT_EXC(13, "1f") "int $0x40\n1:" ::: "memory");
    __asm__ volatile("lidt %0" :: "m"(old));
    expect("#GP INT n beyond the IDT limit (IDT, EXT=0)", 13, 0x40 * 8 + 2);
}

void test_main(void)
{
    sys64_init();
    simple_faults();
    compat_faults();
    tss_fault();
    bad_gates();
}
