//! The native oracle: run the same 64-bit user-mode instruction sequence on the host CPU
//! (in a ptraced child, `native`) and in the interpreter, from the same registers, flags
//! and memory, and compare everything. `gen` makes the random and table-driven cases.
//!
//! Both sides see the same user-mode (CPL 3) machine: code at `CODE`, two data pages at
//! `DATA`, one stack page below `STACK_TOP`, nothing else mapped — so a stray access
//! faults on both sides (SIGSEGV natively, #PF in the interpreter) and the fault is
//! compared too.

pub mod gen;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod native;

use std::fmt::Write as _;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter, Mnemonic};

use crate::exec::{Interpreter, RunExit};
use crate::state::{cr0, cr4, efer, seg_attr, CpuState, Segment, CS, DS, ES, FS, GS, SS};
use crate::testing;

/// Where a case's pages live (the same addresses `testing::run64` uses).
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub code: u64,
    pub code_len: usize,
    pub data: u64,
    pub data_len: usize,
    pub stack: u64,
    pub stack_len: usize,
}

impl Layout {
    pub const fn get() -> Layout {
        Layout {
            code: testing::CODE,
            code_len: 0x1000,
            data: testing::DATA,
            data_len: 0x2000,
            stack: testing::STACK_TOP - 0x1000,
            stack_len: 0x1000,
        }
    }
}

/// The state a case starts from / ends in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub gpr: [u64; 16],
    pub rflags: u64,
    pub rip: u64,
    pub data: Vec<u8>,
    pub stack: Vec<u8>,
}

/// How a case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reached the final UD2.
    Completed,
    /// An exception at `State::rip`; `cr2` for page faults.
    Fault { vector: u8, cr2: Option<u64> },
    /// A signal the native side cannot map to a vector.
    Signal(i32),
    /// The interpreter stopped for another reason (budget, unsupported…).
    Other(String),
}

/// RFLAGS bits compared: CF PF AF ZF SF DF OF.
pub const COMPARED_FLAGS: u64 = 0xcd5;

/// Flags the SDM leaves undefined AND where the interpreter knowingly differs from this
/// host. Every entry names the instruction and the reason; the mask is applied only to
/// cases containing that mnemonic. Keep this empty unless there is no sane way to match
/// the host (the families were written to match it).
pub static UNDEFINED_FLAGS: &[(Mnemonic, u64, &str)] = &[];

/// The flag mask to compare for a case made of `mnemonics`.
pub fn flag_mask(mnemonics: &[Mnemonic]) -> u64 {
    let mut m = COMPARED_FLAGS;
    for (mn, mask, _) in UNDEFINED_FLAGS {
        if mnemonics.contains(mn) {
            m &= !mask;
        }
    }
    m
}

const PML4: u64 = 0x1000;

/// The interpreter side: a CPL-3 long-mode machine with only the oracle's pages mapped
/// (4 KiB pages, user-accessible).
pub struct InterpRunner {
    pub it: Interpreter,
}

impl Default for InterpRunner {
    fn default() -> Self {
        Self::new()
    }
}

impl InterpRunner {
    pub fn new() -> Self {
        let l = Layout::get();
        let e = testing::env(8 << 20);
        let mem = &e.mem;
        let w = |a: u64, v: u64| mem.write_u64(a, v).expect("page tables fit in test memory");
        // PML4 → PDPT → PD → one page table per 2 MiB; user + writable everywhere.
        w(PML4, 0x2000 | 7);
        w(0x2000, 0x3000 | 7);
        for (addr, len) in [
            (l.code, l.code_len),
            (l.data, l.data_len),
            (l.stack, l.stack_len),
        ] {
            let mut a = addr;
            while a < addr + len as u64 {
                let pd = a >> 21;
                let pt = 0x4000 + pd * 0x1000;
                w(0x3000 + pd * 8, pt | 7);
                w(pt + ((a >> 12) & 511) * 8, a | 7);
                a += 0x1000;
            }
        }
        let mut s = CpuState::protected_flat();
        s.cr3 = PML4;
        s.cr4 |= cr4::PAE;
        s.efer = efer::LME | efer::LMA | efer::NXE;
        s.cr0 |= cr0::PG | cr0::WP;
        let dpl3 = 3 << seg_attr::DPL_SHIFT;
        s.seg[CS] = Segment::flat(native_sel::USER_CS, true, true);
        s.seg[CS].attr |= dpl3;
        s.seg[SS] = Segment::flat(native_sel::USER_SS, false, false);
        s.seg[SS].attr |= dpl3;
        for seg in [DS, ES, FS, GS] {
            s.seg[seg] = Segment::flat(0, false, false);
            s.seg[seg].attr |= dpl3;
        }
        // Linux denies user I/O in the TSS I/O bitmap; a TSS too short to hold one denies
        // every port the same way (#GP) without the TSS having to be mapped.
        s.tr.limit = 0x66;
        s.rip = l.code;
        let mut it = Interpreter::new(e, s);
        it.stop_on_exception = true;
        InterpRunner { it }
    }

    /// Runs `code` (ending in UD2) from `init`.
    pub fn run(&mut self, code: &[u8], init: &State) -> (State, Outcome) {
        let l = Layout::get();
        let mem = self.it.cpu.env.mem.clone();
        let ok = mem
            .write(l.code, code)
            .and(mem.write(l.data, &init.data))
            .and(mem.write(l.stack, &init.stack));
        if let Err(e) = ok {
            return (init.clone(), Outcome::Other(format!("memory: {e:?}")));
        }
        self.it.cache.clear(&mut self.it.cpu);
        let c = &mut self.it.cpu;
        c.s.gpr = init.gpr;
        c.set_rflags(0x202 | (init.rflags & COMPARED_FLAGS));
        c.s.rip = l.code;
        c.s.cr2 = 0;
        c.s.events.halted = false;
        c.s.events.interrupt_shadow = false;
        let exit = self.it.run(10_000);
        let c = &self.it.cpu;
        let mut out = State {
            gpr: c.s.gpr,
            rflags: c.rflags(),
            rip: c.s.rip,
            data: init.data.clone(),
            stack: init.stack.clone(),
        };
        let rd = mem
            .read(l.data, &mut out.data)
            .and(mem.read(l.stack, &mut out.stack));
        if let Err(e) = rd {
            return (out, Outcome::Other(format!("memory: {e:?}")));
        }
        let outcome = match exit {
            RunExit::Exception(e)
                if e.vector == crate::exception::UD
                    && c.s.rip == l.code + code.len() as u64 - 2 =>
            {
                Outcome::Completed
            }
            RunExit::Exception(e) => Outcome::Fault {
                vector: e.vector,
                cr2: (e.vector == crate::exception::PF).then_some(c.s.cr2),
            },
            other => Outcome::Other(format!("{other:?}")),
        };
        (out, outcome)
    }
}

/// User-mode selectors of Linux x86-64 (`__USER_CS`, `__USER_DS`): the interpreter side
/// uses the same ones so that pushed/moved selectors compare equal.
pub mod native_sel {
    pub const USER_CS: u16 = 0x33;
    pub const USER_SS: u16 = 0x2b;
}

/// Compares the native and interpreter results; returns the differences (empty = match).
pub fn compare(native: &(State, Outcome), interp: &(State, Outcome), fmask: u64) -> Vec<String> {
    let mut d = Vec::new();
    let ((ns, no), (is, io)) = (native, interp);
    if no != io {
        d.push(format!("outcome: native {no:?}, interpreter {io:?}"));
    }
    if ns.rip != is.rip {
        d.push(format!(
            "rip: native {:#x}, interpreter {:#x}",
            ns.rip, is.rip
        ));
    }
    for (r, name) in REG_NAMES.iter().enumerate() {
        if ns.gpr[r] != is.gpr[r] {
            d.push(format!(
                "{name}: native {:#018x}, interpreter {:#018x}",
                ns.gpr[r], is.gpr[r]
            ));
        }
    }
    let (nf, iff) = (ns.rflags & fmask, is.rflags & fmask);
    if nf != iff {
        d.push(format!(
            "rflags: native {}, interpreter {} (differ: {})",
            flags_str(nf),
            flags_str(iff),
            flags_str(nf ^ iff)
        ));
    }
    let l = Layout::get();
    mem_diff(&mut d, "data", l.data, &ns.data, &is.data);
    mem_diff(&mut d, "stack", l.stack, &ns.stack, &is.stack);
    d
}

fn mem_diff(d: &mut Vec<String>, what: &str, base: u64, n: &[u8], i: &[u8]) {
    let mut shown = 0;
    for (k, (a, b)) in n.iter().zip(i).enumerate() {
        if a != b {
            if shown < 16 {
                d.push(format!(
                    "{what} byte {:#x}: native {a:#04x}, interpreter {b:#04x}",
                    base + k as u64
                ));
            }
            shown += 1;
        }
    }
    if shown > 16 {
        d.push(format!("{what}: {} more differing bytes", shown - 16));
    }
}

pub const REG_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

pub fn flags_str(f: u64) -> String {
    let mut s = String::new();
    for (bit, name) in [
        (0, "CF"),
        (2, "PF"),
        (4, "AF"),
        (6, "ZF"),
        (7, "SF"),
        (10, "DF"),
        (11, "OF"),
    ] {
        if f & (1 << bit) != 0 {
            s.push_str(name);
            s.push(' ');
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    s.trim_end().to_string()
}

/// The code as Intel-syntax disassembly, one instruction a line.
pub fn disassemble(code: &[u8]) -> String {
    let l = Layout::get();
    let mut d = Decoder::with_ip(64, code, l.code, DecoderOptions::NONE);
    let mut f = IntelFormatter::new();
    let mut out = String::new();
    let mut text = String::new();
    for ins in &mut d {
        text.clear();
        f.format(&ins, &mut text);
        let off = (ins.ip() - l.code) as usize;
        let bytes: String = code[off..off + ins.len()]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = writeln!(out, "  {:#x}: {bytes:<30} {text}", ins.ip());
    }
    out
}

/// A full report of one mismatching case.
pub fn report(
    seed: u64,
    code: &[u8],
    init: &State,
    native: &(State, Outcome),
    interp: &(State, Outcome),
    diffs: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "native-oracle mismatch (seed {seed:#x})");
    let _ = writeln!(s, "code:\n{}", disassemble(code));
    let _ = writeln!(s, "initial: rflags {}", flags_str(init.rflags));
    for (r, name) in REG_NAMES.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {:>4} init {:#018x}  native {:#018x}  interp {:#018x}{}",
            name,
            init.gpr[r],
            native.0.gpr[r],
            interp.0.gpr[r],
            if native.0.gpr[r] != interp.0.gpr[r] {
                "   <--"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        s,
        "  native: {:?} rip {:#x} flags {}",
        native.1,
        native.0.rip,
        flags_str(native.0.rflags & COMPARED_FLAGS)
    );
    let _ = writeln!(
        s,
        "  interp: {:?} rip {:#x} flags {}",
        interp.1,
        interp.0.rip,
        flags_str(interp.0.rflags & COMPARED_FLAGS)
    );
    let _ = writeln!(s, "differences:");
    for x in diffs {
        let _ = writeln!(s, "  {x}");
    }
    s
}
