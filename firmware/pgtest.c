/* Storage for pgtest.h: the test hierarchy and data pages (page-aligned .bss). */
#include "pgtest.h"

#define PAGE __attribute__((aligned(4096)))
u64 t_pml4[512] PAGE, t_pdpt[512] PAGE, t_pd[512] PAGE, t_pt[512] PAGE;
u8 page_a[4096] PAGE, page_b[4096] PAGE, code_page[4096] PAGE;
u64 pf_err, pf_cr2;
