//! The interpreter fallback: what KVM cannot execute, twinvm's interpreter runs on the same
//! state, memory and devices; then the vCPU goes back into KVM.

use std::collections::HashMap;
use std::fmt::Write as _;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use twinvm_cpu::mmu::Access;
use twinvm_cpu::state::CS;
use twinvm_cpu::{CpuEnv, CpuState, Interpreter, RunExit};

/// The instruction KVM stopped at, as seen through the guest's page tables.
pub struct Insn {
    pub bytes: Vec<u8>,
    /// Lower-case mnemonic (`popcnt`), or `(unreadable)`.
    pub mnemonic: String,
    /// Intel syntax.
    pub text: String,
}

impl Insn {
    /// "popcnt rax,rbx (bytes f3 48 0f b8 c3) at 0x8:0x102345"
    pub fn describe(&self, s: &CpuState) -> String {
        let mut b = String::new();
        for (i, x) in self.bytes.iter().enumerate() {
            let _ = write!(b, "{}{x:02x}", if i == 0 { "" } else { " " });
        }
        format!(
            "{} (bytes {b}) at {:#x}:{:#x}",
            self.text, s.seg[CS].selector, s.rip
        )
    }
}

/// What a fallback stretch ended with, beyond "carry on in KVM".
pub enum Stretch {
    /// State to load back into KVM.
    Continue(Box<CpuState>),
    /// The interpreter hit something the run loop handles (stop, triple fault…).
    Exit(RunExit, Box<CpuState>),
}

pub struct Fallback {
    it: Interpreter,
    /// Fallbacks by mnemonic, for `--stats`.
    pub counts: HashMap<String, u64>,
}

impl Fallback {
    pub fn new(env: CpuEnv, boot: CpuState) -> Self {
        Fallback {
            it: Interpreter::new(env, boot),
            counts: HashMap::new(),
        }
    }

    pub fn interpreter(&self) -> &Interpreter {
        &self.it
    }

    /// Reads up to 15 bytes at CS:RIP of `s` and decodes them.
    pub fn fetch(&mut self, s: &CpuState) -> Insn {
        self.it.set_state(s.clone());
        let cpu = &mut self.it.cpu;
        let lin = s.seg[CS].base.wrapping_add(s.rip);
        let lin = if s.code_bits() == 64 {
            lin
        } else {
            lin & 0xffff_ffff
        };
        let mut bytes = Vec::with_capacity(15);
        while bytes.len() < 15 {
            let at = lin.wrapping_add(bytes.len() as u64);
            let Ok(phys) = cpu.translate(at, Access::Exec) else {
                break;
            };
            let n = (0x1000 - (at & 0xfff) as usize).min(15 - bytes.len());
            let mut buf = vec![0u8; n];
            cpu.read_phys(phys, &mut buf);
            bytes.extend_from_slice(&buf);
        }
        let mut d = Decoder::with_ip(s.code_bits(), &bytes, s.rip, DecoderOptions::NONE);
        let insn = d.decode();
        if bytes.is_empty() || insn.is_invalid() {
            return Insn {
                bytes,
                mnemonic: "(invalid)".into(),
                text: "(invalid or unreadable instruction)".into(),
            };
        }
        bytes.truncate(insn.len());
        let mut text = String::new();
        IntelFormatter::new().format(&insn, &mut text);
        Insn {
            bytes,
            mnemonic: format!("{:?}", insn.mnemonic()).to_lowercase(),
            text,
        }
    }

    /// Runs the instruction at `s`'s CS:RIP — and the rest of its block, up to the next
    /// control transfer: a safe point to hand back — in the interpreter. Fails with a
    /// message naming the instruction where the interpreter cannot run it either.
    pub fn run(&mut self, s: &CpuState) -> Result<Stretch, String> {
        let insn = self.fetch(s);
        *self.counts.entry(insn.mnemonic.clone()).or_default() += 1;
        log::debug!("fallback: {}", insn.describe(s));
        let unimpl_before: u64 = self.it.cpu.stats.unimplemented.values().sum();
        self.it.set_state(s.clone());
        let exit = self.it.run(1);
        let unimpl_after: u64 = self.it.cpu.stats.unimplemented.values().sum();
        if unimpl_after > unimpl_before {
            return Err(format!(
                "KVM cannot execute {} and neither can twinvm's interpreter",
                insn.describe(s)
            ));
        }
        let out = Box::new(self.it.cpu.state());
        match exit {
            RunExit::Budget | RunExit::Halted => Ok(Stretch::Continue(out)),
            RunExit::Unsupported { what, .. } => Err(format!(
                "KVM cannot execute {}, and the interpreter stopped on it: {what}",
                insn.describe(s)
            )),
            other => Ok(Stretch::Exit(other, out)),
        }
    }

    /// Instructions the interpreter ran on KVM's behalf.
    pub fn instructions(&self) -> u64 {
        self.it.cpu.stats.instructions
    }
}
