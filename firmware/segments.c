/*
 * segments: descriptor loads with their faults and error codes, limit and type
 * checks on data, stack and code accesses (expand-down with B=0/1, read-only
 * data, execute-only code, null selectors), the accessed bit, LAR/LSL/VERR/
 * VERW/ARPL, conforming code and far transfers. The cases run in compatibility
 * mode (segments-asm.S), where segmentation applies, with the 64-bit IDT.
 *
 * QEMU (TCG, 8.x/9.x) disagrees with the SDM here: it performs no limit or type
 * checks on data and stack accesses (null DS, read-only writes, expand-down,
 * #SS on stack limits, CS reads of execute-only code all go through), so those
 * cases FAIL under QEMU; the SDM (vol. 3 §5.3–5.5) is followed.
 */
#include "guest.h"

extern u64 gdt[];
extern volatile u32 c32_faulted, c32_scratch;
extern char c32_case[], c32_fault[], k_back[];
extern char k_mov_ds[], k_mov_ss[], k_lds[], k_pop_es[], k_read_ds[], k_readb_ds[],
    k_write_ds[], k_add_ds[], k_movs_es[], k_read_cs[], k_write_cs[], k_read_ss[],
    k_push_ss[], k_lar[], k_lsl[], k_verr[], k_verw[], k_arpl[], k_lcall[], k_ljmp[],
    k_jmp_limit[];

static u64 gdt2[32] __attribute__((aligned(16)));
static struct { u16 limit; u64 base; } __attribute__((packed)) gdtr2;

#define G 8
#define DB 4
static u64 desc(u32 base, u32 limit, u32 access, u32 flags)
{
    return (limit & 0xffffUL) | ((u64)(base & 0xffffff) << 16) | ((u64)access << 40) |
           ((u64)((limit >> 16) & 0xf) << 48) | ((u64)flags << 52) | ((u64)(base >> 24) << 56);
}

enum {
    S_SMALL = 0x30,   /* data RW, limit 0xfff */
    S_RO = 0x38,      /* data read-only, 4 GiB */
    S_XO = 0x40,      /* code execute-only 32-bit, 4 GiB */
    S_ED32 = 0x48,    /* expand-down data B=1, limit 0xfff */
    S_ED16 = 0x50,    /* expand-down data B=0, limit 0xfff */
    S_NP = 0x58,      /* data RW not present */
    S_DPL3 = 0x60,    /* data RW DPL 3 */
    S_CONF = 0x68,    /* conforming code DPL 0, readable */
    S_CODER = 0x70,   /* code readable 32-bit */
    S_STACK = 0x78,   /* data RW limit 0xfff (stack) */
    S_LDT = 0x80,     /* LDT (16 bytes in long mode) */
    S_CODE3 = 0x90,   /* code DPL 3 */
    S_CODE1M = 0x98,  /* code 32-bit, limit 1 MiB - 1 */
    S_CONF3 = 0xa0,   /* conforming code DPL 3 */
    S_END = 0xa8,
};

static void setup_gdt(void)
{
    for (int i = 0; i < 6; i++)
        gdt2[i] = gdt[i];
    gdt2[S_SMALL / 8] = desc(0, 0xfff, 0x92, DB);
    gdt2[S_RO / 8] = desc(0, 0xfffff, 0x90, G | DB);
    gdt2[S_XO / 8] = desc(0, 0xfffff, 0x98, G | DB);
    gdt2[S_ED32 / 8] = desc(0, 0xfff, 0x96, DB);
    gdt2[S_ED16 / 8] = desc(0, 0xfff, 0x96, 0);
    gdt2[S_NP / 8] = desc(0, 0xfffff, 0x12, G | DB);
    gdt2[S_DPL3 / 8] = desc(0, 0xfffff, 0xf2, G | DB);
    gdt2[S_CONF / 8] = desc(0, 0xfffff, 0x9e, G | DB);
    gdt2[S_CODER / 8] = desc(0, 0xfffff, 0x9a, G | DB);
    gdt2[S_STACK / 8] = desc(0, 0xfff, 0x92, DB);
    gdt2[S_LDT / 8] = desc(0x1000, 0x7, 0x82, 0);
    gdt2[S_LDT / 8 + 1] = 0;
    gdt2[S_CODE3 / 8] = desc(0, 0xfffff, 0xfa, G | DB);
    gdt2[S_CODE1M / 8] = desc(0, 0xfffff, 0x9a, DB);
    gdt2[S_CONF3 / 8] = desc(0, 0xfffff, 0xfe, G | DB);
    gdtr2.limit = S_END - 1;
    gdtr2.base = (u64)gdt2;
    __asm__ volatile("lgdt %0" :: "m"(gdtr2));
}

struct res { u32 a, d; };
static struct { u32 off, sel; } __attribute__((packed)) cptr;

/* Runs case `fn` in compatibility mode through code selector `cs`. */
static struct res run_cs(u16 cs, char *fn, u32 a, u32 c, u32 si, int expect_vec)
{
    u64 ra = a, rd = 0, rb = (u64)fn;
    cptr.off = (u32)(u64)c32_case;
    cptr.sel = cs;
    exc_last_vec = -1;
    exc_last_err = 0xdead;
    exc_expect_vec = expect_vec;
    exc_resume_rip = expect_vec >= 0 ? (u64)c32_fault : 0;
    __asm__ volatile("lcalll *%[p]"
        : "+a"(ra), "=d"(rd), "+c"(c), "+S"(si), "+b"(rb)
        : [p] "m"(cptr)
        : "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "memory", "cc");
    exc_expect_vec = -1;
    struct res r = { (u32)ra, (u32)rd };
    return r;
}

static struct res run(char *fn, u32 a, u32 c, u32 si, int expect_vec)
{
    return run_cs(0x08, fn, a, c, si, expect_vec);
}

/* The case must fault with `vec` and error code `err`. */
static void faults(const char *name, char *fn, u32 a, u32 c, u32 si, int vec, u32 err)
{
    run(fn, a, c, si, vec);
    if (!c32_faulted) {
        fail_msg(name, "no fault");
        return;
    }
    check3(name, exc_last_vec, exc_last_err, 0, vec, err, 0);
}

/* The case must not fault; returns its result. */
static struct res ok(const char *name, char *fn, u32 a, u32 c, u32 si)
{
    struct res r = run(fn, a, c, si, -1);
    (void)name;
    return r;
}

static u32 accessed(u16 sel) { return (gdt2[sel / 8] >> 40) & 1; }

static void loads(void)
{
    faults("mov ds, not-present -> #NP(sel)", k_mov_ds, S_NP, 0, 0, 11, S_NP);
    check("failed load leaves accessed clear", accessed(S_NP), 0);
    faults("mov ds, past gdt limit -> #GP(sel)", k_mov_ds, 0x400, 0, 0, 13, 0x400);
    faults("mov ds, rpl past limit -> #GP(sel&~3)", k_mov_ds, 0x403, 0, 0, 13, 0x400);
    faults("mov ds, execute-only code -> #GP(sel)", k_mov_ds, S_XO, 0, 0, 13, S_XO);
    faults("mov ds, ldt (system) -> #GP(sel)", k_mov_ds, S_LDT, 0, 0, 13, S_LDT);
    faults("mov ds, rpl3 > dpl0 -> #GP(sel)", k_mov_ds, S_SMALL | 3, 0, 0, 13, S_SMALL);
    faults("mov ss, null -> #GP(0)", k_mov_ss, 0, 0, 0, 13, 0);
    faults("mov ss, read-only -> #GP(sel)", k_mov_ss, S_RO, 0, 0, 13, S_RO);
    faults("mov ss, code -> #GP(sel)", k_mov_ss, S_CODER, 0, 0, 13, S_CODER);
    faults("mov ss, dpl3 at cpl0 -> #GP(sel)", k_mov_ss, S_DPL3, 0, 0, 13, S_DPL3);
    faults("mov ss, rpl1 -> #GP(sel)", k_mov_ss, S_STACK | 1, 0, 0, 13, S_STACK);
    faults("mov ss, not-present -> #SS(sel)", k_mov_ss, S_NP, 0, 0, 12, S_NP);
    faults("lds not-present -> #NP(sel)", k_lds, S_NP, 0, 0, 11, S_NP);
    faults("pop es, execute-only -> #GP(sel)", k_pop_es, S_XO, 0, 0, 13, S_XO);
    check("accessed clear before load", accessed(S_SMALL), 0);
    ok("mov ds, small", k_mov_ds, S_SMALL, 0, 0);
    check("load sets accessed bit", accessed(S_SMALL), 1);
    run(k_mov_ds, S_CODER, 0, 0, -1);
    check("mov ds, readable code ok", c32_faulted, 0);
    run(k_mov_ds, S_DPL3 | 3, 0, 0, -1);
    check("mov ds, dpl3 rpl3 ok", c32_faulted, 0);
    run(k_mov_ds, S_CONF | 3, 0, 0, -1);
    check("mov ds, conforming code rpl3 ok", c32_faulted, 0);
    run(k_mov_ds, 3, 0, 0, -1);
    check("mov ds, null ok", c32_faulted, 0);
}

static void accesses(void)
{
    u32 buf = (u32)(u64)&c32_scratch;
    faults("read via null ds -> #GP(0)", k_read_ds, 0, 0, 0x100, 13, 0);
    struct res r = run(k_read_ds, S_SMALL, 0, buf & 0, -1);
    check("read at limit-3 ok (no fault)", c32_faulted, 0);
    (void)r;
    run(k_read_ds, S_SMALL, 0, 0xffc, -1);
    check("dword at 0xffc within limit 0xfff", c32_faulted, 0);
    faults("dword at 0xffd past limit -> #GP(0)", k_read_ds, S_SMALL, 0, 0xffd, 13, 0);
    run(k_readb_ds, S_SMALL, 0, 0xfff, -1);
    check("byte at limit ok", c32_faulted, 0);
    faults("byte at limit+1 -> #GP(0)", k_readb_ds, S_SMALL, 0, 0x1000, 13, 0);
    r = run(k_read_ds, S_RO, 0, buf, -1);
    check("read-only data: read", r.a, 0x11223344);
    faults("read-only data: write -> #GP(0)", k_write_ds, S_RO, 0x99, buf, 13, 0);
    faults("read-only data: add (rmw) -> #GP(0)", k_add_ds, S_RO, 1, buf, 13, 0);
    check("read-only data: memory unchanged", c32_scratch, 0x11223344);
    faults("movs to read-only es -> #GP(0)", k_movs_es, S_RO, 0, buf, 13, 0);
    r = run(k_read_ds, S_CODER, 0, buf, -1);
    check("readable code via ds: read", r.a, 0x11223344);
    faults("readable code via ds: write -> #GP(0)", k_write_ds, S_CODER, 1, buf, 13, 0);
    run_cs(S_CODER, k_read_cs, 0, 0, buf, -1);
    check("cs: read in readable code ok", c32_faulted, 0);
    run_cs(S_XO, k_read_cs, 0, 0, buf, 13);
    check3("cs: read in execute-only code -> #GP(0)", c32_faulted, exc_last_vec, exc_last_err, 1, 13, 0);
    faults("cs: write -> #GP(0)", k_write_cs, 0, 1, buf, 13, 0);
    /* expand-down, B=1: valid 0x1000..0xffffffff */
    run(k_read_ds, S_ED32, 0, 0x1000, -1);
    check("expand-down32: limit+1 ok", c32_faulted, 0);
    faults("expand-down32: at limit -> #GP(0)", k_read_ds, S_ED32, 0, 0xfff, 13, 0);
    faults("expand-down32: straddling limit -> #GP(0)", k_read_ds, S_ED32, 0, 0xffe, 13, 0);
    run(k_read_ds, S_ED32, 0, 0x100000, -1);
    check("expand-down32: high offset ok", c32_faulted, 0);
    /* expand-down, B=0: valid 0x1000..0xffff */
    run(k_read_ds, S_ED16, 0, 0xfffc, -1);
    check("expand-down16: dword at 0xfffc ok", c32_faulted, 0);
    faults("expand-down16: dword at 0xfffe -> #GP(0)", k_read_ds, S_ED16, 0, 0xfffe, 13, 0);
    faults("expand-down16: 0x10000 -> #GP(0)", k_read_ds, S_ED16, 0, 0x10000, 13, 0);
    faults("expand-down16: 0x800 -> #GP(0)", k_read_ds, S_ED16, 0, 0x800, 13, 0);
    faults("16-bit data (limit 0xffff): dword at 0xfffe -> #GP(0)", k_read_ds, 0x28, 0, 0xfffe, 13, 0);
    /* stack segment limit: #SS(0) */
    run(k_read_ss, S_STACK, 0, 0xffc, -1);
    check("ss: read within limit ok", c32_faulted, 0);
    faults("ss: read past limit -> #SS(0)", k_read_ss, S_STACK, 0, 0x1000, 12, 0);
    faults("ss: push straddling the limit -> #SS(0)", k_push_ss, S_STACK, 0, 0x1002, 12, 0);
    run(k_push_ss, S_STACK, 0, 0x800, -1);
    check("ss: push within limit ok", c32_faulted, 0);
}

static void inspect(void)
{
    struct res r;
    r = run(k_lar, 0, S_SMALL, 0, -1);
    check3("lar data", r.a, r.d, 0, 0x00409300, 1, 0);
    r = run(k_lar, 0, S_NP, 0, -1);
    check3("lar not-present data (zf=1)", r.a, r.d, 0, 0x00c01200, 1, 0);
    r = run(k_lar, 0, S_LDT, 0, -1);
    check3("lar ldt", r.a, r.d, 0, 0x00008200, 1, 0);
    r = run(k_lar, 0, 0x400, 0, -1);
    check3("lar past limit: zf=0, dest kept", r.a, r.d, 0, 0x5555, 0, 0);
    r = run(k_lar, 0, 0, 0, -1);
    check3("lar null: zf=0", r.a, r.d, 0, 0x5555, 0, 0);
    r = run(k_lar, 0, S_SMALL | 3, 0, -1);
    check3("lar rpl3 > dpl0: zf=0", r.a, r.d, 0, 0x5555, 0, 0);
    r = run(k_lar, 0, S_CONF | 3, 0, -1);
    check3("lar conforming rpl3: zf=1", r.a, r.d, 0, 0x00c09f00, 1, 0);
    r = run(k_lsl, 0, S_RO, 0, -1);
    check3("lsl 4G granular", r.a, r.d, 0, 0xffffffff, 1, 0);
    r = run(k_lsl, 0, S_SMALL, 0, -1);
    check3("lsl byte granular", r.a, r.d, 0, 0xfff, 1, 0);
    r = run(k_lsl, 0, S_LDT, 0, -1);
    check3("lsl ldt", r.a, r.d, 0, 7, 1, 0);
    r = run(k_lsl, 0, 0x400, 0, -1);
    check3("lsl past limit: zf=0", r.a, r.d, 0, 0x5555, 0, 0);
    check("verr data", run(k_verr, 0, S_SMALL, 0, -1).d, 1);
    check("verr read-only data", run(k_verr, 0, S_RO, 0, -1).d, 1);
    check("verr readable code", run(k_verr, 0, S_CODER, 0, -1).d, 1);
    check("verr execute-only code", run(k_verr, 0, S_XO, 0, -1).d, 0);
    check("verr ldt (system)", run(k_verr, 0, S_LDT, 0, -1).d, 0);
    check("verr null", run(k_verr, 0, 0, 0, -1).d, 0);
    check("verr rpl3 on dpl0", run(k_verr, 0, S_SMALL | 3, 0, -1).d, 0);
    check("verw writable data", run(k_verw, 0, S_SMALL, 0, -1).d, 1);
    check("verw read-only data", run(k_verw, 0, S_RO, 0, -1).d, 0);
    check("verw code", run(k_verw, 0, S_CODER, 0, -1).d, 0);
    check("verw dpl3 data", run(k_verw, 0, S_DPL3, 0, -1).d, 1);
    r = run(k_arpl, 3, 0x10, 0, -1);
    check3("arpl raises rpl", r.a, r.d, 0, 1, 0x13, 0);
    r = run(k_arpl, 1, 0x12, 0, -1);
    check3("arpl keeps higher rpl", r.a, r.d, 0, 0, 0x12, 0);
}

static void transfers(void)
{
    struct res r = run(k_lcall, S_CONF, 0, 0, -1);
    check("far call to conforming code: cs keeps cpl", r.a, S_CONF);
    r = run(k_lcall, S_CONF | 3, 0, 0, -1);
    check("far call conforming rpl3: cs.rpl = cpl 0", r.a, S_CONF);
    r = run(k_ljmp, S_CODER, 0, 0, -1);
    check("far jmp to readable code", r.a, S_CODER);
    faults("far call to dpl3 code from cpl0 -> #GP(sel)", k_lcall, S_CODE3, 0, 0, 13, S_CODE3);
    faults("far call to conforming dpl3 from cpl0 -> #GP(sel)", k_lcall, S_CONF3, 0, 0, 13, S_CONF3);
    faults("far call to data -> #GP(sel)", k_lcall, S_SMALL, 0, 0, 13, S_SMALL);
    faults("far call null -> #GP(0)", k_lcall, 0, 0, 0, 13, 0);
    faults("far call rpl1 to non-conforming -> #GP(sel)", k_lcall, S_CODER | 1, 0, 0, 13, S_CODER);
    faults("far jmp past cs limit -> #GP(0)", k_jmp_limit, S_CODE1M, 0, (u32)(u64)k_back, 13, 0);
}

void test_main(void)
{
    setup_gdt();
    loads();
    accesses();
    inspect();
    transfers();
}
