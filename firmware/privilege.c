/*
 * privilege: every sensitive instruction executed at CPL 3 (64-bit mode) raises the
 * architectural fault (#GP(0) unless noted), IOPL rules for CLI/STI/POPF and I/O, the TSS
 * I/O permission bitmap (every byte of a multi-byte access), CR4.TSD/PCE/UMIP, #AC with
 * CR0.AM and EFLAGS.AC, INT n through a DPL 0 gate. Ring 3 is entered with SYSRET and
 * left through the harness's INT 0x80 or the faulting exception (lib/ring3.S), so no IRET
 * to ring 3 is involved.
 *
 * QEMU 7.2 TCG (-cpu max) differs from the SDM in three checks (the SDM is expected):
 * SYSEXIT in long mode raises #UD there (AMD behaviour; Intel supports it), the #GP for
 * INT3 through a DPL 0 gate carries vector*16 + IDT (0x32) instead of vector*8 + IDT (0x1a),
 * and TCG does not implement alignment checking (no #AC).
 */
#include "guest.h"
#include "sys64.h"

#define UFN(name, body)                                                          \
    extern void name(void);                                                      \
    __asm__(".text\n.globl " #name "\n" #name ":\n" body "\n ret\n")

UFN(u_hlt, "hlt");
UFN(u_cli, "cli");
UFN(u_sti, "sti");
UFN(u_in80, "inb $0x80, %al");
UFN(u_out80, "outb %al, $0x80");
UFN(u_outw7f, "movw $0x7f, %dx\n outw %ax, %dx");
UFN(u_outw80, "movw $0x80, %dx\n outw %ax, %dx");
UFN(u_outl80, "movw $0x80, %dx\n outl %eax, %dx");
UFN(u_outsb80, "movw $0x80, %dx\n lea user_stack(%rip), %rsi\n outsb");
UFN(u_insb80, "movw $0x80, %dx\n lea user_stack(%rip), %rdi\n insb");
UFN(u_rcr0, "mov %cr0, %rax");
UFN(u_wcr3, "mov %rax, %cr3");
UFN(u_rdr7, "mov %dr7, %rax");
UFN(u_wdr0, "mov %rax, %dr0");
UFN(u_lgdt, "lgdt (%rsp)");
UFN(u_lidt, "lidt (%rsp)");
UFN(u_lldt, "xor %eax, %eax\n lldt %ax");
UFN(u_ltr, "mov $0x48, %eax\n ltr %ax");
UFN(u_sgdt, "sub $16, %rsp\n sgdt (%rsp)\n add $16, %rsp");
UFN(u_sidt, "sub $16, %rsp\n sidt (%rsp)\n add $16, %rsp");
UFN(u_sldt, "sldt %eax");
UFN(u_str, "str %eax");
UFN(u_smsw, "smsw %eax");
UFN(u_rdmsr, "mov $0xc0000080, %ecx\n rdmsr");
UFN(u_wrmsr, "mov $0xc0000080, %ecx\n xor %eax, %eax\n xor %edx, %edx\n wrmsr");
UFN(u_rdtsc, "rdtsc");
UFN(u_rdtscp, "rdtscp");
UFN(u_rdpmc, "xor %ecx, %ecx\n rdpmc");
UFN(u_invlpg, "invlpg (%rsp)");
UFN(u_wbinvd, "wbinvd");
UFN(u_invd, "invd");
UFN(u_clts, "clts");
UFN(u_lmsw, "smsw %eax\n lmsw %ax");
UFN(u_swapgs, "swapgs");
UFN(u_sysret, "sysretq");
UFN(u_sysexit, "sysexitq");
UFN(u_cpuid, "xor %eax, %eax\n cpuid");
UFN(u_int3, "int3");
UFN(u_int80_ok, "nop");
UFN(u_monitor, "lea user_stack(%rip), %rax\n xor %ecx, %ecx\n xor %edx, %edx\n monitor");
UFN(u_misaligned, "lea user_stack+1(%rip), %rax\n movl (%rax), %eax");
UFN(u_misaligned_w, "lea user_stack+2(%rip), %rax\n movq $5, (%rax)");
UFN(u_aligned, "lea user_stack+8(%rip), %rax\n movq (%rax), %rax");
UFN(u_byte, "lea user_stack+3(%rip), %rax\n movb (%rax), %al");
/* POPF at CPL 3 with IOPL 0: IF and IOPL are kept silently. */
UFN(u_popf_if, "pushfq\n orq $0x3200, (%rsp)\n popfq\n pushfq\n popq %rax\n movq %rax, popf_result(%rip)");

volatile u64 popf_result;

#define FLAGS 0x2UL
#define IOPL3 0x3000UL
#define AC (1UL << 18)

static void expect(const char *name, void (*fn)(void), u64 flags, int vec, u64 err)
{
    int v = run_user(fn, flags);
    if (v != vec) {
        fail_msg(name, "vector");
        puts_ser("#   expected ");
        puthex((u64)vec);
        puts_ser(" got ");
        puthex((u64)v);
        puts_ser(" at ");
        puthex(u_rip);
        putc_ser('\n');
        return;
    }
    if (vec == 0x80) {
        pass(name);
        return;
    }
    /* A fault: the error code, and RIP at the faulting instruction (never past it). */
    if (u_err != err) {
        check(name, u_err, err);
        return;
    }
    if ((u_cs & 3) != 3)
        fail_msg(name, "the fault did not come from CPL 3");
    else
        pass(name);
}

static void set_port(unsigned port, int allowed)
{
    if (allowed)
        tss.iomap[port / 8] &= (u8)~(1u << (port % 8));
    else
        tss.iomap[port / 8] |= (u8)(1u << (port % 8));
}

void test_main(void)
{
    sys64_init();
    expect("user code runs at CPL 3", u_int80_ok, FLAGS, 0x80, 0);
    check("user CS", u_cs, UCODE64);

    expect("HLT", u_hlt, FLAGS, 13, 0);
    expect("CLI at IOPL 0", u_cli, FLAGS, 13, 0);
    expect("STI at IOPL 0", u_sti, FLAGS, 13, 0);
    expect("CLI at IOPL 3", u_cli, FLAGS | IOPL3, 0x80, 0);
    expect("POPF at CPL 3 keeps IF and IOPL", u_popf_if, FLAGS, 0x80, 0);
    check("POPF at CPL 3 keeps IF and IOPL (value)", popf_result & 0x3200, 0);

    /* I/O: the bitmap is all ones (sys64_init); IOPL 3 bypasses it. */
    expect("IN denied by the bitmap", u_in80, FLAGS, 13, 0);
    expect("OUT denied by the bitmap", u_out80, FLAGS, 13, 0);
    expect("OUT at IOPL 3", u_out80, FLAGS | IOPL3, 0x80, 0);
    set_port(0x80, 1);
    expect("OUT allowed by the bitmap", u_out80, FLAGS, 0x80, 0);
    expect("IN allowed by the bitmap", u_in80, FLAGS, 0x80, 0);
    expect("OUTSB allowed by the bitmap", u_outsb80, FLAGS, 0x80, 0);
    expect("INSB allowed by the bitmap", u_insb80, FLAGS, 0x80, 0);
    expect("OUTW 0x7f-0x80: 0x7f denied", u_outw7f, FLAGS, 13, 0);
    expect("OUTW 0x80-0x81: 0x81 denied", u_outw80, FLAGS, 13, 0);
    set_port(0x81, 1);
    expect("OUTW 0x80-0x81 allowed", u_outw80, FLAGS, 0x80, 0);
    expect("OUTL 0x80-0x83: 0x82 denied", u_outl80, FLAGS, 13, 0);
    set_port(0x80, 0);
    set_port(0x81, 0);

    expect("MOV from CR0", u_rcr0, FLAGS, 13, 0);
    expect("MOV to CR3", u_wcr3, FLAGS, 13, 0);
    expect("MOV from DR7", u_rdr7, FLAGS, 13, 0);
    expect("MOV to DR0", u_wdr0, FLAGS, 13, 0);
    expect("LGDT", u_lgdt, FLAGS, 13, 0);
    expect("LIDT", u_lidt, FLAGS, 13, 0);
    expect("LLDT", u_lldt, FLAGS, 13, 0);
    expect("LTR", u_ltr, FLAGS, 13, 0);
    expect("RDMSR", u_rdmsr, FLAGS, 13, 0);
    expect("WRMSR", u_wrmsr, FLAGS, 13, 0);
    expect("RDPMC with CR4.PCE clear", u_rdpmc, FLAGS, 13, 0);
    expect("INVLPG", u_invlpg, FLAGS, 13, 0);
    expect("WBINVD", u_wbinvd, FLAGS, 13, 0);
    expect("INVD", u_invd, FLAGS, 13, 0);
    expect("CLTS", u_clts, FLAGS, 13, 0);
    expect("LMSW", u_lmsw, FLAGS, 13, 0);
    expect("SWAPGS", u_swapgs, FLAGS, 13, 0);
    expect("SYSRET", u_sysret, FLAGS, 13, 0);
    if (cpuid_edx(1) & (1 << 11))
        expect("SYSEXIT", u_sysexit, FLAGS, 13, 0);
    else
        pass_skip("SYSEXIT", "no SEP");
    expect("CPUID (no CPUID faulting)", u_cpuid, FLAGS, 0x80, 0);
    expect("INT3 through a DPL 0 gate: #GP(vector*8 + IDT)", u_int3, FLAGS, 13, 3 * 8 + 2);
    if (cpuid_ecx(1) & (1 << 3))
        pass_skip("MONITOR", "advertised");
    else
        expect("MONITOR not advertised: #UD", u_monitor, FLAGS, 6, 0);

    /* Time stamp counter: CR4.TSD. */
    expect("RDTSC with TSD clear", u_rdtsc, FLAGS, 0x80, 0);
    write_cr4(read_cr4() | (1 << 2));
    expect("RDTSC with CR4.TSD", u_rdtsc, FLAGS, 13, 0);
    if (cpuid_edx(0x80000001) & (1 << 27))
        expect("RDTSCP with CR4.TSD", u_rdtscp, FLAGS, 13, 0);
    write_cr4(read_cr4() & ~(1UL << 2));

    /* UMIP */
    expect("SGDT without UMIP", u_sgdt, FLAGS, 0x80, 0);
    expect("SMSW without UMIP", u_smsw, FLAGS, 0x80, 0);
    if (cpuid_ecx(7) & (1 << 2)) {
        write_cr4(read_cr4() | (1 << 11));
        expect("SGDT with CR4.UMIP", u_sgdt, FLAGS, 13, 0);
        expect("SIDT with CR4.UMIP", u_sidt, FLAGS, 13, 0);
        expect("SLDT with CR4.UMIP", u_sldt, FLAGS, 13, 0);
        expect("STR with CR4.UMIP", u_str, FLAGS, 13, 0);
        expect("SMSW with CR4.UMIP", u_smsw, FLAGS, 13, 0);
        write_cr4(read_cr4() & ~(1UL << 11));
    } else {
        pass_skip("UMIP", "not advertised");
    }

    /* Alignment checking */
    expect("misaligned load, AM clear", u_misaligned, FLAGS | AC, 0x80, 0);
    write_cr0(read_cr0() | (1 << 18));
    expect("misaligned load, AC clear", u_misaligned, FLAGS, 0x80, 0);
    expect("#AC misaligned load", u_misaligned, FLAGS | AC, 17, 0);
    expect("#AC misaligned store", u_misaligned_w, FLAGS | AC, 17, 0);
    expect("aligned load with AC", u_aligned, FLAGS | AC, 0x80, 0);
    expect("byte load with AC", u_byte, FLAGS | AC, 0x80, 0);
    write_cr0(read_cr0() & ~(1UL << 18));
}
