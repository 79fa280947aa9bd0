/*
 * tasks: 32-bit hardware task switching (tasks32.S runs the cases in legacy
 * protected mode and records into res32[]; checked here after go_long): JMP
 * to a TSS (registers saved to the old TSS and loaded from the new one, busy
 * bits, CR0.TS, LDTR from the TSS), CALL to a TSS (back link, NT, IRET back,
 * the old task's saved NT cleared), CALL/JMP through a task gate, #DE and #GP
 * (with its error code pushed on the new task's stack) through IDT task gates
 * with the faulting EIP saved and the instruction retried, CR3 loaded from the
 * new TSS (and not saved), and the faults: TSS limit < 0x67 -> #TS, busy TSS
 * -> #GP, task gate to a non-TSS -> #GP, IRET with NT to a non-busy back link
 * -> #TS.
 *
 * QEMU (TCG 7.2) disagrees with the SDM on one case: after a JMP to a TSS
 * whose EFLAGS image is 0x3, the new task sees EFLAGS 0x6 (its lazy flags are
 * not reloaded from the TSS); the SDM loads EFLAGS from the TSS.
 */
#include "guest.h"

extern u32 res32[];
extern char after_jmpB[], taskB_jmp_end[], div_insn[], gp_insn[], stackB_top[], stackE_top[],
    stackG_top[], pdA[], pdF[];

#define A(x) ((u32)(u64)(x))

void test_main(void)
{
    u32 *r = res32;
    check("ltr marks the tss busy", r[0], 0xb);
    check("jmp tss: new eax from tss", r[1], 0xb0000000);
    check("jmp tss: new ebx from tss", r[2], 0xb0000003);
    check("jmp tss: new ebp from tss", r[3], 0xb0000005);
    check("jmp tss: new edi from tss", r[4], 0xb0000007);
    check("jmp tss: new esp from tss", r[5], A(stackB_top));
    check("jmp tss: new eflags from tss (cf, nt clear)", r[6], 0x3);
    check("jmp tss: tr", r[7], 0x38);
    check("jmp tss: ldtr from tss", r[8], 0x70);
    check("jmp tss: cr0.ts set", r[9], 8);
    check("jmp tss: old tss available", r[10], 0x9);
    check("jmp tss: new tss busy", r[11], 0xb);
    check("jmp tss: ldt selector loads", r[12], 0x04);
    check("jmp tss: old eip saved", r[13], A(after_jmpB));
    check("jmp tss: old eax saved", r[14], 0xa0000000);
    check("jmp tss: old ebx saved", r[15], 0xa0000003);
    check("jmp tss: old esi saved", r[16], 0xa0000006);
    check("jmp tss: old cs saved", r[18], 0x08);
    check("jmp tss: old ss saved", r[19], 0x10);
    check("jmp tss: old eflags saved (nt clear)", r[39] & 0x4002, 2);
    check("jmp back: eax restored", r[20], 0xa0000000);
    check("jmp back: ecx restored", r[21], 0xa0000001);
    check("jmp back: edx restored", r[22], 0xa0000002);
    check("jmp back: ebx restored", r[23], 0xa0000003);
    check("jmp back: esi restored", r[24], 0xa0000006);
    check("jmp back: edi restored", r[25], 0xa0000007);
    check("jmp back: esp restored", r[26], 0);
    check("jmp back: esp saved in tss", r[17] != 0xdeadbeef, 1);
    check("jmp back: a busy", r[27], 0xb);
    check("jmp back: b available", r[28], 0x9);
    check("jmp back: tr", r[29], 0x30);
    check("jmp back: ldtr null", r[30], 0);
    check("jmp back: b's eip saved", r[31], A(taskB_jmp_end));
    check("jmp back: b's eax saved", r[32], 0x55);
    check("call tss: nt set", r[33], 0x4000);
    check("call tss: back link", r[34], 0x30);
    check("call tss: caller stays busy", r[35], 0xb);
    check("call tss: new busy", r[36], 0xb);
    check("call tss: tr", r[37], 0x40);
    check("iret to caller: nt", r[40], 0);
    check("iret to caller: callee available", r[41], 0x9);
    check("iret to caller: callee's saved nt cleared", r[42], 0);
    check("iret to caller: tr", r[43], 0x30);
    check("call task gate: back link", r[44], 0x30);
    check("call task gate: nt", r[45], 0x4000);
    check("jmp task gate: tr", r[48], 0x38);
    check("jmp task gate back: tr", r[46], 0x30);
    check("jmp task gate back: b available", r[47], 0x9);
    check("#de task gate: faulting eip saved", r[53], A(div_insn));
    check("#de task gate: back link", r[54], 0x30);
    check("#de task gate: nt", r[55], 0x4000);
    check("#de task gate: no error code pushed", r[56], A(stackE_top));
    check("#de task gate: retried div", r[50], 25);
    check("#de task gate: fixed ecx", r[51], 4);
    check("#de task gate: handler task available after iret", r[52], 0x9);
    check("#gp task gate: error code pushed", r[57], A(stackG_top) - 4);
    check("#gp task gate: error code", r[58], 0x10);
    check("#gp task gate: faulting eip saved", r[59], A(gp_insn));
    check("cr3 task: new cr3 loaded", r[62], A(pdF));
    check("cr3 task: new mapping used", r[63], 0x7a5c0de3);
    check("cr3 task: old cr3 back", r[60], A(pdA));
    check("cr3 task: cr3 not saved in old tss", r[61], A(pdA));
    check3("#ts tss limit < 0x67", r[70], r[71], r[72], 10, 0x50, 0x30);
    check3("#gp jmp to busy tss", r[73], r[74], 0, 13, 0x30, 0);
    check3("#gp task gate to non-tss", r[75], r[76], 0, 13, 0x10, 0);
    check3("#ts iret nt to available tss", r[77], r[78], r[79], 10, 0x38, 0x9);
    check("exception count", r[80], 4);
}
