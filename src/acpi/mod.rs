//! ACPI tables built at boot, for kernels that look for them as they would on a PC: an RSDP
//! (revision 2) in the BIOS area leading to an RSDT and an XSDT, a FADT (PM1a event/control
//! blocks and PM timer of `devices::acpi_pm`, SCI IRQ 9, reset register 0xCF9 ← 0x06) with
//! its FACS and a DSDT holding `\_S5`, and a MADT (every vCPU's LAPIC, the IOAPIC, the
//! IRQ0→GSI2 and SCI overrides).
//!
//! Everything lies in 0xE0000–0xFFFFF, which the multiboot memory map reports as reserved.

pub mod tables;

use twinvm_devices::acpi_pm::{
    ACPI_PM_BASE, PM1_CNT_LEN, PM1_CNT_OFFSET, PM1_EVT_LEN, PM1_EVT_OFFSET, PM_TMR_OFFSET,
    SLP_TYP_S5,
};
use twinvm_devices::ioapic::IOAPIC_BASE;
use twinvm_devices::lapic::APIC_DEFAULT_BASE;
use twinvm_devices::reset::RESET_CONTROL_PORT;
use twinvm_devices::GuestMemory;

use tables::{FadtInfo, MadtInfo};

/// Where the tables go (FACS first: it must be 64-byte aligned).
pub const TABLES_BASE: u64 = 0xe_0000;
/// Where the RSDP goes: inside 0xF0000–0xFFFFF, the range every OS (and kvm-unit-tests,
/// which looks only there) scans on 16-byte boundaries.
pub const RSDP_ADDR: u64 = 0xf_0000;
pub const SCI_IRQ: u8 = 9;
/// The reset register value: CPU reset (bit 2) of a full system reset (bit 1).
pub const RESET_VALUE: u8 = 0x06;
/// CMOS index of the century byte.
const RTC_CENTURY: u8 = 0x32;

/// The machine as the tables describe it.
pub struct AcpiConfig {
    pub apic_ids: Vec<u8>,
    pub ioapic_id: u8,
}

/// The tables and where each goes, RSDP last.
pub fn build(cfg: &AcpiConfig) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = TABLES_BASE;
    let mut place = |t: Vec<u8>, out: &mut Vec<(u64, Vec<u8>)>| {
        let a = at;
        at = (at + t.len() as u64).next_multiple_of(16);
        out.push((a, t));
        a
    };
    let facs = place(tables::facs(), &mut out);
    let dsdt = place(tables::dsdt(SLP_TYP_S5 as u8), &mut out);
    let fadt = place(
        tables::fadt(&FadtInfo {
            facs: facs as u32,
            dsdt: dsdt as u32,
            sci_irq: SCI_IRQ as u16,
            pm1a_evt: (ACPI_PM_BASE + PM1_EVT_OFFSET) as u16,
            pm1_evt_len: PM1_EVT_LEN,
            pm1a_cnt: (ACPI_PM_BASE + PM1_CNT_OFFSET) as u16,
            pm1_cnt_len: PM1_CNT_LEN,
            pm_tmr: (ACPI_PM_BASE + PM_TMR_OFFSET) as u16,
            reset_port: RESET_CONTROL_PORT as u16,
            reset_value: RESET_VALUE,
            century: RTC_CENTURY,
        }),
        &mut out,
    );
    let madt = place(
        tables::madt(&MadtInfo {
            lapic_addr: APIC_DEFAULT_BASE as u32,
            apic_ids: cfg.apic_ids.clone(),
            ioapic_id: cfg.ioapic_id,
            ioapic_addr: IOAPIC_BASE as u32,
            sci_irq: SCI_IRQ,
        }),
        &mut out,
    );
    let rsdt = place(tables::rsdt(&[fadt as u32, madt as u32]), &mut out);
    let xsdt = place(tables::xsdt(&[fadt, madt]), &mut out);
    out.push((RSDP_ADDR, tables::rsdp(rsdt as u32, xsdt)));
    out
}

/// Writes the tables into guest memory; returns the RSDP's address, or None when the BIOS
/// area is not RAM (a firmware image is mapped there and brings its own tables).
pub fn install(mem: &GuestMemory, cfg: &AcpiConfig) -> Option<u64> {
    if !mem.is_ram(TABLES_BASE, 0x2_0000) {
        return None;
    }
    for (addr, t) in build(cfg) {
        // In RAM, checked above: cannot fail.
        mem.write(addr, &t).ok()?;
    }
    Some(RSDP_ADDR)
}

#[cfg(test)]
mod tests {
    use super::tables::sum;
    use super::*;

    fn u32_at(t: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(t[o..o + 4].try_into().unwrap())
    }

    fn u64_at(t: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(t[o..o + 8].try_into().unwrap())
    }

    fn image() -> Vec<u8> {
        let mut img = vec![0u8; 0x2_0000];
        for (a, t) in build(&AcpiConfig {
            apic_ids: vec![0, 1, 2],
            ioapic_id: 0,
        }) {
            let o = (a - TABLES_BASE) as usize;
            img[o..o + t.len()].copy_from_slice(&t);
        }
        img
    }

    fn table(img: &[u8], addr: u64) -> &[u8] {
        let o = (addr - TABLES_BASE) as usize;
        let len = u32_at(img, o + 4) as usize;
        &img[o..o + len]
    }

    #[test]
    fn rsdp_checksums_and_pointers() {
        let img = image();
        let r = &img[(RSDP_ADDR - TABLES_BASE) as usize..][..36];
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(RSDP_ADDR % 16, 0);
        assert_eq!(sum(&r[..20]), 0, "checksum");
        assert_eq!(sum(r), 0, "extended checksum");
        assert_eq!(r[15], 2, "revision");
        assert_eq!(u32_at(r, 20), 36);
        let rsdt = table(&img, u32_at(r, 16) as u64);
        let xsdt = table(&img, u64_at(r, 24));
        assert_eq!(&rsdt[..4], b"RSDT");
        assert_eq!(&xsdt[..4], b"XSDT");
        assert_eq!(sum(rsdt), 0);
        assert_eq!(sum(xsdt), 0);
        assert_eq!(rsdt.len(), 36 + 8);
        assert_eq!(xsdt.len(), 36 + 16);
        for i in 0..2 {
            assert_eq!(u32_at(rsdt, 36 + 4 * i) as u64, u64_at(xsdt, 36 + 8 * i));
        }
    }

    fn find<'a>(img: &'a [u8], sig: &[u8; 4]) -> &'a [u8] {
        let r = &img[(RSDP_ADDR - TABLES_BASE) as usize..];
        let xsdt = table(img, u64_at(r, 24));
        (0..(xsdt.len() - 36) / 8)
            .map(|i| table(img, u64_at(xsdt, 36 + 8 * i)))
            .find(|t| &t[..4] == sig)
            .expect("table")
    }

    #[test]
    fn fadt_fields() {
        let img = image();
        let f = find(&img, b"FACP");
        assert_eq!(f.len(), tables::FADT_LEN);
        assert_eq!(sum(f), 0);
        assert_eq!(u32::from(u16::from_le_bytes([f[46], f[47]])), 9, "SCI");
        assert_eq!(u32_at(f, 48), 0, "no SMI_CMD");
        assert_eq!(u32_at(f, 56), 0x600, "PM1a_EVT_BLK");
        assert_eq!(u32_at(f, 64), 0x604, "PM1a_CNT_BLK");
        assert_eq!(u32_at(f, 76), 0x608, "PM_TMR_BLK");
        assert_eq!(&f[88..92], &[4, 2, 0, 4]);
        assert_ne!(u32_at(f, 112) & (1 << 10), 0, "RESET_REG_SUP");
        assert_eq!(f[116], 1, "reset register in I/O space");
        assert_eq!(u64_at(f, 120), 0xcf9);
        assert_eq!(f[128], 0x06);
        let facs = u32_at(f, 36) as u64;
        assert_eq!(facs % 64, 0);
        assert_eq!(u64_at(f, 132), facs);
        let o = (facs - TABLES_BASE) as usize;
        assert_eq!(&img[o..o + 4], b"FACS");
        assert_eq!(u32_at(&img, o + 4), 64);
        let dsdt = table(&img, u32_at(f, 40) as u64);
        assert_eq!(u64_at(f, 140), u32_at(f, 40) as u64);
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(sum(dsdt), 0);
        // \_S5 gives SLP_TYP 5.
        let aml = &dsdt[36..];
        assert_eq!(&aml[..5], &[0x08, b'_', b'S', b'5', b'_']);
        assert_eq!(&aml[8..12], &[0x0a, 5, 0x0a, 5]);
    }

    #[test]
    fn madt_entries() {
        let img = image();
        let m = find(&img, b"APIC");
        assert_eq!(sum(m), 0);
        assert_eq!(u32_at(m, 36), 0xfee0_0000);
        let mut lapics = Vec::new();
        let (mut ioapic, mut isos, mut nmi) = (None, Vec::new(), false);
        let mut o = 44;
        while o < m.len() {
            let (kind, len) = (m[o], m[o + 1] as usize);
            assert!(len >= 2 && o + len <= m.len());
            match kind {
                0 => {
                    assert_eq!(u32_at(m, o + 4), 1, "enabled");
                    lapics.push(m[o + 3]);
                }
                1 => ioapic = Some((m[o + 2], u32_at(m, o + 4), u32_at(m, o + 8))),
                2 => isos.push((
                    m[o + 3],
                    u32_at(m, o + 4),
                    u16::from_le_bytes([m[o + 8], m[o + 9]]),
                )),
                4 => nmi = m[o + 5] == 1,
                _ => panic!("unexpected MADT entry {kind}"),
            }
            o += len;
        }
        assert_eq!(o, m.len());
        assert_eq!(lapics, [0, 1, 2]);
        assert_eq!(ioapic, Some((0, 0xfec0_0000, 0)));
        assert_eq!(isos, [(0, 2, 0), (9, 9, 0x000d)]);
        assert!(nmi);
    }

    #[test]
    fn tables_fit_the_bios_area() {
        for (a, t) in build(&AcpiConfig {
            apic_ids: (0..255).collect(),
            ioapic_id: 0,
        }) {
            assert!(a >= TABLES_BASE && a + t.len() as u64 <= 0x10_0000);
            assert!(a + (t.len() as u64) <= RSDP_ADDR || a == RSDP_ADDR);
        }
    }
}
