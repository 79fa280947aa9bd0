//! ACPI fixed hardware: the PM1a event and control blocks and the PM timer, in one I/O
//! range at [`ACPI_PM_BASE`] (register with length [`ACPI_PM_LEN`]).
//!
//! | offset | register | width |
//! |---|---|---|
//! | 0 | PM1a_STS (write 1 to clear) | 2 |
//! | 2 | PM1a_EN | 2 |
//! | 4 | PM1a_CNT | 2 |
//! | 8 | PM_TMR (24-bit, read-only) | 4 |
//!
//! Any access width works byte by byte against this layout (a byte write to the high half
//! of PM1a_CNT can set SLP_EN); offsets 6–7 read as 0 and writes there are ignored.
//! No SCI is wired yet: status bits are visible but raise nothing.

use std::sync::Arc;

use crate::bus::Device;
use crate::clock::Clock;
use crate::control::{StopRequest, VmControl};

/// For the FADT: PM1a_EVT_BLK = base, PM1a_CNT_BLK = base + 4, PM_TMR_BLK = base + 8.
pub const ACPI_PM_BASE: u64 = 0x600;
pub const ACPI_PM_LEN: u64 = 12;
pub const PM1_EVT_OFFSET: u64 = 0;
pub const PM1_EVT_LEN: u8 = 4;
pub const PM1_CNT_OFFSET: u64 = 4;
pub const PM1_CNT_LEN: u8 = 2;
pub const PM_TMR_OFFSET: u64 = 8;
pub const PM_TMR_LEN: u8 = 4;
/// The SLP_TYP value the DSDT's `\_S5` package must give for soft-off.
pub const SLP_TYP_S5: u16 = 5;
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// PM1_STS bit 0: the timer's bit 23 changed.
pub const PM1_STS_TMR: u16 = 1 << 0;
/// PM1_CNT bit 0: events raise SCIs rather than SMIs. Set from the start: there is no
/// SMI_CMD to switch modes with, so the FADT must give SMI_CMD = 0.
pub const PM1_CNT_SCI_EN: u16 = 1 << 0;
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 7 << SLP_TYP_SHIFT;
pub const PM1_CNT_SLP_EN: u16 = 1 << 13;
/// GBL_RLS and SLP_EN are write-only.
const CNT_WRITE_ONLY: u16 = (1 << 2) | PM1_CNT_SLP_EN;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AcpiPmState {
    pub pm1_sts: u16,
    pub pm1_en: u16,
    pub pm1_cnt: u16,
    /// The timer's bit-23 epoch when TMR_STS was last cleared.
    pub tmr_epoch: u64,
}

pub struct AcpiPm {
    s: AcpiPmState,
    clock: Arc<dyn Clock>,
    control: Arc<VmControl>,
}

impl AcpiPm {
    pub fn new(clock: Arc<dyn Clock>, control: Arc<VmControl>) -> Self {
        let s = AcpiPmState {
            pm1_cnt: PM1_CNT_SCI_EN,
            ..Default::default()
        };
        let mut pm = AcpiPm { s, clock, control };
        pm.s.tmr_epoch = pm.ticks() >> 23;
        pm
    }

    pub fn save_state(&self) -> AcpiPmState {
        self.s.clone()
    }

    pub fn restore_state(&mut self, s: &AcpiPmState) {
        self.s = s.clone();
    }

    fn ticks(&self) -> u64 {
        (self.clock.now_ns() as u128 * PM_TIMER_HZ as u128 / 1_000_000_000) as u64
    }

    /// The 24-bit PM timer.
    pub fn timer(&self) -> u32 {
        (self.ticks() & 0xff_ffff) as u32
    }

    fn sts(&self) -> u16 {
        let tmr = if self.ticks() >> 23 != self.s.tmr_epoch {
            PM1_STS_TMR
        } else {
            0
        };
        self.s.pm1_sts | tmr
    }

    /// The register containing `offset`, its value and the offset of its first byte.
    fn register(&self, offset: u64) -> Option<(u64, u32)> {
        match offset {
            0..=1 => Some((0, self.sts() as u32)),
            2..=3 => Some((2, self.s.pm1_en as u32)),
            4..=5 => Some((4, (self.s.pm1_cnt & !CNT_WRITE_ONLY) as u32)),
            6..=7 => Some((6, 0)),
            8..=11 => Some((8, self.timer())),
            _ => None,
        }
    }

    fn write16(&mut self, reg: u64, value: u16, mask: u16) {
        match reg {
            0 => {
                let clear = value & mask;
                if clear & PM1_STS_TMR != 0 {
                    self.s.tmr_epoch = self.ticks() >> 23;
                }
                self.s.pm1_sts &= !clear;
            }
            2 => self.s.pm1_en = (self.s.pm1_en & !mask) | (value & mask),
            4 => {
                let v = (self.s.pm1_cnt & !mask) | (value & mask);
                self.s.pm1_cnt = v & !CNT_WRITE_ONLY;
                if value & mask & PM1_CNT_SLP_EN != 0 {
                    self.sleep((v & SLP_TYP_MASK) >> SLP_TYP_SHIFT);
                }
            }
            _ => {}
        }
    }

    fn sleep(&mut self, typ: u16) {
        if typ == SLP_TYP_S5 {
            self.control.request(StopRequest::PowerOff);
        } else {
            log::warn!("acpi: guest asked for sleep type {typ}, which is not supported; ignored");
        }
    }
}

impl Device for AcpiPm {
    fn name(&self) -> &'static str {
        "acpi-pm"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset.wrapping_add(i as u64);
            *b = match self.register(at) {
                Some((start, v)) => (v >> (8 * (at - start))) as u8,
                None => 0xff,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Gather the bytes per 16-bit register so that one access acts once per register.
        for reg in [0u64, 2, 4] {
            let (mut value, mut mask) = (0u16, 0u16);
            for (i, &b) in data.iter().enumerate() {
                let at = offset.wrapping_add(i as u64);
                if at == reg || at == reg + 1 {
                    let shift = 8 * (at - reg);
                    value |= (b as u16) << shift;
                    mask |= 0xff << shift;
                }
            }
            if mask != 0 {
                self.write16(reg, value, mask);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn pm() -> (AcpiPm, Arc<ManualClock>, Arc<VmControl>) {
        let clock = Arc::new(ManualClock::default());
        let control = Arc::new(VmControl::new());
        (AcpiPm::new(clock.clone(), control.clone()), clock, control)
    }

    fn read16(p: &mut AcpiPm, off: u64) -> u16 {
        let mut b = [0u8; 2];
        p.read(off, &mut b);
        u16::from_le_bytes(b)
    }

    #[test]
    fn pm_timer_counts_at_3_58_mhz_and_wraps_at_24_bits() {
        let (mut p, clock, _) = pm();
        let mut b = [0u8; 4];
        p.read(8, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0);
        clock.set(1_000_000_000);
        p.read(8, &mut b);
        assert_eq!(u32::from_le_bytes(b), PM_TIMER_HZ as u32);
        // 2^24 ticks is about 4.687 s.
        clock.set(5_000_000_000);
        p.read(8, &mut b);
        assert_eq!(
            u32::from_le_bytes(b),
            ((5 * PM_TIMER_HZ) & 0xff_ffff) as u32
        );
        assert_eq!(b[3], 0);
        p.write(8, &[1, 2, 3, 4]);
        p.read(10, &mut b[..1]);
        assert_eq!(b[0], ((5 * PM_TIMER_HZ) >> 16) as u8);
    }

    #[test]
    fn tmr_sts_sets_on_bit23_and_clears_on_write_one() {
        let (mut p, clock, _) = pm();
        assert_eq!(read16(&mut p, 0), 0);
        clock.set(2_400_000_000); // past 2^23 ticks
        assert_eq!(read16(&mut p, 0), PM1_STS_TMR);
        p.write(0, &0u16.to_le_bytes());
        assert_eq!(read16(&mut p, 0), PM1_STS_TMR, "writing 0 leaves it");
        p.write(0, &PM1_STS_TMR.to_le_bytes());
        assert_eq!(read16(&mut p, 0), 0);
    }

    #[test]
    fn enable_and_control_registers() {
        let (mut p, _, c) = pm();
        assert_eq!(read16(&mut p, 4), PM1_CNT_SCI_EN);
        p.write(2, &0x0121u16.to_le_bytes());
        assert_eq!(read16(&mut p, 2), 0x0121);
        p.write(3, &[0x00]);
        assert_eq!(read16(&mut p, 2), 0x0021, "byte write touches one half");
        // SLP_TYP = 3 without SLP_EN is only stored.
        p.write(4, &(PM1_CNT_SCI_EN | 3 << 10).to_le_bytes());
        assert_eq!(read16(&mut p, 4), PM1_CNT_SCI_EN | 3 << 10);
        // Another sleep type with SLP_EN is ignored.
        p.write(
            4,
            &(PM1_CNT_SCI_EN | 3 << 10 | PM1_CNT_SLP_EN).to_le_bytes(),
        );
        assert_eq!(c.take(), None);
        assert_eq!(read16(&mut p, 4) & PM1_CNT_SLP_EN, 0, "SLP_EN reads as 0");
        let mut z = [0u8; 2];
        p.read(6, &mut z);
        assert_eq!(z, [0, 0]);
        p.read(11, &mut z);
        assert_eq!(z[1], 0xff);
    }

    #[test]
    fn s5_powers_off_with_any_width() {
        let (mut p, _, c) = pm();
        let v = PM1_CNT_SCI_EN | SLP_TYP_S5 << 10 | PM1_CNT_SLP_EN;
        p.write(4, &v.to_le_bytes());
        assert_eq!(c.take(), Some(StopRequest::PowerOff));
        // A byte write of the high half alone.
        p.write(5, &[(v >> 8) as u8]);
        assert_eq!(c.take(), Some(StopRequest::PowerOff));
        // A 4-byte write from offset 2 reaches PM1_CNT too.
        p.write(2, &[0, 0, v as u8, (v >> 8) as u8]);
        assert_eq!(c.take(), Some(StopRequest::PowerOff));
        p.write(u64::MAX, &[0xff; 8]);
        p.write(12, &[0xff; 8]);
    }

    #[test]
    fn save_and_restore() {
        let (mut p, _, _) = pm();
        p.write(2, &0x0100u16.to_le_bytes());
        p.write(4, &0x0c01u16.to_le_bytes());
        let s = p.save_state();
        p.write(2, &0u16.to_le_bytes());
        p.write(4, &0u16.to_le_bytes());
        assert_ne!(p.save_state(), s);
        p.restore_state(&s);
        assert_eq!(p.save_state(), s);
        assert_eq!(read16(&mut p, 4), 0x0c01);
    }

    #[test]
    fn random_accesses_never_panic() {
        let (mut p, clock, control) = pm();
        crate::test_util::random_accesses(14, |s| {
            s.apply(&mut p);
            clock.set(s.t);
            control.take();
        });
    }
}
