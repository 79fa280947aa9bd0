//! The seam between the CPU and its local APIC.
//!
//! The CPU knows no device (ARCHITECTURE.md: devices ← cpu, and the CPU sees only buses and
//! memory), yet the local APIC is part of the core: it owns MSRs (IA32_APIC_BASE, the x2APIC
//! range, IA32_TSC_DEADLINE), a 4 KiB MMIO page that each vCPU decodes for itself, CR8 (the
//! TPR) and the NMI line. [`LocalApicPort`] is that interface as a trait object, so that the
//! platform (`src/`) plugs its LAPIC model in and the cpu crate stays free of device types;
//! a CPU without a port (the unit tests, the native oracle) behaves as before.

use std::sync::Arc;

use crate::cpu::Cpu;
use crate::exception::{gp0, Trap};

/// MSR numbers the port may claim (the CPU asks it before its own MSR table).
pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
pub const MSR_X2APIC_FIRST: u32 = 0x800;
pub const MSR_X2APIC_LAST: u32 = 0x8ff;

/// A vCPU's local APIC as the CPU sees it. Errors (`Err(())`) become #GP(0).
pub trait LocalApicPort: Send + Sync {
    /// `None`: not an APIC MSR, the CPU's own table decides.
    fn read_msr(&self, msr: u32, tsc: u64) -> Option<Result<u64, ()>>;
    fn write_msr(&self, msr: u32, value: u64, tsc: u64) -> Option<Result<(), ()>>;
    /// The guest-physical page the xAPIC decodes now (xAPIC mode only).
    fn mmio_base(&self) -> Option<u64>;
    fn mmio_read(&self, offset: u64, data: &mut [u8]);
    fn mmio_write(&self, offset: u64, data: &[u8]);
    /// TPR bits 7:4, which CR8 reads and writes in 64-bit mode.
    fn cr8(&self) -> u64;
    fn set_cr8(&self, v: u64);
    /// An NMI is waiting (lock-free: asked at every block boundary).
    fn nmi_pending(&self) -> bool;
    /// Consumes the pending NMI.
    fn take_nmi(&self) -> bool;
}

pub type SharedApicPort = Arc<dyn LocalApicPort>;

/// Whether `msr` is one the APIC port might claim.
#[inline]
pub fn is_apic_msr(msr: u32) -> bool {
    msr == MSR_APIC_BASE
        || msr == MSR_TSC_DEADLINE
        || (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr)
}

/// RDMSR through the APIC, if it claims `msr`.
pub(crate) fn rdmsr(c: &mut Cpu, msr: u32) -> Option<Result<u64, Trap>> {
    if !is_apic_msr(msr) {
        return None;
    }
    let tsc = c.tsc();
    let r = c.apic.as_ref()?.read_msr(msr, tsc)?;
    Some(r.map_err(|_| gp0()))
}

/// WRMSR through the APIC, if it claims `msr`. A write may make an interrupt deliverable
/// (self-IPI, TPR, EOI): the block ends so that the run loop looks.
pub(crate) fn wrmsr(c: &mut Cpu, msr: u32, v: u64) -> Option<Result<(), Trap>> {
    if !is_apic_msr(msr) {
        return None;
    }
    let tsc = c.tsc();
    let r = c.apic.as_ref()?.write_msr(msr, v, tsc)?;
    if r.is_ok() {
        if msr == MSR_APIC_BASE {
            c.s.msr.apic_base = v;
        }
        c.break_block = true;
    }
    Some(r.map_err(|_| gp0()))
}

/// The xAPIC page, if `phys` falls in it: (port, offset).
#[inline]
pub(crate) fn mmio_hit(c: &Cpu, phys: u64) -> Option<(&dyn LocalApicPort, u64)> {
    let a = c.apic.as_deref()?;
    let base = a.mmio_base()?;
    (phys & !0xfff == base).then_some((a, phys & 0xfff))
}
