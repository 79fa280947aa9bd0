/*
 * modes2: checks of the mode transitions made by modes2-asm.S, and the
 * long-mode CR0/CR4/EFER faults.
 *
 * QEMU (TCG 7.2) disagrees with the SDM on these, which are followed here:
 * - no segment limit checks in real mode: the #GP for a DS access beyond the
 *   64 KiB limit does not happen (both trips FAIL that check under QEMU);
 * - MOV CR0 with PG=1 and PE=0, or NW=1 and CD=0, does not #GP (the first one
 *   enables paging in QEMU and the guest triple-faults);
 * - clearing CR0.PG in 64-bit mode, clearing CR4.PAE in IA-32e mode and
 *   changing EFER.LME while CR0.PG=1 do not #GP (the SDM's MOV CR and WRMSR
 *   fault lists; KVM on this host's CPU faults too). Under QEMU the guest
 *   therefore dies at the first of these; with them removed, every other
 *   check (both round trips) passes on QEMU.
 */
#include "guest.h"

extern u32 res32[];
extern char rm_stub[], pm32_back1[];
void mode_trip(void);

static void real_checks(const char *trip, u32 *r)
{
    static char name[64];
    const char *what[] = { "pm16 cs", "pm16 push width", "real cr0.pe", "real cs", "real push width",
                           "unreal fs read above 1 MiB", "unreal fs after real-mode load",
                           "#GP beyond the 64 KiB ds limit", "int n through the ivt",
                           "es = 0x700 segment arithmetic" };
    u32 exp[] = { 0x20, 2, 0, 0, 2, 0x0c0ffee5, 0x0c0ffee5, 13, 0x50505050, 0x50505050 };
    for (int i = 0; i < 10; i++) {
        int n = 0;
        for (const char *p = trip; *p; p++)
            name[n++] = *p;
        name[n++] = ' ';
        for (const char *p = what[i]; *p; p++)
            name[n++] = *p;
        name[n] = 0;
        check(name, r[i], exp[i]);
    }
}

void test_main(void)
{
    u32 *r = res32;
    check("pm32 entry cs", r[0], 0x08);
    check("pm32 cr0.pe", r[1], 1);
    check3("pm32 #GP cr0.pg without pe", r[2], r[3], 0, 13, 0, 0);
    check3("pm32 #GP cr0.nw without cd", r[4], r[5], 0, 13, 0, 0);
    check("pm32 #GP cr0.pg with efer.lme and no pae: efer unchanged", r[7] & 0x500, 0x100);
    check("pm32 #GP cr0.pg with efer.lme and no pae: cr0.pg", r[8] >> 31, 0);
    check("pm32 exceptions", r[9], 3);
    real_checks("trip1", &r[16]);
    check("trip1 back in pm32: cs", r[10], 0x08);
    check("trip1 back in pm32: cr0.pe", r[11], 1);
    check("trip1 back in pm32: fs", r[12], 0);

    u64 efer_lo, cr0v;
    __asm__ volatile("rdmsr" : "=a"(efer_lo) : "c"(0xc0000080) : "rdx");
    check("long mode: efer.lme|lma", efer_lo & 0x500, 0x500);
    /* faults in 64-bit mode */
    __asm__ volatile(EXPECT_EXC(13, "1f") "mov %%cr0, %%rax\n\tbtr $31, %%rax\n\tmov %%rax, %%cr0\n1:" ::: "rax", "memory");
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0v));
    check3("lm64 #GP clear cr0.pg in 64-bit mode", exc_last_vec, exc_last_err, cr0v >> 31, 13, 0, 1);
    exc_last_vec = -1;
    __asm__ volatile(EXPECT_EXC(13, "1f") "mov $0xc0000080, %%ecx\n\trdmsr\n\tbtr $8, %%eax\n\twrmsr\n1:" ::: "rax", "rcx", "rdx", "memory");
    check3("lm64 #GP clear efer.lme with paging on", exc_last_vec, exc_last_err, 0, 13, 0, 0);
    exc_last_vec = -1;
    __asm__ volatile(EXPECT_EXC(13, "1f") "mov %%cr4, %%rax\n\tbtr $5, %%rax\n\tmov %%rax, %%cr4\n1:" ::: "rax", "memory");
    check3("lm64 #GP clear cr4.pae in long mode", exc_last_vec, exc_last_err, 0, 13, 0, 0);

    mode_trip();
    check("compat cs", r[48], 0x08);
    check("compat efer.lme|lma", r[49], 0x500);
    check("compat cr0.pg", r[50], 1);
    check("compat push width", r[51], 4);
    check("leave long mode: efer.lma cleared with cr0.pg", r[52], 0x100);
    check("leave long mode: efer.lme cleared", r[53], 0);
    check("leave long mode: cs", r[54], 0x08);
    real_checks("trip2", &r[32]);
    check("trip2 back in pm32: cs", r[55], 0x08);
    check("long mode again: cs", r[56], 0x18);
    check("long mode again: efer.lme|lma", r[57], 0x500);
    u64 x = 0x1122334455667788UL, y;
    __asm__ volatile("mov %1, %0\n\trol $8, %0" : "=r"(y) : "r"(x));
    check("long mode again: 64-bit registers", y, 0x2233445566778811UL);
}
