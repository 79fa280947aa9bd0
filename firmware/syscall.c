/*
 * syscall: SYSCALL/SYSRET round trips (RCX/R11, STAR selectors, SFMASK, RSP untouched),
 * SYSRET to compatibility mode (SYSRETL), SYSCALL in compatibility mode (#UD: the model is
 * Intel), EFER.SCE clear (#UD), the non-canonical RCX rule (#GP(0) in ring 0), SYSRET at
 * CPL 3 (#GP(0), see also `privilege`); SYSENTER/SYSEXIT in their 64-bit and 32-bit forms,
 * and SYSENTER with IA32_SYSENTER_CS = 0 (#GP(0)).
 *
 * QEMU 7.2 TCG (-cpu max) behaves as AMD here, and the SDM (Intel) is expected: it does
 * the SYSRET to a non-canonical RCX (the fault then comes at CPL 3, so the guest stops
 * there), and SYSENTER/SYSEXIT raise #UD in long mode. The checks before those pass on QEMU.
 */
#include "guest.h"
#include "sys64.h"

extern void sc_entry(void), u_syscall(void), u_syscall_ret(void), c32_cs(void), c32_syscall(void);
extern void sx_entry(void), sx_user64(void), sx_user32(void);
extern void sx_run(void (*rip)(void), int is64);
extern volatile u64 sc_rcx, sc_r11, sc_cs, sc_ss, sc_flags, sc_rsp, u_rsp_before, u_cs_after,
    u_ss_after, u_flags_after, c32_cs_val, c32_ss_val;
extern volatile u64 sx_k_cs, sx_k_ss, sx_k_rsp, sx_k_flags, sx_u_cs, sx_u_ss, sx_u_rsp;
extern char kstack0_top[];

#define USER_FLAGS 0x0c3UL /* CF ZF SF and bit 1; IF clear: no interrupts in ring 3 */

static void syscall_sysret(void)
{
    wrmsr(MSR_LSTAR, (u64)sc_entry);
    wrmsr(MSR_SFMASK, 0x0c1); /* clears CF, ZF, SF in the kernel */
    int v = run_user(u_syscall, USER_FLAGS);
    check("SYSCALL/SYSRET round trip", v, 0x80);
    check("SYSCALL: RCX = return address", sc_rcx, (u64)u_syscall_ret);
    check("SYSCALL: R11 = user RFLAGS", sc_r11 & 0x3c7fd7, USER_FLAGS);
    check("SYSCALL: CS = STAR[47:32]", sc_cs, KCODE);
    check("SYSCALL: SS = STAR[47:32] + 8", sc_ss, KCODE + 8);
    check("SYSCALL: RFLAGS masked by SFMASK", sc_flags & 0xc1, 0);
    check("SYSCALL: RSP untouched", sc_rsp, u_rsp_before);
    check("SYSRET: CS = STAR[63:48] + 16 | 3", u_cs_after, UCODE64);
    check("SYSRET: SS = STAR[63:48] + 8 | 3", u_ss_after, UDATA);
    check("SYSRET: RFLAGS = R11", u_flags_after & 0xfff, USER_FLAGS);
}

static void compat(void)
{
    int v = run_user_compat(c32_cs, 0x2);
    check("SYSRETL to compatibility mode", v, 0x80);
    if (v != 0x80) {
        puts_ser("#   at ");
        puthex(u_rip);
        puts_ser(" cs ");
        puthex(u_cs);
        puts_ser(" err ");
        puthex(u_err);
        putc_ser('\n');
    }
    check("SYSRETL: CS = STAR[63:48] | 3", c32_cs_val & 0xffff, UCODE32);
    check("SYSRETL: SS = STAR[63:48] + 8 | 3", c32_ss_val & 0xffff, UDATA);
    v = run_user_compat(c32_syscall, 0x2);
    check("SYSCALL in compatibility mode: #UD (Intel)", v, 6);
}

static void faults(void)
{
    /* Non-canonical RCX: #GP(0) raised in ring 0, before anything changes. */
    exc_last_vec = -1;
    u64 cs;
    __asm__ volatile(EXPECT_EXC(13, "1f") "movabs $0x0000800000000000, %%rcx\n sysretq\n1: mov %%cs, %0"
                     : "=r"(cs) :: "rcx", "r11", "memory");
    check("SYSRET to a non-canonical RCX: #GP(0)", exc_last_vec, 13);
    check("SYSRET to a non-canonical RCX: still CPL 0", cs, KCODE);
    /* RCX canonical but only 32-bit SYSRET: no check, EIP = ECX. (Not run: it would leave.) */
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) & ~1UL);
    exc_last_vec = -1;
    __asm__ volatile(EXPECT_EXC(6, "1f") "syscall\n1:" ::: "rcx", "r11", "memory");
    check("SYSCALL with EFER.SCE clear: #UD", exc_last_vec, 6);
    exc_last_vec = -1;
    __asm__ volatile(EXPECT_EXC(6, "1f") "sysretq\n1:" ::: "rcx", "r11", "memory");
    check("SYSRET with EFER.SCE clear: #UD", exc_last_vec, 6);
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1);
}

static void sysenter_sysexit(void)
{
    if (!(cpuid_edx(1) & (1 << 11))) {
        pass_skip("SYSENTER", "no SEP");
        return;
    }
    wrmsr(MSR_SYSENTER_CS, 0);
    exc_last_vec = -1;
    exc_last_err = 99;
    __asm__ volatile(EXPECT_EXC(13, "1f") "sysenter\n1:" ::: "memory");
    check("SYSENTER with SYSENTER_CS = 0: #GP", exc_last_vec, 13);
    check("SYSENTER with SYSENTER_CS = 0: error 0", exc_last_err, 0);
    wrmsr(MSR_SYSENTER_CS, KCODE);
    wrmsr(MSR_SYSENTER_ESP, (u64)kstack0_top);
    wrmsr(MSR_SYSENTER_EIP, (u64)sx_entry);
    sx_run(sx_user64, 1);
    check("SYSEXITQ: CS = SYSENTER_CS + 32 | 3", sx_u_cs, (KCODE + 32) | 3);
    check("SYSEXITQ: SS = SYSENTER_CS + 40 | 3", sx_u_ss, (KCODE + 40) | 3);
    check("SYSEXITQ: RSP = RCX", sx_u_rsp, (u64)user_stack_top);
    check("SYSENTER: CS = SYSENTER_CS", sx_k_cs, KCODE);
    check("SYSENTER: SS = SYSENTER_CS + 8", sx_k_ss, KCODE + 8);
    check("SYSENTER: RSP = SYSENTER_ESP", sx_k_rsp, (u64)kstack0_top);
    check("SYSENTER: IF clear", sx_k_flags & 0x200, 0);
    sx_u_cs = sx_u_ss = 0;
    sx_run(sx_user32, 0);
    check("SYSEXIT (32-bit): CS = SYSENTER_CS + 16 | 3", sx_u_cs & 0xffff, (KCODE + 16) | 3);
    check("SYSEXIT (32-bit): SS = SYSENTER_CS + 24 | 3", sx_u_ss & 0xffff, (KCODE + 24) | 3);
    check("SYSENTER from compatibility mode: CS", sx_k_cs, KCODE);
}

void test_main(void)
{
    sys64_init();
    syscall_sysret();
    compat();
    faults();
    sysenter_sysexit();
}
