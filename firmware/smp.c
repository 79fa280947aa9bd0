/*
 * smp (run with --smp 2; QEMU: -smp 2): the BSP wakes the application
 * processor with INIT and start-up IPIs; the AP comes up in real mode at the
 * SIPI vector (smp-tramp.S), reaches 64-bit C, checks its APIC ID, prints,
 * and sends an IPI to the BSP, which is halted waiting for it. Then the BSP
 * sends an IPI to the halted AP, whose handler answers through memory.
 */
#include "hw.h"

#define V_TO_BSP 0x60
#define V_TO_AP 0x61

extern const u8 ap_tramp[], ap_tramp_end[];

static volatile int bsp_ipis, ap_ipis, ap_started, ap_alive;
static volatile u32 ap_apic_id, ap_cpuid_id;

INTERRUPT static void bsp_ipi_handler(struct intr_frame *f)
{
    (void)f;
    bsp_ipis++;
    apic_eoi();
}

INTERRUPT static void ap_ipi_handler(struct intr_frame *f)
{
    (void)f;
    ap_ipis++;
    apic_eoi();
}

void ap_main(void)
{
    ap_apic_id = apic_r(APIC_ID) >> 24;
    ap_cpuid_id = cpuid_ebx(1) >> 24;
    apic_enable();
    ap_started = 1;
    /* The BSP is halted: only this vCPU prints now. */
    puts_ser("# AP running in long mode\n");
    apic_ipi(0, 0x4000 | V_TO_BSP); /* fixed, physical, to APIC ID 0 */
    ap_alive = 1;
    for (;;)
        sti_hlt();
}

static u16 fw_cfg_u16(u16 key)
{
    outw(0x510, key);
    return inb(0x511) | (inb(0x511) << 8);
}

void test_main(void)
{
    set_gate(V_TO_BSP, bsp_ipi_handler);
    set_gate(V_TO_AP, ap_ipi_handler);
    check("smp-fwcfg-two-cpus", fw_cfg_u16(0x05), 2);
    apic_enable();
    check("smp-bsp-apic-id", apic_r(APIC_ID) >> 24, 0);
    check("smp-bsp-flag", (rdmsr(APIC_BASE_MSR) >> 8) & 1, 1);

    u8 *dst = (u8 *)0x8000;
    for (const u8 *s = ap_tramp; s < ap_tramp_end; s++)
        *dst++ = *s;
    apic_ipi(1, 0x4500);          /* INIT, level assert */
    apic_ipi(1, 0x4600 | 0x08);   /* STARTUP, vector 0x08 -> 0800:0000 */
    /* The BSP halts; the AP's IPI must wake it. */
    int woke = hlt_for(&bsp_ipis, 1, 3000000000UL);
    check("smp-ap-started", ap_started, 1);
    check("smp-ipi-wakes-halted-bsp", woke, 1);
    check("smp-ap-apic-id", ap_apic_id, 1);
    check("smp-ap-cpuid-apic-id", ap_cpuid_id, 1);
    /* A second SIPI to a running AP is ignored. */
    apic_ipi(1, 0x4600 | 0x08);
    wait_for(&ap_alive, 1, 1000000000UL);
    apic_ipi(1, 0x4000 | V_TO_AP);
    check("smp-ipi-wakes-halted-ap", wait_for(&ap_ipis, 1, 3000000000UL), 1);
    apic_ipi(0, 0xc0000 | V_TO_AP); /* all excluding self */
    check("smp-ipi-all-excluding-self", wait_for(&ap_ipis, 2, 3000000000UL), 1);
    check("smp-bsp-not-hit-by-excluding-self", bsp_ipis, 1);
}
