//! The interpreter's vCPU: architectural state plus what executing it needs (lazy flags,
//! the software TLB, handles to memory and buses), and operand access for handlers.

use std::collections::HashMap;
use std::sync::Arc;

use twinvm_devices::clock::Clock;
use twinvm_devices::{Bus, GuestMemory, InterruptController, VmControl};

use crate::decode::{Insn, Operand};
use crate::exception::{Flow, Trap};
use crate::flags::{size_mask, FlagOp, LazyFlags};
use crate::mmu::{ArchTlb, Tlb};
use crate::model::CpuModel;
use crate::state::{rflags, CpuState, CS, SS};

/// What the platform gives a vCPU.
#[derive(Clone)]
pub struct CpuEnv {
    pub mem: Arc<GuestMemory>,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub control: Arc<VmControl>,
    pub intc: Arc<dyn InterruptController>,
    pub clock: Arc<dyn Clock>,
    pub model: Arc<CpuModel>,
}

/// Counters for `--stats`.
#[derive(Clone, Debug, Default)]
pub struct CpuStats {
    pub instructions: u64,
    pub pio_reads: u64,
    pub pio_writes: u64,
    pub mmio_reads: u64,
    pub mmio_writes: u64,
    pub halts: u64,
    pub interrupts: u64,
    pub exceptions: u64,
    pub blocks_decoded: u64,
    pub smc_invalidations: u64,
    /// Shadow-table flushes: every event that drops fast entries (full or per page).
    pub tlb_flushes: u64,
    /// Data accesses served by the fast shadow table (`read_lin`/`write_lin` hits; bulk
    /// string runs count once per run).
    pub tlb_hits: u64,
    /// Accesses that missed the fast table (served by the architectural TLB or a walk).
    pub tlb_misses: u64,
    /// Page walks (misses of the architectural TLB too).
    pub page_walks: u64,
    pub cr3_loads: u64,
    /// Instructions that decoded but have no handler, by mnemonic (they raise #UD).
    pub unimplemented: HashMap<String, u64>,
    pub unknown_msrs: HashMap<u32, u64>,
    /// KVM engine: KVM_RUN returns, and instructions handed to the interpreter because KVM
    /// could not run them, by mnemonic.
    pub kvm_exits: u64,
    pub fallbacks: HashMap<String, u64>,
}

/// A resolved place an operand lives, for read-modify-write instructions.
#[derive(Clone, Copy, Debug)]
pub enum Loc {
    Reg {
        idx: u8,
        size: u8,
    },
    RegHigh(u8),
    /// A linear address.
    Mem(u64),
}

pub struct Cpu {
    pub s: CpuState,
    pub lf: LazyFlags,
    /// RIP of the next instruction, set before a handler runs; control transfers change it.
    pub next_rip: u64,
    pub env: CpuEnv,
    pub tlb: Tlb,
    /// The architectural TLB behind `tlb` (PCID/global-tagged translations).
    pub atlb: ArchTlb,
    pub stats: CpuStats,
    /// Set by a handler when the rest of the current block must not run (mode change,
    /// self-modifying write, interrupt shadow…).
    pub break_block: bool,
    /// Guest-physical pages holding decoded blocks (writes to them take the slow path).
    pub(crate) code_pages: std::collections::HashSet<u64>,
    /// Physical pages written since the block cache last looked.
    pub(crate) smc_pages: Vec<(u64, u64, u64)>,
    /// 64-bit code (long mode, CS.L): derived from `s`, refreshed by `update_mode`.
    pub mode64: bool,
    /// Per access kind (0 read, 1 write), a bit per segment register whose limit and type
    /// checks can be skipped outside 64-bit code (flat 4 GiB, expand-up, usable for that
    /// access): derived from `s.seg`, refreshed by `update_mode`/`refresh_segments`.
    pub(crate) seg_fast: [u8; 2],
    /// Host TSC reference: guest TSC = clock ns scaled + offset.
    tsc_offset: u64,
    pub apic_id: u8,
    /// Debugger hooks (watchpoints, one-iteration REP); inert unless a debugger set them.
    pub debug: crate::debugger::DebugHooks,
    /// Breakpoint hits and held debug traps (debug.rs).
    pub dbg: crate::debug::DebugState,
    /// This vCPU's local APIC (MSRs, MMIO page, CR8, NMI), if the platform has one.
    pub apic: Option<crate::apic_port::SharedApicPort>,
}

/// Guest TSC frequency: 1 GHz, so the TSC counts virtual nanoseconds.
pub const TSC_HZ: u64 = 1_000_000_000;

impl Cpu {
    pub fn new(env: CpuEnv, state: CpuState) -> Self {
        let mut cpu = Cpu {
            s: state,
            lf: LazyFlags::default(),
            next_rip: 0,
            env,
            tlb: Tlb::new(),
            atlb: ArchTlb::default(),
            stats: CpuStats::default(),
            break_block: false,
            code_pages: Default::default(),
            smc_pages: Vec::new(),
            mode64: false,
            seg_fast: [0; 2],
            tsc_offset: 0,
            apic_id: 0,
            debug: Default::default(),
            dbg: Default::default(),
            apic: None,
        };
        let tsc = cpu.s.msr.tsc;
        cpu.set_tsc(tsc);
        cpu.update_mode();
        cpu
    }

    /// The architectural state, with lazy flags folded into RFLAGS.
    pub fn state(&self) -> CpuState {
        let mut s = self.s.clone();
        s.rflags = self.rflags();
        s.msr.tsc = self.tsc();
        s
    }

    /// Replaces the architectural state (e.g. from a snapshot or another engine).
    pub fn set_state(&mut self, s: CpuState) {
        self.lf.op = FlagOp::Eager;
        let tsc = s.msr.tsc;
        self.s = s;
        self.set_tsc(tsc);
        self.flush_tlb();
        self.update_mode();
    }

    /// Recomputes cached mode bits after CR0/CR4/EFER/CS changes.
    pub fn update_mode(&mut self) {
        self.mode64 = self.s.in_64bit_code();
        self.tlb.set_user(self.s.cpl() == 3);
        self.break_block = true;
        self.refresh_segments();
    }

    #[inline]
    pub fn rflags(&self) -> u64 {
        self.lf.materialize(self.s.rflags)
    }

    /// Writes RFLAGS wholesale (all of it: callers mask what the instruction may change).
    #[inline]
    pub fn set_rflags(&mut self, v: u64) {
        self.lf.op = FlagOp::Eager;
        self.s.rflags = (v & 0x3f_7fd5) | rflags::FIXED1;
    }

    /// Sets the arithmetic flags in `mask` to the values in `values`, leaving the others.
    #[inline]
    pub fn set_flags_masked(&mut self, mask: u64, values: u64) {
        let f = self.rflags();
        self.set_rflags((f & !mask) | (values & mask));
    }

    #[inline(always)]
    pub fn set_lazy(&mut self, op: FlagOp, size: u8, a: u64, b: u64, res: u64) {
        self.lf.set(op, size, a, b, res);
    }

    #[inline]
    pub fn cf(&self) -> bool {
        self.lf.cf(self.s.rflags)
    }

    #[inline]
    pub fn condition(&self, cc: u8) -> bool {
        self.lf.condition(self.s.rflags, cc)
    }

    pub fn tsc(&self) -> u64 {
        self.env.clock.now_ns().wrapping_add(self.tsc_offset)
    }

    pub fn set_tsc(&mut self, v: u64) {
        self.tsc_offset = v.wrapping_sub(self.env.clock.now_ns());
    }

    // ----- registers -----

    #[inline(always)]
    pub fn reg(&self, idx: usize, size: u8) -> u64 {
        self.s.gpr[idx] & size_mask(size)
    }

    /// Writes a GPR with x86 width rules: 32-bit writes zero the upper half, 8/16-bit
    /// writes merge.
    #[inline(always)]
    pub fn set_reg(&mut self, idx: usize, size: u8, v: u64) {
        let r = &mut self.s.gpr[idx];
        *r = match size {
            8 => v,
            4 => v & 0xffff_ffff,
            2 => (*r & !0xffff) | (v & 0xffff),
            _ => (*r & !0xff) | (v & 0xff),
        };
    }

    // ----- operands -----

    /// Effective address (offset within the segment) of the instruction's memory operand.
    #[inline(always)]
    pub fn ea(&self, i: &Insn) -> u64 {
        let m = &i.mem;
        let mut a = m.disp;
        if m.base < 16 {
            a = a.wrapping_add(self.s.gpr[m.base as usize]);
        } else if m.base == crate::decode::RIP_BASE {
            a = a.wrapping_add(self.next_rip);
        }
        if m.index < 16 {
            a = a.wrapping_add(self.s.gpr[m.index as usize] << m.scale);
        }
        a & size_mask(i.asize)
    }

    /// Linear address of the memory operand (segment applied, canonical-checked), without
    /// limit or type checks: for address-only uses (INVLPG); data accesses use
    /// `mem_read_addr`/`mem_write_addr`.
    #[inline(always)]
    pub fn mem_linear(&self, i: &Insn) -> Result<u64, Trap> {
        self.seg_linear(i.mem.seg as usize, self.ea(i))
    }

    /// Applies segment `seg` to `offset`. In 64-bit code only FS and GS have bases and the
    /// result must be canonical (#SS for stack references, #GP otherwise).
    #[inline(always)]
    pub fn seg_linear(&self, seg: usize, offset: u64) -> Result<u64, Trap> {
        if self.mode64 {
            let lin = if seg >= crate::state::FS {
                offset.wrapping_add(self.s.seg[seg].base)
            } else {
                offset
            };
            if ((lin as i64) << 16 >> 16) as u64 != lin {
                return Err(if seg == SS {
                    Trap::Exception(crate::exception::Exception::with_code(
                        crate::exception::SS,
                        0,
                    ))
                } else {
                    crate::exception::gp0()
                });
            }
            Ok(lin)
        } else {
            Ok(self.s.seg[seg].base.wrapping_add(offset) & 0xffff_ffff)
        }
    }

    /// Linear address of a `size`-byte data access at `offset` in segment `seg`, with the
    /// segment's limit and type checks outside 64-bit code (#SS(0) for SS, #GP(0) else).
    #[inline(always)]
    pub fn seg_addr(&self, seg: usize, offset: u64, size: u8, write: bool) -> Result<u64, Trap> {
        if !self.mode64 && self.seg_fast[write as usize] & (1 << seg) == 0 {
            crate::segments::check_access(self, seg, offset, size, write)?;
        }
        self.seg_linear(seg, offset)
    }

    /// Whether accesses through `seg` need no limit/type check (64-bit code or a flat
    /// segment): bulk string paths take their fast route only then.
    #[inline(always)]
    pub fn seg_unchecked(&self, seg: usize, write: bool) -> bool {
        self.mode64 || self.seg_fast[write as usize] & (1 << seg) != 0
    }

    /// `seg_addr` for a read.
    #[inline(always)]
    pub fn seg_read_addr(&self, seg: usize, offset: u64, size: u8) -> Result<u64, Trap> {
        self.seg_addr(seg, offset, size, false)
    }

    /// `seg_addr` for a write (also right for read-modify-write: writable implies readable).
    #[inline(always)]
    pub fn seg_write_addr(&self, seg: usize, offset: u64, size: u8) -> Result<u64, Trap> {
        self.seg_addr(seg, offset, size, true)
    }

    /// Checked linear address of the memory operand for a `size`-byte read.
    #[inline(always)]
    pub fn mem_read_addr(&self, i: &Insn, size: u8) -> Result<u64, Trap> {
        self.seg_addr(i.mem.seg as usize, self.ea(i), size, false)
    }

    /// Checked linear address of the memory operand for a `size`-byte write or
    /// read-modify-write.
    #[inline(always)]
    pub fn mem_write_addr(&self, i: &Insn, size: u8) -> Result<u64, Trap> {
        self.seg_addr(i.mem.seg as usize, self.ea(i), size, true)
    }

    pub fn loc(&self, i: &Insn, n: usize) -> Result<Loc, Trap> {
        Ok(match i.ops[n] {
            Operand::Reg { idx, size } => Loc::Reg { idx, size },
            Operand::RegHigh(idx) => Loc::RegHigh(idx),
            Operand::Mem { size } => Loc::Mem(self.mem_write_addr(i, size)?),
            _ => return Err(Trap::Unsupported("operand is not a register or memory")),
        })
    }

    #[inline]
    pub fn read_loc(&mut self, loc: Loc, size: u8) -> Result<u64, Trap> {
        match loc {
            Loc::Reg { idx, .. } => Ok(self.reg(idx as usize, size)),
            Loc::RegHigh(idx) => Ok((self.s.gpr[idx as usize] >> 8) & 0xff),
            Loc::Mem(lin) => self.read_lin(lin, size),
        }
    }

    /// Reads the destination of a read-modify-write instruction. Hardware does the load
    /// with write intent, so a fault on it is reported as a write (#PF error code W=1,
    /// also on a not-present page, where a plain read would report W=0).
    #[inline]
    pub fn read_loc_rmw(&mut self, loc: Loc, size: u8) -> Result<u64, Trap> {
        match loc {
            Loc::Mem(lin) => self.read_lin_rmw(lin, size),
            _ => self.read_loc(loc, size),
        }
    }

    /// Linear read of a read-modify-write operand (see `read_loc_rmw`).
    #[inline]
    pub fn read_lin_rmw(&mut self, lin: u64, size: u8) -> Result<u64, Trap> {
        if (lin & 0xfff) + size as u64 <= 4096 {
            if let Some(p) = self.tlb.lookup(crate::mmu::Access::Write, lin) {
                // SAFETY: write entries map whole RAM pages of a live mapping, and the
                // access does not cross the page.
                return Ok(unsafe { crate::mmu::read_host(p, size) });
            }
        }
        self.read_slow(lin, size, crate::mmu::Access::Write)
    }

    #[inline]
    pub fn write_loc(&mut self, loc: Loc, size: u8, v: u64) -> Flow {
        match loc {
            Loc::Reg { idx, .. } => {
                self.set_reg(idx as usize, size, v);
                Ok(())
            }
            Loc::RegHigh(idx) => {
                let r = &mut self.s.gpr[idx as usize];
                *r = (*r & !0xff00) | ((v & 0xff) << 8);
                Ok(())
            }
            Loc::Mem(lin) => self.write_lin(lin, size, v),
        }
    }

    /// Reads operand `n` (registers masked to their width; immediates as decoded, i.e.
    /// sign-extended to the operand size).
    #[inline(always)]
    pub fn read_op(&mut self, i: &Insn, n: usize) -> Result<u64, Trap> {
        match i.ops[n] {
            Operand::Reg { idx, size } => Ok(self.reg(idx as usize, size)),
            Operand::RegHigh(idx) => Ok((self.s.gpr[idx as usize] >> 8) & 0xff),
            Operand::Imm => Ok(i.imm),
            Operand::Mem { size } => {
                let lin = self.mem_read_addr(i, size)?;
                self.read_lin(lin, size)
            }
            Operand::Seg(s) => Ok(self.s.seg[s as usize].selector as u64),
            _ => Err(Trap::Unsupported("operand kind not readable here")),
        }
    }

    #[inline(always)]
    pub fn write_op(&mut self, i: &Insn, n: usize, v: u64) -> Flow {
        match i.ops[n] {
            Operand::Reg { idx, size } => {
                self.set_reg(idx as usize, size, v);
                Ok(())
            }
            Operand::RegHigh(idx) => {
                let r = &mut self.s.gpr[idx as usize];
                *r = (*r & !0xff00) | ((v & 0xff) << 8);
                Ok(())
            }
            Operand::Mem { size } => {
                let lin = self.mem_write_addr(i, size)?;
                self.write_lin(lin, size, v)
            }
            _ => Err(Trap::Unsupported("operand kind not writable here")),
        }
    }

    /// Size in bytes of operand `n`.
    #[inline]
    pub fn op_size(i: &Insn, n: usize) -> u8 {
        match i.ops[n] {
            Operand::Reg { size, .. } | Operand::Mem { size } => size,
            Operand::RegHigh(_) => 1,
            Operand::Seg(_) => 2,
            _ => i.osize,
        }
    }

    // ----- stack -----

    /// Stack address size in bytes: 8 in 64-bit code, else SS.B.
    #[inline]
    pub fn stack_size(&self) -> u8 {
        if self.mode64 {
            8
        } else if self.s.seg[SS].big() {
            4
        } else {
            2
        }
    }

    #[inline]
    fn sp_mask(&self) -> u64 {
        size_mask(self.stack_size())
    }

    /// Pushes `size` bytes. RSP is updated only after the write succeeded (precise faults).
    #[inline]
    pub fn push(&mut self, size: u8, v: u64) -> Flow {
        let mask = self.sp_mask();
        let rsp = self.s.gpr[crate::state::RSP];
        let new = rsp.wrapping_sub(size as u64) & mask;
        let lin = self.seg_write_addr(SS, new, size)?;
        self.write_lin(lin, size, v)?;
        self.s.gpr[crate::state::RSP] = (rsp & !mask) | new;
        Ok(())
    }

    /// Reads the value `size` bytes at the top of the stack plus `offset`, without popping.
    #[inline]
    pub fn stack_peek(&mut self, offset: u64, size: u8) -> Result<u64, Trap> {
        let mask = self.sp_mask();
        let sp = self.s.gpr[crate::state::RSP].wrapping_add(offset) & mask;
        let lin = self.seg_read_addr(SS, sp, size)?;
        self.read_lin(lin, size)
    }

    /// Adds `n` to the stack pointer at the stack's width.
    #[inline]
    pub fn stack_adjust(&mut self, n: u64) {
        let mask = self.sp_mask();
        let rsp = self.s.gpr[crate::state::RSP];
        self.s.gpr[crate::state::RSP] = (rsp & !mask) | (rsp.wrapping_add(n) & mask);
    }

    #[inline]
    pub fn pop(&mut self, size: u8) -> Result<u64, Trap> {
        let v = self.stack_peek(0, size)?;
        self.stack_adjust(size as u64);
        Ok(v)
    }

    // ----- control flow -----

    /// Sets the next RIP for a near transfer with operand size `size`, truncating as the
    /// architecture does (16/32-bit targets wrap; in 64-bit code the target must be
    /// canonical).
    #[inline]
    pub fn jump_near(&mut self, target: u64, size: u8) -> Flow {
        let t = match size {
            8 => {
                if ((target as i64) << 16 >> 16) as u64 != target {
                    return Err(crate::exception::gp0());
                }
                target
            }
            4 => target & 0xffff_ffff,
            _ => target & 0xffff,
        };
        if !self.mode64 && t > self.s.seg[CS].limit as u64 {
            return Err(crate::exception::gp0());
        }
        self.next_rip = t;
        Ok(())
    }

    /// Operand size of near branches: 64 in 64-bit code unless a 0x66 prefix says 16.
    #[inline]
    pub fn branch_size(&self, i: &Insn) -> u8 {
        i.osize
    }

    // ----- I/O -----

    pub fn io_in(&mut self, port: u16, size: u8) -> u64 {
        self.stats.pio_reads += 1;
        let mut b = [0u8; 4];
        self.env.pio.read(port as u64, &mut b[..size as usize]);
        u32::from_le_bytes(b) as u64
    }

    pub fn io_out(&mut self, port: u16, size: u8, v: u64) -> Flow {
        self.stats.pio_writes += 1;
        let b = (v as u32).to_le_bytes();
        self.env.pio.write(port as u64, &b[..size as usize]);
        if self.env.control.is_pending() {
            return Err(Trap::Stop);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use twinvm_devices::clock::ManualClock;

    pub struct NoInterrupts;
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
            mem: Arc::new(GuestMemory::new(mem_size).unwrap()),
            pio: Arc::new(Bus::new()),
            mmio: Arc::new(Bus::new()),
            control: Arc::new(VmControl::new()),
            intc: Arc::new(NoInterrupts),
            clock: Arc::new(ManualClock::default()),
            model: Arc::new(CpuModel::max()),
        }
    }
}
