//! Lowering iced-x86's decoded instruction into a compact record with its handler chosen
//! once, at decode time, so that executing it needs no `match` on the mnemonic.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

use crate::cpu::Cpu;
use crate::exception::{Flow, Trap};
use crate::interp;
use crate::model::CpuModel;

pub type Handler = fn(&mut Cpu, &Insn) -> Flow;

/// Marker values for `MemRef::base`/`index`.
pub const NO_REG: u8 = 0xff;
pub const RIP_BASE: u8 = 0xfe;

/// Where an operand lives. Sizes are in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    None,
    Reg {
        idx: u8,
        size: u8,
    },
    /// AH, CH, DH, BH.
    RegHigh(u8),
    /// `Insn::imm`.
    Imm,
    /// The instruction's memory operand (`Insn::mem`).
    Mem {
        size: u8,
    },
    Seg(u8),
    Cr(u8),
    Dr(u8),
    /// x87, SSE, mask… registers: handled by their own families from `Insn::raw`.
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRef {
    /// Effective segment (after overrides and the SS default for BP/SP bases).
    pub seg: u8,
    pub base: u8,
    pub index: u8,
    /// log2 of the scale factor.
    pub scale: u8,
    /// Displacement; for RIP-relative operands, relative to the next instruction.
    pub disp: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rep {
    None,
    /// REP / REPE / REPZ.
    Rep,
    /// REPNE / REPNZ.
    Repne,
}

/// One pre-decoded instruction.
#[derive(Clone)]
pub struct Insn {
    pub handler: Handler,
    pub ops: [Operand; 4],
    pub mem: MemRef,
    /// First immediate (sign-extended to the operand size as the encoding says); for far
    /// branches, the offset.
    pub imm: u64,
    /// Second immediate (ENTER's level, far branches' selector).
    pub imm2: u64,
    /// Near branch displacement relative to the next instruction.
    pub rel: u64,
    pub len: u8,
    /// Operand size in bytes (of the first operand, or of the operation).
    pub osize: u8,
    /// Address size in bytes.
    pub asize: u8,
    /// Condition code for Jcc/SETcc/CMOVcc/LOOPcc.
    pub cc: u8,
    pub rep: Rep,
    pub lock: bool,
    /// Whether this instruction may change control flow or mode (ends a block).
    pub ends_block: bool,
    pub raw: Instruction,
}

impl std::fmt::Debug for Insn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.raw)
    }
}

/// Maps an iced register to an operand.
pub fn reg_operand(r: Register) -> Operand {
    use Register::*;
    if r.is_gpr8() {
        return match r {
            AH | CH | DH | BH => Operand::RegHigh((r as u32 - AH as u32) as u8),
            _ => Operand::Reg {
                idx: gpr_index(r),
                size: 1,
            },
        };
    }
    if r.is_gpr16() {
        return Operand::Reg {
            idx: gpr_index(r),
            size: 2,
        };
    }
    if r.is_gpr32() {
        return Operand::Reg {
            idx: gpr_index(r),
            size: 4,
        };
    }
    if r.is_gpr64() {
        return Operand::Reg {
            idx: gpr_index(r),
            size: 8,
        };
    }
    if r.is_segment_register() {
        return Operand::Seg((r as u32 - ES as u32) as u8);
    }
    if r.is_cr() {
        return Operand::Cr((r as u32 - CR0 as u32) as u8);
    }
    if r.is_dr() {
        return Operand::Dr((r as u32 - DR0 as u32) as u8);
    }
    Operand::Other
}

/// The 0–15 index of a general register of any width.
pub fn gpr_index(r: Register) -> u8 {
    use Register::*;
    let full = r.full_register();
    if full == None {
        return NO_REG;
    }
    if full == RIP || full == EIP {
        return RIP_BASE;
    }
    let n = full as u32;
    if (RAX as u32..=R15 as u32).contains(&n) {
        (n - RAX as u32) as u8
    } else {
        NO_REG
    }
}

/// The segment of the memory operand. In 64-bit mode ES/CS/SS/DS override prefixes are
/// ignored (SDM vol. 1, 3.3.7.1): the default segment applies — SS for RSP/RBP-based
/// addresses, DS otherwise — which decides #SS versus #GP on a non-canonical address.
/// iced reports the ignored prefix, so it is undone here.
fn memory_segment(raw: &Instruction, bits: u32) -> u8 {
    let seg = raw.memory_segment();
    if bits == 64
        && matches!(
            seg,
            Register::ES | Register::CS | Register::SS | Register::DS
        )
    {
        let stack = matches!(
            raw.memory_base(),
            Register::RSP | Register::RBP | Register::ESP | Register::EBP
        );
        // String operands (MemorySegRSI…) have no base register: their default is DS.
        return if stack { 2 } else { 3 };
    }
    seg_index(seg)
}

fn seg_index(r: Register) -> u8 {
    match r {
        Register::ES => 0,
        Register::CS => 1,
        Register::SS => 2,
        Register::FS => 4,
        Register::GS => 5,
        _ => 3,
    }
}

fn unimplemented(cpu: &mut Cpu, i: &Insn) -> Flow {
    let name = format!("{:?}", i.raw.mnemonic()).to_lowercase();
    let n = cpu.stats.unimplemented.entry(name).or_insert(0);
    if *n == 0 {
        log::warn!(
            "instruction not implemented, raising #UD: {} at {:#x}",
            i.raw,
            cpu.s.rip
        );
    }
    *n += 1;
    Err(crate::exception::ud())
}

fn invalid(_cpu: &mut Cpu, _i: &Insn) -> Flow {
    Err(crate::exception::ud())
}

/// Bytes that decode as legacy prefixes or REX (which iced folds into the instruction).
fn address_size_toggled(bytes: &[u8], bits: u32) -> bool {
    for &b in bytes {
        match b {
            0x67 => return true,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0xf0 | 0xf2 | 0xf3 => {}
            0x40..=0x4f if bits == 64 => {}
            _ => return false,
        }
    }
    false
}

/// Decodes one instruction from `bytes` (up to 15) at `ip` in `bits`-bit code.
pub fn decode_one(bytes: &[u8], ip: u64, bits: u32, model: &CpuModel) -> Insn {
    let mut d = Decoder::with_ip(bits, bytes, ip, DecoderOptions::NONE);
    let raw = d.decode();
    lower(&raw, bytes, bits, model)
}

pub fn lower(raw: &Instruction, bytes: &[u8], bits: u32, model: &CpuModel) -> Insn {
    let default_asize = (bits / 8) as u8;
    let asize = if address_size_toggled(bytes, bits) {
        match bits {
            64 => 4,
            32 => 2,
            _ => 4,
        }
    } else {
        default_asize
    };
    let mut insn = Insn {
        handler: invalid,
        ops: [Operand::None; 4],
        mem: MemRef {
            seg: 3,
            base: NO_REG,
            index: NO_REG,
            scale: 0,
            disp: 0,
        },
        imm: 0,
        imm2: 0,
        rel: 0,
        len: raw.len() as u8,
        osize: 0,
        asize,
        cc: 0,
        rep: if raw.has_rep_prefix() {
            Rep::Rep
        } else if raw.has_repne_prefix() {
            Rep::Repne
        } else {
            Rep::None
        },
        lock: raw.has_lock_prefix(),
        ends_block: false,
        raw: *raw,
    };
    if raw.code() == Code::INVALID {
        insn.ends_block = true;
        insn.len = insn.len.max(1);
        return insn;
    }
    let next_ip = raw.next_ip();
    let mut imm_seen = false;
    for n in 0..raw.op_count().min(4) {
        let op = match raw.op_kind(n) {
            OpKind::Register => reg_operand(raw.op_register(n)),
            OpKind::Memory => {
                let base = raw.memory_base();
                let index = raw.memory_index();
                let mut disp = raw.memory_displacement64();
                let base_idx = gpr_index(base);
                if base_idx == RIP_BASE {
                    disp = disp.wrapping_sub(next_ip);
                }
                insn.mem = MemRef {
                    seg: memory_segment(raw, bits),
                    base: base_idx,
                    index: gpr_index(index),
                    scale: raw.memory_index_scale().trailing_zeros() as u8,
                    disp,
                };
                Operand::Mem {
                    size: raw.memory_size().size().min(255) as u8,
                }
            }
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                insn.rel = raw.near_branch_target().wrapping_sub(next_ip);
                Operand::None
            }
            OpKind::FarBranch16 | OpKind::FarBranch32 => {
                insn.imm = if raw.op_kind(n) == OpKind::FarBranch16 {
                    raw.far_branch16() as u64
                } else {
                    raw.far_branch32() as u64
                };
                insn.imm2 = raw.far_branch_selector() as u64;
                Operand::None
            }
            OpKind::Immediate8_2nd => {
                insn.imm2 = raw.immediate8_2nd() as u64;
                Operand::Imm
            }
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => {
                if imm_seen {
                    insn.imm2 = raw.immediate(n);
                } else {
                    insn.imm = raw.immediate(n);
                    imm_seen = true;
                }
                Operand::Imm
            }
            // String operands: handlers use RSI/RDI directly; keep the source segment.
            OpKind::MemorySegSI
            | OpKind::MemorySegESI
            | OpKind::MemorySegRSI
            | OpKind::MemorySegDI
            | OpKind::MemorySegEDI
            | OpKind::MemorySegRDI => {
                insn.mem.seg = memory_segment(raw, bits);
                Operand::Mem {
                    size: raw.memory_size().size().min(255) as u8,
                }
            }
            OpKind::MemoryESDI | OpKind::MemoryESEDI | OpKind::MemoryESRDI => Operand::Mem {
                size: raw.memory_size().size().min(255) as u8,
            },
        };
        insn.ops[n as usize] = op;
    }
    insn.osize = match insn.ops[0] {
        Operand::Reg { size, .. } | Operand::Mem { size } => size,
        Operand::RegHigh(_) => 1,
        _ => operation_size(raw, bits, bytes),
    };
    insn.cc = condition_code(raw);
    let flow = raw.flow_control();
    insn.ends_block = !matches!(flow, iced_x86::FlowControl::Next)
        || matches!(raw.mnemonic(), Mnemonic::Hlt | Mnemonic::Pause);
    insn.handler = interp::lookup(raw, model).unwrap_or(unimplemented);
    if interp::ends_block(raw) {
        insn.ends_block = true;
    }
    insn
}

/// Operand size for instructions whose first operand does not say it (PUSH imm, branches,
/// string instructions…): the default for the mode, as changed by 0x66 and REX.W.
fn operation_size(raw: &Instruction, bits: u32, bytes: &[u8]) -> u8 {
    let mut o16 = false;
    let mut rex_w = false;
    // A REX prefix counts only when it comes last, right before the opcode: a legacy
    // prefix after it makes the CPU ignore it (SDM vol. 2, 2.2.1).
    for &b in bytes {
        match b {
            0x66 => {
                o16 = true;
                rex_w = false;
            }
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x67 | 0xf0 | 0xf2 | 0xf3 => rex_w = false,
            0x40..=0x4f if bits == 64 => rex_w = b & 8 != 0,
            _ => break,
        }
    }
    let stack_like = raw.is_stack_instruction()
        || matches!(
            raw.flow_control(),
            iced_x86::FlowControl::UnconditionalBranch
                | iced_x86::FlowControl::ConditionalBranch
                | iced_x86::FlowControl::IndirectBranch
                | iced_x86::FlowControl::Call
                | iced_x86::FlowControl::IndirectCall
                | iced_x86::FlowControl::Return
        );
    match bits {
        64 if rex_w => 8,
        64 if o16 => 2,
        // Near branches and stack operations default to 64 bits in 64-bit code.
        64 if stack_like => 8,
        64 => 4,
        32 => {
            if o16 {
                2
            } else {
                4
            }
        }
        _ => {
            if o16 {
                4
            } else {
                2
            }
        }
    }
}

fn condition_code(raw: &Instruction) -> u8 {
    use iced_x86::ConditionCode as C;
    match raw.condition_code() {
        C::o => 0,
        C::no => 1,
        C::b => 2,
        C::ae => 3,
        C::e => 4,
        C::ne => 5,
        C::be => 6,
        C::a => 7,
        C::s => 8,
        C::ns => 9,
        C::p => 10,
        C::np => 11,
        C::l => 12,
        C::ge => 13,
        C::le => 14,
        C::g => 15,
        C::None => 0,
    }
}

/// Runs `insn` as the CPU's next instruction: sets `next_rip`, calls the handler and, on
/// success, commits RIP. A fault leaves RIP at the instruction.
#[inline(always)]
pub fn execute(cpu: &mut Cpu, insn: &Insn) -> Flow {
    cpu.next_rip = cpu.s.rip.wrapping_add(insn.len as u64);
    if !cpu.mode64 {
        cpu.next_rip &= if insn.raw.code_size() == iced_x86::CodeSize::Code16 {
            0xffff
        } else {
            0xffff_ffff
        };
    }
    match (insn.handler)(cpu, insn) {
        Ok(()) => {
            cpu.s.rip = cpu.next_rip;
            cpu.stats.instructions += 1;
            Ok(())
        }
        Err(t @ (Trap::Halt | Trap::Stop)) => {
            cpu.s.rip = cpu.next_rip;
            cpu.stats.instructions += 1;
            Err(t)
        }
        Err(t) => Err(t),
    }
}
