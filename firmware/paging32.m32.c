/*
 * 32-bit and PAE paging checks, compiled as 32-bit code (see the Makefile's
 * .m32.c rule) and run from main32 before long mode. Results go to p32_res[]
 * as (value, expected) pairs with names in p32_names[]; the 64-bit side prints
 * them (paging.c).
 */
typedef unsigned int u32;
typedef unsigned long long u64;

extern volatile u32 p32_vec, p32_err, p32_cr2, p32_resume;

#define NRES 64
u64 p32_res[NRES][2];
const char *p32_names[NRES];
u32 p32_n;

#define A4K __attribute__((aligned(4096)))
static u32 pd32[1024] A4K, pt_id[2][1024] A4K, pt32[1024] A4K, pt32b[1024] A4K;
static u64 pdpt[4] __attribute__((aligned(32)));
static u64 pdpt2[4] __attribute__((aligned(32)));
static u64 pd_id[512] A4K, pd_t[512] A4K, pt_t[512] A4K;
static unsigned char pa[4096] A4K, pb[4096] A4K, pc[4096] A4K;

#define WIN 0x40000000u

static void rec(const char *name, u64 got, u64 exp)
{
    if (p32_n < NRES) {
        p32_names[p32_n] = name;
        p32_res[p32_n][0] = got;
        p32_res[p32_n][1] = exp;
        p32_n++;
    }
}

static inline u32 rd_cr0(void) { u32 v; __asm__ volatile("mov %%cr0,%0" : "=r"(v)); return v; }
static inline u32 rd_cr4(void) { u32 v; __asm__ volatile("mov %%cr4,%0" : "=r"(v)); return v; }
static inline void wr_cr0(u32 v) { __asm__ volatile("mov %0,%%cr0" :: "r"(v) : "memory"); }
static inline void wr_cr3(u32 v) { __asm__ volatile("mov %0,%%cr3" :: "r"(v) : "memory"); }
static inline void wr_cr4(u32 v) { __asm__ volatile("mov %0,%%cr4" :: "r"(v) : "memory"); }
static inline void invlpg(u32 a) { __asm__ volatile("invlpg (%0)" :: "r"(a) : "memory"); }
static void nxe(int on)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0xC0000080));
    lo = on ? (lo | (1u << 11)) : (lo & ~(1u << 11));
    __asm__ volatile("wrmsr" :: "a"(lo), "d"(hi), "c"(0xC0000080));
}

/* Returns 0 if no fault, else (vector << 16 | error code); *v = value read. */
static u32 rd(u32 a, u32 *v)
{
    u32 x = 0;
    p32_vec = 0;
    __asm__ volatile("movl $1f, p32_resume\n\tmovl (%1), %0\n1:" : "+r"(x) : "r"(a) : "memory");
    if (v)
        *v = x;
    return p32_vec ? (p32_vec << 16) | p32_err : 0;
}
static u32 wr(u32 a)
{
    p32_vec = 0;
    __asm__ volatile("movl $1f, p32_resume\n\tmovl $0x55, (%0)\n1:" :: "r"(a) : "memory");
    return p32_vec ? (p32_vec << 16) | p32_err : 0;
}
static u32 ex(u32 a)
{
    p32_vec = 0;
    __asm__ volatile("movl $1f, p32_resume\n\tmovl $1f, %%ecx\n\tjmp *%0\n1:" :: "r"(a) : "ecx", "memory");
    return p32_vec ? (p32_vec << 16) | p32_err : 0;
}
#define PF(code) ((14u << 16) | (code))

static void bits32(void)
{
    u32 v;
    for (int i = 0; i < 1024; i++) {
        pt_id[0][i] = (i << 12) | 3;
        pt_id[1][i] = ((1024 + i) << 12) | 3;
        pd32[i] = pt32[i] = pt32b[i] = 0;
    }
    pd32[0] = (u32)pt_id[0] | 3;
    pd32[1] = (u32)pt_id[1] | 3;
    pd32[256] = (u32)pt32 | 3;
    pt32[1] = (u32)pa | 3;
    pt32[2] = (u32)pb | 1;
    pt32b[3] = (u32)pb | 3;
    pa[0] = 0x5a;
    pb[0] = 0xb5;
    pc[0] = 0xff; /* jmp *%ecx */
    pc[1] = 0xe1;
    wr_cr3((u32)pd32);
    wr_cr0(rd_cr0() | 0x80010000u); /* PG | WP */
    rec("pm32 4k read", rd(WIN + 0x1000, &v) ? 0 : v & 0xff, 0x5a);
    rec("pm32 not present err=0", rd(WIN + 0x5000, 0), PF(0));
    rec("pm32 not present cr2", p32_cr2, WIN + 0x5000);
    rec("pm32 WP write to read-only err=P|W", wr(WIN + 0x2000), PF(3));
    rec("pm32 A in PDE and PTE", (pd32[256] & 0x60) | ((pt32[1] & 0x60) << 8), 0x20 | 0x2000);
    wr(WIN + 0x1000 + 8);
    rec("pm32 D in PTE only", (pd32[256] & 0x40) | ((pt32[1] & 0x40) << 8), 0x4000);
    /* Without CR4.PSE, PS in a PDE is ignored: it points to a page table. */
    pd32[257] = (u32)pt32b | 0x83;
    rec("pm32 PSE=0: PS ignored", rd(WIN + 0x400000 + 0x3000, &v) ? 0 : v & 0xff, 0xb5);
    wr_cr4(rd_cr4() | 0x10); /* PSE: flushes nothing by itself */
    invlpg(WIN + 0x400000 + 0x3000);
    pd32[257] = 0x83; /* 4 MiB page at 0 */
    invlpg(WIN + 0x400000);
    rec("pm32 4m page read", rd(WIN + 0x400000 + (u32)pa, &v) ? 0 : v & 0xff, 0x5a);
    wr(WIN + 0x400000 + (u32)pc + 64);
    rec("pm32 4m PDE gets A and D", pd32[257] & 0x60, 0x60);
    pd32[258] = 0x83 | (1u << 21);
    rec("pm32 4m PDE bit 21 reserved err=P|RSVD", rd(WIN + 0x800000, 0), PF(9));
    rec("pm32 reserved fault sets no A", pd32[258] & 0x20, 0);
    /* No I/D bit in 32-bit paging without SMEP, even with EFER.NXE. */
    nxe(1);
    rec("pm32 fetch not present: no I/D", ex(WIN + 0x7000), PF(0));
    nxe(0);
    pt32[4] = (u32)pc | 1;
    rec("pm32 exec 4k page", ex(WIN + 0x4000), 0);
    wr_cr0(rd_cr0() & ~0x80000000u);
    wr_cr4(rd_cr4() & ~0x10u);
}

static void pae(void)
{
    u32 v;
    for (int i = 0; i < 512; i++) {
        pd_id[i] = pd_t[i] = pt_t[i] = 0;
    }
    for (int i = 0; i < 4; i++)
        pd_id[i] = ((u64)i << 21) | 0x83;
    pdpt[0] = (u32)pd_id | 1;
    pdpt[1] = (u32)pd_t | 1;
    pdpt[2] = pdpt[3] = 0;
    pd_t[0] = (u32)pt_t | 3;
    pt_t[1] = (u32)pa | 3;
    pt_t[2] = (u32)pa | 3 | (1ull << 63);
    pt_t[3] = (u32)pa | 3 | (1ull << 40);
    pt_t[4] = (u32)pa | 3 | (1ull << 52);
    pt_t[5] = (u32)pc | 1 | (1ull << 63);
    pd_t[1] = 0x83; /* 2 MiB page at 0 */
    wr_cr4(rd_cr4() | 0x20);
    wr_cr3((u32)pdpt);
    wr_cr0(rd_cr0() | 0x80000000u);
    rec("pae 4k read", rd(WIN + 0x1000, &v) ? 0 : v & 0xff, 0x5a);
    rec("pae 2m read", rd(WIN + 0x200000 + (u32)pa, &v) ? 0 : v & 0xff, 0x5a);
    rec("pae XD with NXE=0 reserved", rd(WIN + 0x2000, 0), PF(9));
    rec("pae bit 40 reserved", rd(WIN + 0x3000, 0), PF(9));
    rec("pae bit 52 reserved (ignored in 4-level)", wr(WIN + 0x4000), PF(0xb));
    nxe(1);
    rec("pae XD page readable with NXE", rd(WIN + 0x2000, &v) ? 0 : v & 0xff, 0x5a);
    rec("pae XD fetch err=P|I", ex(WIN + 0x5000), PF(0x11));
    rec("pae fetch not present err=I", ex(WIN + 0x6000), PF(0x10));
    nxe(0);
    /* PDPTEs are registers: loaded at MOV CR3, not re-read on a walk. */
    pdpt[1] = 0;
    invlpg(WIN + 0x1000);
    rec("pae PDPTE register survives memory change", rd(WIN + 0x1000, &v) ? 0 : v & 0xff, 0x5a);
    wr_cr3((u32)pdpt);
    rec("pae MOV CR3 reloads PDPTEs", rd(WIN + 0x1000, 0), PF(0));
    pdpt[1] = (u32)pd_t | 1;
    wr_cr4(rd_cr4() ^ 0x80); /* toggling PGE reloads them too */
    rec("pae MOV CR4 (PGE) reloads PDPTEs", rd(WIN + 0x1000, &v) ? 0 : v & 0xff, 0x5a);
    wr_cr4(rd_cr4() ^ 0x80);
    /* A present PDPTE with a reserved bit: #GP(0) at MOV CR3, CR3 unchanged. */
    pdpt2[0] = pdpt[0];
    pdpt2[1] = (u32)pd_t | 1 | (1u << 5);
    pdpt2[2] = pdpt2[3] = 0;
    p32_vec = 0;
    __asm__ volatile("movl $1f, p32_resume\n\tmov %0, %%cr3\n1:" :: "r"((u32)pdpt2) : "memory");
    rec("pae PDPTE reserved bit: #GP(0) at MOV CR3", (p32_vec << 16) | p32_err, 13u << 16);
    u32 cr3;
    __asm__ volatile("mov %%cr3,%0" : "=r"(cr3));
    rec("pae CR3 unchanged after #GP", cr3, (u32)pdpt);
    pdpt2[1] = ((u32)pd_t | (1u << 5)); /* reserved bits in a not-present PDPTE are fine */
    p32_vec = 0;
    __asm__ volatile("movl $1f, p32_resume\n\tmov %0, %%cr3\n1:" :: "r"((u32)pdpt2) : "memory");
    rec("pae not-present PDPTE may have reserved bits", p32_vec, 0);
    rec("pae not-present PDPTE faults", rd(WIN + 0x1000, 0), PF(0));
    wr_cr0(rd_cr0() & ~0x80000000u);
    wr_cr4(rd_cr4() & ~0x20u);
    wr_cr3(0);
}

void p32_tests(void)
{
    bits32();
    pae();
}
