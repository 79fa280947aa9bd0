/*
 * Hardware access for the platform guests (apic, ioapic, smp, platform):
 * port and MMIO accessors, MSRs, IDT gates for C interrupt handlers, the
 * local APIC (xAPIC page at 0xFEE00000) and the IOAPIC (0xFEC00000).
 *
 * Interrupt handlers are plain C: __attribute__((interrupt)) (GCC, with
 * -mgeneral-regs-only) saves what it uses and returns with IRETQ.
 */
#ifndef HW_H
#define HW_H

#include "guest.h"

struct intr_frame;
typedef void (*intr_handler)(struct intr_frame *);
#define INTERRUPT __attribute__((interrupt))

static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(p)); }
static inline void outw(u16 p, u16 v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(p)); }
static inline void outl(u16 p, u32 v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u16 inw(u16 p) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u32 inl(u16 p) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }

static inline u32 mmio_r32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_w32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline u8 mmio_r8(u64 a) { return *(volatile u8 *)a; }
static inline void mmio_w8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline u64 mmio_r64(u64 a) { return *(volatile u64 *)a; }
static inline void mmio_w64(u64 a, u64 v) { *(volatile u64 *)a = v; }

static inline u64 rdmsr(u32 m)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(m));
    return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 m, u64 v)
{
    __asm__ volatile("wrmsr" :: "c"(m), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}
static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
/* STI's shadow covers HLT: no interrupt slips in between. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void pause(void) { __asm__ volatile("pause" ::: "memory"); }

extern u8 idt[];

/* A 64-bit interrupt gate (selector 0x18, DPL 0, IST 0) for `vec`. */
static inline void set_gate(int vec, intr_handler h)
{
    u64 a = (u64)h;
    u8 *g = idt + 16 * vec;
    *(u16 *)(g + 0) = (u16)a;
    *(u16 *)(g + 2) = 0x18;
    *(u16 *)(g + 4) = 0x8e00;
    *(u16 *)(g + 6) = (u16)(a >> 16);
    *(u32 *)(g + 8) = (u32)(a >> 32);
    *(u32 *)(g + 12) = 0;
}

/* ---- local APIC (xAPIC) ---- */
#define APIC_BASE_MSR 0x1b
#define APIC 0xfee00000UL
#define APIC_ID 0x20
#define APIC_VER 0x30
#define APIC_TPR 0x80
#define APIC_PPR 0xa0
#define APIC_EOI 0xb0
#define APIC_SVR 0xf0
#define APIC_ISR 0x100
#define APIC_IRR 0x200
#define APIC_ESR 0x280
#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310
#define APIC_LVT_TIMER 0x320
#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_TMICT 0x380
#define APIC_TMCCT 0x390
#define APIC_TDCR 0x3e0

static inline u32 apic_r(u32 reg) { return mmio_r32(APIC + reg); }
static inline void apic_w(u32 reg, u32 v) { mmio_w32(APIC + reg, v); }
static inline void apic_eoi(void) { apic_w(APIC_EOI, 0); }
static inline void apic_enable(void) { apic_w(APIC_SVR, 0x1ff); }
static inline int apic_bit(u32 base, int v) { return (apic_r(base + 0x10 * (v >> 5)) >> (v & 31)) & 1; }

/* Sends an IPI: `lo` = vector | delivery mode | level | shorthand bits. */
static inline void apic_ipi(u32 dest, u32 lo)
{
    apic_w(APIC_ICR_HI, dest << 24);
    apic_w(APIC_ICR_LO, lo);
}

/* ---- IOAPIC ---- */
#define IOAPIC 0xfec00000UL
static inline u32 ioapic_r(u32 reg) { mmio_w32(IOAPIC, reg); return mmio_r32(IOAPIC + 0x10); }
static inline void ioapic_w(u32 reg, u32 v) { mmio_w32(IOAPIC, reg); mmio_w32(IOAPIC + 0x10, v); }
static inline void ioapic_route(int pin, u64 entry)
{
    ioapic_w(0x10 + 2 * pin + 1, (u32)(entry >> 32));
    ioapic_w(0x10 + 2 * pin, (u32)entry);
}
static inline u64 ioapic_entry(int pin)
{
    return ((u64)ioapic_r(0x10 + 2 * pin + 1) << 32) | ioapic_r(0x10 + 2 * pin);
}
#define IOAPIC_MASKED (1UL << 16)
#define IOAPIC_LEVEL (1UL << 15)
#define IOAPIC_REMOTE_IRR (1UL << 14)

/* Spins (interrupts as they are) until *flag reaches `want` or ~`ns` of TSC time pass. */
static inline int wait_for(volatile int *flag, int want, u64 ns)
{
    u64 end = rdtsc() + ns;
    while (*flag < want && rdtsc() < end)
        pause();
    return *flag >= want;
}

/* HLTs with interrupts on until *flag reaches `want` or ~`ns` pass (a timer must be running
 * or an interrupt expected: HLT waits for one). */
static inline int hlt_for(volatile int *flag, int want, u64 ns)
{
    u64 end = rdtsc() + ns;
    while (*flag < want && rdtsc() < end)
        sti_hlt();
    cli();
    return *flag >= want;
}

#endif
