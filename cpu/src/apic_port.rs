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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::RunExit;
    use crate::testing::{machine64, run64, CODE, DATA};
    use iced_x86::code_asm::*;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeApic {
        nmis: AtomicU32,
        base: AtomicU64,
        mmio: Mutex<Vec<(u64, u32)>>,
        cr8: AtomicU64,
    }

    impl LocalApicPort for FakeApic {
        fn read_msr(&self, msr: u32, _tsc: u64) -> Option<Result<u64, ()>> {
            match msr {
                MSR_APIC_BASE => Some(Ok(self.base.load(Ordering::Relaxed))),
                MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => Some(Err(())),
                _ => None,
            }
        }
        fn write_msr(&self, msr: u32, value: u64, _tsc: u64) -> Option<Result<(), ()>> {
            match msr {
                MSR_APIC_BASE => {
                    self.base.store(value, Ordering::Relaxed);
                    Some(Ok(()))
                }
                MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => Some(Err(())),
                _ => None,
            }
        }
        fn mmio_base(&self) -> Option<u64> {
            // Inside the test machine's 1 GiB identity map, above its RAM.
            Some(APIC_PAGE)
        }
        fn mmio_read(&self, offset: u64, data: &mut [u8]) {
            data.copy_from_slice(&(offset as u32 | 0x5000_0000).to_le_bytes()[..data.len()]);
        }
        fn mmio_write(&self, offset: u64, data: &[u8]) {
            let mut b = [0u8; 4];
            b[..data.len()].copy_from_slice(data);
            self.mmio
                .lock()
                .unwrap()
                .push((offset, u32::from_le_bytes(b)));
        }
        fn cr8(&self) -> u64 {
            self.cr8.load(Ordering::Relaxed)
        }
        fn set_cr8(&self, v: u64) {
            self.cr8.store(v, Ordering::Relaxed)
        }
        fn nmi_pending(&self) -> bool {
            self.nmis.load(Ordering::Relaxed) > 0
        }
        fn take_nmi(&self) -> bool {
            self.nmis
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        }
    }

    const HANDLER: u64 = CODE + 0x800;
    const APIC_PAGE: u64 = 0x3000_0000;
    const GDT: u64 = 0x5000;
    const IDT: u64 = 0x6000;

    /// A machine whose IDT sends vector 2 to `HANDLER`, with the fake APIC plugged in.
    fn machine(apic: &Arc<FakeApic>) -> crate::exec::Interpreter {
        let mut it = machine64();
        it.stop_on_exception = false;
        let mem = it.cpu.env.mem.clone();
        mem.write_u64(GDT + 8, 0x00af_9a00_0000_ffff).unwrap();
        it.cpu.s.gdtr = crate::state::TableReg {
            base: GDT,
            limit: 15,
        };
        let gate = |h: u64| -> [u64; 2] {
            let lo = (h & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((h >> 16) & 0xffff) << 48;
            [lo, h >> 32]
        };
        for v in 0..32u64 {
            let g = gate(HANDLER + 0x100); // anything else: a HLT stub
            mem.write_u64(IDT + 16 * v, g[0]).unwrap();
            mem.write_u64(IDT + 16 * v + 8, g[1]).unwrap();
        }
        let g = gate(HANDLER);
        mem.write_u64(IDT + 32, g[0]).unwrap();
        mem.write_u64(IDT + 40, g[1]).unwrap();
        mem.write(HANDLER + 0x100, &[0xf4]).unwrap();
        it.cpu.s.idtr = crate::state::TableReg {
            base: IDT,
            limit: 32 * 16 - 1,
        };
        // The NMI handler: count, and note whether [DATA] moved under it (a nested NMI),
        // with block boundaries in between so that a nested NMI would have a chance.
        let mut a = CodeAssembler::new(64).unwrap();
        let mut l1 = a.create_label();
        let mut l2 = a.create_label();
        let mut nested = a.create_label();
        a.mov(rax, qword_ptr(DATA)).unwrap();
        a.inc(rax).unwrap();
        a.mov(qword_ptr(DATA), rax).unwrap();
        a.jmp(l1).unwrap();
        a.set_label(&mut l1).unwrap();
        a.nop().unwrap();
        a.jmp(l2).unwrap();
        a.set_label(&mut l2).unwrap();
        a.cmp(qword_ptr(DATA), rax).unwrap();
        a.jne(nested).unwrap();
        a.iretq().unwrap();
        a.set_label(&mut nested).unwrap();
        a.mov(qword_ptr(DATA + 8), 1i32).unwrap();
        a.iretq().unwrap();
        mem.write(HANDLER, &a.assemble(HANDLER).unwrap()).unwrap();
        it.cpu.apic = Some(apic.clone());
        it
    }

    #[test]
    fn nmi_is_taken_with_if_clear_and_blocked_until_iret() {
        let apic = Arc::new(FakeApic::default());
        let mut it = machine(&apic);
        apic.nmis.store(2, Ordering::Relaxed);
        // CLI; a few blocks of work; HLT.
        let code = [0xfa, 0xeb, 0x00, 0x90, 0xeb, 0x00, 0x90];
        assert_eq!(run64(&mut it, &code), RunExit::Halted);
        let mem = &it.cpu.env.mem;
        assert_eq!(mem.read_u64(DATA).unwrap(), 2, "both NMIs delivered");
        assert_eq!(
            mem.read_u64(DATA + 8).unwrap(),
            0,
            "no NMI nested in the handler"
        );
        assert!(!it.cpu.s.events.nmi_masked, "IRET unblocked NMIs");
        assert_eq!(apic.nmis.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn nmi_wakes_a_halted_cpu_with_if_clear() {
        let apic = Arc::new(FakeApic::default());
        let mut it = machine(&apic);
        assert_eq!(run64(&mut it, &[0xfa]), RunExit::Halted);
        assert!(!it.can_wake());
        apic.nmis.store(1, Ordering::Relaxed);
        assert!(it.can_wake());
        assert_eq!(it.run(1000), RunExit::Halted);
        assert_eq!(it.cpu.env.mem.read_u64(DATA).unwrap(), 1);
    }

    #[test]
    fn msrs_mmio_and_cr8_go_to_the_port() {
        let apic = Arc::new(FakeApic::default());
        let mut it = machine(&apic);
        it.stop_on_exception = true;
        apic.base.store(0xfee0_0900, Ordering::Relaxed);
        let mut a = CodeAssembler::new(64).unwrap();
        a.mov(ecx, 0x1bu32).unwrap();
        a.rdmsr().unwrap();
        a.mov(dword_ptr(DATA), eax).unwrap();
        a.mov(eax, 0xfee0_0d00u32).unwrap();
        a.xor(edx, edx).unwrap();
        a.wrmsr().unwrap();
        a.mov(eax, dword_ptr(APIC_PAGE + 0x30)).unwrap();
        a.mov(dword_ptr(DATA + 8), eax).unwrap();
        a.mov(dword_ptr(APIC_PAGE + 0xb0), 0i32).unwrap();
        a.mov(eax, 9u32).unwrap();
        a.mov(cr8, rax).unwrap();
        a.mov(rbx, cr8).unwrap();
        let code = a.assemble(CODE).unwrap();
        assert_eq!(run64(&mut it, &code), RunExit::Halted);
        let mem = &it.cpu.env.mem;
        assert_eq!(mem.read_u64(DATA).unwrap() as u32, 0xfee0_0900);
        assert_eq!(apic.base.load(Ordering::Relaxed), 0xfee0_0d00);
        assert_eq!(it.cpu.s.msr.apic_base, 0xfee0_0d00);
        assert_eq!(mem.read_u64(DATA + 8).unwrap() as u32, 0x5000_0030);
        assert_eq!(*apic.mmio.lock().unwrap(), vec![(0xb0, 0)]);
        assert_eq!(apic.cr8.load(Ordering::Relaxed), 9);
        assert_eq!(it.cpu.s.gpr[3], 9);
        // An x2APIC MSR the port refuses: #GP(0).
        let mut a = CodeAssembler::new(64).unwrap();
        a.mov(ecx, 0x802u32).unwrap();
        a.rdmsr().unwrap();
        let code = a.assemble(CODE).unwrap();
        it.cpu.s.events.halted = false;
        match run64(&mut it, &code) {
            RunExit::Exception(e) => assert_eq!((e.vector, e.error_code), (13, Some(0))),
            r => panic!("expected #GP, got {r:?}"),
        }
    }
}
