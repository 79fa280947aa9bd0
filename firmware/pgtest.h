/*
 * Shared helpers for the paging and tlb guests: control registers, a private
 * 4-level hierarchy that keeps the library's identity map (PML4[0]) and maps a
 * test window at TBASE (PML4[1] = 512 GiB) through t_pdpt/t_pd/t_pt, and a
 * probe that performs one access and reports whether it raised #PF.
 */
#ifndef PGTEST_H
#define PGTEST_H
#include "guest.h"

#define TBASE 0x8000000000UL
#define PG_P 1UL
#define PG_W 2UL
#define PG_U 4UL
#define PG_A 0x20UL
#define PG_D 0x40UL
#define PG_PS 0x80UL
#define PG_G 0x100UL
#define PG_NX (1UL << 63)

#define CR0_WP (1UL << 16)
#define CR4_PGE (1UL << 7)
#define CR4_PCIDE (1UL << 17)
#define CR4_SMEP (1UL << 20)
#define CR4_SMAP (1UL << 21)
#define EFER_NXE (1UL << 11)

extern u64 pml4[512];

static inline u64 rd_cr0(void) { u64 v; __asm__ volatile("mov %%cr0,%0" : "=r"(v)); return v; }
static inline u64 rd_cr2(void) { u64 v; __asm__ volatile("mov %%cr2,%0" : "=r"(v)); return v; }
static inline u64 rd_cr3(void) { u64 v; __asm__ volatile("mov %%cr3,%0" : "=r"(v)); return v; }
static inline u64 rd_cr4(void) { u64 v; __asm__ volatile("mov %%cr4,%0" : "=r"(v)); return v; }
static inline void wr_cr0(u64 v) { __asm__ volatile("mov %0,%%cr0" :: "r"(v) : "memory"); }
static inline void wr_cr3(u64 v) { __asm__ volatile("mov %0,%%cr3" :: "r"(v) : "memory"); }
static inline void wr_cr4(u64 v) { __asm__ volatile("mov %0,%%cr4" :: "r"(v) : "memory"); }
static inline void invlpg(u64 a) { __asm__ volatile("invlpg (%0)" :: "r"(a) : "memory"); }
static inline u64 rdmsr(u32 n) { u32 lo, hi; __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(n)); return ((u64)hi << 32) | lo; }
static inline void wrmsr(u32 n, u64 v) { __asm__ volatile("wrmsr" :: "c"(n), "a"((u32)v), "d"((u32)(v >> 32)) : "memory"); }
static inline void set_nxe(int on)
{
    u64 e = rdmsr(0xc0000080);
    wrmsr(0xc0000080, on ? (e | EFER_NXE) : (e & ~EFER_NXE));
}

/* Test hierarchy (4 KiB aligned, identity-mapped, so physical = linear). */
extern u64 t_pml4[512], t_pdpt[512], t_pd[512], t_pt[512];
extern u8 page_a[4096], page_b[4096], code_page[4096];

static inline u64 tva(int i) { return TBASE + (u64)i * 4096; }

/* Builds the test hierarchy (upper levels U|W|P) and switches CR3 to it. */
static inline void pg_setup(void)
{
    for (int i = 0; i < 512; i++)
        t_pml4[i] = t_pdpt[i] = t_pd[i] = t_pt[i] = 0;
    t_pml4[0] = pml4[0];
    t_pml4[1] = (u64)t_pdpt | PG_P | PG_W | PG_U;
    t_pdpt[0] = (u64)t_pd | PG_P | PG_W | PG_U;
    t_pd[0] = (u64)t_pt | PG_P | PG_W | PG_U;
    for (int i = 0; i < 4096; i++) {
        page_a[i] = 0xaa;
        page_b[i] = 0xbb;
        code_page[i] = 0xcc;
    }
    code_page[0] = 0xff; /* jmp *%rcx */
    code_page[1] = 0xe1;
    wr_cr3((u64)t_pml4);
}

static inline void map4k(int i, u64 phys, u64 flags)
{
    t_pt[i] = phys | flags;
    invlpg(tva(i));
}

enum { RD, WR, EX };
extern u64 pf_err, pf_cr2;

/*
 * One supervisor access; returns 1 if it raised #PF (pf_err/pf_cr2 then hold the
 * error code and CR2), 0 if not (*val holds what was read).
 */
static inline int probe(int op, u64 addr, u64 *val)
{
    int before = exc_count;
    u64 v = 0;
    if (op == RD)
        __asm__ volatile(EXPECT_EXC(14, "1f") "movq (%[a]),%[v]\n1:" : [v] "+r"(v) : [a] "r"(addr) : "memory");
    else if (op == WR)
        __asm__ volatile(EXPECT_EXC(14, "1f") "movq $0x55,(%[a])\n1:" :: [a] "r"(addr) : "memory");
    else
        __asm__ volatile(EXPECT_EXC(14, "1f") "leaq 1f(%%rip),%%rcx\n\tjmp *%[a]\n1:" :: [a] "r"(addr) : "rcx", "memory");
    exc_expect_vec = -1;
    if (val)
        *val = v;
    if (exc_count != before) {
        pf_err = exc_last_err;
        pf_cr2 = rd_cr2();
        return 1;
    }
    return 0;
}

/* Expect a #PF with error code `err` at `addr`. */
static inline void expect_pf(const char *name, int op, u64 addr, u64 err)
{
    if (!probe(op, addr, 0)) {
        fail_msg(name, "no #PF");
        return;
    }
    check3(name, pf_err, pf_cr2, 0, err, addr, 0);
}

/* Expect no fault; for reads, the value read. */
static inline void expect_ok(const char *name, int op, u64 addr, u64 want)
{
    u64 v;
    if (probe(op, addr, &v)) {
        check3(name, pf_err, pf_cr2, 1, 0xffff, addr, 0);
        return;
    }
    check(name, op == RD ? v : 0, op == RD ? want : 0);
}
#endif
