//! ACPI table encoders (ACPI 6.x spec, chapter 5): each returns the table's bytes with its
//! checksum filled in.

pub const OEM_ID: &[u8; 6] = b"TWINVM";
pub const OEM_TABLE_ID: &[u8; 8] = b"TWINVMPC";
const CREATOR_ID: &[u8; 4] = b"TWVM";

/// Makes the bytes of `t` sum to zero by setting the byte at `at`.
pub fn fix_checksum(t: &mut [u8], at: usize) {
    t[at] = 0;
    let sum = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    t[at] = sum.wrapping_neg();
}

pub fn sum(t: &[u8]) -> u8 {
    t.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// A 36-byte system description header followed by `body`, checksummed.
pub fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend_from_slice(signature);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

/// RSDP revision 2 (36 bytes): checksum over the first 20 bytes, extended checksum over all.
pub fn rsdp(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut t = Vec::with_capacity(36);
    t.extend_from_slice(b"RSD PTR ");
    t.push(0);
    t.extend_from_slice(OEM_ID);
    t.push(2);
    t.extend_from_slice(&rsdt.to_le_bytes());
    t.extend_from_slice(&36u32.to_le_bytes());
    t.extend_from_slice(&xsdt.to_le_bytes());
    t.push(0);
    t.extend_from_slice(&[0; 3]);
    fix_checksum(&mut t[..20], 8);
    fix_checksum(&mut t, 32);
    t
}

pub fn rsdt(entries: &[u32]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    sdt(b"RSDT", 1, &body)
}

pub fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    sdt(b"XSDT", 1, &body)
}

/// A Generic Address Structure in system I/O space.
fn gas_io(bits: u8, access: u8, addr: u64) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O
    g[1] = bits;
    g[3] = access;
    g[4..].copy_from_slice(&addr.to_le_bytes());
    g
}

/// What the FADT describes of the fixed hardware.
pub struct FadtInfo {
    pub facs: u32,
    pub dsdt: u32,
    pub sci_irq: u16,
    pub pm1a_evt: u16,
    pub pm1_evt_len: u8,
    pub pm1a_cnt: u16,
    pub pm1_cnt_len: u8,
    pub pm_tmr: u16,
    pub reset_port: u16,
    pub reset_value: u8,
    pub century: u8,
}

pub const FADT_LEN: usize = 244;

/// FADT revision 3 layout (244 bytes): 32-bit and X_ pointers, no SMI_CMD (SCI_EN is set
/// from power-on), reset register, legacy devices and an 8042.
pub fn fadt(f: &FadtInfo) -> Vec<u8> {
    let mut b = vec![0u8; FADT_LEN - 36];
    let put =
        |b: &mut Vec<u8>, off: usize, v: &[u8]| b[off - 36..off - 36 + v.len()].copy_from_slice(v);
    put(&mut b, 36, &f.facs.to_le_bytes());
    put(&mut b, 40, &f.dsdt.to_le_bytes());
    put(&mut b, 46, &f.sci_irq.to_le_bytes());
    put(&mut b, 56, &(f.pm1a_evt as u32).to_le_bytes());
    put(&mut b, 64, &(f.pm1a_cnt as u32).to_le_bytes());
    put(&mut b, 76, &(f.pm_tmr as u32).to_le_bytes());
    put(&mut b, 88, &[f.pm1_evt_len, f.pm1_cnt_len, 0, 4]);
    // C2/C3 unsupported: latencies above 100 / 1000 µs.
    put(&mut b, 96, &101u16.to_le_bytes());
    put(&mut b, 98, &1001u16.to_le_bytes());
    put(&mut b, 108, &[f.century]);
    // IAPC_BOOT_ARCH: LEGACY_DEVICES | 8042.
    put(&mut b, 109, &3u16.to_le_bytes());
    // Flags: WBINVD, PROC_C1, SLP_BUTTON (none), RESET_REG_SUP.
    put(
        &mut b,
        112,
        &((1u32 << 0) | (1 << 2) | (1 << 5) | (1 << 10)).to_le_bytes(),
    );
    put(&mut b, 116, &gas_io(8, 1, f.reset_port as u64));
    put(&mut b, 128, &[f.reset_value]);
    put(&mut b, 132, &(f.facs as u64).to_le_bytes());
    put(&mut b, 140, &(f.dsdt as u64).to_le_bytes());
    put(
        &mut b,
        148,
        &gas_io(f.pm1_evt_len * 8, 2, f.pm1a_evt as u64),
    );
    put(
        &mut b,
        172,
        &gas_io(f.pm1_cnt_len * 8, 2, f.pm1a_cnt as u64),
    );
    put(&mut b, 208, &gas_io(32, 3, f.pm_tmr as u64));
    sdt(b"FACP", 3, &b)
}

pub const FACS_LEN: usize = 64;

/// The FACS (no checksum; 64-byte aligned in memory).
pub fn facs() -> Vec<u8> {
    let mut t = vec![0u8; FACS_LEN];
    t[0..4].copy_from_slice(b"FACS");
    t[4..8].copy_from_slice(&(FACS_LEN as u32).to_le_bytes());
    t[32] = 1; // version
    t
}

/// A DSDT whose AML is `Name (\_S5, Package (4) { s5, s5, 0, 0 })`: what an OS needs to
/// power off through PM1a_CNT.SLP_TYP.
pub fn dsdt(s5: u8) -> Vec<u8> {
    let aml = [
        0x08, b'_', b'S', b'5', b'_', // NameOp "_S5_"
        0x12, 0x08, 0x04, // PackageOp, PkgLength 8, 4 elements
        0x0a, s5, 0x0a, s5, // BytePrefix SLP_TYPa, BytePrefix SLP_TYPb
        0x00, 0x00, // Zero, Zero
    ];
    sdt(b"DSDT", 2, &aml)
}

/// What the MADT describes.
pub struct MadtInfo {
    pub lapic_addr: u32,
    pub apic_ids: Vec<u8>,
    pub ioapic_id: u8,
    pub ioapic_addr: u32,
    pub sci_irq: u8,
}

/// MADT: one enabled local APIC per vCPU, the IOAPIC at GSI base 0, ISA IRQ 0 → GSI 2
/// (conforming), the SCI as level-triggered active high, and LINT1 as NMI on every CPU.
pub fn madt(m: &MadtInfo) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&m.lapic_addr.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT: there are 8259s
    for (uid, id) in m.apic_ids.iter().enumerate() {
        b.extend_from_slice(&[0, 8, uid as u8, *id]);
        b.extend_from_slice(&1u32.to_le_bytes());
    }
    b.extend_from_slice(&[1, 12, m.ioapic_id, 0]);
    b.extend_from_slice(&m.ioapic_addr.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    let iso = |b: &mut Vec<u8>, irq: u8, gsi: u32, flags: u16| {
        b.extend_from_slice(&[2, 10, 0, irq]);
        b.extend_from_slice(&gsi.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
    };
    iso(&mut b, 0, 2, 0);
    // Polarity 01 (active high), trigger mode 11 (level).
    iso(&mut b, m.sci_irq, m.sci_irq as u32, 0x000d);
    b.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    sdt(b"APIC", 3, &b)
}
