/*
 * gates: privilege transitions. Part 1 (gates32.S, legacy protected mode,
 * results in res32[]): IRET and far RET to ring 3 (outer data segments
 * nulled), CALL through 32-bit gates with parameter copy and the inner stack
 * from TSS.SS0:ESP0, a 16-bit gate (16-bit frame), INT from ring 3, gate
 * faults. Part 2 (long mode, gates64.S): IRETQ to ring 3, CALL through a
 * 64-bit gate to ring 0 (null SS, RSP0), LRETQ to ring 3, INT from ring 3 with
 * RSP0 and IST (16-byte alignment), and the faults of 64-bit gates.
 *
 * QEMU (TCG 7.2) disagrees with hardware and the SDM on one case: a #GP for a
 * long-mode IDT gate reports vector*16+2 as the error code; the SDM's index is
 * the vector (vector*8+2 = 0x412 for INT 0x82, which this host's CPU reports).
 */
#include "guest.h"

extern u32 res32[], ustack32_top[], kstack32_top[];
extern char r3_after_gate[], r3_after_int[], r0_after_gate[];
extern u64 res64[], gdt[], idt[], pml4[], pdpt[], pd[];
extern char ustack64_top[], kstack64_top[], istack64_top[];
extern char r3_main64[], r3_after_gate64[], r3_after_int64[], back64[], gate_target64[],
    int80_64[], int81_64[], f64_gate_dpl[], f64_gate_np[], f64_code_np[], f64_code32[],
    f64_gate_hi[], f64_jmp_inner[], f64_int_dpl[];
void u3_run(char *fn);

static void part32(void)
{
    u32 us = (u32)(u64)ustack32_top, ks = (u32)(u64)kstack32_top;
    check("pm32 iret to ring 3: cs", res32[0], 0x33);
    check("pm32 iret to ring 3: ss", res32[1], 0x3b);
    check("pm32 iret to ring 3: ds (dpl 0) nulled", res32[2], 0);
    check("pm32 iret to ring 3: es nulled", res32[3], 0);
    check("pm32 iret to ring 3: esp", res32[4], us);
    check("pm32 call gate: target cs", res32[18], 0x08);
    check("pm32 call gate: ss from tss ss0", res32[19], 0x10);
    check("pm32 call gate: esp = esp0 - 24", res32[20], ks - 24);
    check("pm32 call gate: pushed eip", res32[21], (u32)(u64)r3_after_gate);
    check("pm32 call gate: pushed cs", res32[22], 0x33);
    check("pm32 call gate: parameter 2 copied", res32[23], 0x22222222);
    check("pm32 call gate: parameter 1 copied", res32[24], 0x11111111);
    check("pm32 call gate: pushed esp", res32[26], us - 8);
    check("pm32 call gate: pushed ss", res32[27], 0x3b);
    check("pm32 ret imm to ring 3: esp balanced", res32[5], 0);
    check("pm32 ret to ring 3: cs", res32[6], 0x33);
    check("pm32 ret to ring 3: ss", res32[7], 0x3b);
    check("pm32 ret to ring 3: es (dpl 0) nulled", res32[8], 0);
    check("pm32 ret to ring 3: fs (dpl 3) kept", res32[9], 0x3b);
    check("pm32 ret to ring 3: ds kept", res32[10], 0x3b);
    check("pm32 int from ring 3: esp = esp0 - 20", res32[31], ks - 20);
    check("pm32 int from ring 3: eip", res32[32], (u32)(u64)r3_after_int);
    check("pm32 int from ring 3: cs", res32[33], 0x33);
    check("pm32 int from ring 3: esp", res32[34], us);
    check("pm32 int from ring 3: ss", res32[35], 0x3b);
    check("pm32 int from ring 3: handler ss", res32[36], 0x10);
    check("pm32 iret from int to ring 3: eax", res32[11], 0x80c0ffee);
    check("pm32 iret from int to ring 3: esp", res32[12], 0);
    check("pm32 iret from int to ring 3: cs", res32[13], 0x33);
    check("pm32 gate back to ring 0: esp", res32[14], ks - 16);
    check("pm32 gate back to ring 0: pushed cs", res32[15], 0x33);
    check("pm32 gate back to ring 0: pushed ss", res32[16], 0x3b);
    check("pm32 same-privilege gate: cs pushed", res32[30], 0x08);
    check("pm32 same-privilege gate: eip pushed", res32[29], (u32)(u64)r0_after_gate);
    check("pm32 same-privilege gate: esp balanced", res32[17], 0);
    check("pm16 call gate: sp = esp0 - 10", res32[37], ks - 10);
    check("pm16 call gate: ip:cs", res32[38] >> 16, 0x33);
    check("pm16 call gate: parameter, sp", res32[39], ((us - 2) & 0xffff) << 16 | 0x1234);
    check("pm16 call gate: ss pushed, cs", res32[61], 0x88 << 16 | 0x3b);
    check3("pm32 #GP gate dpl < cpl", res32[40], res32[41], 0, 13, 0x50, 0);
    check3("pm32 #NP gate not present", res32[42], res32[43], 0, 11, 0x58, 0);
    check3("pm32 #NP target code not present", res32[44], res32[45], 0, 11, 0x68, 0);
    check3("pm32 #GP gate to data segment", res32[46], res32[47], 0, 13, 0x10, 0);
    check3("pm32 #GP jmp through gate to inner level", res32[48], res32[49], 0, 13, 0x08, 0);
    check3("pm32 #GP int to dpl 0 gate", res32[50], res32[51], 0, 13, 0x81 * 8 + 2, 0);
    check3("pm32 #GP iret to cs rpl 3 dpl 0", res32[52], res32[53], 0, 13, 0x08, 0);
    check3("pm32 #GP ret with ss rpl != cs rpl", res32[54], res32[55], 0, 13, 0x38, 0);
    check3("pm32 #GP ret with ss dpl 0", res32[56], res32[57], 0, 13, 0x10, 0);
    check3("pm32 #NP ret to not-present code", res32[58], res32[59], 0, 11, 0x68, 0);
    check("pm32 exception count", res32[60], 10);
}

static u64 gdt64[32] __attribute__((aligned(16)));
static u32 tss64[26] __attribute__((aligned(16)));
static struct { u16 limit; u64 base; } __attribute__((packed)) gdtr64;

static void gate64(int sel, u16 cs, u64 off, u8 access, u64 hi_type)
{
    gdt64[sel / 8] = (off & 0xffff) | ((u64)cs << 16) | ((u64)access << 40) |
                     ((off >> 16 & 0xffff) << 48);
    gdt64[sel / 8 + 1] = (off >> 32) | (hi_type << 40);
}

static void idt_gate(int vec, u64 off, u8 access, int ist)
{
    u64 *g = &idt[vec * 2];
    g[0] = (off & 0xffff) | (0x18UL << 16) | ((u64)ist << 32) | ((u64)access << 40) |
           ((off >> 16 & 0xffff) << 48);
    g[1] = off >> 32;
}

static void setup64(void)
{
    for (int i = 0; i < 6; i++)
        gdt64[i] = gdt[i];
    gdt64[0x30 / 8] = 0x00affa000000ffffUL;
    gdt64[0x38 / 8] = 0x00cff2000000ffffUL;
    u64 tb = (u64)tss64;
    gdt64[0x40 / 8] = 0x67 | ((tb & 0xffffff) << 16) | (0x89UL << 40) | ((tb >> 24 & 0xff) << 56);
    gdt64[0x48 / 8] = tb >> 32;
    gate64(0x50, 0x18, (u64)gate_target64, 0xec, 0);
    gate64(0x60, 0x18, (u64)back64, 0xec, 0);
    gate64(0x70, 0x18, (u64)gate_target64, 0x8c, 0);
    gate64(0x80, 0x18, (u64)gate_target64, 0x6c, 0);
    gate64(0x90, 0xa0, (u64)gate_target64, 0xec, 0);
    gdt64[0xa0 / 8] = 0x00af1a000000ffffUL;
    gate64(0xa8, 0x08, (u64)gate_target64, 0xec, 0);
    gate64(0xb8, 0x18, (u64)gate_target64, 0xec, 0xc);
    gdtr64.limit = 0xc8 - 1;
    gdtr64.base = (u64)gdt64;
    /* RSP0 deliberately not 16-byte aligned: call gates use it as is, interrupts align it */
    u64 rsp0 = (u64)kstack64_top - 8, ist1 = (u64)istack64_top - 24;
    tss64[1] = (u32)rsp0;
    tss64[2] = (u32)(rsp0 >> 32);
    tss64[9] = (u32)ist1;
    tss64[10] = (u32)(ist1 >> 32);
    tss64[25] = 0x68u << 16;
    __asm__ volatile("lgdt %0\n\tmov $0x40, %%ax\n\tltr %%ax" :: "m"(gdtr64) : "rax", "memory");
    idt_gate(0x80, (u64)int80_64, 0xee, 0);
    idt_gate(0x81, (u64)int81_64, 0xee, 1);
    /* user-accessible pages */
    pml4[0] |= 4;
    for (int i = 0; i < 4; i++)
        pdpt[i] |= 4;
    for (int i = 0; i < 2048; i++)
        pd[i] |= 4;
    __asm__ volatile("mov %%cr3, %%rax\n\tmov %%rax, %%cr3" ::: "rax", "memory");
}

static void fault3(const char *name, char *fn, int vec, u32 err)
{
    exc_last_vec = -1;
    exc_last_err = 0xdead;
    u3_run(fn);
    check3(name, exc_last_vec, exc_last_err, res64[43], vec, err, 0);
}

static void part64(void)
{
    u64 us = (u64)ustack64_top, ks = (u64)kstack64_top - 8, is = (u64)istack64_top - 24;
    setup64();
    u3_run(r3_main64);
    check("lm iretq to ring 3: cs", res64[0], 0x33);
    check("lm iretq to ring 3: ss", res64[1], 0x3b);
    check("lm iretq to ring 3: ds (dpl 0) nulled", res64[2], 0);
    check("lm iretq to ring 3: rsp", res64[3], us);
    check("lm call gate64: cs", res64[12], 0x18);
    check("lm call gate64: ss null", res64[13], 0);
    check("lm call gate64: rsp = rsp0 - 32 (no alignment)", res64[14], ks - 32);
    check("lm call gate64: pushed rip", res64[15], (u64)r3_after_gate64);
    check("lm call gate64: pushed cs", res64[16], 0x33);
    check("lm call gate64: pushed rsp", res64[17], us);
    check("lm call gate64: pushed ss", res64[18], 0x3b);
    check("lm lretq to ring 3: rsp balanced", res64[4], 0);
    check("lm lretq to ring 3: cs", res64[5], 0x33);
    check("lm lretq to ring 3: ss", res64[6], 0x3b);
    check("lm lretq to ring 3: ds (dpl 0) nulled", res64[7], 0);
    check("lm lretq to ring 3: es (dpl 3) kept", res64[8], 0x3b);
    check("lm int from ring 3: rsp = align16(rsp0) - 40", res64[19], (ks & ~15UL) - 40);
    check("lm int from ring 3: rip", res64[20], (u64)r3_after_int64);
    check("lm int from ring 3: cs", res64[21], 0x33);
    check("lm int from ring 3: rsp", res64[22], us);
    check("lm int from ring 3: ss", res64[23], 0x3b);
    check("lm int from ring 3: handler ss null", res64[24], 0);
    check("lm iretq from int: rax", res64[9], 0x80c0ffee);
    check("lm iretq from int: rsp", res64[10], 0);
    check("lm int through ist1: rsp = align16(ist1) - 40", res64[11], (is & ~15UL) - 40);
    check("lm gate back to ring 0: rsp", res64[40], ks - 32);
    check("lm gate back to ring 0: pushed cs", res64[41], 0x33);
    check("lm gate back to ring 0: pushed ss", res64[42], 0x3b);
    check("lm gate back to ring 0: ss null", res64[43], 0);
    fault3("lm #GP gate dpl < cpl", f64_gate_dpl, 13, 0x70);
    fault3("lm #NP gate not present", f64_gate_np, 11, 0x80);
    fault3("lm #NP target code not present", f64_code_np, 11, 0xa0);
    fault3("lm #GP gate to non-64-bit code", f64_code32, 13, 0x08);
    fault3("lm #GP gate upper type not 0", f64_gate_hi, 13, 0xb8);
    fault3("lm #GP jmp through gate to inner level", f64_jmp_inner, 13, 0x18);
    fault3("lm #GP int to dpl 0 gate", f64_int_dpl, 13, 0x82 * 8 + 2);

    /* ring 0 faults */
    __asm__ volatile(EXPECT_EXC(13, "1f")
        "mov %%rsp, %%rdx\n\tpushq $0\n\tpushq %%rdx\n\tpushfq\n\tpushq $0x33\n\tpushq $1f\n\tiretq\n1:\tmov %%rdx, %%rsp"
        ::: "rdx", "memory");
    check("lm #GP iretq to ring 3 with null ss", exc_last_err | (u64)exc_last_vec << 32, 13UL << 32);
    __asm__ volatile(EXPECT_EXC(13, "1f")
        "mov %%rsp, %%rdx\n\tpushq $0x38\n\tpushq %%rdx\n\tpushq $0x33\n\tpushq $1f\n\tlretq\n1:\tmov %%rdx, %%rsp"
        ::: "rdx", "memory");
    check("lm #GP lretq with ss rpl != cs rpl", exc_last_err | (u64)exc_last_vec << 32, 13UL << 32 | 0x38);
    __asm__ volatile("mov %0, %%ds\n\tmov %0, %%es\n\tlgdt gdt_desc(%%rip)" :: "r"(0x10) : "memory");
}

void test_main(void)
{
    part32();
    part64();
}
