/*
 * debug: EFLAGS.TF single-stepping (trap after each instruction; POPF setting TF traps
 * only after the next instruction, POPF clearing it still traps; MOV SS holds the trap for
 * one instruction), DR0-DR3 breakpoints (execute = fault before the instruction, RF to get
 * past it; data write, data read/write and I/O (CR4.DE) = traps after it), DR6 (B0-B3, BS,
 * BD) and DR7 (L/G, R/W, LEN, GD).
 *
 * QEMU 7.2 TCG (-cpu max) does not implement DR7.GD (general detect): those four checks
 * fail there; the SDM is expected. Everything else passes on QEMU too.
 */
#include "guest.h"
#include "sys64.h"

#define MAXREC 16
volatile u64 db_count, db_max, db_set_rf;
volatile u64 db_rip[MAXREC], db_dr6[MAXREC];
extern void db_handler(void);

/* #DB handler: records RIP and DR6 (then clears DR6), sets RF in the image when asked (to
   get past an execute breakpoint), and clears TF in the image after db_max traps. */
__asm__(
    ".text\n.globl db_handler\n"
    "db_handler:\n"
    "  push %rax\n push %rcx\n push %rdx\n"
    "  mov db_count(%rip), %rcx\n"
    "  cmp $15, %rcx\n ja 1f\n"
    "  mov 24(%rsp), %rax\n lea db_rip(%rip), %rdx\n mov %rax, (%rdx,%rcx,8)\n"
    "  mov %dr6, %rax\n lea db_dr6(%rip), %rdx\n mov %rax, (%rdx,%rcx,8)\n"
    "1: incq db_count(%rip)\n"
    "  xor %eax, %eax\n mov %rax, %dr6\n"
    "  cmpq $0, db_set_rf(%rip)\n je 2f\n orq $0x10000, 40(%rsp)\n"
    "2: mov db_count(%rip), %rax\n cmp db_max(%rip), %rax\n jb 3f\n andq $~0x100, 40(%rsp)\n"
    "3: pop %rdx\n pop %rcx\n pop %rax\n iretq\n");

#define BS (1UL << 14)
#define BD (1UL << 13)

static void reset(u64 max, int set_rf)
{
    db_count = 0;
    db_max = max;
    db_set_rf = set_rf;
    for (int i = 0; i < MAXREC; i++)
        db_rip[i] = db_dr6[i] = 0;
    write_dr6(0);
}

extern u8 ss_nop1[], ss_nop2[], ss_nop3[], ss_pushf[], ss_and[], ss_after[];
extern u8 ms_after[], ms_nop[];

static void single_step(void)
{
    reset(100, 0);
    __asm__ volatile(
        "pushfq\n orq $0x100, (%%rsp)\n popfq\n"
        ".globl ss_nop1, ss_nop2, ss_nop3, ss_pushf, ss_and, ss_after\n"
        "ss_nop1: nop\n"
        "ss_nop2: nop\n"
        "ss_nop3: nop\n"
        "ss_pushf: pushfq\n"
        "ss_and: andq $~0x100, (%%rsp)\n"
        "popfq\n"
        "ss_after:\n" ::: "memory", "cc");
    check("TF: traps counted", db_count, 6);
    check("TF: POPF setting TF does not trap, the next instruction does", db_rip[0], (u64)ss_nop2);
    check("TF: trap RIP after the 2nd nop", db_rip[1], (u64)ss_nop3);
    check("TF: trap RIP after the 3rd nop", db_rip[2], (u64)ss_pushf);
    check("TF: trap RIP after PUSHF", db_rip[3], (u64)ss_and);
    check("TF: POPF clearing TF still traps", db_rip[5], (u64)ss_after);
    check("TF: DR6.BS", db_dr6[0] & (BS | 0xf), BS);

    /* MOV SS: no trap between it and the next instruction. */
    reset(100, 0);
    __asm__ volatile(
        "pushfq\n orq $0x100, (%%rsp)\n popfq\n"
        "nop\n"
        "mov %%ss, %%eax\n mov %%eax, %%ss\n"
        ".globl ms_nop, ms_after\n"
        "ms_nop: nop\n"
        "ms_after: pushfq\n andq $~0x100, (%%rsp)\n popfq\n" ::: "rax", "memory", "cc");
    /* Traps: after nop (RIP = mov ss,eax), after mov eax (RIP = mov ss), then none after
       MOV SS: the next one is after ms_nop. */
    check("TF: MOV SS holds the trap until after the next instruction", db_rip[2], (u64)ms_after);
}

extern u8 bp_target[], bp_after[];
volatile u32 watched __attribute__((aligned(8)));
volatile u64 bp_runs;

static void breakpoints(void)
{
    /* Execute breakpoint (DR0, L0, R/W 00, LEN 00): a fault with RIP at the instruction;
       the handler sets RF so that the instruction then runs once. */
    reset(100, 1);
    __asm__ volatile("mov %0, %%dr0" :: "r"((u64)bp_target));
    write_dr7(0x400 | 1);
    __asm__ volatile(".globl bp_target, bp_after\n"
                     "bp_target: incq bp_runs(%%rip)\n bp_after:" ::: "memory");
    write_dr7(0x400);
    check("DR0 execute: one #DB", db_count, 1);
    check("DR0 execute: a fault (RIP at the instruction)", db_rip[0], (u64)bp_target);
    check("DR0 execute: DR6.B0", db_dr6[0] & 0xf, 1);
    check("DR0 execute: RF lets the instruction run once", bp_runs, 1);

    /* Data write breakpoint (DR1, G1, R/W 01, LEN 11 = 4 bytes): a trap after the write. */
    reset(100, 0);
    u64 after;
    __asm__ volatile("mov %0, %%dr1" :: "r"((u64)&watched + 2));
    write_dr7(0x400 | (1 << 3) | (1UL << 20) | (3UL << 22));
    u32 r = watched; /* a read does not trigger */
    __asm__ volatile("movb $1, watched+3(%%rip)\n1: lea 1b(%%rip), %0" : "=r"(after) :: "memory");
    write_dr7(0x400);
    (void)r;
    check("DR1 write: one #DB (reads ignored)", db_count, 1);
    check("DR1 write: a trap (RIP after the write)", db_rip[0], after);
    check("DR1 write: DR6.B1", db_dr6[0] & 0xf, 2);

    /* Read/write breakpoint (DR2, L2, R/W 11, LEN 01 = 2 bytes) on a read. */
    reset(100, 0);
    __asm__ volatile("mov %0, %%dr2" :: "r"((u64)&watched));
    write_dr7(0x400 | (1 << 4) | (3UL << 24) | (1UL << 26));
    __asm__ volatile("movzbl watched+1(%%rip), %%eax\n1: lea 1b(%%rip), %0" : "=r"(after) :: "rax", "memory");
    u32 w = *(volatile u32 *)((u8 *)&watched); /* 4-byte read overlapping: second trap */
    (void)w;
    __asm__ volatile("movb watched+4(%%rip), %%al" ::: "rax", "memory"); /* outside: none */
    write_dr7(0x400);
    check("DR2 read/write: two #DB", db_count, 2);
    check("DR2 read/write: trap RIP", db_rip[0], after);
    check("DR2 read/write: DR6.B2", db_dr6[0] & 0xf, 4);

    /* I/O breakpoint (DR3, L3, R/W 10, CR4.DE) on port 0x80. */
    reset(100, 0);
    write_cr4(read_cr4() | (1 << 3));
    __asm__ volatile("mov %0, %%dr3" :: "r"(0x80UL));
    write_dr7(0x400 | (1 << 6) | (2UL << 28));
    __asm__ volatile("outb %%al, $0x81\n outb %%al, $0x80\n1: lea 1b(%%rip), %0" : "=r"(after) :: "rax", "memory");
    write_dr7(0x400);
    write_cr4(read_cr4() & ~(1UL << 3));
    check("DR3 I/O: one #DB (port 0x80 only)", db_count, 1);
    check("DR3 I/O: a trap (RIP after OUT)", db_rip[0], after);
    check("DR3 I/O: DR6.B3", db_dr6[0] & 0xf, 8);

    /* General detect: MOV DR with DR7.GD = #DB fault, DR6.BD, GD cleared for the handler. */
    reset(100, 0);
    u64 at, dr7;
    write_dr7(0x400 | (1 << 13));
    __asm__ volatile("lea 1f(%%rip), %0\n1: mov %%dr7, %1" : "=&r"(at), "=r"(dr7) :: "memory");
    check("DR7.GD: one #DB", db_count, 1);
    check("DR7.GD: a fault (RIP at the MOV)", db_rip[0], at);
    check("DR7.GD: DR6.BD", db_dr6[0] & BD, BD);
    check("DR7.GD: cleared on the #DB", dr7 & (1 << 13), 0);
}

void test_main(void)
{
    set_gate(1, db_handler, 0, 0, 0xE);
    single_step();
    breakpoints();
}
