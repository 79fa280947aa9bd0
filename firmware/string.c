/*
 * string: MOVS/CMPS/SCAS/LODS/STOS, byte/word/dword/qword, with and without
 * REP/REPE/REPNE, DF=0 and DF=1, RCX=0, 32-bit address size (0x67) in
 * 64-bit mode, and overlapping MOVS. Each check records
 *   result  = hash of the whole 512-byte buffer, XOR RAX * 0x9e3779b97f4a7c15
 *   result2 = (RSI - buf) | (RDI - buf) << 32
 *   flags   = RFLAGS & defined flags, | RCX << 32
 * against string.expect.h, recorded natively on real hardware (`make regen`).
 */
#include "guest.h"

static u8 buf[512] __attribute__((aligned(64)));

static void init(void)
{
    for (int i = 0; i < 512; i++)
        buf[i] = (u8)(i * 7 + 3);
}

static void mirror(int from, int to, int n)   /* make a region equal to another */
{
    for (int i = 0; i < n; i++)
        buf[to + i] = buf[from + i];
}

static u64 hashbuf(void)
{
    u64 h = 0xcbf29ce484222325UL;
    for (int i = 0; i < 512; i++)
        h = (h ^ buf[i]) * 0x100000001b3UL;
    return h;
}

#define STR(name, insn, si, di, cnt, ax, fin, mask, prep) do { \
    init(); prep; \
    u64 s_ = (u64)(buf + (si)), d_ = (u64)(buf + (di)), c_ = (u64)(cnt), a_ = (u64)(ax), f_; \
    __asm__ volatile("push %[fi]\n\tpopfq\n\t" insn "\n\tpushfq\n\tpop %[f]\n\tcld" \
        : "+S"(s_), "+D"(d_), "+c"(c_), "+a"(a_), [f] "=&r"(f_) : [fi] "r"((u64)(fin)) : "cc", "memory"); \
    u64 lo_ = (u64)buf & 0xffffffffUL; \
    check_tab(name, hashbuf() ^ (a_ * 0x9e3779b97f4a7c15UL), \
              ((s_ - (u64)buf) & 0xffffffffUL) | ((d_ - (u64)buf) << 32), \
              (f_ & (mask)) | (c_ << 32), (mask) | 0xffffffff00000000UL); (void)lo_; } while (0)

#define NOPREP (void)0
#define D1 (F0 | DF)

static void movs_tests(void)
{
    STR("movsb", "movsb", 64, 256, 7, 0, FALL, ARITH, NOPREP);
    STR("movsw", "movsw", 64, 256, 7, 0, F0, ARITH, NOPREP);
    STR("movsl", "movsl", 64, 256, 7, 0, FALL, ARITH, NOPREP);
    STR("movsq", "movsq", 64, 256, 7, 0, F0, ARITH, NOPREP);
    STR("movsb df1", "movsb", 64, 256, 7, 0, D1, ARITH, NOPREP);
    STR("movsq df1", "movsq", 64, 256, 7, 0, D1, ARITH, NOPREP);
    STR("rep movsb", "rep movsb", 64, 256, 13, 0, F0, ARITH, NOPREP);
    STR("rep movsw", "rep movsw", 64, 256, 13, 0, FALL, ARITH, NOPREP);
    STR("rep movsl", "rep movsl", 64, 256, 13, 0, F0, ARITH, NOPREP);
    STR("rep movsq", "rep movsq", 64, 256, 13, 0, F0, ARITH, NOPREP);
    STR("rep movsb df1", "rep movsb", 100, 300, 13, 0, D1, ARITH, NOPREP);
    STR("rep movsw df1", "rep movsw", 100, 300, 13, 0, D1, ARITH, NOPREP);
    STR("rep movsl df1", "rep movsl", 100, 300, 13, 0, D1 | CF, ARITH, NOPREP);
    STR("rep movsq df1", "rep movsq", 200, 400, 13, 0, D1, ARITH, NOPREP);
    STR("rep movsb rcx0", "rep movsb", 64, 256, 0, 0, FALL, ARITH, NOPREP);
    STR("rep movsq rcx0 df1", "rep movsq", 64, 256, 0, 0, D1, ARITH, NOPREP);
    /* overlap: forward copy with dst = src + 1 replicates the first byte */
    STR("rep movsb overlap fwd", "rep movsb", 64, 65, 40, 0, F0, ARITH, NOPREP);
    STR("rep movsw overlap fwd", "rep movsw", 64, 66, 40, 0, F0, ARITH, NOPREP);
    STR("rep movsq overlap fwd +3", "rep movsq", 64, 67, 20, 0, F0, ARITH, NOPREP);
    STR("rep movsb overlap back df1", "rep movsb", 103, 104, 40, 0, D1, ARITH, NOPREP);
    STR("rep movsb overlap dst<src", "rep movsb", 65, 64, 40, 0, F0, ARITH, NOPREP);
    STR("rep movsl overlap df1 dst>src", "rep movsl", 160, 162, 20, 0, D1, ARITH, NOPREP);
    /* 32-bit address size: ESI/EDI/ECX, upper halves of RCX ignored and cleared */
    STR("addr32 rep movsb", "addr32 rep movsb", 64, 256, 0xffffffff00000010UL, 0, F0, ARITH, NOPREP);
    STR("addr32 movsl", "addr32 movsl", 64, 256, 0xffffffff00000010UL, 0, F0, ARITH, NOPREP);
    STR("addr32 rep movsq df1", "addr32 rep movsq", 200, 400, 0x1234567800000005UL, 0, D1, ARITH, NOPREP);
    STR("addr32 rep movsb ecx0", "addr32 rep movsb", 64, 256, 0x100000000UL, 0, F0, ARITH, NOPREP);
}

static void stos_lods_tests(void)
{
    u64 pat = 0x8899aabbccddeeffUL;
    STR("stosb", "stosb", 0, 256, 3, pat, FALL, ARITH, NOPREP);
    STR("stosw", "stosw", 0, 256, 3, pat, F0, ARITH, NOPREP);
    STR("stosl", "stosl", 0, 256, 3, pat, F0, ARITH, NOPREP);
    STR("stosq", "stosq", 0, 256, 3, pat, F0, ARITH, NOPREP);
    STR("rep stosb", "rep stosb", 0, 256, 33, pat, F0, ARITH, NOPREP);
    STR("rep stosw", "rep stosw", 0, 256, 33, pat, FALL, ARITH, NOPREP);
    STR("rep stosl", "rep stosl", 0, 256, 33, pat, F0, ARITH, NOPREP);
    STR("rep stosq", "rep stosq", 0, 256, 31, pat, F0, ARITH, NOPREP);
    STR("rep stosb df1", "rep stosb", 0, 300, 33, pat, D1, ARITH, NOPREP);
    STR("rep stosq df1", "rep stosq", 0, 400, 31, pat, D1, ARITH, NOPREP);
    STR("rep stosl rcx0", "rep stosl", 0, 256, 0, pat, FALL, ARITH, NOPREP);
    STR("rep stosb unaligned", "rep stosb", 0, 257, 100, pat, F0, ARITH, NOPREP);
    STR("addr32 rep stosw", "addr32 rep stosw", 0, 256, 0xdead000000000009UL, pat, F0, ARITH, NOPREP);
    STR("lodsb", "lodsb", 64, 0, 3, pat, FALL, ARITH, NOPREP);
    STR("lodsw", "lodsw", 64, 0, 3, pat, F0, ARITH, NOPREP);
    STR("lodsl zero-extends", "lodsl", 64, 0, 3, pat, F0, ARITH, NOPREP);
    STR("lodsq", "lodsq", 64, 0, 3, pat, F0, ARITH, NOPREP);
    STR("lodsq df1", "lodsq", 64, 0, 3, pat, D1, ARITH, NOPREP);
    STR("rep lodsb", "rep lodsb", 64, 0, 9, pat, F0, ARITH, NOPREP);
    STR("rep lodsw df1", "rep lodsw", 164, 0, 9, pat, D1, ARITH, NOPREP);
    STR("rep lodsq rcx0", "rep lodsq", 64, 0, 0, pat, F0, ARITH, NOPREP);
    STR("addr32 lodsw", "addr32 lodsw", 64, 0, 3, pat, F0, ARITH, NOPREP);
}

static void cmps_scas_tests(void)
{
    /* regions [64..192) and [256..384) equal except where poked */
    STR("cmpsb equal", "cmpsb", 64, 256, 5, 0, F0, ARITH, mirror(64, 256, 128));
    STR("cmpsb less", "cmpsb", 64, 256, 5, 0, F0, ARITH, (mirror(64, 256, 128), buf[256] = 0xff));
    STR("cmpsw greater", "cmpsw", 64, 256, 5, 0, F0, ARITH, (mirror(64, 256, 128), buf[257] = 0));
    STR("cmpsl", "cmpsl", 64, 256, 5, 0, FALL, ARITH, NOPREP);
    STR("cmpsq", "cmpsq", 64, 256, 5, 0, F0, ARITH, NOPREP);
    STR("cmpsq df1", "cmpsq", 64, 256, 5, 0, D1, ARITH, NOPREP);
    STR("repe cmpsb mismatch at 20", "repe cmpsb", 64, 256, 100, 0, F0, ARITH, (mirror(64, 256, 128), buf[276] ^= 0x80));
    STR("repe cmpsb all equal", "repe cmpsb", 64, 256, 100, 0, F0, ARITH, mirror(64, 256, 128));
    STR("repe cmpsw mismatch", "repe cmpsw", 64, 256, 50, 0, F0, ARITH, (mirror(64, 256, 128), buf[300] = 0));
    STR("repe cmpsl mismatch", "repe cmpsl", 64, 256, 30, 0, F0, ARITH, (mirror(64, 256, 128), buf[301] = 0xff));
    STR("repe cmpsq mismatch", "repe cmpsq", 64, 256, 15, 0, F0, ARITH, (mirror(64, 256, 128), buf[330] = 0x11));
    STR("repe cmpsb df1 mismatch", "repe cmpsb", 150, 342, 80, 0, D1, ARITH, (mirror(64, 256, 128), buf[300] = 0x11));
    STR("repne cmpsb finds equal", "repne cmpsb", 64, 256, 100, 0, F0, ARITH, buf[256 + 37] = buf[64 + 37]);
    STR("repne cmpsb none equal", "repne cmpsb", 64, 256, 10, 0, F0, ARITH, NOPREP);
    STR("repe cmpsb rcx0 keeps flags", "repe cmpsb", 64, 256, 0, 0, FALL, ARITH, NOPREP);
    STR("repne cmpsq rcx0 keeps flags", "repne cmpsq", 64, 256, 0, 0, F0 | CF | SF, ARITH, NOPREP);
    STR("addr32 repe cmpsb", "addr32 repe cmpsb", 64, 256, 0xffff000000000040UL, 0, F0, ARITH, (mirror(64, 256, 128), buf[256 + 50] = 0));
    STR("scasb equal", "scasb", 0, 100, 5, buf[100] = (u8)(100 * 7 + 3), F0, ARITH, NOPREP);
    STR("scasb differ", "scasb", 0, 100, 5, 0x11, F0, ARITH, NOPREP);
    STR("scasw", "scasw", 0, 100, 5, 0x1234, FALL, ARITH, NOPREP);
    STR("scasl", "scasl", 0, 100, 5, 0x80000000UL, F0, ARITH, NOPREP);
    STR("scasq df1", "scasq", 0, 100, 5, 0x7fffffffffffffffUL, D1, ARITH, NOPREP);
    STR("repne scasb strlen", "repne scasb", 0, 256, 200, 0, F0, ARITH, buf[256 + 77] = 0);
    STR("repne scasb not found", "repne scasb", 0, 256, 20, 0x100, F0, ARITH, NOPREP);
    STR("repne scasw found", "repne scasw", 0, 256, 100, 0xbeef, F0, ARITH, (buf[256 + 40] = 0xef, buf[256 + 41] = 0xbe));
    STR("repne scasl df1 found", "repne scasl", 0, 400, 100, 0xcafef00d, D1, ARITH, (buf[300] = 0x0d, buf[301] = 0xf0, buf[302] = 0xfe, buf[303] = 0xca));
    STR("repne scasq found", "repne scasq", 0, 256, 30, 0x0101010101010101UL, F0, ARITH, for (int i = 0; i < 8; i++) buf[256 + 64 + i] = 1);
    STR("repe scasb run", "repe scasb", 0, 256, 50, 0x5a, F0, ARITH, for (int i = 0; i < 9; i++) buf[256 + i] = 0x5a);
    STR("repe scasq rcx0", "repe scasq", 0, 256, 0, 0, FALL, ARITH, NOPREP);
    STR("addr32 repne scasb", "addr32 repne scasb", 0, 256, 0x1234567800000080UL, 0, F0, ARITH, buf[256 + 90] = 0);
}

#ifndef HOST
const struct expect expect_table[] = {
#include "string.expect.h"
    { 0, 0, 0, 0 }
};
#endif

void test_main(void)
{
    movs_tests();
    stos_lods_tests();
    cmps_scas_tests();
}
