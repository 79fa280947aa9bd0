//! The interpreter side: the same machine image and CPL-3 state, run by
//! `twinvm_cpu::Interpreter` with `stop_on_exception`, on its own copy of the memory.

use twinvm_cpu::exec::RunExit;
use twinvm_cpu::oracle::{Layout, State};
use twinvm_cpu::{testing, CpuState, Interpreter};

use super::kvm_side::{read_sandbox, start_rflags, write_sandbox};
use super::machine;
use super::outcome::{End, Stop};

/// Far more than any stream runs (REP counts are small): hitting it is reported.
const BUDGET: u64 = 100_000;

/// How running out of budget is reported (`Stop::Other`).
pub const OUT_OF_BUDGET: &str = "interpreter budget exhausted";

pub struct InterpSide {
    it: Interpreter,
    base: CpuState,
    /// Instructions retired over all streams.
    pub instructions: u64,
}

impl InterpSide {
    pub fn new() -> Result<InterpSide, String> {
        let env = testing::env(machine::MEM_SIZE);
        machine::write_system(&env.mem)?;
        let base = machine::user_state();
        let mut it = Interpreter::new(env, base.clone());
        it.stop_on_exception = true;
        Ok(InterpSide {
            it,
            base,
            instructions: 0,
        })
    }

    pub fn run(&mut self, code: &[u8], init: &State) -> Result<End, String> {
        let l = Layout::get();
        let mem = self.it.cpu.env.mem.clone();
        write_sandbox(&mem, code, init)?;
        let mut s = self.base.clone();
        s.gpr = init.gpr;
        s.rip = l.code;
        s.rflags = start_rflags(init.rflags);
        self.it.set_state(s);
        let before = self.it.cpu.stats.instructions;
        let exit = self.it.run(BUDGET);
        self.instructions += self.it.cpu.stats.instructions - before;
        let c = &self.it.cpu;
        let mut out = init.clone();
        out.gpr = c.s.gpr;
        out.rip = c.s.rip;
        out.rflags = c.rflags();
        read_sandbox(&mem, &mut out)?;
        let stop = match exit {
            RunExit::Exception(e) => Stop::Exception {
                vector: e.vector,
                error_code: e.error_code,
                cr2: (e.vector == 14).then_some(c.s.cr2),
            },
            RunExit::Budget => Stop::Other(format!("{OUT_OF_BUDGET} ({BUDGET} instructions)")),
            other => Stop::Other(format!("interpreter stopped: {other:?}")),
        };
        Ok(End { state: out, stop })
    }
}
