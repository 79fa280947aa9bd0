/*
 * ioapic: ISA interrupts through the IOAPIC and the 8259's ExtINT path.
 * Lines are driven with pc-testdev's IRQ line control (0x2000 + n); the PIT
 * (IRQ 0 on pin 2) and the RTC (IRQ 8) are routed with redirection entries;
 * then the PIC delivers through LINT0 in ExtINT mode.
 *
 * Under QEMU: -device pc-testdev.
 */
#include "hw.h"

#define V_EDGE 0x50
#define V_LEVEL 0x51
#define V_PIT 0x52
#define V_RTC 0x53
#define V_POL 0x54
#define V_PIC 0x20 /* the PIC's IRQ 0 after our ICW2 */

static volatile int edge_count, level_count, pit_count, rtc_count, pol_count, pic_count;
static volatile int level_redeliver;
static volatile u64 level_entry_in_handler;

static void irq_line(int n, int level) { outb(0x2000 + n, level); }

INTERRUPT static void edge_handler(struct intr_frame *f)
{
    (void)f;
    edge_count++;
    apic_eoi();
}

INTERRUPT static void level_handler(struct intr_frame *f)
{
    (void)f;
    level_count++;
    level_entry_in_handler = ioapic_entry(11);
    /* Keep the line asserted the first time when asked: the EOI must redeliver. */
    if (!level_redeliver || level_count >= 2)
        irq_line(11, 0);
    apic_eoi();
}

INTERRUPT static void pol_handler(struct intr_frame *f)
{
    (void)f;
    pol_count++;
    irq_line(12, 1); /* active low: high is idle */
    apic_eoi();
}

INTERRUPT static void pit_handler(struct intr_frame *f)
{
    (void)f;
    pit_count++;
    apic_eoi();
}

INTERRUPT static void rtc_handler(struct intr_frame *f)
{
    (void)f;
    rtc_count++;
    outb(0x70, 0x0c);
    (void)inb(0x71);
    apic_eoi();
}

INTERRUPT static void pic_handler(struct intr_frame *f)
{
    (void)f;
    pic_count++;
    outb(0x20, 0x20);
}

static void pic_init(u8 master_mask)
{
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, 0x20);
    outb(0xa1, 0x28);
    outb(0x21, 0x04);
    outb(0xa1, 0x02);
    outb(0x21, 0x01);
    outb(0xa1, 0x01);
    outb(0x21, master_mask);
    outb(0xa1, 0xff);
}

static void pit_start(u16 divisor)
{
    outb(0x43, 0x34);
    outb(0x40, divisor & 0xff);
    outb(0x40, divisor >> 8);
}

static void pit_stop(void)
{
    outb(0x43, 0x30); /* mode 0, count not loaded: no more edges */
}

static void test_registers(void)
{
    u32 ver = ioapic_r(1);
    check("ioapic-version", ver & 0xff, 0x20);
    check("ioapic-max-redir-23", (ver >> 16) & 0xff, 23);
    check("ioapic-reset-masked", (ioapic_entry(5) >> 16) & 1, 1);
    ioapic_route(5, 0x0000000000000933UL | IOAPIC_MASKED);
    check("ioapic-redir-readback", ioapic_entry(5), 0x933UL | IOAPIC_MASKED);
    ioapic_route(5, IOAPIC_MASKED);
}

static void test_edge_level(void)
{
    ioapic_route(10, V_EDGE); /* fixed, physical, dest 0, edge, active high */
    irq_line(10, 1);
    sti();
    __asm__ volatile("nop");
    cli();
    irq_line(10, 0);
    check("ioapic-edge-delivered", edge_count, 1);
    /* A new rising edge is a new interrupt. */
    irq_line(10, 1);
    sti();
    __asm__ volatile("nop");
    cli();
    check("ioapic-edge-second-edge", edge_count, 2);
    irq_line(10, 0);

    /* Masked: nothing. */
    ioapic_route(10, V_EDGE | IOAPIC_MASKED);
    irq_line(10, 1);
    irq_line(10, 0);
    sti();
    __asm__ volatile("nop; nop");
    cli();
    check("ioapic-masked-edge-not-delivered", edge_count, 2);

    ioapic_route(11, V_LEVEL | IOAPIC_LEVEL);
    irq_line(11, 1);
    sti();
    __asm__ volatile("nop");
    cli();
    check("ioapic-level-delivered", level_count, 1);
    check("ioapic-level-remote-irr-in-handler", (level_entry_in_handler & IOAPIC_REMOTE_IRR) != 0, 1);
    check("ioapic-level-remote-irr-cleared-by-eoi", (ioapic_entry(11) & IOAPIC_REMOTE_IRR) != 0, 0);
    /* Still asserted at EOI: delivered again. */
    level_count = 0;
    level_redeliver = 1;
    irq_line(11, 1);
    sti();
    __asm__ volatile("nop; nop; nop");
    cli();
    check("ioapic-level-redelivered-while-asserted", level_count, 2);
    ioapic_route(11, IOAPIC_MASKED);

    /* Active low: the idle (low) line is asserted. */
    irq_line(12, 0);
    ioapic_route(12, V_POL | IOAPIC_LEVEL | (1 << 13));
    sti();
    __asm__ volatile("nop");
    cli();
    check("ioapic-active-low-level", pol_count, 1);
    ioapic_route(12, IOAPIC_MASKED);
    irq_line(12, 0);
}

static void test_pit_rtc(void)
{
    ioapic_route(2, V_PIT); /* ISA IRQ 0 is on pin 2 */
    pit_start(1193); /* ~1 kHz */
    check("ioapic-pit-on-pin2", hlt_for(&pit_count, 3, 2000000000UL), 1);
    ioapic_route(2, IOAPIC_MASKED);
    pit_stop();

    ioapic_route(8, V_RTC);
    outb(0x70, 0x0a);
    u8 a = inb(0x71);
    outb(0x70, 0x0a);
    outb(0x71, (a & 0xf0) | 6); /* 1024 Hz */
    outb(0x70, 0x0b);
    u8 b = inb(0x71);
    outb(0x70, 0x0b);
    outb(0x71, b | 0x40); /* periodic interrupt enable */
    outb(0x70, 0x0c);
    (void)inb(0x71);
    check("ioapic-rtc-on-pin8", hlt_for(&rtc_count, 2, 2000000000UL), 1);
    outb(0x70, 0x0b);
    outb(0x71, b & ~0x40);
    outb(0x70, 0x0c);
    (void)inb(0x71);
    ioapic_route(8, IOAPIC_MASKED);
}

static void test_extint(void)
{
    pic_init(0xfe); /* IRQ 0 only */
    apic_w(APIC_LVT_LINT0, 0x700); /* ExtINT, unmasked */
    pit_start(1193);
    check("extint-pic-through-lint0", hlt_for(&pic_count, 3, 2000000000UL), 1);
    /* LINT0 masked: the 8259 no longer reaches the CPU. */
    apic_w(APIC_LVT_LINT0, 0x10700);
    int n = pic_count;
    u64 end = rdtsc() + 5000000;
    while (rdtsc() < end)
        sti();
    cli();
    check("extint-masked-lint0-blocks", pic_count, n);
    pit_stop();
    outb(0x21, 0xff);
}

void test_main(void)
{
    set_gate(V_EDGE, edge_handler);
    set_gate(V_LEVEL, level_handler);
    set_gate(V_POL, pol_handler);
    set_gate(V_PIT, pit_handler);
    set_gate(V_RTC, rtc_handler);
    set_gate(V_PIC, pic_handler);
    /* The 8259s masked and off vectors 0-15, the LAPIC on (LINT0 masked). */
    pic_init(0xff);
    apic_enable();
    test_registers();
    test_edge_level();
    test_pit_rtc();
    test_extint();
}
