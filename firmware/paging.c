/*
 * paging: page-table formats and access rights.
 *
 * First, in 32-bit protected mode (paging32.m32.c, reported here): 32-bit
 * paging with 4 KiB and 4 MiB pages, PS ignored without CR4.PSE, the 4 MiB
 * PDE's reserved bit 21, A/D bits, WP, no I/D bit without SMEP/PAE; PAE paging
 * with 4 KiB and 2 MiB pages, XD and reserved bits 62:M (bit 52 is reserved in
 * PAE but ignored in 4-level paging), the PDPTE registers (loaded by MOV CR3 and
 * by MOV CR4 changing PGE, not re-read by walks, #GP(0) for a present PDPTE
 * with a reserved bit, CR3 unchanged). Then in long mode:
 * 4 KiB, 2 MiB and 1 GiB pages through a private hierarchy (pgtest.h); #PF
 * error codes and CR2 for not-present, protection and reserved-bit faults
 * (RSVD with P=1, W/R, U/S, I/D only when NXE or SMEP is on, SDM vol. 3
 * §4.7); accessed bits on every level and the dirty bit on the leaf only, none
 * when the access faults; CR0.WP; NX; user-mode accesses from ring 3 (U/S, R/W,
 * NX); SMEP; SMAP with EFLAGS.AC, STAC/CLAC (and STAC at CPL 3 = #UD).
 *
 * Where QEMU and the SDM disagree the SDM wins: per SDM §4.7 the P bit is 0
 * only when some entry on the walk was not present, so a reserved-bit fault
 * (all entries present, one with a reserved bit set) has P|RSVD (0x9 for a
 * read); QEMU 7.2 TCG reports RSVD without P (0x8), so the 12 reserved-bit
 * checks FAIL under QEMU. QEMU also does not model PAE's PDPTE registers (it
 * re-reads PDPTEs on every walk and raises no #GP for reserved PDPTE bits at
 * MOV CR3: 3 more FAILs; SDM §4.4.1 says otherwise). Everything else passes
 * there. The A/D-on-fault checks are marked "(twinvm)": the issue asks that a
 * faulting walk set no accessed/dirty bits; processors may set A in upper
 * levels.
 */
#include "pgtest.h"

extern u64 gdt[6];
extern u8 idt[];
extern u8 user_stub[], user_stub_done[];
void enter_user(u64 rip, u64 rsp, u64 addr, u64 op);
void user_return(void);

#define UCODE 100  /* t_pt index of the user alias of user_stub */
#define USTACK 101 /* user stack page */
#define IA 1       /* test pages */
#define IB 2

static u64 gdt2[12] __attribute__((aligned(16)));
static u8 tss[104] __attribute__((aligned(16)));
static u8 kstack[16384] __attribute__((aligned(16)));
static u8 ustack_page[4096] __attribute__((aligned(4096)));

static void ring3_setup(void)
{
    for (int i = 0; i < 6; i++)
        gdt2[i] = gdt[i];
    gdt2[6] = 0x00CFF2000000FFFFUL; /* 0x30 user data */
    gdt2[7] = 0x00AFFA000000FFFFUL; /* 0x38 user code64 */
    u64 base = (u64)tss, limit = sizeof(tss) - 1;
    gdt2[8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89UL << 40) |
              (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt2[9] = base >> 32;
    *(u64 *)(tss + 4) = (u64)(kstack + sizeof(kstack)); /* RSP0 */
    struct { u16 limit; u64 base; } __attribute__((packed)) d = { sizeof(gdt2) - 1, (u64)gdt2 };
    __asm__ volatile("lgdt %0\n\tmovw $0x40,%%ax\n\tltr %%ax" :: "m"(d) : "rax", "memory");
    u8 *g = idt + 0x81 * 16;
    u64 h = (u64)user_return;
    *(u16 *)(g + 0) = (u16)h;
    *(u16 *)(g + 2) = 0x18;
    *(u16 *)(g + 4) = 0xEE00; /* P, DPL 3, 64-bit interrupt gate */
    *(u16 *)(g + 6) = (u16)(h >> 16);
    *(u32 *)(g + 8) = (u32)(h >> 32);
    *(u32 *)(g + 12) = 0;
}

/* One ring-3 access; returns the exception vector it raised, or -1. */
static int user_probe(int op, u64 addr, int vec)
{
    u64 stub = tva(UCODE);
    int before = exc_count;
    exc_expect_vec = vec;
    exc_resume_rip = stub + (u64)(user_stub_done - user_stub);
    enter_user(stub, tva(USTACK) + 4096, addr, (u64)op);
    exc_expect_vec = -1;
    if (exc_count == before)
        return -1;
    pf_err = exc_last_err;
    pf_cr2 = rd_cr2();
    return exc_last_vec;
}

static void user_expect(const char *name, int op, u64 addr, int vec, u64 err)
{
    int v = user_probe(op, addr, vec);
    if (vec < 0) {
        check(name, (u64)(s64)v, (u64)-1);
        return;
    }
    if (vec != 14) {
        check(name, (u64)v, (u64)vec);
        return;
    }
    check3(name, (u64)v, pf_err, pf_cr2, 14, err, addr);
}

static void formats(void)
{
    /* Markers at known physical places, read back through each page size. */
    page_a[8] = 0x11;
    map4k(IA, (u64)page_a, PG_P | PG_W);
    expect_ok("4k read", RD, tva(IA) + 8, 0xaaaaaaaaaaaaaa11UL);
    t_pd[1] = 0 | PG_P | PG_W | PG_PS; /* 2 MiB page at physical 0 */
    invlpg(TBASE + 0x200000);
    expect_ok("2m read", RD, TBASE + 0x200000 + (u64)page_a + 8, 0xaaaaaaaaaaaaaa11UL);
    t_pdpt[1] = 0 | PG_P | PG_W | PG_PS; /* 1 GiB page at physical 0 */
    invlpg(TBASE + 0x40000000);
    expect_ok("1g read", RD, TBASE + 0x40000000 + (u64)page_a + 8, 0xaaaaaaaaaaaaaa11UL);
    expect_ok("1g write", WR, TBASE + 0x40000000 + (u64)page_b, 0);
    check("1g write landed", page_b[0], 0x55);
    page_b[0] = 0xbb;
}

static void not_present_and_rights(void)
{
    map4k(IA, (u64)page_a, 0);
    expect_pf("not present read err=0", RD, tva(IA) + 0x10, 0);
    expect_pf("not present write err=W", WR, tva(IA) + 0x18, 2);
    t_pd[5] = 0;
    expect_pf("not present pde", RD, TBASE + 5 * 0x200000 + 0x123, 0);
    map4k(IA, (u64)page_a, PG_P);
    expect_ok("read-only read", RD, tva(IA), 0xaaaaaaaaaaaaaaaaUL);
    wr_cr0(rd_cr0() | CR0_WP);
    expect_pf("WP=1 supervisor write to read-only err=P|W", WR, tva(IA) + 8, 3);
    wr_cr0(rd_cr0() & ~CR0_WP);
    expect_ok("WP=0 supervisor write to read-only", WR, tva(IA) + 8, 0);
    wr_cr0(rd_cr0() | CR0_WP);
    /* Read-only at an upper level is enough. */
    map4k(IA, (u64)page_a, PG_P | PG_W);
    t_pd[0] &= ~PG_W;
    invlpg(tva(IA));
    expect_pf("read-only PDE blocks write", WR, tva(IA), 3);
    t_pd[0] |= PG_W;
    invlpg(tva(IA));
    /* NX */
    map4k(IA, (u64)code_page, PG_P);
    expect_ok("exec 4k page", EX, tva(IA), 0);
    set_nxe(1);
    map4k(IA, (u64)code_page, PG_P | PG_NX);
    expect_pf("NX exec err=P|I", EX, tva(IA), 0x11);
    expect_ok("NX page readable", RD, tva(IA), 0xccccccccccccE1FFUL);
    map4k(IA, (u64)code_page, 0);
    expect_pf("NXE exec not present err=I", EX, tva(IA), 0x10);
    t_pd[0] |= PG_NX;
    map4k(IA, (u64)code_page, PG_P);
    expect_pf("NX in PDE applies", EX, tva(IA), 0x11);
    t_pd[0] &= ~PG_NX;
    invlpg(tva(IA));
    set_nxe(0);
    map4k(IA, (u64)code_page, 0);
    expect_pf("no NXE, no SMEP: exec err has no I", EX, tva(IA), 0);
}

static void reserved_bits(void)
{
    u64 rsvd_rd = 9, rsvd_wr = 0xb;
    map4k(IA, (u64)page_a, PG_P | PG_W | PG_NX);
    expect_pf("XD with NXE=0 is reserved (read)", RD, tva(IA), rsvd_rd);
    expect_pf("XD with NXE=0 is reserved (write)", WR, tva(IA), rsvd_wr);
    set_nxe(1);
    map4k(IA, (u64)page_a, PG_P | PG_W | (1UL << 40));
    expect_pf("PTE bit 40 >= MAXPHYADDR", RD, tva(IA), rsvd_rd);
    map4k(IA, (u64)page_a, PG_P | PG_W | (1UL << 51));
    expect_pf("PTE bit 51", RD, tva(IA), rsvd_rd);
    map4k(IA, (u64)page_a, PG_P | PG_W | (1UL << 52));
    expect_ok("PTE bit 52 ignored", RD, tva(IA), 0xaaaaaaaaaaaaaaaaUL);
    map4k(IA, (u64)page_a, PG_P | PG_W | (1UL << 45));
    expect_pf("reserved fetch err=P|RSVD|I", EX, tva(IA), 0x19);
    set_nxe(0);
    t_pd[1] = 0 | PG_P | PG_W | PG_PS | (1UL << 13);
    invlpg(TBASE + 0x200000);
    expect_pf("2m PDE bit 13 reserved", RD, TBASE + 0x200000, rsvd_rd);
    t_pdpt[1] = 0 | PG_P | PG_W | PG_PS | (1UL << 29);
    invlpg(TBASE + 0x40000000);
    expect_pf("1g PDPTE bit 29 reserved", RD, TBASE + 0x40000000, rsvd_rd);
    t_pml4[2] = (u64)t_pdpt | PG_P | PG_W | PG_PS;
    expect_pf("PS in PML4E reserved", WR, TBASE * 2 + 0x1000, rsvd_wr);
    t_pml4[2] = 0;
    /* Not present wins over reserved bits. */
    map4k(IA, (u64)page_a, PG_W | (1UL << 51));
    expect_pf("reserved bits ignored when not present", RD, tva(IA), 0);
    t_pdpt[1] = t_pd[1] = 0;
}

static void accessed_dirty(void)
{
    t_pml4[1] &= ~(PG_A | PG_D);
    t_pdpt[0] &= ~(PG_A | PG_D);
    t_pd[0] &= ~(PG_A | PG_D);
    t_pt[IA] = (u64)page_a | PG_P | PG_W;
    t_pt[IB] = (u64)page_b | PG_P;
    wr_cr3(rd_cr3());
    u64 v;
    probe(RD, tva(IA), &v);
    check("A set in PML4E", t_pml4[1] & (PG_A | PG_D), PG_A);
    check("A set in PDPTE", t_pdpt[0] & (PG_A | PG_D), PG_A);
    check("A set in PDE", t_pd[0] & (PG_A | PG_D), PG_A);
    check("A set in PTE, D clear after read", t_pt[IA] & (PG_A | PG_D), PG_A);
    probe(WR, tva(IA), 0);
    check("D set in PTE after write", t_pt[IA] & (PG_A | PG_D), PG_A | PG_D);
    check("no D in PDE", t_pd[0] & PG_D, 0);
    check("no D in PML4E", t_pml4[1] & PG_D, 0);
    probe(WR, tva(IB), 0);
    check("faulting write sets no A/D in PTE (twinvm)", t_pt[IB] & (PG_A | PG_D), 0);
    t_pd[1] = 0 | PG_P | PG_W | PG_PS;
    invlpg(TBASE + 0x200000);
    probe(WR, TBASE + 0x200000 + (u64)page_b + 16, 0);
    check("2m leaf gets A and D", t_pd[1] & (PG_A | PG_D), PG_A | PG_D);
    t_pdpt[1] = 0 | PG_P | PG_W | PG_PS;
    invlpg(TBASE + 0x40000000);
    probe(RD, TBASE + 0x40000000 + (u64)page_b, &v);
    check("1g leaf read: A only", t_pdpt[1] & (PG_A | PG_D), PG_A);
    t_pdpt[1] = t_pd[1] = 0;
    page_b[16] = 0xbb;
}

static void user_mode(void)
{
    map4k(UCODE, (u64)user_stub, PG_P | PG_U);
    map4k(USTACK, (u64)ustack_page, PG_P | PG_W | PG_U);
    map4k(IA, (u64)page_a, PG_P | PG_W | PG_U);
    user_expect("user read of user page", RD, tva(IA), -1, 0);
    user_expect("user write of user page", WR, tva(IA), -1, 0);
    map4k(IA, (u64)page_a, PG_P | PG_W);
    user_expect("user read of supervisor page err=P|U", RD, tva(IA), 14, 5);
    map4k(IA, (u64)page_a, PG_P | PG_U);
    user_expect("user write of read-only page err=P|W|U", WR, tva(IA), 14, 7);
    wr_cr0(rd_cr0() & ~CR0_WP);
    user_expect("user write of read-only page with WP=0", WR, tva(IA), 14, 7);
    wr_cr0(rd_cr0() | CR0_WP);
    map4k(IA, (u64)page_a, PG_W | PG_U);
    user_expect("user read not present err=U", RD, tva(IA), 14, 4);
    map4k(IA, (u64)code_page, PG_P | PG_U);
    user_expect("user exec of user page", EX, tva(IA), -1, 0);
    set_nxe(1);
    map4k(IA, (u64)code_page, PG_P | PG_U | PG_NX);
    user_expect("user exec of NX page err=P|U|I", EX, tva(IA), 14, 0x15);
    set_nxe(0);
    user_expect("STAC at CPL 3 is #UD", 3, 0, 6, 0);
}

static void smep_smap(void)
{
    u32 b = cpuid_ebx(7);
    if (!(b & (1 << 7)) || !(b & (1 << 20))) {
        pass_skip("smep/smap", "not advertised");
        return;
    }
    map4k(IA, (u64)code_page, PG_P | PG_U);
    expect_ok("supervisor exec of user page without SMEP", EX, tva(IA), 0);
    wr_cr4(rd_cr4() | CR4_SMEP);
    expect_pf("SMEP blocks supervisor exec err=P|I", EX, tva(IA), 0x11);
    expect_ok("SMEP allows supervisor read", RD, tva(IA), 0xccccccccccccE1FFUL);
    wr_cr4(rd_cr4() & ~CR4_SMEP);
    for (int i = 0; i < 8; i++)
        page_a[i] = 0xaa;
    map4k(IA, (u64)page_a, PG_P | PG_W | PG_U);
    wr_cr4(rd_cr4() | CR4_SMAP);
    __asm__ volatile("clac");
    expect_pf("SMAP blocks supervisor read err=P", RD, tva(IA), 1);
    expect_pf("SMAP blocks supervisor write err=P|W", WR, tva(IA), 3);
    __asm__ volatile("stac");
    expect_ok("SMAP with AC=1 (STAC) read", RD, tva(IA), 0xaaaaaaaaaaaaaaaaUL);
    expect_ok("SMAP with AC=1 write", WR, tva(IA), 0);
    __asm__ volatile("clac");
    expect_pf("SMAP after CLAC read", RD, tva(IA), 1);
    /* AC set through POPF works the same. */
    __asm__ volatile("pushfq\n\torq $0x40000,(%%rsp)\n\tpopfq" ::: "memory", "cc");
    expect_ok("SMAP with AC=1 (POPF)", RD, tva(IA), 0x55);
    __asm__ volatile("clac");
    map4k(IA, (u64)page_a, PG_P | PG_W);
    expect_ok("SMAP: supervisor page unaffected", RD, tva(IA), 0x55);
    user_expect("SMAP: user access to user stack page unaffected", RD, tva(USTACK), -1, 0);
    wr_cr4(rd_cr4() & ~CR4_SMAP);
}

/* Results of the 32-bit and PAE checks (paging32.m32.c), run before long mode. */
extern u64 p32_res[64][2];
extern u32 p32_names[64], p32_n;

static void report32(void)
{
    check("32-bit part ran", p32_n >= 28, 1);
    for (u32 i = 0; i < p32_n; i++)
        check((const char *)(u64)p32_names[i], p32_res[i][0], p32_res[i][1]);
}

void test_main(void)
{
    report32();
    pg_setup();
    ring3_setup();
    formats();
    not_present_and_rights();
    reserved_bits();
    accessed_dirty();
    user_mode();
    smep_smap();
    wr_cr3((u64)pml4);
}
