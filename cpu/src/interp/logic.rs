//! Logical operations: AND, OR, XOR, TEST (lazy `FlagOp::Logic` flags: CF = OF = 0, SF/ZF/PF
//! from the result) and NOT (no flags).
//!
//! AF is undefined after AND/OR/XOR/TEST; the AMD host (EPYC, Zen 4) clears it, which is
//! what `FlagOp::Logic` produces (Intel processors clear it too). Checked natively by the
//! `host_*` differential tests in arith.rs's test module.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::exception::{ud, Flow};
use crate::flags::FlagOp;
use crate::interp::arith::{read, rmw, src};
use crate::model::CpuModel;

pub fn lookup(i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        And => and,
        Or => or,
        Xor => xor,
        Not => not,
        Test => test,
        _ => return None,
    })
}

fn and(c: &mut Cpu, i: &Insn) -> Flow {
    let b = src(c, i)?;
    let (_, r) = rmw(c, i, |a| a & b)?;
    c.set_lazy(FlagOp::Logic, i.osize, 0, 0, r);
    Ok(())
}

fn or(c: &mut Cpu, i: &Insn) -> Flow {
    let b = src(c, i)?;
    let (_, r) = rmw(c, i, |a| a | b)?;
    c.set_lazy(FlagOp::Logic, i.osize, 0, 0, r);
    Ok(())
}

fn xor(c: &mut Cpu, i: &Insn) -> Flow {
    let b = src(c, i)?;
    let (_, r) = rmw(c, i, |a| a ^ b)?;
    c.set_lazy(FlagOp::Logic, i.osize, 0, 0, r);
    Ok(())
}

fn not(c: &mut Cpu, i: &Insn) -> Flow {
    rmw(c, i, |a| !a)?;
    Ok(())
}

fn test(c: &mut Cpu, i: &Insn) -> Flow {
    if i.lock {
        return Err(ud());
    }
    let a = read(c, i, 0)?;
    let b = src(c, i)?;
    c.set_lazy(FlagOp::Logic, i.osize, 0, 0, a & b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::interp::arith::rig::{asm, asm_bits, Rig};
    use crate::state::rflags::*;
    use crate::testing::DATA;
    use iced_x86::code_asm::*;

    #[test]
    fn logic_forms_and_flags() {
        let mut r = Rig::new(&asm(|a| a.and(al, 0x0f)));
        let s = r.run([0x1234_56f0, 0, 0, 0], CF | OF | AF).unwrap();
        assert_eq!((s.gpr[0], s.rflags & ARITH), (0x1234_5600, ZF | PF));
        // OR with a sign-extended imm8 on a 64-bit register.
        let s = Rig::new(&asm(|a| a.or(rcx, -2)))
            .run([0, 0, 1, 0], CF)
            .unwrap();
        assert_eq!((s.gpr[1], s.rflags & ARITH), (u64::MAX, SF | PF));
        // XOR of a 32-bit register with itself clears the upper half too.
        let s = Rig::new(&asm(|a| a.xor(edx, edx)))
            .run([0, u64::MAX, 0, 0], SF)
            .unwrap();
        assert_eq!((s.gpr[2], s.rflags & ARITH), (0, ZF | PF));
        // High-byte registers.
        let s = Rig::new(&asm(|a| a.xor(ah, ch)))
            .run([0xff00, 0, 0x0f00, 0], 0)
            .unwrap();
        assert_eq!((s.gpr[0], s.rflags & ARITH), (0xf000, SF | PF));
        // TEST writes nothing; NOT changes no flags.
        let s = Rig::new(&asm(|a| a.test(eax, 0x8000_0000u32 as i32)))
            .run([u64::MAX, 0, 0, 0], CF)
            .unwrap();
        assert_eq!((s.gpr[0], s.rflags & ARITH), (u64::MAX, SF | PF));
        let s = Rig::new(&asm(|a| a.not(ax)))
            .run([0x1111_00ff, 0, 0, 0], CF | ZF)
            .unwrap();
        assert_eq!((s.gpr[0], s.rflags & ARITH), (0x1111_ff00, CF | ZF));
    }

    #[test]
    fn logic_memory_forms() {
        let mut r = Rig::new(&asm(|a| {
            a.and(dword_ptr(DATA), 0xff)?;
            a.or(word_ptr(DATA + 8), ax)?;
            a.xor(byte_ptr(DATA + 16), 0xff)?;
            a.not(qword_ptr(DATA + 24))?;
            a.or(rdx, qword_ptr(DATA + 32))?;
            a.test(byte_ptr(DATA + 40), 1)
        }));
        let m = r.it.cpu.env.mem.clone();
        for (k, v) in [0x1234_5678u64, 0xf000_0001, 0x0f, 0, 0x40, 2]
            .iter()
            .enumerate()
        {
            m.write_u64(DATA + 8 * k as u64, *v).unwrap();
        }
        let s = r.run([0x0102, 1, 0, 0], CF).unwrap();
        let q = |k: u64| m.read_u64(DATA + 8 * k).unwrap();
        assert_eq!(q(0), 0x78);
        assert_eq!(q(1), 0xf000_0103);
        assert_eq!(q(2), 0xf0);
        assert_eq!(q(3), u64::MAX);
        assert_eq!(s.gpr[2], 0x41);
        assert_eq!(s.rflags & ARITH, ZF | PF);
    }

    #[test]
    fn lock_and_32bit_code() {
        use crate::exception::{Exception, UD};
        let ud = Err(Exception::new(UD));
        // LOCK AND EAX, EBX (register destination) and LOCK TEST are invalid.
        assert_eq!(Rig::new(&[0xf0, 0x21, 0xd8]).run([0; 4], 0).map(|_| ()), ud);
        assert_eq!(
            Rig::new(&[0xf0, 0x85, 0x18])
                .run([DATA, 0, 0, 0], 0)
                .map(|_| ()),
            ud
        );
        // LOCK XOR [RAX], EBX is fine.
        Rig::new(&[0xf0, 0x31, 0x18])
            .run([DATA, 0, 0, 0], 0)
            .unwrap();
        // 32-bit code: 16-bit operand via 0x66, INC via its one-byte opcode.
        let code = asm_bits(32, |a| {
            a.xor(ax, dx)?;
            a.inc(ecx)
        });
        let s = Rig::new32(&code)
            .run([0xaaaa_5555, 0x5555, 0xffff_ffff, 0], CF)
            .unwrap();
        assert_eq!((s.gpr[0], s.gpr[1]), (0xaaaa_0000, 0));
        assert_eq!(s.rflags & ARITH, ZF | PF | AF); // XOR cleared CF, INC kept it
    }

    /// Interpreter speed on a plain integer loop; run with
    /// `cargo test --release -p twinvm-cpu -- --ignored --nocapture mips` (BODY=nop|add|
    /// addi|shl|cmp|mem|inc repeats one instruction instead of the mix). On the 2-vCPU
    /// EPYC development host (loaded): mix ~115-130 MIPS, add ~165, NOPs ~230.
    #[test]
    #[ignore]
    fn mips() {
        let code = asm(|a| {
            let mut top = a.create_label();
            a.set_label(&mut top)?;
            let v = std::env::var("BODY").unwrap_or_default();
            if !v.is_empty() {
                for _ in 0..6 {
                    match v.as_str() {
                        "nop" => a.nop()?,
                        "add" => a.add(rax, rcx)?,
                        "addi" => a.add(rax, 5)?,
                        "shl" => a.shl(rdi, 1)?,
                        "cmp" => a.cmp(rax, rbx)?,
                        "mem" => a.add(qword_ptr(0x20_0000), rax)?,
                        _ => a.inc(rax)?,
                    }
                }
            } else {
                a.add(rax, rcx)?;
                a.xor(rbx, rax)?;
                a.sub(r8, 3)?;
                a.and(rsi, rbx)?;
                a.shl(rdi, 1)?;
                a.cmp(rax, rbx)?;
            }
            a.dec(rdx)?;
            a.jnz(top)
        });
        let mut r = Rig::new(&code);
        let n = 5_000_000u64;
        let mut secs = f64::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            r.it.cpu.s.gpr[2] = n;
            r.it.cpu.s.rip = crate::testing::CODE;
            r.it.cpu.s.events.halted = false;
            let mut exit = r.it.run(u64::MAX);
            while exit == crate::exec::RunExit::Budget {
                exit = r.it.run(u64::MAX);
            }
            secs = secs.min(t.elapsed().as_secs_f64());
        }
        println!("{:.0} MIPS", (n * 8) as f64 / secs / 1e6);
    }
}
