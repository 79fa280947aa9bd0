/*
 * apic: the local APIC of the BSP — IA32_APIC_BASE, ID/version, self-IPIs with
 * IRR/ISR/EOI, TPR/PPR masking and CR8, NMI by ICR, the timer in one-shot,
 * periodic and TSC-deadline modes with the divide register, and x2APIC MSRs.
 */
#include "hw.h"

#define V_IPI 0x40
#define V_LOW 0x31
#define V_TIMER 0x41
#define V_DEADLINE 0x42
#define V_X2 0x43

static volatile int ipi_count, low_count, timer_count, deadline_count, x2_count, nmi_count;
static volatile u32 isr_seen, order[4];
static volatile int order_n;

INTERRUPT static void ipi_handler(struct intr_frame *f)
{
    (void)f;
    isr_seen = apic_bit(APIC_ISR, V_IPI);
    if (order_n < 4)
        order[order_n++] = V_IPI;
    ipi_count++;
    apic_eoi();
}

INTERRUPT static void low_handler(struct intr_frame *f)
{
    (void)f;
    if (order_n < 4)
        order[order_n++] = V_LOW;
    low_count++;
    apic_eoi();
}

INTERRUPT static void timer_handler(struct intr_frame *f)
{
    (void)f;
    timer_count++;
    apic_eoi();
}

INTERRUPT static void deadline_handler(struct intr_frame *f)
{
    (void)f;
    deadline_count++;
    apic_eoi();
}

INTERRUPT static void x2_handler(struct intr_frame *f)
{
    (void)f;
    x2_count++;
    wrmsr(0x80b, 0); /* x2APIC EOI */
}

INTERRUPT static void nmi_handler(struct intr_frame *f)
{
    (void)f;
    nmi_count++;
}

static void test_base_and_id(void)
{
    check("apic-cpuid-apic", (cpuid_edx(1) >> 9) & 1, 1);
    u64 base = rdmsr(APIC_BASE_MSR);
    check("apic-base-msr", base & ~0xffUL, 0xfee00000UL | (1 << 11) | (1 << 8));
    check("apic-base-bsp", (base >> 8) & 1, 1);
    check("apic-id", apic_r(APIC_ID) >> 24, cpuid_ebx(1) >> 24);
    u32 ver = apic_r(APIC_VER);
    check("apic-version-integrated", (ver & 0xf0) == 0x10, 1);
    check("apic-version-maxlvt", ((ver >> 16) & 0xff) >= 5, 1);
    /* The timer is masked until programmed (firmware may have enabled the APIC). */
    check("apic-lvt-timer-masked", (apic_r(APIC_LVT_TIMER) >> 16) & 1, 1);
    apic_enable();
    check("apic-svr-enabled", apic_r(APIC_SVR) & 0x1ff, 0x1ff);
}

static void test_self_ipi(void)
{
    /* Held in IRR while IF=0, in ISR while the handler runs, gone after EOI. */
    apic_ipi(0, 0x40000 | V_IPI); /* shorthand: self */
    check("ipi-self-pending-irr", apic_bit(APIC_IRR, V_IPI), 1);
    check("ipi-self-not-taken-if0", ipi_count, 0);
    sti();
    __asm__ volatile("nop");
    cli();
    check("ipi-self-delivered", ipi_count, 1);
    check("ipi-self-isr-in-handler", isr_seen, 1);
    check("ipi-self-irr-clear", apic_bit(APIC_IRR, V_IPI), 0);
    check("ipi-self-isr-clear-after-eoi", apic_bit(APIC_ISR, V_IPI), 0);

    /* Physical destination = own ID, and the "all including self" shorthand. */
    apic_ipi(apic_r(APIC_ID) >> 24, V_IPI);
    apic_ipi(0, 0x80000 | V_IPI);
    sti();
    __asm__ volatile("nop");
    cli();
    check("ipi-physical-and-all-incl-self", ipi_count, 2);
}

static void test_priority(void)
{
    /* Two pending vectors: the higher one first. */
    order_n = 0;
    apic_ipi(0, 0x40000 | V_LOW);
    apic_ipi(0, 0x40000 | V_IPI);
    sti();
    __asm__ volatile("nop");
    cli();
    check("priority-order-first", order[0], V_IPI);
    check("priority-order-second", order[1], V_LOW);

    /* TPR class 5 blocks class 4 (0x40) and below. */
    int before = ipi_count;
    apic_w(APIC_TPR, 0x50);
    check("tpr-readback", apic_r(APIC_TPR), 0x50);
    check("ppr-follows-tpr", apic_r(APIC_PPR) & 0xf0, 0x50);
    apic_ipi(0, 0x40000 | V_IPI);
    sti();
    __asm__ volatile("nop; nop");
    cli();
    check("tpr-masks-lower-class", ipi_count, before);
    check("tpr-masked-stays-in-irr", apic_bit(APIC_IRR, V_IPI), 1);
    /* CR8 is TPR[7:4]. */
    u64 cr8;
    __asm__ volatile("mov %%cr8, %0" : "=r"(cr8));
    check("cr8-reads-tpr", cr8, 5);
    __asm__ volatile("mov %0, %%cr8" :: "r"(0UL));
    check("cr8-writes-tpr", apic_r(APIC_TPR), 0);
    sti();
    __asm__ volatile("nop");
    cli();
    check("tpr-lowered-delivers", ipi_count, before + 1);
}

static void test_nmi(void)
{
    /* NMI by ICR to our own ID: taken with IF=0. */
    apic_ipi(apic_r(APIC_ID) >> 24, 0x400);
    check("nmi-ipi-delivered-if0", wait_for(&nmi_count, 1, 100000000UL), 1);
    check("nmi-ipi-exactly-once", nmi_count, 1);
}

static void test_timer(void)
{
    /* One-shot, divide by 1 (the APIC bus runs at a nominal 1 GHz on twinvm). */
    apic_w(APIC_TDCR, 0xb);
    apic_w(APIC_LVT_TIMER, V_TIMER);
    apic_w(APIC_TMICT, 200000);
    u32 c1 = apic_r(APIC_TMCCT);
    check("timer-oneshot-counting", c1 > 0 && c1 <= 200000, 1);
    check("timer-oneshot-fires", hlt_for(&timer_count, 1, 2000000000UL), 1);
    check("timer-oneshot-ccr-zero", apic_r(APIC_TMCCT), 0);
    u64 t = rdtsc() + 2000000;
    while (rdtsc() < t)
        sti();
    cli();
    check("timer-oneshot-once", timer_count, 1);

    /* Periodic. */
    timer_count = 0;
    apic_w(APIC_LVT_TIMER, V_TIMER | (1 << 17));
    apic_w(APIC_TMICT, 100000);
    check("timer-periodic-fires-3", hlt_for(&timer_count, 3, 3000000000UL), 1);
    check("timer-periodic-reloads", apic_r(APIC_TMCCT) > 0, 1);
    apic_w(APIC_LVT_TIMER, V_TIMER | (1 << 16)); /* masked */
    apic_w(APIC_TMICT, 0);
    check("timer-stopped", apic_r(APIC_TMCCT), 0);

    /* Divide by 16 counts 16 times slower than divide by 1 (measured against the TSC,
       whose rate need not be the APIC bus's). */
    u64 rate[2];
    for (int k = 0; k < 2; k++) {
        apic_w(APIC_TDCR, k ? 0x3 : 0xb);
        apic_w(APIC_TMICT, 0xffffffff);
        u64 t0 = rdtsc();
        u32 ca = apic_r(APIC_TMCCT);
        while (rdtsc() - t0 < 4000000)
            ;
        u32 cb = apic_r(APIC_TMCCT);
        u64 dt = rdtsc() - t0;
        rate[k] = ((u64)(ca - cb) << 20) / (dt ? dt : 1);
    }
    check("timer-tdcr-readback", apic_r(APIC_TDCR), 0x3);
    check("timer-divide-16-rate", rate[1] * 8 < rate[0] && rate[1] * 32 > rate[0], 1);
    apic_w(APIC_TMICT, 0);

    /* TSC deadline. */
    if (!((cpuid_ecx(1) >> 24) & 1)) {
        pass_skip("timer-tsc-deadline", "no TSC-deadline in CPUID");
        return;
    }
    apic_w(APIC_LVT_TIMER, V_DEADLINE | (2 << 17));
    wrmsr(0x6e0, rdtsc() + 300000);
    check("timer-deadline-armed", rdmsr(0x6e0) != 0, 1);
    check("timer-deadline-fires", hlt_for(&deadline_count, 1, 2000000000UL), 1);
    check("timer-deadline-msr-cleared", rdmsr(0x6e0), 0);
    /* A deadline in the past fires at once. */
    wrmsr(0x6e0, 1);
    sti();
    __asm__ volatile("nop; nop");
    cli();
    check("timer-deadline-past-fires", deadline_count, 2);
    apic_w(APIC_LVT_TIMER, 1 << 16);
}

static void test_x2apic(void)
{
    if (!((cpuid_ecx(1) >> 21) & 1)) {
        pass_skip("x2apic", "no x2APIC in CPUID");
        return;
    }
    u32 id = apic_r(APIC_ID) >> 24;
    /* x2APIC MSRs #GP in xAPIC mode. */
    __asm__ volatile(EXPECT_EXC(13, "1f") "rdmsr\n1:" :: "c"(0x802) : "rax", "rdx", "memory");
    check("x2apic-msr-gp-in-xapic-mode", exc_last_vec, 13);
    wrmsr(APIC_BASE_MSR, rdmsr(APIC_BASE_MSR) | (1 << 10));
    check("x2apic-enabled", (rdmsr(APIC_BASE_MSR) >> 10) & 1, 1);
    check("x2apic-id", rdmsr(0x802), id);
    check("x2apic-version", rdmsr(0x803) & 0xff, 0x14);
    check("x2apic-mmio-not-decoded", mmio_r32(APIC + APIC_VER), 0xffffffff);
    wrmsr(0x808, 0x20);
    check("x2apic-tpr", rdmsr(0x808), 0x20);
    wrmsr(0x808, 0);
    wrmsr(0x83f, V_X2); /* SELF IPI */
    sti();
    __asm__ volatile("nop");
    cli();
    check("x2apic-self-ipi", x2_count, 1);
    wrmsr(0x830, ((u64)id << 32) | V_X2); /* ICR: fixed, physical */
    sti();
    __asm__ volatile("nop");
    cli();
    check("x2apic-icr-ipi", x2_count, 2);
    /* Reserved bits in a write: #GP. */
    __asm__ volatile(EXPECT_EXC(13, "1f") "wrmsr\n1:" :: "c"(0x808), "a"(0), "d"(1) : "memory");
    check("x2apic-reserved-bits-gp", exc_last_vec, 13);
}

void test_main(void)
{
    set_gate(2, nmi_handler);
    set_gate(V_IPI, ipi_handler);
    set_gate(V_LOW, low_handler);
    set_gate(V_TIMER, timer_handler);
    set_gate(V_DEADLINE, deadline_handler);
    set_gate(V_X2, x2_handler);
    test_base_and_id();
    test_self_ipi();
    test_priority();
    test_nmi();
    test_timer();
    test_x2apic();
}
