//! Random oracle cases: short instruction sequences (1–8 units) from the general-purpose
//! families, with registers biased towards edge values and memory operands pointing into
//! the oracle's data and stack pages. Seeded and deterministic: a seed reproduces a case.
//!
//! The instruction forms come from iced-x86's opcode tables: every legacy-encoded,
//! 64-bit-valid `Code` of a family's mnemonics whose operand kinds the generator knows,
//! so "all forms" (short accumulator forms, sign-extended immediates, /r both ways…) are
//! covered without a hand-written list.

use iced_x86::{
    Code, Decoder, DecoderOptions, Encoder, EncodingKind, Instruction, MemorySize, Mnemonic,
    OpCodeOperandKind as K, OpKind, Register, RepPrefixKind,
};

use super::{Layout, State, COMPARED_FLAGS};
use crate::model::CpuModel;

/// splitmix64: tiny, good enough, and reproducible across platforms.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// True with probability `num`/`den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }

    /// A value biased towards the edges arithmetic gets wrong.
    pub fn edge(&mut self) -> u64 {
        const EDGES: [u64; 20] = [
            0,
            1,
            2,
            u64::MAX,
            u64::MAX - 1,
            0x7f,
            0x80,
            0xff,
            0x100,
            0x7fff,
            0x8000,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            i64::MAX as u64,
            i64::MIN as u64,
            0xffff_ffff_ffff_ff80,
            0xffff_ffff_8000_0000,
        ];
        match self.below(10) {
            0..=2 => self.pick(&EDGES),
            3 => self.below(70),
            4 => (self.below(64) as i64 - 32) as u64,
            5 => self.next_u64() & 0xff,
            6 => self.next_u64() & 0xffff,
            7 => self.next_u64() & 0xffff_ffff,
            // An edge with a few random low/high bits flipped.
            8 => self.pick(&EDGES) ^ (1 << self.below(64)),
            _ => self.next_u64(),
        }
    }
}

/// The instruction families (one per interpreter file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Data,
    Arith,
    Logic,
    Shift,
    Bits,
    String,
    Atomic,
    Control,
    FlagCtl,
    /// BCD and the other one-byte opcodes that are invalid in 64-bit mode (#UD).
    Bcd,
    /// Privileged instructions at CPL 3 (#GP), UD0/UD1/UD2 (#UD).
    System,
}

impl Family {
    pub const ALL: [Family; 11] = [
        Family::Data,
        Family::Arith,
        Family::Logic,
        Family::Shift,
        Family::Bits,
        Family::String,
        Family::Atomic,
        Family::Control,
        Family::FlagCtl,
        Family::Bcd,
        Family::System,
    ];
    /// Families whose instructions mix into other families' cases.
    const MIXABLE: [Family; 7] = [
        Family::Data,
        Family::Arith,
        Family::Logic,
        Family::Shift,
        Family::Bits,
        Family::FlagCtl,
        Family::Atomic,
    ];
}

/// The family a mnemonic's table-driven forms belong to (None: not generated from the
/// opcode tables; string, POPF, branches and the fault families are built by hand).
fn family_of(m: Mnemonic) -> Option<Family> {
    use Mnemonic::*;
    Some(match m {
        Mov | Movzx | Movsx | Movsxd | Lea | Xchg | Bswap | Movbe | Push | Pop | Cbw | Cwde
        | Cdqe | Cwd | Cdq | Cqo | Lahf | Sahf | Pushf | Pushfq | Nop | Cmova | Cmovae | Cmovb
        | Cmovbe | Cmove | Cmovne | Cmovg | Cmovge | Cmovl | Cmovle | Cmovo | Cmovno | Cmovp
        | Cmovnp | Cmovs | Cmovns | Seta | Setae | Setb | Setbe | Sete | Setne | Setg | Setge
        | Setl | Setle | Seto | Setno | Setp | Setnp | Sets | Setns => Family::Data,
        Add | Adc | Sub | Sbb | Cmp | Inc | Dec | Neg | Mul | Imul | Div | Idiv => Family::Arith,
        And | Or | Xor | Not | Test => Family::Logic,
        Shl | Sal | Shr | Sar | Rol | Ror | Rcl | Rcr | Shld | Shrd => Family::Shift,
        // TZCNT is left out: this model has no BMI1, so the interpreter runs F3 0F BC as
        // BSF (as pre-BMI1 CPUs do) while a BMI1 host runs TZCNT.
        Bt | Bts | Btr | Btc | Bsf | Bsr | Popcnt | Lzcnt => Family::Bits,
        Xadd | Cmpxchg | Cmpxchg8b | Cmpxchg16b => Family::Atomic,
        Clc | Stc | Cmc | Cld | Std => Family::FlagCtl,
        _ => return None,
    })
}

/// One encoded piece of a case.
#[derive(Clone, Debug)]
enum Item {
    Ins(Instruction, Target),
    Raw(Vec<u8>),
}

/// A near branch target.
#[derive(Clone, Copy, Debug)]
enum Target {
    None,
    /// The start of a top-level unit (the number of units = the end of the code).
    Unit(usize),
    /// An item of the same unit (its length = the end of the unit).
    Local(usize),
}

/// A generated case.
#[derive(Clone, Debug)]
pub struct Case {
    pub family: Family,
    pub code: Vec<u8>,
    pub init: State,
    pub mnemonics: Vec<Mnemonic>,
}

/// Registers a case's memory operands use; never an explicit destination, and never
/// one an instruction writes implicitly.
#[derive(Clone, Copy)]
struct Ctx {
    base: usize,
    index: usize,
}

const BASE_CANDIDATES: [usize; 10] = [3, 5, 8, 9, 10, 11, 12, 13, 14, 15];
const RSP: usize = 4;

pub struct Generator {
    pub rng: Rng,
    forms: Vec<(Family, Vec<Code>)>,
    model: CpuModel,
    /// Codes skipped because the interpreter has no handler (yet).
    pub unimplemented: std::collections::BTreeSet<String>,
    /// A case has 1..=max_units units (8 for the native oracle; fuzz-diff asks for longer
    /// streams, so that each KVM entry runs more instructions).
    pub max_units: usize,
    /// RFLAGS bits `push imm; popf` units may set besides the arithmetic flags and DF
    /// (IF, IOPL and NT by default; fuzz-diff leaves NT out, see its departures table).
    pub popf_extra: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        let mut forms: Vec<(Family, Vec<Code>)> =
            Family::ALL.iter().map(|f| (*f, Vec::new())).collect();
        for code in Code::values() {
            let op = code.op_code();
            if op.encoding() != EncodingKind::Legacy || !op.mode64() || !op.is_instruction() {
                continue;
            }
            let Some(fam) = family_of(op.mnemonic()) else {
                continue;
            };
            if !op.op_kinds().iter().all(|k| supported_kind(*k)) || excluded(code) {
                continue;
            }
            if let Some(f) = forms.iter_mut().find(|(f, _)| *f == fam) {
                f.1.push(code);
            }
        }
        Generator {
            rng: Rng(seed),
            forms,
            model: CpuModel::max(),
            unimplemented: Default::default(),
            max_units: 8,
            popf_extra: 0x200 | 0x3000 | 0x4000,
        }
    }

    /// The table-driven forms per family (for reporting coverage).
    pub fn forms(&self, f: Family) -> &[Code] {
        self.forms
            .iter()
            .find(|(g, _)| *g == f)
            .map(|(_, v)| &v[..])
            .unwrap_or(&[])
    }

    /// A random case whose units come mostly from `family`.
    pub fn case(&mut self, family: Family) -> Case {
        loop {
            if let Some(c) = self.try_case(family) {
                return c;
            }
        }
    }

    fn try_case(&mut self, family: Family) -> Option<Case> {
        let l = Layout::get();
        let base = self.rng.pick(&BASE_CANDIDATES);
        let index = loop {
            let i = self.rng.pick(&BASE_CANDIDATES);
            if i != base {
                break i;
            }
        };
        let ctx = Ctx { base, index };
        let n = 1 + self.rng.below(self.max_units.max(1) as u64) as usize;
        let mut units = Vec::with_capacity(n);
        for u in 0..n {
            let f = if self.rng.chance(3, 4) {
                family
            } else {
                self.rng.pick(&Family::MIXABLE)
            };
            units.push(self.unit(f, ctx, u, n)?);
        }
        let code = assemble(&units)?;

        let mut gpr = [0u64; 16];
        for g in gpr.iter_mut() {
            *g = self.rng.edge();
        }
        // CL shift/rotate counts and REP/LOOP counts are interesting when small.
        if self.rng.chance(1, 2) {
            gpr[1] = self.rng.below(70);
        }
        gpr[base] = l.data + 0x800 + self.rng.below(0x80) * 16;
        gpr[index] = self.rng.below(0x40);
        gpr[RSP] = l.stack + 0x800 - self.rng.below(0x40) * 8;
        if self.rng.chance(1, 20) {
            gpr[RSP] -= self.rng.below(8);
        }
        let rflags = self.rng.next_u64() & COMPARED_FLAGS;
        let mut data = vec![0u8; l.data_len];
        let mut stack = vec![0u8; l.stack_len];
        self.fill(&mut data);
        self.fill(&mut stack);
        let init = State {
            gpr,
            rflags,
            rip: l.code,
            data,
            stack,
        };
        let mnemonics = Decoder::with_ip(64, &code, l.code, DecoderOptions::NONE)
            .into_iter()
            .map(|i| i.mnemonic())
            .collect();
        Some(Case {
            family,
            code,
            init,
            mnemonics,
        })
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = if self.rng.chance(1, 4) {
                self.rng.edge()
            } else {
                self.rng.next_u64()
            };
            let b = v.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }

    /// One unit (a few instructions that belong together) of `family`. `u` is its index
    /// among `n` top-level units, for forward branch targets.
    fn unit(&mut self, family: Family, ctx: Ctx, u: usize, n: usize) -> Option<Vec<Item>> {
        match family {
            Family::String => self.string_unit(),
            Family::Control => self.control_unit(ctx, u, n),
            Family::Bcd => Some(vec![Item::Raw(self.rng.pick(INVALID_IN_64).to_vec())]),
            Family::System => Some(vec![Item::Raw(self.rng.pick(PRIVILEGED).to_vec())]),
            Family::Data if self.rng.chance(1, 8) => Some(self.popf_unit()),
            Family::Arith if self.rng.chance(1, 5) => self.divide_unit(ctx),
            f => Some(vec![Item::Ins(self.table_insn(f, ctx)?, Target::None)]),
        }
    }

    /// A random form of `family` from the opcode tables, with random operands.
    fn table_insn(&mut self, family: Family, ctx: Ctx) -> Option<Instruction> {
        let len = self.forms(family).len() as u64;
        if len == 0 {
            return None;
        }
        let k = self.rng.below(len) as usize;
        let code = self.forms(family)[k];
        self.build(code, ctx)
    }

    fn build(&mut self, code: Code, ctx: Ctx) -> Option<Instruction> {
        let op = code.op_code();
        let mut ins = Instruction::default();
        ins.set_code(code);
        let kinds = op.op_kinds();
        let mem_size = op.memory_size().size();
        for (k, kind) in kinds.iter().enumerate() {
            self.operand(&mut ins, k as u32, *kind, code, mem_size, ctx)?;
        }
        // LOCK: mostly on memory destinations; now and then on a register one (#UD).
        let mem_dst = ins.op_count() > 0 && ins.op_kind(0) == OpKind::Memory;
        if op.can_use_lock_prefix() && self.rng.chance(1, if mem_dst { 3 } else { 40 }) {
            ins.set_has_lock_prefix(true);
        }
        // The interpreter must have a handler, or the case would only test #UD. Forms
        // without one are dropped from the tables (and reported).
        if crate::interp::lookup(&ins, &self.model).is_none() {
            self.unimplemented.insert(format!("{code:?}"));
            for (_, forms) in self.forms.iter_mut() {
                forms.retain(|c| *c != code);
            }
            return None;
        }
        // Encodability (AH with REX, …) is checked here so that `assemble` can't fail.
        Encoder::new(64).encode(&ins, Layout::get().code).ok()?;
        Some(ins)
    }

    fn operand(
        &mut self,
        ins: &mut Instruction,
        k: u32,
        kind: K,
        code: Code,
        mem_size: usize,
        ctx: Ctx,
    ) -> Option<()> {
        let r = |ins: &mut Instruction, reg: Register| {
            ins.set_op_kind(k, OpKind::Register);
            ins.set_op_register(k, reg);
        };
        match kind {
            K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem => {
                if self.rng.chance(1, 2) {
                    r(ins, self.gpr(kind, ctx));
                } else {
                    self.mem(ins, k, code, mem_size, ctx);
                }
            }
            K::mem => self.mem(ins, k, code, mem_size, ctx),
            K::mem_offs => {
                ins.set_op_kind(k, OpKind::Memory);
                ins.set_memory_displacement64(self.data_addr(mem_size));
                ins.set_memory_displ_size(8);
            }
            K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_rm
            | K::r16_opcode
            | K::r32_reg
            | K::r32_rm
            | K::r32_opcode
            | K::r64_reg
            | K::r64_rm
            | K::r64_opcode => r(ins, self.gpr(kind, ctx)),
            K::al => r(ins, Register::AL),
            K::cl => r(ins, Register::CL),
            K::ax => r(ins, Register::AX),
            K::eax => r(ins, Register::EAX),
            K::rax => r(ins, Register::RAX),
            // Only segment-register reads are generated (MOV r/m, Sreg; PUSH FS/GS): both
            // sides run with Linux's user selectors.
            K::seg_reg => r(
                ins,
                self.rng.pick(&[
                    Register::ES,
                    Register::CS,
                    Register::SS,
                    Register::DS,
                    Register::FS,
                    Register::GS,
                ]),
            ),
            K::fs => r(ins, Register::FS),
            K::gs => r(ins, Register::GS),
            K::imm8 => {
                ins.set_op_kind(
                    k,
                    if k >= 2 && kinds_has_two_imm(code) {
                        OpKind::Immediate8_2nd
                    } else {
                        OpKind::Immediate8
                    },
                );
                let v = self.imm8(code);
                if ins.op_kind(k) == OpKind::Immediate8_2nd {
                    ins.set_immediate8_2nd(v);
                } else {
                    ins.set_immediate8(v);
                }
            }
            K::imm8_const_1 => {
                ins.set_op_kind(k, OpKind::Immediate8);
                ins.set_immediate8(1);
            }
            K::imm8sex16 => {
                ins.set_op_kind(k, OpKind::Immediate8to16);
                ins.set_immediate8to16(self.rng.edge() as i8 as i16);
            }
            K::imm8sex32 => {
                ins.set_op_kind(k, OpKind::Immediate8to32);
                ins.set_immediate8to32(self.rng.edge() as i8 as i32);
            }
            K::imm8sex64 => {
                ins.set_op_kind(k, OpKind::Immediate8to64);
                ins.set_immediate8to64(self.rng.edge() as i8 as i64);
            }
            K::imm16 => {
                ins.set_op_kind(k, OpKind::Immediate16);
                ins.set_immediate16(self.rng.edge() as u16);
            }
            K::imm32 => {
                ins.set_op_kind(k, OpKind::Immediate32);
                ins.set_immediate32(self.rng.edge() as u32);
            }
            K::imm32sex64 => {
                ins.set_op_kind(k, OpKind::Immediate32to64);
                ins.set_immediate32to64(self.rng.edge() as i32 as i64);
            }
            K::imm64 => {
                ins.set_op_kind(k, OpKind::Immediate64);
                ins.set_immediate64(self.rng.edge());
            }
            _ => return None,
        }
        Some(())
    }

    /// Shift/rotate counts: mostly around the operand widths.
    fn imm8(&mut self, code: Code) -> u8 {
        let m = code.mnemonic();
        let shift = matches!(
            m,
            Mnemonic::Shl
                | Mnemonic::Sal
                | Mnemonic::Shr
                | Mnemonic::Sar
                | Mnemonic::Rol
                | Mnemonic::Ror
                | Mnemonic::Rcl
                | Mnemonic::Rcr
                | Mnemonic::Shld
                | Mnemonic::Shrd
        );
        if shift && self.rng.chance(3, 4) {
            return self.rng.below(70) as u8;
        }
        self.rng.edge() as u8
    }

    /// A random general register of the width `kind` names, avoiding the case's address
    /// registers (and RSP, mostly).
    fn gpr(&mut self, kind: K, ctx: Ctx) -> Register {
        let width = match kind {
            K::r8_or_mem | K::r8_reg | K::r8_opcode => 1,
            K::r16_or_mem | K::r16_reg | K::r16_rm | K::r16_opcode => 2,
            K::r32_or_mem | K::r32_reg | K::r32_rm | K::r32_opcode => 4,
            _ => 8,
        };
        loop {
            if width == 1 && self.rng.chance(1, 5) {
                let h = self.rng.below(4) as usize;
                if h != ctx.base && h != ctx.index {
                    return [Register::AH, Register::CH, Register::DH, Register::BH][h];
                }
                continue;
            }
            let i = self.rng.below(16) as usize;
            if i == ctx.base || i == ctx.index || (i == RSP && !self.rng.chance(1, 30)) {
                continue;
            }
            return gpr_reg(i, width);
        }
    }

    /// An address in the data page with room for `size` bytes.
    fn data_addr(&mut self, size: usize) -> u64 {
        let l = Layout::get();
        l.data + 0x100 + self.rng.below((l.data_len - 0x200 - size.max(1)) as u64)
    }

    fn mem(&mut self, ins: &mut Instruction, k: u32, code: Code, size: usize, ctx: Ctx) {
        ins.set_op_kind(k, OpKind::Memory);
        let align16 = code == Code::Cmpxchg16b_m128 && self.rng.chance(3, 4);
        let disp8 = |g: &mut Self| -> i64 {
            if align16 {
                (g.rng.below(16) as i64 - 8) * 16
            } else {
                g.rng.below(256) as i64 - 128
            }
        };
        match self.rng.below(20) {
            0..=7 => {
                ins.set_memory_base(gpr_reg(ctx.base, 8));
                let d = disp8(self);
                ins.set_memory_displacement64(d as u64);
                ins.set_memory_displ_size(if d == 0 { 0 } else { 1 });
            }
            8..=10 => {
                ins.set_memory_base(gpr_reg(ctx.base, 8));
                let d = if align16 {
                    disp8(self) * 8
                } else {
                    self.rng.below(0xe00) as i64 - 0x700
                };
                ins.set_memory_displacement64(d as u64);
                ins.set_memory_displ_size(4);
            }
            11..=13 => {
                ins.set_memory_base(gpr_reg(ctx.base, 8));
                ins.set_memory_index(gpr_reg(ctx.index, 8));
                // CMPXCHG16B: index × 8 is 16-aligned only for even indexes; the odd ones
                // check the #GP.
                let scale = if align16 { 8 } else { 1 << self.rng.below(4) };
                ins.set_memory_index_scale(scale);
                let d = disp8(self);
                ins.set_memory_displacement64(d as u64);
                ins.set_memory_displ_size(1);
            }
            14 | 15 => {
                // RIP-relative, to a data address.
                let mut a = self.data_addr(size);
                if align16 {
                    a &= !15;
                }
                ins.set_memory_base(Register::RIP);
                ins.set_memory_displacement64(a);
                ins.set_memory_displ_size(8);
            }
            16 => {
                // Absolute [disp32] (SIB without base or index).
                let mut a = self.data_addr(size);
                if align16 {
                    a &= !15;
                }
                ins.set_memory_displacement64(a);
                ins.set_memory_displ_size(4);
            }
            17 | 18 => {
                // Stack-relative.
                ins.set_memory_base(Register::RSP);
                let d = disp8(self);
                ins.set_memory_displacement64(d as u64);
                ins.set_memory_displ_size(1);
            }
            _ => {
                // 32-bit address size (0x67): the base register's value fits in 32 bits.
                ins.set_memory_base(gpr_reg(ctx.base, 4));
                let d = disp8(self);
                ins.set_memory_displacement64(d as u32 as u64);
                ins.set_memory_displ_size(1);
            }
        }
    }

    /// `push imm; popf`: only the arithmetic flags, DF and the flags POPF must ignore at
    /// CPL 3 (IF, IOPL) vary — TF would trap and AC would turn on alignment checks.
    fn popf_unit(&mut self) -> Vec<Item> {
        let v = (self.rng.next_u64() & (COMPARED_FLAGS | self.popf_extra)) | 2;
        if self.rng.chance(1, 4) {
            let push = Instruction::with1(Code::Push_imm16, v as u32).ok();
            let popf = Instruction::with(Code::Popfw);
            if let Some(p) = push {
                return vec![Item::Ins(p, Target::None), Item::Ins(popf, Target::None)];
            }
        }
        let mut items = Vec::new();
        if let Ok(p) = Instruction::with1(Code::Pushq_imm32, v as i32) {
            items.push(Item::Ins(p, Target::None));
        }
        items.push(Item::Ins(Instruction::with(Code::Popfq), Target::None));
        items
    }

    /// DIV/IDIV, usually after setting up the dividend's high half so that the quotient
    /// fits (divide-by-zero and overflow #DE still happen, through edge divisors).
    fn divide_unit(&mut self, ctx: Ctx) -> Option<Vec<Item>> {
        let forms: Vec<Code> = self
            .forms(Family::Arith)
            .iter()
            .copied()
            .filter(|c| matches!(c.mnemonic(), Mnemonic::Div | Mnemonic::Idiv))
            .collect();
        if forms.is_empty() {
            return None;
        }
        let code = self.rng.pick(&forms);
        let d = self.build(code, ctx)?;
        let mut items = Vec::new();
        if self.rng.chance(4, 5) {
            let signed = code.mnemonic() == Mnemonic::Idiv;
            let prep = match (code.op_code().memory_size(), signed) {
                (MemorySize::UInt8 | MemorySize::Int8, false) => {
                    Instruction::with2(Code::Movzx_r32_rm8, Register::EAX, Register::AL)
                }
                (MemorySize::UInt8 | MemorySize::Int8, true) => Ok(Instruction::with(Code::Cbw)),
                (MemorySize::UInt16 | MemorySize::Int16, true) => Ok(Instruction::with(Code::Cwd)),
                (MemorySize::UInt32 | MemorySize::Int32, true) => Ok(Instruction::with(Code::Cdq)),
                (_, true) => Ok(Instruction::with(Code::Cqo)),
                (_, false) => Instruction::with2(Code::Xor_r32_rm32, Register::EDX, Register::EDX),
            };
            items.push(Item::Ins(prep.ok()?, Target::None));
        }
        items.push(Item::Ins(d, Target::None));
        Some(items)
    }

    /// `mov rsi/rdi/rcx, …; [rep] string-op`, with RSI/RDI in the data page and a count
    /// small enough to stay there in either direction.
    fn string_unit(&mut self) -> Option<Vec<Item>> {
        let l = Layout::get();
        let mut items = Vec::new();
        let mov = |r: Register, v: u64| {
            Instruction::with2(Code::Mov_r64_imm64, r, v)
                .ok()
                .map(|i| Item::Ins(i, Target::None))
        };
        items.push(mov(Register::RSI, l.data + 0x400 + self.rng.below(0x1000))?);
        items.push(mov(Register::RDI, l.data + 0x400 + self.rng.below(0x1000))?);
        if self.rng.chance(1, 2) {
            // Overlapping source and destination.
            let v = l.data + 0x800 + self.rng.below(0x40);
            items.push(mov(Register::RDI, v)?);
        }
        items.push(mov(Register::RCX, self.rng.below(18))?);
        if self.rng.chance(1, 3) {
            // Make equal runs likely for REPE/REPNE.
            let e = self.rng.edge();
            items.push(mov(Register::RAX, self.rng.pick(&[0u64, u64::MAX, e]))?);
        }
        let asz = if self.rng.chance(1, 5) { 32 } else { 64 };
        let seg = Register::None;
        let width = self.rng.below(4);
        let (rep, repcc) = (
            if self.rng.chance(2, 3) {
                RepPrefixKind::Repe
            } else {
                RepPrefixKind::None
            },
            self.rng.pick(&[
                RepPrefixKind::None,
                RepPrefixKind::Repe,
                RepPrefixKind::Repne,
            ]),
        );
        let ins = match self.rng.below(5) {
            0 => [
                Instruction::with_movsb,
                Instruction::with_movsw,
                Instruction::with_movsd,
                Instruction::with_movsq,
            ][width as usize](asz, seg, rep),
            1 => [
                Instruction::with_cmpsb,
                Instruction::with_cmpsw,
                Instruction::with_cmpsd,
                Instruction::with_cmpsq,
            ][width as usize](asz, seg, repcc),
            2 => [
                Instruction::with_scasb,
                Instruction::with_scasw,
                Instruction::with_scasd,
                Instruction::with_scasq,
            ][width as usize](asz, repcc),
            3 => [
                Instruction::with_lodsb,
                Instruction::with_lodsw,
                Instruction::with_lodsd,
                Instruction::with_lodsq,
            ][width as usize](asz, seg, rep),
            _ => [
                Instruction::with_stosb,
                Instruction::with_stosw,
                Instruction::with_stosd,
                Instruction::with_stosq,
            ][width as usize](asz, rep),
        }
        .ok()?;
        if crate::interp::lookup(&ins, &self.model).is_none() {
            self.unimplemented.insert(format!("{:?}", ins.code()));
            return None;
        }
        items.push(Item::Ins(ins, Target::None));
        Some(items)
    }

    /// Forward branches (Jcc, JMP, LOOPcc, JRCXZ/JECXZ, rel8 and rel32) to a later unit,
    /// and `call A; jmp B; A: body; ret [imm16]; B:` subroutines.
    fn control_unit(&mut self, ctx: Ctx, u: usize, n: usize) -> Option<Vec<Item>> {
        // Skip at least one unit when there is one: a branch to the next unit looks the
        // same taken or not.
        let skip = if n - u > 1 {
            1 + self.rng.below((n - u - 1) as u64)
        } else {
            0
        };
        let target = Target::Unit(u + 1 + skip as usize);
        let l = Layout::get();
        let code = match self.rng.below(8) {
            0..=2 => self.rng.pick(JCC_REL8),
            3 => self.rng.pick(JCC_REL32),
            4 => self.rng.pick(&[Code::Jmp_rel8_64, Code::Jmp_rel32_64]),
            5 => self.rng.pick(&[
                Code::Loop_rel8_64_RCX,
                Code::Loope_rel8_64_RCX,
                Code::Loopne_rel8_64_RCX,
                Code::Jrcxz_rel8_64,
                Code::Loop_rel8_64_ECX,
                Code::Loope_rel8_64_ECX,
                Code::Loopne_rel8_64_ECX,
                Code::Jecxz_rel8_64,
            ]),
            6 => match self.rng.below(4) {
                0 => return self.indirect_jump_unit(ctx, target),
                1 => return self.enter_leave_unit(ctx),
                _ => return self.subroutine_unit(ctx),
            },
            _ => return self.subroutine_unit(ctx),
        };
        let ins = Instruction::with_branch(code, l.code).ok()?;
        if crate::interp::lookup(&ins, &self.model).is_none() {
            self.unimplemented.insert(format!("{code:?}"));
            return None;
        }
        Some(vec![Item::Ins(ins, target)])
    }

    /// `lea r, [rip+target]; jmp r` or through a stack slot.
    fn indirect_jump_unit(&mut self, _ctx: Ctx, target: Target) -> Option<Vec<Item>> {
        let (r, lea) = self.lea_rip_unit_register()?;
        let mut items = vec![Item::Ins(lea, target)];
        if self.rng.chance(1, 2) {
            items.push(Item::Ins(
                Instruction::with1(Code::Jmp_rm64, r).ok()?,
                Target::None,
            ));
        } else {
            let slot = iced_x86::MemoryOperand::with_base_displ(Register::RSP, -16);
            items.push(Item::Ins(
                Instruction::with2(Code::Mov_rm64_r64, slot, r).ok()?,
                Target::None,
            ));
            items.push(Item::Ins(
                Instruction::with1(Code::Jmp_rm64, slot).ok()?,
                Target::None,
            ));
        }
        Some(items)
    }

    /// `lea rbp, [rsp-k]; enter size, level; [leave]`.
    fn enter_leave_unit(&mut self, ctx: Ctx) -> Option<Vec<Item>> {
        if ctx.base == 5 || ctx.index == 5 {
            return None;
        }
        let rbp = iced_x86::MemoryOperand::with_base_displ(
            Register::RSP,
            -(self.rng.below(8) as i64 * 8),
        );
        let mut items = vec![Item::Ins(
            Instruction::with2(Code::Lea_r64_m, Register::RBP, rbp).ok()?,
            Target::None,
        )];
        let word = self.rng.chance(1, 4);
        let level = if self.rng.chance(3, 4) {
            self.rng.below(4)
        } else {
            self.rng.below(40)
        } as u32;
        let size = self.rng.pick(&[0u32, 8, 0x18, 0x40, 0x101]);
        let enter = if word {
            Code::Enterw_imm16_imm8
        } else {
            Code::Enterq_imm16_imm8
        };
        items.push(Item::Ins(
            Instruction::with2(enter, size, level).ok()?,
            Target::None,
        ));
        if self.rng.chance(1, 2) {
            let leave = if self.rng.chance(1, 4) {
                Code::Leavew
            } else {
                Code::Leaveq
            };
            items.push(Item::Ins(Instruction::with(leave), Target::None));
        }
        for it in &items {
            if let Item::Ins(i, _) = it {
                if crate::interp::lookup(i, &self.model).is_none() {
                    self.unimplemented.insert(format!("{:?}", i.code()));
                    return None;
                }
            }
        }
        Some(items)
    }

    fn subroutine_unit(&mut self, ctx: Ctx) -> Option<Vec<Item>> {
        if self.rng.chance(1, 3) {
            return self.indirect_subroutine_unit(ctx);
        }
        let l = Layout::get();
        let body_len = self.rng.below(4) as usize;
        let mut body = Vec::new();
        for _ in 0..body_len {
            let f = self.rng.pick(&[
                Family::Arith,
                Family::Logic,
                Family::Shift,
                Family::FlagCtl,
                Family::Bits,
            ]);
            body.push(Item::Ins(self.table_insn(f, ctx)?, Target::None));
        }
        let ret = if self.rng.chance(1, 4) {
            Instruction::with1(Code::Retnq_imm16, (self.rng.below(8) * 8) as u32).ok()?
        } else {
            Instruction::with(Code::Retnq)
        };
        let end = 2 + body.len() + 1;
        let mut items = vec![
            Item::Ins(
                Instruction::with_branch(Code::Call_rel32_64, l.code).ok()?,
                Target::Local(2),
            ),
            Item::Ins(
                Instruction::with_branch(
                    self.rng.pick(&[Code::Jmp_rel8_64, Code::Jmp_rel32_64]),
                    l.code,
                )
                .ok()?,
                Target::Local(end),
            ),
        ];
        items.extend(body);
        items.push(Item::Ins(ret, Target::None));
        Some(items)
    }
}

/// Operand values for the table-driven cases: the edges of every width.
pub const EDGE_VALUES: [u64; 16] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    i64::MIN as u64,
    u64::MAX,
    0x0123_4567_89ab_cdef,
];

/// Counts for the table-driven shift/rotate cases (CL and imm8).
pub const EDGE_COUNTS: [u64; 14] = [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64];

impl Generator {
    /// Table-driven cases for one form: its register operands take every pair of
    /// `EDGE_VALUES` (destination × source), CL every `EDGE_COUNTS`, with CF clear and
    /// set. Memory operands (when the random form picked one) get the same values.
    pub fn edge_cases(&mut self, code: Code) -> Vec<Case> {
        let l = Layout::get();
        let ctx = Ctx { base: 3, index: 5 };
        let Some(ins) = (0..20).find_map(|_| self.build(code, ctx)) else {
            return Vec::new();
        };
        let Some(bytes) = assemble(&[vec![Item::Ins(ins, Target::None)]]) else {
            return Vec::new();
        };
        let mnemonics = vec![code.mnemonic()];
        let reg_of = |k: u32| -> Option<usize> {
            (ins.op_kind(k) == OpKind::Register)
                .then(|| ins.op_register(k))
                .and_then(|r| {
                    let full = r.full_register();
                    (full.is_gpr64()).then(|| full as usize - Register::RAX as usize)
                })
        };
        let (dst, src) = (reg_of(0), if ins.op_count() > 1 { reg_of(1) } else { None });
        let uses_cl = (0..ins.op_count())
            .any(|k| ins.op_kind(k) == OpKind::Register && ins.op_register(k) == Register::CL);
        // CL forms: destination × count × two sources; others: destination × source.
        let (bs, counts): (&[u64], &[u64]) = if uses_cl {
            (&[u64::MAX, 0x0123_4567_89ab_cdef], &EDGE_COUNTS)
        } else {
            (&EDGE_VALUES, &[0])
        };
        let family = family_of(code.mnemonic()).unwrap_or(Family::Data);
        let mut out = Vec::new();
        for &a in EDGE_VALUES.iter() {
            for &b in bs {
                for &c in counts {
                    let mut gpr = [0u64; 16];
                    for (i, g) in gpr.iter_mut().enumerate() {
                        *g = if i % 2 == 0 { a } else { b };
                    }
                    if let Some(d) = dst {
                        gpr[d] = a;
                    }
                    if let Some(s) = src {
                        gpr[s] = b;
                    }
                    gpr[2] = if code.mnemonic() == Mnemonic::Div {
                        0
                    } else {
                        gpr[2]
                    };
                    if uses_cl {
                        gpr[1] = c;
                    }
                    gpr[ctx.base] = l.data + 0x800;
                    gpr[ctx.index] = 8;
                    gpr[RSP] = l.stack + 0x800;
                    let mut data = vec![0u8; l.data_len];
                    let mut stack = vec![0u8; l.stack_len];
                    for (i, ch) in data.chunks_mut(8).chain(stack.chunks_mut(8)).enumerate() {
                        let v = if i % 2 == 0 { a } else { b }.to_le_bytes();
                        ch.copy_from_slice(&v[..ch.len()]);
                    }
                    // CF in (ADC/SBB/RCL/RCR) alternates with the values.
                    let cf = (a ^ b ^ c ^ (a >> 7)) & 1;
                    let rflags = (self.rng.next_u64() & COMPARED_FLAGS & !1) | cf;
                    let init = State {
                        gpr,
                        rflags,
                        rip: l.code,
                        data,
                        stack,
                    };
                    out.push(Case {
                        family,
                        code: bytes.clone(),
                        init,
                        mnemonics: mnemonics.clone(),
                    });
                }
            }
        }
        out
    }
}

impl Generator {
    /// A scratch register and `lea r, [rip+0]`, whose displacement the assembler later
    /// points at the unit's target.
    fn lea_rip_unit_register(&mut self) -> Option<(Register, Instruction)> {
        let r = self.rng.pick(&[
            Register::RAX,
            Register::RCX,
            Register::RDX,
            Register::RSI,
            Register::RDI,
        ]);
        let lea = Instruction::with2(
            Code::Lea_r64_m,
            r,
            iced_x86::MemoryOperand::with_base_displ(Register::RIP, 0),
        )
        .ok()?;
        Some((r, lea))
    }

    /// `lea r, [rip+A]; call r; jmp B; A: body; ret; B:`.
    fn indirect_subroutine_unit(&mut self, ctx: Ctx) -> Option<Vec<Item>> {
        let l = Layout::get();
        let (r, lea) = self.lea_rip_unit_register()?;
        let f = self
            .rng
            .pick(&[Family::Logic, Family::FlagCtl, Family::Bits]);
        let body = self.table_insn(f, ctx)?;
        Some(vec![
            Item::Ins(lea, Target::Local(3)),
            Item::Ins(Instruction::with1(Code::Call_rm64, r).ok()?, Target::None),
            Item::Ins(
                Instruction::with_branch(Code::Jmp_rel32_64, l.code).ok()?,
                Target::Local(5),
            ),
            Item::Ins(body, Target::None),
            Item::Ins(Instruction::with(Code::Retnq), Target::None),
        ])
    }
}

/// Points a branch (or a RIP-relative LEA) at `addr`.
fn set_target(ins: &mut Instruction, addr: u64) {
    if ins.memory_base() == Register::RIP {
        ins.set_memory_displacement64(addr);
    } else {
        ins.set_near_branch64(addr);
    }
}

fn kinds_has_two_imm(code: Code) -> bool {
    code.op_code()
        .op_kinds()
        .iter()
        .filter(|k| matches!(k, K::imm8 | K::imm16))
        .count()
        > 1
}

fn supported_kind(k: K) -> bool {
    matches!(
        k,
        K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::mem
            | K::mem_offs
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_rm
            | K::r16_opcode
            | K::r32_reg
            | K::r32_rm
            | K::r32_opcode
            | K::r64_reg
            | K::r64_rm
            | K::r64_opcode
            | K::al
            | K::cl
            | K::ax
            | K::eax
            | K::rax
            | K::imm8
            | K::imm8_const_1
            | K::imm8sex16
            | K::imm8sex32
            | K::imm8sex64
            | K::imm16
            | K::imm32
            | K::imm32sex64
            | K::imm64
            | K::seg_reg
            | K::fs
            | K::gs
    )
}

/// Forms left out of the random tables, and why.
fn excluded(code: Code) -> bool {
    matches!(
        code,
        // POPF is generated as `push imm; popf` (a random value could set TF or AC).
        Code::Popfw | Code::Popfq
        // Reserved-NOP space (0F 0D, 0F 18–1F) holds hints (PREFETCH*, CLDEMOTE…) that
        // differ per host; NOP itself is covered by 90 and 0F 1F.
        | Code::Nop_rm16 | Code::Nop_rm32 | Code::Nop_rm64
        // Segment register loads: the host's descriptor tables are not the interpreter's.
        | Code::Mov_Sreg_rm16 | Code::Mov_Sreg_r32m16 | Code::Mov_Sreg_r64m16
        | Code::Popw_FS | Code::Popq_FS | Code::Popw_GS | Code::Popq_GS
    ) || {
        let s = format!("{code:?}");
        s.starts_with("Reservednop")
    }
}

const JCC_REL8: &[Code] = &[
    Code::Jo_rel8_64,
    Code::Jno_rel8_64,
    Code::Jb_rel8_64,
    Code::Jae_rel8_64,
    Code::Je_rel8_64,
    Code::Jne_rel8_64,
    Code::Jbe_rel8_64,
    Code::Ja_rel8_64,
    Code::Js_rel8_64,
    Code::Jns_rel8_64,
    Code::Jp_rel8_64,
    Code::Jnp_rel8_64,
    Code::Jl_rel8_64,
    Code::Jge_rel8_64,
    Code::Jle_rel8_64,
    Code::Jg_rel8_64,
];
const JCC_REL32: &[Code] = &[
    Code::Jo_rel32_64,
    Code::Jno_rel32_64,
    Code::Jb_rel32_64,
    Code::Jae_rel32_64,
    Code::Je_rel32_64,
    Code::Jne_rel32_64,
    Code::Jbe_rel32_64,
    Code::Ja_rel32_64,
    Code::Js_rel32_64,
    Code::Jns_rel32_64,
    Code::Jp_rel32_64,
    Code::Jnp_rel32_64,
    Code::Jl_rel32_64,
    Code::Jge_rel32_64,
    Code::Jle_rel32_64,
    Code::Jg_rel32_64,
];

/// One-byte opcodes (BCD and others) that are invalid in 64-bit mode: #UD.
const INVALID_IN_64: &[&[u8]] = &[
    &[0x27],                   // DAA
    &[0x2f],                   // DAS
    &[0x37],                   // AAA
    &[0x3f],                   // AAS
    &[0xd4, 0x0a],             // AAM
    &[0xd4, 0x07],             // AAM imm8
    &[0xd5, 0x0a],             // AAD
    &[0xd5, 0x03],             // AAD imm8
    &[0x06],                   // PUSH ES
    &[0x07],                   // POP ES
    &[0x0e],                   // PUSH CS
    &[0x16],                   // PUSH SS
    &[0x17],                   // POP SS
    &[0x1e],                   // PUSH DS
    &[0x1f],                   // POP DS
    &[0x60],                   // PUSHA
    &[0x61],                   // POPA
    &[0xce],                   // INTO
    &[0xd6],                   // SALC
    &[0x9a, 0, 0, 0, 0, 0, 0], // CALLF ptr16:32
    &[0xea, 0, 0, 0, 0, 0, 0], // JMPF ptr16:32
    &[0x82, 0xc0, 0x01],       // 82 /0 (ADD r/m8, imm8 alias)
];

/// Privileged (at CPL 3, IOPL 0: #GP) and undefined (#UD) instructions.
const PRIVILEGED: &[&[u8]] = &[
    &[0xfa],             // CLI
    &[0xfb],             // STI
    &[0xf4],             // HLT
    &[0xec],             // IN AL, DX
    &[0xed],             // IN EAX, DX
    &[0xee],             // OUT DX, AL
    &[0xe4, 0x60],       // IN AL, 0x60
    &[0xe6, 0x80],       // OUT 0x80, AL
    &[0x0f, 0x32],       // RDMSR
    &[0x0f, 0x30],       // WRMSR
    &[0x0f, 0x20, 0xc0], // MOV RAX, CR0
    &[0x0f, 0x22, 0xd8], // MOV CR3, RAX
    &[0x0f, 0x21, 0xc0], // MOV RAX, DR0
    &[0x0f, 0x06],       // CLTS
    &[0x0f, 0x08],       // INVD
    &[0x0f, 0x09],       // WBINVD
    &[0x0f, 0x01, 0xf8], // SWAPGS
    &[0x0f, 0x00, 0xd0], // LLDT AX
    &[0x0f, 0x00, 0xd8], // LTR AX
    &[0x0f, 0x01, 0x38], // INVLPG [RAX]
    &[0x0f, 0x01, 0x10], // LGDT [RAX]
    &[0x0f, 0x01, 0x18], // LIDT [RAX]
    &[0x0f, 0x01, 0xf0], // LMSW AX
    &[0x0f, 0x0b],       // UD2
    &[0x0f, 0xb9, 0xc0], // UD1 EAX, EAX
    &[0x0f, 0xff, 0xc0], // UD0 EAX, EAX
];

/// Lays out the units, resolves branch targets and encodes; appends UD2.
fn assemble(units: &[Vec<Item>]) -> Option<Vec<u8>> {
    let l = Layout::get();
    let mut enc = Encoder::new(64);
    // Pass 1: lengths (branch forms have fixed lengths, so any in-range target will do).
    let mut ips: Vec<Vec<u64>> = Vec::new();
    let mut unit_start = Vec::new();
    let mut ip = l.code;
    for unit in units {
        unit_start.push(ip);
        let mut v = Vec::new();
        for item in unit {
            v.push(ip);
            ip += match item {
                Item::Raw(b) => b.len() as u64,
                Item::Ins(ins, t) => {
                    let mut ins = *ins;
                    if !matches!(t, Target::None) {
                        set_target(&mut ins, ip);
                    }
                    enc.encode(&ins, ip).ok()? as u64
                }
            };
        }
        v.push(ip);
        ips.push(v);
    }
    unit_start.push(ip);
    let _ = enc.take_buffer();
    // Pass 2: the real targets.
    let mut out = Vec::new();
    for (u, unit) in units.iter().enumerate() {
        for (k, item) in unit.iter().enumerate() {
            match item {
                Item::Raw(b) => out.extend_from_slice(b),
                Item::Ins(ins, t) => {
                    let mut ins = *ins;
                    match t {
                        Target::None => {}
                        Target::Unit(x) => set_target(&mut ins, unit_start[(*x).min(units.len())]),
                        Target::Local(x) => set_target(&mut ins, ips[u][*x]),
                    }
                    let before = enc.take_buffer().len();
                    debug_assert_eq!(before, 0);
                    let n = enc.encode(&ins, ips[u][k]).ok()?;
                    if n as u64 != ips[u][k + 1] - ips[u][k] {
                        return None;
                    }
                    out.extend_from_slice(&enc.take_buffer());
                }
            }
        }
    }
    out.extend_from_slice(&[0x0f, 0x0b]);
    (out.len() <= l.code_len).then_some(out)
}

fn gpr_reg(i: usize, width: u8) -> Register {
    let base = match width {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    };
    // AL..R15L, AX..R15W, EAX..R15D and RAX..R15 are contiguous in iced's Register enum,
    // except that 8-bit has AH..BH between BL and SPL.
    let idx = if width == 1 && i >= 4 { i + 4 } else { i };
    Register::values().nth(base as usize + idx).unwrap_or(base)
}
