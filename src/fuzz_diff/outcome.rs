//! What a stream ended in, on either engine, and how two ends are compared.

use std::fmt::Write as _;

use twinvm_cpu::oracle::{flags_str, Layout, State, REG_NAMES};
use twinvm_cpu::state::rflags;

/// How a stream stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An exception (the final UD2 is one too) at `State::rip`. `cr2` for #PF only.
    Exception {
        vector: u8,
        error_code: Option<u32>,
        cr2: Option<u64>,
    },
    /// Anything else (a KVM exit the fuzz machine does not expect, the interpreter's
    /// budget running out…).
    Other(String),
}

/// The state a stream ended in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    pub state: State,
    pub stop: Stop,
}

/// RFLAGS bits compared: all the architectural ones but RF, which the CPU sets in the
/// frame of a fault and the interpreter (stopping before delivery) does not.
pub const COMPARED_RFLAGS: u64 = rflags::ARITH
    | rflags::TF
    | rflags::IF
    | rflags::DF
    | rflags::IOPL
    | rflags::NT
    | rflags::AC
    | rflags::ID;

/// The differences between the KVM and interpreter ends (empty: they agree).
pub fn diff(kvm: &End, interp: &End) -> Vec<String> {
    let mut d = Vec::new();
    if kvm.stop != interp.stop {
        d.push(format!(
            "stop: kvm {:?}, interpreter {:?}",
            kvm.stop, interp.stop
        ));
    }
    let (k, i) = (&kvm.state, &interp.state);
    if k.rip != i.rip {
        d.push(format!("rip: kvm {:#x}, interpreter {:#x}", k.rip, i.rip));
    }
    for (r, name) in REG_NAMES.iter().enumerate() {
        if k.gpr[r] != i.gpr[r] {
            d.push(format!(
                "{name}: kvm {:#018x}, interpreter {:#018x}",
                k.gpr[r], i.gpr[r]
            ));
        }
    }
    let (kf, iff) = (k.rflags & COMPARED_RFLAGS, i.rflags & COMPARED_RFLAGS);
    if kf != iff {
        d.push(format!(
            "rflags: kvm {kf:#x} ({}), interpreter {iff:#x} ({})",
            flags_str(kf),
            flags_str(iff)
        ));
    }
    let l = Layout::get();
    mem_diff(&mut d, "data", l.data, &k.data, &i.data);
    mem_diff(&mut d, "stack", l.stack, &k.stack, &i.stack);
    d
}

fn mem_diff(d: &mut Vec<String>, what: &str, base: u64, k: &[u8], i: &[u8]) {
    let differing: Vec<usize> = (0..k.len().min(i.len()))
        .filter(|&n| k[n] != i[n])
        .collect();
    for &n in differing.iter().take(16) {
        d.push(format!(
            "{what} byte {:#x}: kvm {:#04x}, interpreter {:#04x}",
            base + n as u64,
            k[n],
            i[n]
        ));
    }
    if differing.len() > 16 {
        d.push(format!(
            "{what}: {} more differing bytes",
            differing.len() - 16
        ));
    }
}

/// Both states side by side, with the differing registers marked.
pub fn side_by_side(init: &State, kvm: &End, interp: &End) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  {:>6} {:>18}  {:>18}  {:>18}",
        "", "initial", "kvm", "interpreter"
    );
    for (r, name) in REG_NAMES.iter().enumerate() {
        let mark = if kvm.state.gpr[r] != interp.state.gpr[r] {
            "   <--"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  {name:>6} {:#018x}  {:#018x}  {:#018x}{mark}",
            init.gpr[r], kvm.state.gpr[r], interp.state.gpr[r]
        );
    }
    let _ = writeln!(
        s,
        "  {:>6} {:#018x}  {:#018x}  {:#018x}",
        "rip", init.rip, kvm.state.rip, interp.state.rip
    );
    let _ = writeln!(
        s,
        "  {:>6} {:>18}  {:>18}  {:>18}",
        "flags",
        flags_str(init.rflags),
        flags_str(kvm.state.rflags),
        flags_str(interp.state.rflags)
    );
    let _ = writeln!(s, "  kvm stopped by:         {:?}", kvm.stop);
    let _ = writeln!(s, "  interpreter stopped by: {:?}", interp.stop);
    s
}
