//! BOUND (legacy and compatibility mode; the opcode is invalid in 64-bit mode, where iced
//! decodes 0x62 as EVEX): #BR when the signed index lies outside the bounds pair in memory.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::exception::{ud, Exception, Flow, Trap, BR};
use crate::model::CpuModel;

pub fn lookup(i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    (i.mnemonic() == Mnemonic::Bound).then_some(bound as Handler)
}

fn sext(v: u64, size: u8) -> i64 {
    if size == 2 {
        v as u16 as i16 as i64
    } else {
        v as u32 as i32 as i64
    }
}

fn bound(c: &mut Cpu, i: &Insn) -> Flow {
    if c.mode64 {
        return Err(ud());
    }
    let size = Cpu::op_size(i, 0);
    let index = sext(c.read_op(i, 0)?, size);
    let lin = c.mem_linear(i)?;
    let lower = sext(c.read_lin(lin, size)?, size);
    let upper = sext(c.read_lin(lin.wrapping_add(size as u64), size)?, size);
    if index < lower || index > upper {
        return Err(Trap::Exception(Exception::new(BR)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cpu::test_util::env;
    use crate::exception::{Exception, BR};
    use crate::exec::{Interpreter, RunExit};
    use crate::state::{CpuState, RAX};

    fn run(index: u32, lower: i32, upper: i32) -> RunExit {
        let e = env(1 << 20);
        e.mem.write(0x2000, &lower.to_le_bytes()).unwrap();
        e.mem.write(0x2004, &upper.to_le_bytes()).unwrap();
        // bound eax, [0x2000]; hlt
        e.mem
            .write(0x1000, &[0x62, 0x05, 0x00, 0x20, 0x00, 0x00, 0xf4])
            .unwrap();
        let mut s = CpuState::protected_flat();
        s.rip = 0x1000;
        s.gpr[RAX] = index as u64;
        let mut it = Interpreter::new(e, s);
        it.stop_on_exception = true;
        it.run(10)
    }

    #[test]
    fn bounds_are_signed_and_inclusive() {
        let br = RunExit::Exception(Exception::new(BR));
        assert_eq!(run(0, 0, 5), RunExit::Halted);
        assert_eq!(run(5, 0, 5), RunExit::Halted);
        assert_eq!(run(6, 0, 5), br);
        assert_eq!(run(-1i32 as u32, 0, 5), br);
        assert_eq!(run(-1i32 as u32, -3, 5), RunExit::Halted);
    }
}
