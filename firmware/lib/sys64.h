/*
 * System-programming helpers for 64-bit guests: port I/O, MSRs, control and debug
 * registers, IDT gates, and a ring-3 harness (lib/ring3.S, lib/sys64.c).
 */
#ifndef SYS64_H
#define SYS64_H
#include "guest.h"

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u64 rdmsr(u32 n) { u32 a, d; __asm__ volatile("rdmsr" : "=a"(a), "=d"(d) : "c"(n)); return ((u64)d << 32) | a; }
static inline void wrmsr(u32 n, u64 v) { __asm__ volatile("wrmsr" :: "c"(n), "a"((u32)v), "d"((u32)(v >> 32))); }
static inline u64 rdtsc(void) { u32 a, d; __asm__ volatile("rdtsc" : "=a"(a), "=d"(d)); return ((u64)d << 32) | a; }
static inline u64 read_cr0(void) { u64 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline void write_cr0(u64 v) { __asm__ volatile("mov %0, %%cr0" :: "r"(v) : "memory"); }
static inline u64 read_cr4(void) { u64 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr4(u64 v) { __asm__ volatile("mov %0, %%cr4" :: "r"(v) : "memory"); }
static inline u64 read_cr3(void) { u64 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(u64 v) { __asm__ volatile("mov %0, %%cr3" :: "r"(v) : "memory"); }
static inline u64 read_dr6(void) { u64 v; __asm__ volatile("mov %%dr6, %0" : "=r"(v)); return v; }
static inline void write_dr6(u64 v) { __asm__ volatile("mov %0, %%dr6" :: "r"(v)); }
static inline void write_dr7(u64 v) { __asm__ volatile("mov %0, %%dr7" :: "r"(v)); }
static inline u64 read_dr7(void) { u64 v; __asm__ volatile("mov %%dr7, %0" : "=r"(v)); return v; }
static inline u64 read_flags(void) { u64 f; __asm__ volatile("pushfq; pop %0" : "=r"(f)); return f; }

#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_SFMASK 0xc0000084
#define MSR_SYSENTER_CS 0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176

/* GDT of the ring-3 harness (sys64_init):
 * 0x08 code32  0x10 data  0x18 code64  0x20 data (SYSCALL's SS)  0x28 data16
 * 0x30 user code32 (DPL3)  0x38 user data (DPL3)  0x40 user code64 (DPL3)
 * 0x48 64-bit TSS (16 bytes). STAR = 0x18 (kernel) / 0x30 (user base). */
#define KCODE 0x18
#define UCODE32 0x33
#define UDATA 0x3b
#define UCODE64 0x43
#define TSS_SEL 0x48

struct tss64 {
    u32 reserved0;
    u64 rsp[3];
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iomap_base;
    u8 iomap[8192 + 1];
} __attribute__((packed));
extern struct tss64 tss;

/* The harness GDT: entries 11-15 are free for tests. */
extern u64 gdt2[16];
/* LTR of the harness TSS again (clears its busy bit first). */
void reload_tr(void);
/* IDT gate for `vec`: 64-bit interrupt gate (type 0xE) or trap gate (0xF). */
void set_gate(int vec, void (*handler)(void), int dpl, int ist, int type);
/* Sets the present bit of gate `vec`. */
void gate_present(int vec, int present);
/* New GDT with user segments and a TSS (LTR), U bit on the identity map, SYSCALL MSRs,
 * INT 0x80 (DPL 3) as the way back from ring 3. */
void sys64_init(void);
/* Runs fn at CPL 3 in 64-bit mode (run_user_compat: a 32-bit fn in compatibility mode)
 * with RFLAGS = flags, on a separate IDT (uidt) whose every exception ends the run. Returns
 * the vector that ended it, 0x80 when fn returned (INT 0x80); u_err/u_rip/u_cs/u_flags hold
 * the frame. No IRET to ring 3 is involved. */
int run_user(void (*fn)(void), u64 flags);
int run_user_compat(void (*fn32)(void), u64 flags);
extern volatile u64 u_err, u_rip, u_cs, u_flags;
extern volatile int u_vec;
extern char user_stack[], user_stack_top[];
#endif
