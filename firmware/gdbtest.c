/*
 * gdbtest: a guest for the gdb stub's tests (tests/gdb.rs), also a normal
 * self-checking guest when run on its own.
 *
 * What the debugger tests look at:
 *   gdb_counter      a variable gdb_touch() reads and writes and gdb_rmw()
 *                    increments in one read-modify-write instruction
 *                    (write, read and access watchpoints);
 *   gdb_report(v)    prints "value V": a test changes $rdi at its entry;
 *   gdb_message      printed as "message M": a test patches the memory;
 *   gdb_spin_enable  0 by default; a test sets it to spin in gdb_spin()
 *                    until it sets gdb_spin_stop (Ctrl-C tests);
 *   FS base          set to FS_BASE_VALUE with WRMSR before anything else.
 */
#include "guest.h"

#define FS_BASE_VALUE 0x12345000ull

static inline void wrmsr(u32 msr, u64 v)
{
    asm volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

static inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}

volatile u64 gdb_counter;
volatile u32 gdb_spin_enable;
volatile u32 gdb_spin_stop;
volatile u64 gdb_spins;
char gdb_message[32] = "original";

__attribute__((noinline)) void gdb_report(u64 v)
{
    puts_ser("value ");
    putdec(v);
    puts_ser("\n");
}

/* Reads the counter, then writes it back plus `add`. */
__attribute__((noinline)) u64 gdb_touch(u64 add)
{
    u64 v = gdb_counter;
    gdb_counter = v + add;
    return v;
}

/* One read-modify-write instruction on the counter. */
__attribute__((noinline)) void gdb_rmw(void)
{
    asm volatile("addq $1, %0" : "+m"(gdb_counter));
}

__attribute__((noinline)) void gdb_spin(void)
{
    if (!gdb_spin_enable)
        return;
    puts_ser("spinning\n");
    while (!gdb_spin_stop)
        gdb_spins++;
    puts_ser("spun\n");
}

void test_main(void)
{
    wrmsr(0xc0000100, FS_BASE_VALUE);
    gdb_report(7);
    puts_ser("message ");
    puts_ser(gdb_message);
    puts_ser("\n");
    check("touch returns the old value", gdb_touch(5), 0);
    check("touch reads what it wrote", gdb_touch(3), 5);
    gdb_rmw();
    check("counter after rmw", gdb_counter, 9);
    gdb_spin();
    check("fs base", rdmsr(0xc0000100), FS_BASE_VALUE);
}
