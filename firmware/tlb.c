/*
 * tlb: TLB invalidation semantics (SDM vol. 3 §4.10.4).
 *
 * A translation is cached by a first access; the PTE is then changed without
 * invalidation. Checks named "... stale" expect the old translation to be
 * still in use (no flush the architecture requires has happened yet - real
 * processors may evict earlier, twinvm never does for a working set this
 * small); checks named "... fresh" expect the new one after the architectural
 * invalidation: INVLPG (incl. all of a 2 MiB page and global pages), MOV CR3
 * (keeps global pages), CR4.PGE toggles, PCIDs with CR3 bit 63 (no flush),
 * INVPCID types 0-3 and their #GP cases.
 *
 * Under QEMU 7.2 TCG (-cpu max) "global: survives MOV CR3 (stale)" FAILs
 * (its TLB drops global entries on MOV CR3, which the architecture allows but
 * twinvm does not do) and the PCID group is skipped (TCG does not advertise
 * PCID); every "fresh" check passes.
 */
#include "pgtest.h"

#define I 7
static const u64 A = 0xaaaaaaaaaaaaaaaaUL, B = 0xbbbbbbbbbbbbbbbbUL;
static u64 root2[512] __attribute__((aligned(4096)));

static u64 rd(u64 a)
{
    u64 v = 0;
    if (probe(RD, a, &v))
        return 0xdead0000UL | pf_err;
    return v;
}

/* Caches tva(I) -> page_a (flags), then points the PTE at page_b silently. */
static void stale_setup(u64 flags)
{
    map4k(I, (u64)page_a, PG_P | PG_W | flags);
    (void)rd(tva(I));
    t_pt[I] = (u64)page_b | PG_P | PG_W | flags;
}

static int invpcid(u64 type, u64 pcid, u64 addr)
{
    struct { u64 pcid, addr; } d = { pcid, addr };
    int before = exc_count;
    __asm__ volatile(EXPECT_EXC(13, "1f") "invpcid %0, %1\n1:" :: "m"(d), "r"(type) : "memory");
    exc_expect_vec = -1;
    return exc_count != before;
}

static void basic(void)
{
    stale_setup(0);
    check("plain: stale before INVLPG", rd(tva(I)), A);
    invlpg(tva(I));
    check("plain: fresh after INVLPG", rd(tva(I)), B);

    stale_setup(0);
    check("MOV CR3: stale before", rd(tva(I)), A);
    wr_cr3(rd_cr3());
    check("MOV CR3: fresh after", rd(tva(I)), B);

    /* Unmapping: the stale translation keeps working until INVLPG. */
    map4k(I, (u64)page_a, PG_P | PG_W);
    (void)rd(tva(I));
    t_pt[I] = 0;
    check("unmap: stale before INVLPG", rd(tva(I)), A);
    invlpg(tva(I));
    check("unmap: #PF after INVLPG", rd(tva(I)), 0xdead0000UL);

    /* INVLPG of any address in a 2 MiB page drops all of it. */
    t_pd[1] = (u64)0 | PG_P | PG_W | PG_PS;
    invlpg(TBASE + 0x200000);
    u64 off = (u64)page_a & 0x1fffff;
    u64 lin = TBASE + 0x200000 + off;
    check("2m: first", rd(lin), A);
    t_pd[1] = (u64)0x200000 * (((u64)page_a >> 21)) | PG_P | PG_W | PG_PS; /* same */
    t_pd[1] = ((u64)page_b & ~0x1fffffUL) | PG_P | PG_W | PG_PS;
    u64 off_b = (u64)page_b & 0x1fffff;
    (void)off_b;
    check("2m: stale before INVLPG", rd(lin), A);
    invlpg(TBASE + 0x200000 + 0x1ff000); /* another 4K page of the same 2M page */
    u64 want = *(u64 *)(((u64)page_b & ~0x1fffffUL) + off);
    check("2m: fresh after INVLPG elsewhere in the page", rd(lin), want);
    t_pd[1] = 0;
    invlpg(lin);
}

static void global_pages(void)
{
    wr_cr4(rd_cr4() | CR4_PGE);
    stale_setup(PG_G);
    wr_cr3(rd_cr3());
    check("global: survives MOV CR3 (stale)", rd(tva(I)), A);
    invlpg(tva(I));
    check("global: INVLPG drops it (fresh)", rd(tva(I)), B);

    stale_setup(PG_G);
    wr_cr4(rd_cr4() & ~CR4_PGE);
    check("global: CR4.PGE clear flushes (fresh)", rd(tva(I)), B);
    wr_cr4(rd_cr4() | CR4_PGE);

    /* G without CR4.PGE is not global. */
    wr_cr4(rd_cr4() & ~CR4_PGE);
    stale_setup(PG_G);
    wr_cr3(rd_cr3());
    check("G bit ignored without PGE: MOV CR3 flushes (fresh)", rd(tva(I)), B);
    wr_cr4(rd_cr4() | CR4_PGE);
    map4k(I, (u64)page_a, 0);
}

static void pcid(void)
{
    if (!(cpuid_ecx(1) & (1 << 17))) {
        pass_skip("pcid", "not advertised");
        return;
    }
    u64 r1 = (u64)t_pml4, r2 = (u64)root2;
    for (int i = 0; i < 512; i++)
        root2[i] = t_pml4[i];
    wr_cr4(rd_cr4() | CR4_PCIDE);
    check("CR4.PCIDE set", rd_cr4() & CR4_PCIDE, CR4_PCIDE);
    wr_cr3(r1 | 1);
    check("CR3 holds PCID", rd_cr3(), r1 | 1);
    stale_setup(0);                       /* cached in PCID 1 */
    wr_cr3(r2 | 2);                       /* flushes PCID 2 only */
    check("pcid 2 walks fresh", rd(tva(I)), B);
    wr_cr3(r1 | 1 | (1UL << 63));         /* back to PCID 1 without flush */
    check("CR3 bit 63 not stored", rd_cr3(), r1 | 1);
    check("pcid 1 kept its entry across switches (stale)", rd(tva(I)), A);
    wr_cr3(r1 | 1);                       /* same PCID, flush */
    check("MOV CR3 without bit 63 flushes the PCID (fresh)", rd(tva(I)), B);

    /* INVPCID type 0: one address of another PCID. */
    stale_setup(0);                       /* PCID 1 caches A */
    wr_cr3(r2 | 2 | (1UL << 63));
    check("invpcid 0 ok", (u64)invpcid(0, 1, tva(I)), 0);
    wr_cr3(r1 | 1 | (1UL << 63));
    check("INVPCID individual address (fresh)", rd(tva(I)), B);

    /* Type 1: a whole PCID; other PCIDs keep theirs. */
    stale_setup(0);                       /* PCID 1: A */
    wr_cr3(r2 | 2 | (1UL << 63));
    map4k(I, (u64)page_a, PG_P | PG_W);   /* invlpg here is for PCID 2 only */
    (void)rd(tva(I));                     /* PCID 2 caches A */
    t_pt[I] = (u64)page_b | PG_P | PG_W;
    check("invpcid 1 ok", (u64)invpcid(1, 1, 0), 0);
    check("INVPCID single context spares PCID 2 (stale)", rd(tva(I)), A);
    wr_cr3(r1 | 1 | (1UL << 63));
    check("INVPCID single context (fresh)", rd(tva(I)), B);

    /* Type 3: all contexts but globals; type 2: everything. */
    stale_setup(PG_G);
    check("invpcid 3 ok", (u64)invpcid(3, 0, 0), 0);
    check("INVPCID all-but-global keeps global (stale)", rd(tva(I)), A);
    check("invpcid 2 ok", (u64)invpcid(2, 0, 0), 0);
    check("INVPCID all incl. global (fresh)", rd(tva(I)), B);
    stale_setup(0);
    check("invpcid 3 ok again", (u64)invpcid(3, 0, 0), 0);
    check("INVPCID all-but-global drops non-global (fresh)", rd(tva(I)), B);

    check("INVPCID type 4 is #GP", (u64)invpcid(4, 0, 0), 1);
    check("INVPCID descriptor bit 12 is #GP", (u64)invpcid(1, 0x1000, 0), 1);
    check("INVPCID type 0 non-canonical is #GP", (u64)invpcid(0, 1, 0x800000000000UL), 1);

    wr_cr3(r1);
    /* Setting PCIDE needs CR3[11:0] = 0. */
    wr_cr4(rd_cr4() & ~CR4_PCIDE);
    wr_cr3(r1 | 0x8); /* PWT */
    int before = exc_count;
    __asm__ volatile(EXPECT_EXC(13, "1f") "mov %0,%%cr4\n1:" :: "r"(rd_cr4() | CR4_PCIDE) : "memory");
    exc_expect_vec = -1;
    check("CR4.PCIDE with CR3[11:0]!=0 is #GP", (u64)(exc_count - before), 1);
    wr_cr3(r1);
    check("PCID 1 with PCIDE=0 for INVPCID 0 is #GP", (u64)invpcid(0, 1, 0), 1);
    map4k(I, (u64)page_a, 0);
}

void test_main(void)
{
    pg_setup();
    basic();
    global_pages();
    pcid();
    wr_cr4(rd_cr4() & ~CR4_PGE);
    wr_cr3((u64)pml4);
}
