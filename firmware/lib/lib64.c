/*
 * 64-bit guest runtime: COM1 output, PASS/FAIL reporting, isa-debug-exit,
 * expected-value table lookup. Freestanding; called from asm (SysV ABI) and C.
 */
#include "guest.h"

#define COM1 0x3f8

int failures;
int checks;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

void putc_ser(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (u8)c);
}

void puts_ser(const char *s)
{
    while (*s)
        putc_ser(*s++);
}

void puthex(u64 v)
{
    static const char digits[] = "0123456789abcdef";
    char buf[19];
    int i = 18;
    buf[i] = 0;
    do {
        buf[--i] = digits[v & 15];
        v >>= 4;
    } while (v);
    buf[--i] = 'x';
    buf[--i] = '0';
    puts_ser(&buf[i]);
}

void putdec(u64 v)
{
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    puts_ser(&buf[i]);
}

void pass(const char *name)
{
    checks++;
    puts_ser("PASS ");
    puts_ser(name);
    putc_ser('\n');
}

void pass_skip(const char *name, const char *why)
{
    checks++;
    puts_ser("PASS ");
    puts_ser(name);
    puts_ser(" (skipped: ");
    puts_ser(why);
    puts_ser(")\n");
}

/* FAIL name: <what> expected E got G */
void fail_begin(const char *name)
{
    checks++;
    failures++;
    puts_ser("FAIL ");
    puts_ser(name);
    puts_ser(":");
}

void fail_val(const char *what, u64 exp, u64 got)
{
    puts_ser(" ");
    puts_ser(what);
    puts_ser(" expected ");
    puthex(exp);
    puts_ser(" got ");
    puthex(got);
}

void fail_end(void) { putc_ser('\n'); }

void fail_msg(const char *name, const char *msg)
{
    fail_begin(name);
    puts_ser(" ");
    puts_ser(msg);
    fail_end();
}

void check(const char *name, u64 got, u64 exp)
{
    if (got == exp) {
        pass(name);
    } else {
        fail_begin(name);
        fail_val("value", exp, got);
        fail_end();
    }
}

/* Result + secondary result + masked flags, against literal expectations. */
void check3(const char *name, u64 r, u64 r2, u64 f, u64 er, u64 er2, u64 ef)
{
    if (r == er && r2 == er2 && f == ef) {
        pass(name);
        return;
    }
    fail_begin(name);
    if (r != er)
        fail_val("result", er, r);
    if (r2 != er2)
        fail_val("result2", er2, r2);
    if (f != ef)
        fail_val("flags", ef, f);
    fail_end();
}

/* Against the table generated from native execution (NAME.expect.h). */
void check_tab(const char *name, u64 r, u64 r2, u64 f, u64 mask)
{
    for (const struct expect *e = expect_table; e->name; e++) {
        const char *a = e->name, *b = name;
        while (*a && *a == *b)
            a++, b++;
        if (*a == 0 && *b == 0) {
            check3(name, r, r2, f & mask, e->r, e->r2, e->f);
            return;
        }
    }
    fail_msg(name, "no expected value in table");
}

void debug_exit(u32 code)
{
    __asm__ volatile("outl %0, %1" :: "a"(code), "Nd"((u16)0xf4));
    for (;;)
        __asm__ volatile("cli; hlt");
}

void finish(void)
{
    puts_ser(failures ? "# some checks FAILED: " : "# all checks passed: ");
    putdec((u64)checks);
    puts_ser(" checks, ");
    putdec((u64)failures);
    puts_ser(" failures\n");
    debug_exit(failures ? 1 : 0);
}

void report_unexpected_exception(u32 vec, u64 err, u64 rip)
{
    failures++;
    puts_ser("FAIL unexpected-exception: vector ");
    puthex(vec);
    puts_ser(" error ");
    puthex(err);
    puts_ser(" rip ");
    puthex(rip);
    putc_ser('\n');
    debug_exit(1);
}

/* Weak empty table for guests that use only literal expectations. */
__attribute__((weak)) const struct expect expect_table[] = { { 0, 0, 0, 0 } };

/* Benchmarks: print "RESULT <hex>" and exit through isa-debug-exit with 0. */
void bench_result(u64 v)
{
    puts_ser("RESULT ");
    puthex(v);
    putc_ser('\n');
    debug_exit(0);
}
