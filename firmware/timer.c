/*
 * timer: the PIT (IRQ 0, mode 2 at ~1 kHz) and the RTC periodic interrupt (IRQ 8 at
 * 1024 Hz) through the 8259 pair, HLT as the idle loop, RDTSC timestamps of every tick.
 * The timestamps are printed (as comment lines), so two `--icount` runs must print the
 * same bytes; without --icount only the PASS lines are stable.
 */
#include "guest.h"
#include "sys64.h"

#define TICKS 16
volatile u64 pit_ticks, rtc_ticks;
volatile u64 pit_tsc[TICKS + 8], rtc_tsc[TICKS + 8];
extern void pit_isr(void), rtc_isr(void);

__asm__(
    ".text\n"
    ".globl pit_isr\n"
    "pit_isr:\n"
    "  push %rax\n  push %rdx\n  push %rcx\n"
    "  rdtsc\n  shl $32, %rdx\n  or %rdx, %rax\n"
    "  mov pit_ticks(%rip), %rcx\n  cmp $" "23" ", %rcx\n  ja 1f\n"
    "  lea pit_tsc(%rip), %rdx\n  mov %rax, (%rdx,%rcx,8)\n"
    "1: incq pit_ticks(%rip)\n"
    "  mov $0x20, %al\n  out %al, $0x20\n"
    "  pop %rcx\n  pop %rdx\n  pop %rax\n  iretq\n"
    ".globl rtc_isr\n"
    "rtc_isr:\n"
    "  push %rax\n  push %rdx\n  push %rcx\n"
    "  rdtsc\n  shl $32, %rdx\n  or %rdx, %rax\n"
    "  mov rtc_ticks(%rip), %rcx\n  cmp $23, %rcx\n  ja 1f\n"
    "  lea rtc_tsc(%rip), %rdx\n  mov %rax, (%rdx,%rcx,8)\n"
    "1: incq rtc_ticks(%rip)\n"
    "  mov $0x0c, %al\n  out %al, $0x70\n  in $0x71, %al\n"
    "  mov $0x20, %al\n  out %al, $0xa0\n  out %al, $0x20\n"
    "  pop %rcx\n  pop %rdx\n  pop %rax\n  iretq\n");

static void pic_init(u8 master_mask, u8 slave_mask)
{
    outb(0x20, 0x11); outb(0x21, 0x20); outb(0x21, 4); outb(0x21, 1);
    outb(0xa0, 0x11); outb(0xa1, 0x28); outb(0xa1, 2); outb(0xa1, 1);
    outb(0x21, master_mask);
    outb(0xa1, slave_mask);
}

static void wait_ticks(volatile u64 *count)
{
    while (*count < TICKS)
        __asm__ volatile("sti; hlt; cli");
}

static void report(const char *name, volatile u64 *tsc, u64 lo, u64 hi)
{
    int ok = 1;
    puts_ser("# ");
    puts_ser(name);
    puts_ser(" tsc:");
    for (int i = 0; i < TICKS; i++) {
        putc_ser(' ');
        puthex(tsc[i]);
        if (i && tsc[i] <= tsc[i - 1])
            ok = 0;
    }
    putc_ser('\n');
    check(name, ok, 1);
    u64 period = (tsc[TICKS - 1] - tsc[0]) / (TICKS - 1);
    puts_ser("# ");
    puts_ser(name);
    puts_ser(" period ");
    putdec(period);
    puts_ser(" TSC counts\n");
    if (period >= lo && period <= hi)
        pass("period in range");
    else
        fail_msg("period in range", "TSC counts per tick out of range");
}

void test_main(void)
{
    set_gate(0x20, pit_isr, 0, 0, 0xE);
    set_gate(0x28, rtc_isr, 0, 0, 0xE);
    /* PIT: channel 0, lobyte/hibyte, mode 2, divisor 1193 (1.19318 MHz / 1193 = 1000.15 Hz) */
    pic_init(0xfe, 0xff);
    outb(0x43, 0x34);
    outb(0x40, 1193 & 0xff);
    outb(0x40, 1193 >> 8);
    wait_ticks(&pit_ticks);
    outb(0x21, 0xff);
    check("pit ticks counted", pit_ticks >= TICKS, 1);
    /* TSC at 1 GHz on twinvm, ~GHz on QEMU: 1 ms is 0.5M-50M counts. */
    report("pit ticks monotonic", pit_tsc, 500000, 50000000);

    /* RTC: rate 6 (1024 Hz), periodic interrupt enable, IRQ 8 via the cascade (IRQ 2). */
    outb(0x70, 0x0a); outb(0x71, 0x26);
    outb(0x70, 0x0b); u8 b = inb(0x71);
    outb(0x70, 0x0b); outb(0x71, b | 0x40);
    outb(0x70, 0x0c); (void)inb(0x71);
    pic_init(0xfb, 0xfe);
    wait_ticks(&rtc_ticks);
    outb(0x70, 0x0b); outb(0x71, b & ~0x40);
    outb(0x21, 0xff); outb(0xa1, 0xff);
    check("rtc ticks counted", rtc_ticks >= TICKS, 1);
    report("rtc ticks monotonic", rtc_tsc, 400000, 50000000);
    puts_ser("# pit ticks ");
    putdec(pit_ticks);
    puts_ser(", rtc ticks ");
    putdec(rtc_ticks);
    putc_ser('\n');
}
