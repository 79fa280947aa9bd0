/*
 * platform: what test kernels written for QEMU's `pc` machine find there —
 * fw_cfg (signature, ID, RAM size, CPU count, file directory, etc/e820),
 * pc-testdev (scratch ports, MMIO scratch), PCI configuration mechanism #1
 * (host bridge, pci-testdev with its BARs assigned and its test protocol),
 * and the ACPI tables (RSDP in the BIOS area, RSDT/XSDT, FADT, FACS, DSDT,
 * MADT) with their checksums, plus the PM timer they describe.
 *
 * Under QEMU: -device pc-testdev -device pci-testdev (QEMU's RSDP is
 * revision 0 without an XSDT: the RSDT is walked then).
 */
#include "hw.h"

extern u32 mb_info;

/* ---- fw_cfg ---- */
static void fw_select(u16 key) { outw(0x510, key); }
static void fw_read(void *buf, u32 n)
{
    for (u32 i = 0; i < n; i++)
        ((u8 *)buf)[i] = inb(0x511);
}
static u32 be32(const u8 *p) { return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3]; }
static u16 be16(const u8 *p) { return (u16)((p[0] << 8) | p[1]); }

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static void test_fw_cfg(void)
{
    char sig[5] = {0};
    fw_select(0x00);
    fw_read(sig, 4);
    check("fwcfg-signature", streq(sig, "QEMU"), 1);
    u32 id;
    fw_select(0x01);
    fw_read(&id, 4);
    check("fwcfg-id-traditional", id & 1, 1);
    u64 ram;
    fw_select(0x03);
    fw_read(&ram, 8);
    /* Multiboot mem_upper: KiB above 1 MiB (below the PCI hole). */
    u32 mem_upper = *(u32 *)((u64)mb_info + 8);
    u64 low = ((u64)mem_upper << 10) + (1 << 20);
    check("fwcfg-ram-size-matches-multiboot", ram >= low && ram - low < (1UL << 20) * 1024, 1);
    u16 cpus;
    fw_select(0x05);
    fw_read(&cpus, 2);
    check("fwcfg-nb-cpus", cpus, 1);

    u8 cnt[4];
    fw_select(0x19);
    fw_read(cnt, 4);
    u32 n = be32(cnt);
    int found = 0;
    u32 size = 0;
    u16 key = 0;
    for (u32 i = 0; i < n && i < 64; i++) {
        u8 e[64];
        fw_read(e, 64);
        if (streq((char *)e + 8, "etc/e820")) {
            found = 1;
            size = be32(e);
            key = be16(e + 4);
        }
    }
    check("fwcfg-file-dir-has-e820", found, 1);
    if (found) {
        check("fwcfg-e820-size", size % 20 == 0 && size >= 20, 1);
        /* Some entry says RAM at 0 (QEMU may list a reserved range first). */
        int low_ram = 0;
        fw_select(key);
        for (u32 i = 0; i < size / 20 && i < 64; i++) {
            u64 addr, len;
            u32 type;
            fw_read(&addr, 8);
            fw_read(&len, 8);
            fw_read(&type, 4);
            low_ram |= addr == 0 && type == 1 && len >= 0x9f000;
        }
        check("fwcfg-e820-ram-at-0", low_ram, 1);
    }
}

/* ---- pc-testdev ---- */
static void test_pc_testdev(void)
{
    outl(0xe0, 0x12345678);
    check("testdev-scratch-dword", inl(0xe0), 0x12345678);
    check("testdev-scratch-byte-view", inb(0xe8 + 1), 0x56);
    outb(0xe8 + 2, 0xab);
    check("testdev-scratch-byte-write", inl(0xe0), 0x12ab5678);
    outw(0xe2, 0xbeef);
    check("testdev-scratch-word-at-offset", inl(0xe8), 0xbeef5678);
    outl(0xe4, 0x200000); /* flush page: accepted, no visible effect */
    check("testdev-flush-page-harmless", inl(0xe0), 0xbeef5678);
    mmio_w64(0xff000000, 0x0123456789abcdefUL);
    mmio_w32(0xff00fffc, 0xfeedface);
    check("testdev-iomem-qword", mmio_r64(0xff000000), 0x0123456789abcdefUL);
    check("testdev-iomem-byte", mmio_r8(0xff000001), 0xcd);
    check("testdev-iomem-top", mmio_r32(0xff00fffc), 0xfeedface);
}

/* ---- PCI ---- */
static u32 pci_r32(int dev, int fn, int reg)
{
    outl(0xcf8, 0x80000000u | (dev << 11) | (fn << 8) | (reg & 0xfc));
    return inl(0xcfc);
}
static void pci_w32(int dev, int fn, int reg, u32 v)
{
    outl(0xcf8, 0x80000000u | (dev << 11) | (fn << 8) | (reg & 0xfc));
    outl(0xcfc, v);
}

static void testdev_protocol(const char *name, int io, u64 base)
{
    int ok = 1;
    for (int t = 0; t < 3; t++) {
        u8 hdr[16];
        if (io) {
            outb(base, t);
            for (int i = 0; i < 16; i++)
                hdr[i] = inb(base + i);
        } else {
            mmio_w8(base, t);
            for (int i = 0; i < 16; i++)
                hdr[i] = mmio_r8(base + i);
        }
        u32 off = *(u32 *)(hdr + 4);
        u8 width = hdr[1], data = hdr[8];
        if (width != 1) {
            ok = 0;
            break;
        }
        for (int k = 0; k < 3; k++) {
            if (io)
                outb(base + off, data);
            else
                mmio_w8(base + off, data);
        }
        u32 count = 0;
        for (int i = 0; i < 4; i++)
            count |= (u32)(io ? inb(base + 12 + i) : mmio_r8(base + 12 + i)) << (8 * i);
        /* QEMU hands writes matching an eventfd test to the eventfd (count stays 0),
           as kvm-unit-tests allows; without eventfds every write counts. */
        if (count != 3 && !(count == 0 && t > 0))
            ok = 0;
    }
    check(name, ok, 1);
}

static void test_pci(void)
{
    outl(0xcf8, 0x80000000u);
    check("pci-config-address-readback", inl(0xcf8), 0x80000000u);
    check("pci-host-bridge-ids", pci_r32(0, 0, 0), 0x12378086);
    check("pci-host-bridge-class", pci_r32(0, 0, 8) >> 16, 0x0600);
    /* Byte and word accesses inside the data window. */
    outl(0xcf8, 0x80000000u);
    check("pci-data-word-at-2", inw(0xcfe), 0x1237);
    check("pci-data-byte-at-1", inb(0xcfd), 0x80);
    int dev = -1;
    for (int d = 0; d < 32; d++)
        if (pci_r32(d, 0, 0) == 0x00051b36)
            dev = d;
    check("pci-scan-finds-pci-testdev", dev >= 0, 1);
    check("pci-absent-device-all-ones", pci_r32(31, 7, 0), 0xffffffff);
    if (dev < 0)
        return;
    u32 cmd = pci_r32(dev, 0, 4);
    u32 bar0 = pci_r32(dev, 0, 0x10), bar1 = pci_r32(dev, 0, 0x14);
    if ((cmd & 3) != 3 || (bar0 & ~0xfu) == 0 || (bar1 & ~3u) == 0) {
        /* Unassigned or not decoding (twinvm assigns them; under QEMU SeaBIOS
           does): assign them here. */
        pci_w32(dev, 0, 0x10, 0xfeb00000);
        pci_w32(dev, 0, 0x14, 0xc000);
        pci_w32(dev, 0, 4, cmd | 3);
        bar0 = pci_r32(dev, 0, 0x10);
        bar1 = pci_r32(dev, 0, 0x14);
    }
    check("pci-testdev-bar0-memory", bar0 & 1, 0);
    check("pci-testdev-bar1-io", bar1 & 1, 1);
    /* BAR sizing: write all ones, read the size mask, restore. */
    pci_w32(dev, 0, 0x10, 0xffffffff);
    u32 mask = pci_r32(dev, 0, 0x10);
    pci_w32(dev, 0, 0x10, bar0);
    check("pci-testdev-bar0-size-4k", ~(mask & ~0xfu) + 1, 0x1000);
    check("pci-testdev-bar0-restored", pci_r32(dev, 0, 0x10), bar0);
    testdev_protocol("pci-testdev-mmio-tests", 0, bar0 & ~0xfu);
    testdev_protocol("pci-testdev-pio-tests", 1, bar1 & ~3u);
}

/* ---- ACPI ---- */
static u8 sum(const u8 *p, u32 n)
{
    u8 s = 0;
    while (n--)
        s += *p++;
    return s;
}

static int sig_is(const u8 *p, const char *s)
{
    return p[0] == s[0] && p[1] == s[1] && p[2] == s[2] && p[3] == s[3];
}

static void test_acpi(void)
{
    const u8 *rsdp = 0;
    for (u64 a = 0xe0000; a < 0x100000 && !rsdp; a += 16) {
        const u8 *p = (const u8 *)a;
        if (sig_is(p, "RSD ") && sig_is(p + 4, "PTR ") && sum(p, 20) == 0)
            rsdp = p;
    }
    check("acpi-rsdp-found", rsdp != 0, 1);
    if (!rsdp)
        return;
    int rev = rsdp[15];
    if (rev >= 2)
        check("acpi-rsdp-extended-checksum", sum(rsdp, *(u32 *)(rsdp + 20)), 0);
    const u8 *root;
    int wide = rev >= 2 && *(u64 *)(rsdp + 24) != 0;
    root = wide ? (const u8 *)*(u64 *)(rsdp + 24) : (const u8 *)(u64) * (u32 *)(rsdp + 16);
    check("acpi-root-signature", sig_is(root, wide ? "XSDT" : "RSDT"), 1);
    u32 rlen = *(u32 *)(root + 4);
    check("acpi-root-checksum", sum(root, rlen), 0);
    if (rev >= 2) {
        const u8 *rsdt = (const u8 *)(u64) * (u32 *)(rsdp + 16);
        check("acpi-rsdt-checksum", sig_is(rsdt, "RSDT") && sum(rsdt, *(u32 *)(rsdt + 4)) == 0, 1);
    }
    const u8 *fadt = 0, *madt = 0;
    int esz = wide ? 8 : 4, bad = 0;
    for (u32 o = 36; o + esz <= rlen; o += esz) {
        const u8 *t = wide ? (const u8 *)*(u64 *)(root + o) : (const u8 *)(u64) * (u32 *)(root + o);
        if (sum(t, *(u32 *)(t + 4)) != 0)
            bad++;
        if (sig_is(t, "FACP"))
            fadt = t;
        if (sig_is(t, "APIC"))
            madt = t;
    }
    check("acpi-all-tables-checksummed", bad, 0);
    check("acpi-fadt-found", fadt != 0, 1);
    check("acpi-madt-found", madt != 0, 1);
    if (fadt) {
        check("acpi-fadt-pm1a-evt", *(u32 *)(fadt + 56), 0x600);
        check("acpi-fadt-pm1a-cnt", *(u32 *)(fadt + 64), 0x604);
        check("acpi-fadt-pm-tmr", *(u32 *)(fadt + 76), 0x608);
        check("acpi-fadt-sci", *(u16 *)(fadt + 46), 9);
        const u8 *facs = (const u8 *)(u64) * (u32 *)(fadt + 36);
        check("acpi-facs", sig_is(facs, "FACS") && ((u64)facs & 63) == 0, 1);
        const u8 *dsdt = (const u8 *)(u64) * (u32 *)(fadt + 40);
        check("acpi-dsdt", sig_is(dsdt, "DSDT") && sum(dsdt, *(u32 *)(dsdt + 4)) == 0, 1);
        /* The PM timer it points at runs (3.58 MHz, 24 bits). */
        u32 t0 = inl(*(u32 *)(fadt + 76)) & 0xffffff;
        u64 end = rdtsc() + 1000000;
        while (rdtsc() < end)
            ;
        u32 t1 = inl(*(u32 *)(fadt + 76)) & 0xffffff;
        check("acpi-pm-timer-runs", t1 != t0, 1);
    }
    if (madt) {
        check("acpi-madt-lapic-address", *(u32 *)(madt + 36), 0xfee00000);
        int lapics = 0, bsp = 0, ioapic = 0, iso0 = 0;
        u32 len = *(u32 *)(madt + 4);
        for (u32 o = 44; o + 2 <= len && madt[o + 1] >= 2; o += madt[o + 1]) {
            const u8 *e = madt + o;
            if (e[0] == 0 && (*(u32 *)(e + 4) & 1)) {
                lapics++;
                bsp |= e[3] == (cpuid_ebx(1) >> 24);
            }
            if (e[0] == 1)
                ioapic |= *(u32 *)(e + 4) == 0xfec00000 && *(u32 *)(e + 8) == 0;
            if (e[0] == 2 && e[3] == 0)
                iso0 = *(u32 *)(e + 4) == 2;
        }
        check("acpi-madt-one-lapic", lapics, 1);
        check("acpi-madt-bsp-listed", bsp, 1);
        check("acpi-madt-ioapic", ioapic, 1);
        check("acpi-madt-irq0-to-gsi2", iso0, 1);
    }
}

void test_main(void)
{
    test_fw_cfg();
    test_pc_testdev();
    test_pci();
    test_acpi();
}
