/* Ring-3 harness and IDT helpers for 64-bit guests (see lib/sys64.h). */
#include "sys64.h"

extern u8 idt[];
extern u64 pml4[], pdpt[], pd[];
extern char kstack0_top[];
extern void user_int80(void);
extern u8 uidt[], user_stubs[];

struct tss64 tss __attribute__((aligned(16)));
u64 gdt2[16] __attribute__((aligned(16)));

static void gate_in(u8 *table, int vec, void (*handler)(void), int dpl, int ist, int type)
{
    u8 *g = table + vec * 16;
    u64 a = (u64)handler;
    *(u16 *)(g + 0) = (u16)a;
    *(u16 *)(g + 2) = KCODE;
    g[4] = (u8)ist;
    g[5] = (u8)(0x80 | (dpl << 5) | type);
    *(u16 *)(g + 6) = (u16)(a >> 16);
    *(u32 *)(g + 8) = (u32)(a >> 32);
    *(u32 *)(g + 12) = 0;
}

void set_gate(int vec, void (*handler)(void), int dpl, int ist, int type)
{
    gate_in(idt, vec, handler, dpl, ist, type);
}

void gate_present(int vec, int present)
{
    u8 *g = idt + vec * 16;
    g[5] = present ? (g[5] | 0x80) : (g[5] & 0x7f);
}

void reload_tr(void)
{
    gdt2[9] &= ~(2UL << 40); /* available again */
    __asm__ volatile("ltr %w0" :: "r"(TSS_SEL));
}

void sys64_init(void)
{
    gdt2[1] = 0x00CF9A000000FFFFUL; /* 0x08 code32 */
    gdt2[2] = 0x00CF92000000FFFFUL; /* 0x10 data */
    gdt2[3] = 0x00AF9A000000FFFFUL; /* 0x18 code64 */
    gdt2[4] = 0x00CF92000000FFFFUL; /* 0x20 data */
    gdt2[5] = 0x000092000000FFFFUL; /* 0x28 data16 */
    gdt2[6] = 0x00CFFA000000FFFFUL; /* 0x30 user code32 */
    gdt2[7] = 0x00CFF2000000FFFFUL; /* 0x38 user data */
    gdt2[8] = 0x00AFFA000000FFFFUL; /* 0x40 user code64 */
    u64 base = (u64)&tss, limit = sizeof(tss) - 1;
    gdt2[9] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89UL << 40) |
              (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt2[10] = base >> 32;
    struct { u16 limit; u64 base; } __attribute__((packed)) d = { sizeof(gdt2) - 1, (u64)gdt2 };
    __asm__ volatile("lgdt %0" :: "m"(d));
    tss.rsp[0] = (u64)kstack0_top;
    tss.iomap_base = (u16)((u64)&tss.iomap - (u64)&tss);
    for (unsigned i = 0; i < sizeof(tss.iomap); i++)
        tss.iomap[i] = 0xff;
    __asm__ volatile("ltr %w0" :: "r"(TSS_SEL));
    /* user-accessible identity map */
    pml4[0] |= 4;
    for (int i = 0; i < 4; i++)
        pdpt[i] |= 4;
    for (int i = 0; i < 2048; i++)
        pd[i] |= 4;
    write_cr3(read_cr3());
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1);
    wrmsr(MSR_STAR, (0x30UL << 48) | ((u64)KCODE << 32));
    for (int v = 0; v < 32; v++)
        gate_in(uidt, v, (void (*)(void))(user_stubs + 16 * v), 0, 0, 0xE);
    gate_in(uidt, 0x80, user_int80, 3, 0, 0xE);
}
