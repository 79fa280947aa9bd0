//! Helpers for tests: a small long-mode machine that runs a byte sequence.

use std::sync::Arc;

use twinvm_devices::clock::ManualClock;
use twinvm_devices::{Bus, GuestMemory, InterruptController, VmControl};

use crate::cpu::CpuEnv;
use crate::exec::{Interpreter, RunExit};
use crate::model::CpuModel;
use crate::state::{cr0, cr4, efer, CpuState, Segment, CS, RSP};

/// Where `run64` puts code, data and the stack.
pub const CODE: u64 = 0x10_0000;
pub const DATA: u64 = 0x20_0000;
pub const STACK_TOP: u64 = 0x30_0000;
const PML4: u64 = 0x1000;

struct NoInterrupts;
impl InterruptController for NoInterrupts {
    fn intr_pending(&self) -> bool {
        false
    }
    fn acknowledge(&self) -> Option<u8> {
        None
    }
}

pub fn env(mem_size: u64) -> CpuEnv {
    CpuEnv {
        mem: Arc::new(GuestMemory::new(mem_size).expect("test memory")),
        pio: Arc::new(Bus::new()),
        mmio: Arc::new(Bus::new()),
        control: Arc::new(VmControl::new()),
        intc: Arc::new(NoInterrupts),
        clock: Arc::new(ManualClock::default()),
        model: Arc::new(CpuModel::max()),
    }
}

/// A 64-bit ring-0 state with the first 1 GiB identity-mapped by 2 MiB pages.
pub fn long_mode_state(mem: &GuestMemory) -> CpuState {
    mem.write_u64(PML4, 0x2000 | 3).expect("pml4");
    mem.write_u64(0x2000, 0x3000 | 3).expect("pdpt");
    for i in 0..512u64 {
        mem.write_u64(0x3000 + i * 8, (i << 21) | 0x83).expect("pd");
    }
    let mut s = CpuState::protected_flat();
    s.cr3 = PML4;
    s.cr4 |= cr4::PAE;
    s.efer = efer::LME | efer::LMA | efer::NXE;
    s.cr0 |= cr0::PG | cr0::WP;
    s.seg[CS] = Segment::flat(0x08, true, true);
    s.gpr[RSP] = STACK_TOP;
    s.rip = CODE;
    s
}

/// A machine ready to run 64-bit code at `CODE`, returning exceptions instead of
/// delivering them.
pub fn machine64() -> Interpreter {
    let e = env(64 << 20);
    let s = long_mode_state(&e.mem);
    let mut it = Interpreter::new(e, s);
    it.stop_on_exception = true;
    it
}

/// Runs `code` (a HLT is appended) until it halts or faults.
pub fn run64(it: &mut Interpreter, code: &[u8]) -> RunExit {
    let mut bytes = code.to_vec();
    bytes.push(0xf4);
    it.cpu.env.mem.write(CODE, &bytes).expect("code fits");
    it.cache.clear(&mut it.cpu);
    it.cpu.s.rip = CODE;
    it.run(1_000_000)
}
