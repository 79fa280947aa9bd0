//! String instructions: MOVS, CMPS, SCAS, LODS, STOS, INS, OUTS, with REP/REPE/REPNE.
//!
//! rSI/rDI/rCX are used at the address size and only that part is written (32-bit
//! addressing zero-extends in 64-bit mode). The source segment is `Insn::mem.seg`; the
//! destination is always ES:rDI.
//!
//! REP forms are precise and interruptible the way hardware makes them: one handler call
//! runs at most `CHUNK` iterations and, if the count is not exhausted, re-executes the same
//! instruction (`next_rip = rip`) so the run loop can take interrupts in between. A fault
//! leaves rSI/rDI/rCX (and, for CMPS/SCAS, the flags) describing the iterations completed,
//! with RIP at the instruction, so it restarts where it stopped.
//!
//! REP MOVS/STOS copy whole runs of elements that stay inside one page on each side
//! straight through the TLB's host pointers once the first element has filled it.

use iced_x86::{Code, Instruction};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn, Rep};
use crate::exception::{Flow, Trap};
use crate::flags::{size_mask, FlagOp};
use crate::mmu::Access;
use crate::model::CpuModel;
use crate::state::{rflags, ES, RAX, RCX, RDI, RDX, RSI};

/// Iterations per handler call before a REP instruction yields to the run loop.
const CHUNK: u64 = 4096;

/// Index registers an instruction steps.
const SI: u8 = 1;
const DI: u8 = 2;

pub fn lookup(i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    use Code::*;
    Some(match i.code() {
        Movsb_m8_m8 => movs::<1>,
        Movsw_m16_m16 => movs::<2>,
        Movsd_m32_m32 => movs::<4>,
        Movsq_m64_m64 => movs::<8>,
        Cmpsb_m8_m8 => cmps::<1>,
        Cmpsw_m16_m16 => cmps::<2>,
        Cmpsd_m32_m32 => cmps::<4>,
        Cmpsq_m64_m64 => cmps::<8>,
        Scasb_AL_m8 => scas::<1>,
        Scasw_AX_m16 => scas::<2>,
        Scasd_EAX_m32 => scas::<4>,
        Scasq_RAX_m64 => scas::<8>,
        Lodsb_AL_m8 => lods::<1>,
        Lodsw_AX_m16 => lods::<2>,
        Lodsd_EAX_m32 => lods::<4>,
        Lodsq_RAX_m64 => lods::<8>,
        Stosb_m8_AL => stos::<1>,
        Stosw_m16_AX => stos::<2>,
        Stosd_m32_EAX => stos::<4>,
        Stosq_m64_RAX => stos::<8>,
        Insb_m8_DX => ins::<1>,
        Insw_m16_DX => ins::<2>,
        Insd_m32_DX => ins::<4>,
        Outsb_DX_m8 => outs::<1>,
        Outsw_DX_m16 => outs::<2>,
        Outsd_DX_m32 => outs::<4>,
        _ => return None,
    })
}

/// Whether a step's outcome means the iteration did not happen. `Trap::Stop` comes from a
/// completed write or OUT after which the machine stops.
#[inline(always)]
fn is_fault<T>(r: &Result<T, Trap>) -> bool {
    matches!(r, Err(t) if *t != Trap::Stop)
}

/// Whether REPE/REPNE continue after a comparison.
#[inline(always)]
fn rep_continues(i: &Insn, equal: bool) -> bool {
    match i.rep {
        Rep::Repne => !equal,
        _ => equal,
    }
}

/// Runs a string instruction: `step(c, si, di)` does one element (returning whether a
/// REPE/REPNE condition lets it go on); under REP, `bulk(c, si, di, max)` may first do a
/// run of elements in one go and return how many (0: none, take the element path) and
/// whether the condition lets it go on.
#[inline(always)]
fn run<const SIZE: u8, const REGS: u8>(
    c: &mut Cpu,
    i: &Insn,
    mut bulk: impl FnMut(&mut Cpu, u64, u64, u64) -> (u64, bool),
    mut step: impl FnMut(&mut Cpu, u64, u64) -> Result<bool, Trap>,
) -> Flow {
    let am = size_mask(i.asize);
    let d = if c.s.rflags & rflags::DF != 0 {
        (SIZE as u64).wrapping_neg()
    } else {
        SIZE as u64
    };
    let mut si = c.s.gpr[RSI] & am;
    let mut di = c.s.gpr[RDI] & am;
    if i.rep == Rep::None {
        let r = step(c, si, di);
        if is_fault(&r) {
            return r.map(|_| ());
        }
        set_index(c, i, REGS, si.wrapping_add(d) & am, di.wrapping_add(d) & am);
        return r.map(|_| ());
    }
    let count = c.s.gpr[RCX] & am;
    if count == 0 {
        return Ok(());
    }
    // A debugger stepping (or watching memory) sees one iteration at a time.
    let n = if c.debug.single_rep {
        1
    } else {
        count.min(CHUNK)
    };
    let mut k = 0;
    let mut res = Ok(());
    let mut go_on = true;
    while k < n {
        let (m, cont) = bulk(c, si, di, n - k);
        if m > 0 {
            k += m;
            si = si.wrapping_add(d.wrapping_mul(m)) & am;
            di = di.wrapping_add(d.wrapping_mul(m)) & am;
            go_on = cont;
            if !go_on {
                break;
            }
            continue;
        }
        match step(c, si, di) {
            Ok(cont) => go_on = cont,
            Err(Trap::Stop) => res = Err(Trap::Stop),
            Err(e) => {
                res = Err(e);
                break;
            }
        }
        k += 1;
        si = si.wrapping_add(d) & am;
        di = di.wrapping_add(d) & am;
        if res.is_err() || !go_on {
            break;
        }
    }
    if k == 0 {
        // Faulted on the first element: nothing to record.
        return res;
    }
    set_index(c, i, REGS, si, di);
    let left = count - k;
    c.set_reg(RCX, i.asize, left);
    if left != 0 && go_on && !is_fault(&res) {
        // Not done: run this instruction again after the run loop has looked at events.
        c.next_rip = c.s.rip;
        c.break_block = true;
    }
    res
}

#[inline(always)]
fn set_index(c: &mut Cpu, i: &Insn, regs: u8, si: u64, di: u64) {
    if regs & SI != 0 {
        c.set_reg(RSI, i.asize, si);
    }
    if regs & DI != 0 {
        c.set_reg(RDI, i.asize, di);
    }
}

fn no_bulk(_: &mut Cpu, _: u64, _: u64, _: u64) -> (u64, bool) {
    (0, true)
}

/// The host address of `lin` if it is RAM that `access` may use directly. Translating here
/// (rather than only looking at the TLB) keeps the bulk paths working when the two sides'
/// pages share a TLB slot.
#[inline]
fn host(c: &mut Cpu, lin: u64, access: Access) -> Option<*mut u8> {
    if let Some(p) = c.tlb.lookup(access, lin) {
        return Some(p);
    }
    c.translate_fill(lin, access).ok()?;
    c.tlb.lookup(access, lin)
}

/// Element `e` of a run starting at `p`, going down or up.
///
/// # Safety
/// The element must lie inside the page `p` is in.
#[inline(always)]
unsafe fn elem(p: *mut u8, e: u64, size: u8, back: bool) -> *mut u8 {
    let off = (e * size as u64) as usize;
    if back {
        p.sub(off)
    } else {
        p.add(off)
    }
}

/// How many whole elements of `size` bytes, starting at offset `off` (linear `lin`) and
/// going down (`back`) or up, stay inside `lin`'s page without wrapping the offset at the
/// address size.
#[inline]
fn run_len(off: u64, lin: u64, size: u64, am: u64, back: bool) -> u64 {
    let pg = lin & 0xfff;
    if pg + size > 4096 || off > am - (size - 1) {
        return 0;
    }
    if back {
        (pg / size).min(off / size) + 1
    } else {
        ((4096 - pg) / size).min((am - off - (size - 1)) / size + 1)
    }
}

use crate::mmu::{read_host as load, write_host as store};

// ----- MOVS -----

fn movs<const SIZE: u8>(c: &mut Cpu, i: &Insn) -> Flow {
    let seg = i.mem.seg as usize;
    let step = |c: &mut Cpu, si: u64, di: u64| {
        let src = c.seg_read_addr(seg, si, SIZE)?;
        let v = c.read_lin(src, SIZE)?;
        let dst = c.seg_write_addr(ES, di, SIZE)?;
        c.write_lin(dst, SIZE, v)?;
        Ok(true)
    };
    let am = size_mask(i.asize);
    let back = c.s.rflags & rflags::DF != 0;
    run::<SIZE, { SI | DI }>(
        c,
        i,
        |c, si, di, max| movs_bulk(c, seg, SIZE, am, back, si, di, max),
        step,
    )
}

/// The longest run (at most `max` elements) that stays inside one RAM page at seg:rSI and
/// one at ES:rDI, with host pointers to its first elements (the destination mapped for
/// `dst_access`). `None` when the bulk path cannot be used and the element-by-element
/// path must run instead.
#[allow(clippy::too_many_arguments)]
#[inline]
fn paired_run(
    c: &mut Cpu,
    seg: usize,
    size: u8,
    am: u64,
    back: bool,
    si: u64,
    di: u64,
    max: u64,
    dst_access: Access,
) -> Option<(u64, *mut u8, *mut u8)> {
    if !c.seg_unchecked(seg, false) || !c.seg_unchecked(ES, dst_access == Access::Write) {
        return None;
    }
    let (Ok(sl), Ok(dl)) = (c.seg_linear(seg, si), c.seg_linear(ES, di)) else {
        return None;
    };
    let sz = size as u64;
    let k = run_len(si, sl, sz, am, back)
        .min(run_len(di, dl, sz, am, back))
        .min(max);
    if k == 0 {
        return None;
    }
    let sp = host(c, sl, Access::Read)?;
    let dp = host(c, dl, dst_access)?;
    Some((k, sp, dp))
}

/// Copies a run of elements that lies in one RAM page on each side with exactly the
/// element-by-element result (overlaps included).
#[allow(clippy::too_many_arguments)]
#[inline]
fn movs_bulk(
    c: &mut Cpu,
    seg: usize,
    size: u8,
    am: u64,
    back: bool,
    si: u64,
    di: u64,
    max: u64,
) -> (u64, bool) {
    let Some((k, sp, dp)) = paired_run(c, seg, size, am, back, si, di, max, Access::Write) else {
        return (0, true);
    };
    let bytes = (k * size as u64) as usize;
    let span = bytes - size as usize;
    // SAFETY: `run_len` kept all `k` elements inside the two pages, which the TLB maps to
    // live host RAM (writable for the destination: write entries exist only for writable
    // RAM pages that hold no decoded code).
    unsafe {
        let (s0, d0) = if back {
            (sp.sub(span), dp.sub(span))
        } else {
            (sp, dp)
        };
        let (sa, da) = (s0 as usize, d0 as usize);
        let overlap = sa < da + bytes && da < sa + bytes;
        // Element order only shows when the copy runs into bytes it has yet to read.
        let order_matters = overlap && if back { da < sa } else { da > sa };
        if !order_matters {
            std::ptr::copy(s0, d0, bytes);
        } else {
            for e in 0..k as usize {
                let off = if back {
                    span - e * size as usize
                } else {
                    e * size as usize
                };
                store(d0.add(off), size, load(s0.add(off), size));
            }
        }
    }
    (k, true)
}

// ----- STOS -----

fn stos<const SIZE: u8>(c: &mut Cpu, i: &Insn) -> Flow {
    let v = c.reg(RAX, SIZE);
    let step = |c: &mut Cpu, _si: u64, di: u64| {
        let dst = c.seg_write_addr(ES, di, SIZE)?;
        c.write_lin(dst, SIZE, v)?;
        Ok(true)
    };
    let am = size_mask(i.asize);
    let back = c.s.rflags & rflags::DF != 0;
    run::<SIZE, DI>(
        c,
        i,
        |c, _si, di, max| stos_bulk(c, SIZE, am, back, di, max, v),
        step,
    )
}

#[inline]
fn stos_bulk(c: &mut Cpu, size: u8, am: u64, back: bool, di: u64, max: u64, v: u64) -> (u64, bool) {
    if !c.seg_unchecked(ES, true) {
        return (0, true);
    }
    let Ok(dl) = c.seg_linear(ES, di) else {
        return (0, true);
    };
    let sz = size as u64;
    let k = run_len(di, dl, sz, am, back).min(max);
    if k == 0 {
        return (0, true);
    }
    let Some(dp) = host(c, dl, Access::Write) else {
        return (0, true);
    };
    let bytes = (k * sz) as usize;
    // SAFETY: as in `movs_bulk`; every element stores the same value, so order is moot.
    unsafe {
        let d0 = if back {
            dp.sub(bytes - size as usize)
        } else {
            dp
        };
        let b = v as u8;
        if size == 1 || v == u64::from_ne_bytes([b; 8]) & size_mask(size) {
            std::ptr::write_bytes(d0, b, bytes);
        } else {
            for e in 0..k as usize {
                store(d0.add(e * size as usize), size, v);
            }
        }
    }
    (k, true)
}

// ----- LODS, SCAS, CMPS -----

fn lods<const SIZE: u8>(c: &mut Cpu, i: &Insn) -> Flow {
    let seg = i.mem.seg as usize;
    run::<SIZE, SI>(c, i, no_bulk, |c, si, _di| {
        let src = c.seg_read_addr(seg, si, SIZE)?;
        let v = c.read_lin(src, SIZE)?;
        c.set_reg(RAX, SIZE, v);
        Ok(true)
    })
}

fn scas<const SIZE: u8>(c: &mut Cpu, i: &Insn) -> Flow {
    let a = c.reg(RAX, SIZE);
    let am = size_mask(i.asize);
    let back = c.s.rflags & rflags::DF != 0;
    let bulk = |c: &mut Cpu, _si: u64, di: u64, max: u64| {
        if !c.seg_unchecked(ES, false) {
            return (0, true);
        }
        let Ok(dl) = c.seg_linear(ES, di) else {
            return (0, true);
        };
        let k = run_len(di, dl, SIZE as u64, am, back).min(max);
        if k == 0 {
            return (0, true);
        }
        let Some(dp) = host(c, dl, Access::Read) else {
            return (0, true);
        };
        // SAFETY: `run_len` kept the run inside the RAM page `dp` points into.
        compare_run(c, i, k, SIZE, |e| {
            (a, unsafe { load(elem(dp, e, SIZE, back), SIZE) })
        })
    };
    run::<SIZE, DI>(c, i, bulk, |c, _si, di| {
        let dst = c.seg_read_addr(ES, di, SIZE)?;
        let b = c.read_lin(dst, SIZE)?;
        c.set_lazy(FlagOp::Sub, SIZE, a, b, a.wrapping_sub(b));
        Ok(rep_continues(i, a == b))
    })
}

/// Compares up to `k` element pairs from `pair(e)`, stopping where REPE/REPNE would; sets
/// the flags of the last comparison and returns how many were done and whether to go on.
#[inline(always)]
fn compare_run(
    c: &mut Cpu,
    i: &Insn,
    k: u64,
    size: u8,
    mut pair: impl FnMut(u64) -> (u64, u64),
) -> (u64, bool) {
    let (mut a, mut b) = (0, 0);
    let mut e = 0;
    let mut go_on = true;
    while e < k {
        (a, b) = pair(e);
        e += 1;
        if !rep_continues(i, a == b) {
            go_on = false;
            break;
        }
    }
    c.set_lazy(FlagOp::Sub, size, a, b, a.wrapping_sub(b));
    (e, go_on)
}

fn cmps<const SIZE: u8>(c: &mut Cpu, i: &Insn) -> Flow {
    let seg = i.mem.seg as usize;
    let am = size_mask(i.asize);
    let back = c.s.rflags & rflags::DF != 0;
    let bulk = |c: &mut Cpu, si: u64, di: u64, max: u64| {
        let Some((k, sp, dp)) = paired_run(c, seg, SIZE, am, back, si, di, max, Access::Read)
        else {
            return (0, true);
        };
        compare_run(c, i, k, SIZE, |e| {
            // SAFETY: `run_len` kept both runs inside the RAM pages the pointers are in.
            unsafe {
                (
                    load(elem(sp, e, SIZE, back), SIZE),
                    load(elem(dp, e, SIZE, back), SIZE),
                )
            }
        })
    };
    run::<SIZE, { SI | DI }>(c, i, bulk, |c, si, di| {
        // ES:rDI is read first: the SDM leaves the order of the two reads open, and this
        // host's CPU (AMD EPYC, measured natively and by fuzz-diff) faults on rDI's access
        // (canonical check and paging) before rSI's.
        let dst = c.seg_read_addr(ES, di, SIZE)?;
        let b = c.read_lin(dst, SIZE)?;
        let src = c.seg_read_addr(seg, si, SIZE)?;
        let a = c.read_lin(src, SIZE)?;
        c.set_lazy(FlagOp::Sub, SIZE, a, b, a.wrapping_sub(b));
        Ok(rep_continues(i, a == b))
    })
}

// ----- INS, OUTS -----

fn ins<const SIZE: u8>(c: &mut Cpu, i: &Insn) -> Flow {
    let port = c.s.gpr[RDX] as u16;
    crate::monitor::io(c, port, SIZE)?;
    run::<SIZE, DI>(c, i, no_bulk, |c, _si, di| {
        let dst = c.seg_write_addr(ES, di, SIZE)?;
        // Check the destination is writable before the port read, whose side effects
        // (a FIFO pop) could not be undone by a fault.
        c.translate_fill(dst, Access::Write)?;
        if (dst & 0xfff) + SIZE as u64 > 4096 {
            c.translate_fill(dst.wrapping_add(SIZE as u64 - 1), Access::Write)?;
        }
        let v = c.io_in(port, SIZE);
        c.write_lin(dst, SIZE, v)?;
        Ok(true)
    })
}

fn outs<const SIZE: u8>(c: &mut Cpu, i: &Insn) -> Flow {
    let port = c.s.gpr[RDX] as u16;
    crate::monitor::io(c, port, SIZE)?;
    let seg = i.mem.seg as usize;
    run::<SIZE, SI>(c, i, no_bulk, |c, si, _di| {
        let src = c.seg_read_addr(seg, si, SIZE)?;
        let v = c.read_lin(src, SIZE)?;
        c.io_out(port, SIZE, v)?;
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exception::{Exception, GP, PF};
    use crate::exec::{Interpreter, RunExit};
    use crate::interp::bits::tests::run64;
    use crate::state::rflags::{ARITH, CF, FIXED1, SF, ZF};
    use crate::state::{CpuState, Segment, DS, FS};
    use crate::testing::{machine64, CODE, DATA};
    use std::sync::{Arc, Mutex};
    use twinvm_devices::bus::Device;

    fn put(it: &Interpreter, addr: u64, bytes: &[u8]) {
        it.cpu.env.mem.write(addr, bytes).unwrap();
    }

    fn get(it: &Interpreter, addr: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        it.cpu.env.mem.read(addr, &mut v).unwrap();
        v
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|x| (x as u8).wrapping_mul(31).wrapping_add(seed) ^ (x >> 8) as u8)
            .collect()
    }

    fn set(it: &mut Interpreter, si: u64, di: u64, cx: u64) {
        it.cpu.s.gpr[RSI] = si;
        it.cpu.s.gpr[RDI] = di;
        it.cpu.s.gpr[RCX] = cx;
    }

    fn regs(it: &Interpreter) -> (u64, u64, u64) {
        (it.cpu.s.gpr[RSI], it.cpu.s.gpr[RDI], it.cpu.s.gpr[RCX])
    }

    fn arith(it: &Interpreter) -> u64 {
        it.cpu.state().rflags & ARITH
    }

    /// The 2 MiB page at `addr` becomes not present.
    fn unmap_2m(it: &mut Interpreter, addr: u64) {
        it.cpu
            .env
            .mem
            .write_u64(0x3000 + (addr >> 21) * 8, 0)
            .unwrap();
        it.cpu.flush_tlb();
    }

    fn remap_2m(it: &mut Interpreter, addr: u64) {
        let a = addr & !0x1f_ffff;
        it.cpu
            .env
            .mem
            .write_u64(0x3000 + (addr >> 21) * 8, a | 0x83)
            .unwrap();
        it.cpu.flush_tlb();
    }

    /// Element-by-element MOVS on a byte buffer: the reference for the bulk path.
    fn ref_movs(buf: &mut [u8], src: usize, dst: usize, size: usize, count: usize, back: bool) {
        for e in 0..count {
            let off = e * size;
            let (s, d) = if back {
                (src - off, dst - off)
            } else {
                (src + off, dst + off)
            };
            let tmp = buf[s..s + size].to_vec();
            buf[d..d + size].copy_from_slice(&tmp);
        }
    }

    fn movs_bytes(size: u8) -> Vec<u8> {
        match size {
            1 => vec![0xf3, 0xa4],
            2 => vec![0xf3, 0x66, 0xa5],
            4 => vec![0xf3, 0xa5],
            _ => vec![0xf3, 0x48, 0xa5],
        }
    }

    #[test]
    fn rep_movs_matches_element_by_element_reference() {
        // Overlapping and disjoint copies of every size and direction, across pages and
        // longer than one chunk.
        let region = 0x4000usize;
        let init = pattern(region, 7);
        for size in [1u8, 2, 4, 8] {
            for back in [false, true] {
                for delta in [-9i64, -8, -3, -1, 0, 1, 2, 5, 8, 13, 0x1800] {
                    for count in [1usize, 7, 700] {
                        let sz = size as usize;
                        let span = count * sz;
                        let src = if back { 0x2000 + span - sz } else { 0x1000 };
                        let dst = (src as i64 + delta) as usize;
                        if back && dst + sz > region || dst < span {
                            continue;
                        }
                        let mut want = init.clone();
                        ref_movs(&mut want, src, dst, sz, count, back);
                        let mut it = machine64();
                        put(&it, DATA, &init);
                        set(&mut it, DATA + src as u64, DATA + dst as u64, count as u64);
                        let mut code = if back { vec![0xfd] } else { vec![] };
                        code.extend(movs_bytes(size));
                        assert_eq!(run64(&mut it, &code), RunExit::Halted);
                        let what = format!("size {size} back {back} delta {delta} count {count}");
                        assert_eq!(get(&it, DATA, region), want, "{what}");
                        let moved = (span as u64).wrapping_neg();
                        let adv = if back { moved } else { span as u64 };
                        assert_eq!(
                            regs(&it),
                            (
                                (DATA + src as u64).wrapping_add(adv),
                                (DATA + dst as u64).wrapping_add(adv),
                                0
                            ),
                            "{what}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[ignore]
    fn perf_probe() {
        let mut it = machine64();
        for (name, code, cx) in [
            ("repne scasb 16MiB", vec![0xf2, 0xae], 16u64 << 20),
            ("repe cmpsb 16MiB", vec![0xf3, 0xa6], 16 << 20),
            ("rep movsb 16MiB", vec![0xf3, 0xa4], 16 << 20),
            ("rep movsb 16MiB again", vec![0xf3, 0xa4], 16 << 20),
            ("rep movsd 16MiB unaligned", vec![0xf3, 0xa5], 4 << 20),
            ("rep stosq 16MiB", vec![0xf3, 0x48, 0xab], 2 << 20),
            ("rep lodsb 16MiB", vec![0xf3, 0xac], 16 << 20),
        ] {
            set(&mut it, 0x100_0000, 0x200_0001, cx);
            it.cpu.s.gpr[RAX] = 0x77;
            let t = std::time::Instant::now();
            assert_eq!(run64(&mut it, &code), RunExit::Halted);
            eprintln!("{name}: {:?}", t.elapsed());
        }
    }

    #[test]
    fn long_rep_movsb_runs_in_chunks() {
        let mut it = machine64();
        let data = pattern(20000, 3);
        put(&it, DATA + 3, &data);
        set(&mut it, DATA + 3, DATA + 0x10005, 20000);
        assert_eq!(run64(&mut it, &[0xf3, 0xa4]), RunExit::Halted);
        assert_eq!(get(&it, DATA + 0x10005, 20000), data);
        assert_eq!(regs(&it), (DATA + 20003, DATA + 0x10005 + 20000, 0));
        // One handler call does CHUNK iterations and leaves RIP at the instruction.
        let mut it = machine64();
        set(&mut it, DATA, DATA + 0x10000, 10000);
        let insn = crate::decode::decode_one(&[0xf3, 0x48, 0xa5], CODE, 64, &CpuModel::max());
        it.cpu.s.rip = CODE;
        crate::decode::execute(&mut it.cpu, &insn).unwrap();
        assert_eq!(it.cpu.s.rip, CODE);
        assert!(it.cpu.break_block);
        assert_eq!(
            regs(&it),
            (DATA + CHUNK * 8, DATA + 0x10000 + CHUNK * 8, 10000 - CHUNK)
        );
        let mut calls = 1;
        while it.cpu.s.rip == CODE {
            crate::decode::execute(&mut it.cpu, &insn).unwrap();
            calls += 1;
        }
        assert_eq!(calls, 3);
        assert_eq!(it.cpu.s.rip, CODE + 3);
        assert_eq!(regs(&it).2, 0);
    }

    #[test]
    fn single_movs_and_direction() {
        let mut it = machine64();
        put(&it, DATA, &[1, 2, 3, 4, 5, 6, 7, 8]);
        set(&mut it, DATA, DATA + 0x100, 77);
        assert_eq!(run64(&mut it, &[0x66, 0xa5]), RunExit::Halted);
        assert_eq!(get(&it, DATA + 0x100, 3), vec![1, 2, 0]);
        assert_eq!(regs(&it), (DATA + 2, DATA + 0x102, 77));
        // DF=1: MOVSD then the pointers go down by 4.
        set(&mut it, DATA + 4, DATA + 0x200, 0);
        assert_eq!(run64(&mut it, &[0xfd, 0xa5]), RunExit::Halted);
        assert_eq!(get(&it, DATA + 0x200, 4), vec![5, 6, 7, 8]);
        assert_eq!(regs(&it), (DATA, DATA + 0x1fc, 0));
        // REPNE (F2) on MOVS repeats like REP.
        let mut it = machine64();
        put(&it, DATA, &[9, 8, 7]);
        set(&mut it, DATA, DATA + 0x100, 3);
        assert_eq!(run64(&mut it, &[0xf2, 0xa4]), RunExit::Halted);
        assert_eq!(get(&it, DATA + 0x100, 3), vec![9, 8, 7]);
        assert_eq!(regs(&it).2, 0);
    }

    #[test]
    fn rep_with_zero_count_does_nothing() {
        let mut it = machine64();
        // Non-canonical pointers: nothing is accessed when the count is 0.
        set(&mut it, 0x8000_0000_0000_0000, 0x8000_0000_0000_0000, 0);
        it.cpu.set_rflags(FIXED1 | CF | ZF);
        for code in [
            &[0xf3u8, 0xa4][..],
            &[0xf3, 0xa6],
            &[0xf2, 0xae],
            &[0xf3, 0x48, 0xab],
            &[0xf3, 0xac],
        ] {
            assert_eq!(run64(&mut it, code), RunExit::Halted);
            assert_eq!(regs(&it), (0x8000_0000_0000_0000, 0x8000_0000_0000_0000, 0));
            assert_eq!(arith(&it), CF | ZF);
        }
        // 32-bit addressing: only ECX counts, and RCX is left alone when it is 0.
        set(&mut it, DATA, DATA, 0x1_0000_0000);
        assert_eq!(run64(&mut it, &[0x67, 0xf3, 0xa4]), RunExit::Halted);
        assert_eq!(regs(&it), (DATA, DATA, 0x1_0000_0000));
        // A non-canonical pointer under REP: #GP(0), nothing changes.
        set(&mut it, 0x8000_0000_0000_0000, DATA, 5);
        let r = run64(&mut it, &[0xf3, 0xa4]);
        assert_eq!(r, RunExit::Exception(Exception::with_code(GP, 0)));
        assert_eq!(regs(&it), (0x8000_0000_0000_0000, DATA, 5));
    }

    #[test]
    fn stos_sizes_directions_and_values() {
        for (size, code, v) in [
            (1usize, vec![0xf3, 0xaa], 0x41u64),
            (2, vec![0xf3, 0x66, 0xab], 0x1234),
            (2, vec![0xf3, 0x66, 0xab], 0x4242),
            (4, vec![0xf3, 0xab], 0xdead_beef),
            (8, vec![0xf3, 0x48, 0xab], 0x0102_0304_0506_0708),
        ] {
            for back in [false, true] {
                for count in [1u64, 3, 1500] {
                    let mut it = machine64();
                    put(&it, DATA, &pattern(0x4000, 1));
                    let bytes = count as usize * size;
                    let start = if back { 0x3000 - size } else { 0x800 } as u64;
                    set(&mut it, 0, DATA + start, count);
                    it.cpu.s.gpr[RAX] = 0xffff_ffff_ffff_0000_u64.wrapping_mul(size as u64 & 1) | v;
                    let mut c = if back { vec![0xfd] } else { vec![] };
                    c.extend(&code);
                    assert_eq!(run64(&mut it, &c), RunExit::Halted);
                    let low = if back {
                        start + size as u64 - bytes as u64
                    } else {
                        start
                    };
                    let mut want = pattern(0x4000, 1);
                    for e in 0..count as usize {
                        let o = low as usize + e * size;
                        want[o..o + size].copy_from_slice(&v.to_le_bytes()[..size]);
                    }
                    assert_eq!(
                        get(&it, DATA, 0x4000),
                        want,
                        "size {size} back {back} count {count}"
                    );
                    let end = if back {
                        DATA + start - bytes as u64
                    } else {
                        DATA + start + bytes as u64
                    };
                    assert_eq!(regs(&it), (0, end, 0));
                }
            }
        }
    }

    #[test]
    fn lods_loads_accumulator() {
        let mut it = machine64();
        put(
            &it,
            DATA,
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99],
        );
        it.cpu.s.gpr[RAX] = 0xffff_ffff_ffff_ffff;
        set(&mut it, DATA, 0, 3);
        assert_eq!(run64(&mut it, &[0xf3, 0xac]), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[RAX], 0xffff_ffff_ffff_ff33);
        assert_eq!(regs(&it), (DATA + 3, 0, 0));
        // LODSD zero-extends; LODSQ with DF=1 goes down.
        assert_eq!(run64(&mut it, &[0xad]), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[RAX], 0x7766_5544);
        set(&mut it, DATA + 1, 0, 0);
        assert_eq!(run64(&mut it, &[0xfd, 0x48, 0xad]), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[RAX], 0x9988_7766_5544_3322);
        assert_eq!(regs(&it).0, DATA - 7);
    }

    #[test]
    fn repe_cmps_and_repne_scas() {
        let mut it = machine64();
        put(&it, DATA, b"hello world");
        put(&it, DATA + 0x100, b"hello there");
        set(&mut it, DATA, DATA + 0x100, 11);
        assert_eq!(run64(&mut it, &[0xf3, 0xa6]), RunExit::Halted);
        // Stops after comparing 'w' with 't' (index 6).
        assert_eq!(regs(&it), (DATA + 7, DATA + 0x107, 4));
        // 0x77 - 0x74 = 3: only PF (two bits set).
        assert_eq!(arith(&it), crate::state::rflags::PF);
        // Equal strings: runs out with ZF=1.
        set(&mut it, DATA, DATA + 0x100, 6);
        assert_eq!(run64(&mut it, &[0xf3, 0xa6]), RunExit::Halted);
        assert_eq!(regs(&it), (DATA + 6, DATA + 0x106, 0));
        assert_eq!(arith(&it) & ZF, ZF);
        // CMPSB below: 'h' (0x68) vs 'x' (0x78): CF and SF.
        put(&it, DATA + 0x200, b"x");
        set(&mut it, DATA, DATA + 0x200, 0);
        assert_eq!(run64(&mut it, &[0xa6]), RunExit::Halted);
        assert_eq!(arith(&it) & (CF | SF | ZF), CF | SF);
        assert_eq!(regs(&it), (DATA + 1, DATA + 0x201, 0));
        // REPNE SCASB finds 'o' at index 4.
        it.cpu.s.gpr[RAX] = b'o' as u64;
        set(&mut it, 0, DATA, 11);
        assert_eq!(run64(&mut it, &[0xf2, 0xae]), RunExit::Halted);
        assert_eq!(regs(&it), (0, DATA + 5, 6));
        assert_eq!(arith(&it) & ZF, ZF);
        // Not found: count runs out with ZF=0.
        it.cpu.s.gpr[RAX] = b'z' as u64;
        set(&mut it, 0, DATA, 11);
        assert_eq!(run64(&mut it, &[0xf2, 0xae]), RunExit::Halted);
        assert_eq!(regs(&it), (0, DATA + 11, 0));
        assert_eq!(arith(&it) & ZF, 0);
        // REPE SCASD over equal dwords, then a different one.
        put(&it, DATA + 0x300, &[1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
        it.cpu.s.gpr[RAX] = 0xffff_ffff_0000_0001;
        set(&mut it, 0, DATA + 0x300, 10);
        assert_eq!(run64(&mut it, &[0xf3, 0xaf]), RunExit::Halted);
        assert_eq!(regs(&it), (0, DATA + 0x30c, 7));
        assert_eq!(
            arith(&it),
            CF | SF | crate::state::rflags::AF | crate::state::rflags::PF
        );
        assert_eq!(it.cpu.s.gpr[RAX], 0xffff_ffff_0000_0001);
    }

    #[test]
    fn long_compares_across_pages_and_chunks() {
        // REPE CMPS / REPNE SCAS over runs that cross pages and chunks, both directions,
        // every size, stopping at `stop` elements in (or running out).
        for size in [1u64, 2, 4, 8] {
            for back in [false, true] {
                for stop in [0u64, 1, 700, 5000, 9999] {
                    let count = 6000u64;
                    let mut it = machine64();
                    let n = (count * size) as usize;
                    let (sbase, dbase) = (DATA + 0x3, DATA + 0x10_0000 + 0x5);
                    // No 0xee bytes except the planted one.
                    let data: Vec<u8> = pattern(n, 5)
                        .into_iter()
                        .map(|b| if b == 0xee { 0x11 } else { b })
                        .collect();
                    put(&it, sbase, &data);
                    put(&it, dbase, &data);
                    // Element index `stop` (in execution order) differs / holds the needle.
                    let idx = if back {
                        (count - 1).wrapping_sub(stop)
                    } else {
                        stop
                    };
                    if stop < count {
                        put(&it, dbase + idx * size, &[0xee; 8][..size as usize]);
                    }
                    let (s0, d0) = if back {
                        (sbase + n as u64 - size, dbase + n as u64 - size)
                    } else {
                        (sbase, dbase)
                    };
                    let done = (stop + 1).min(count);
                    let step = |p: u64| {
                        if back {
                            p - done * size
                        } else {
                            p + done * size
                        }
                    };
                    let op = match size {
                        1 => vec![0xa6],
                        2 => vec![0x66, 0xa7],
                        4 => vec![0xa7],
                        _ => vec![0x48, 0xa7],
                    };
                    let mut code = if back { vec![0xfd, 0xf3] } else { vec![0xf3] };
                    code.extend(&op);
                    set(&mut it, s0, d0, count);
                    assert_eq!(run64(&mut it, &code), RunExit::Halted);
                    let what = format!("cmps size {size} back {back} stop {stop}");
                    assert_eq!(regs(&it), (step(s0), step(d0), count - done), "{what}");
                    assert_eq!(arith(&it) & ZF == 0, stop < count, "{what}");
                    // REPNE SCAS for 0xee…: finds the same element.
                    let needle = u64::from_le_bytes([0xee; 8]) & size_mask(size as u8);
                    it.cpu.s.gpr[RAX] = needle;
                    let mut code = if back { vec![0xfd, 0xf2] } else { vec![0xf2] };
                    code.extend(op.iter().map(|b| if *b >= 0xa6 { b + 8 } else { *b }));
                    set(&mut it, 0, d0, count);
                    assert_eq!(run64(&mut it, &code), RunExit::Halted);
                    let what = format!("scas size {size} back {back} stop {stop}");
                    assert_eq!(regs(&it), (0, step(d0), count - done), "{what}");
                    assert_eq!(arith(&it) & ZF != 0, stop < count, "{what}");
                }
            }
        }
    }

    #[test]
    fn long_repne_scas_spans_chunks() {
        let mut it = machine64();
        let mut buf = vec![0u8; 10000];
        buf[9000] = 0x5a;
        put(&it, DATA, &buf);
        it.cpu.s.gpr[RAX] = 0x5a;
        set(&mut it, 0, DATA, 20000);
        assert_eq!(run64(&mut it, &[0xf2, 0xae]), RunExit::Halted);
        assert_eq!(regs(&it), (0, DATA + 9001, 20000 - 9001));
        assert_eq!(arith(&it) & ZF, ZF);
    }

    #[test]
    fn address_size_32_in_64_bit_mode() {
        let mut it = machine64();
        put(&it, DATA, &[1, 2, 3, 4]);
        set(
            &mut it,
            0xffff_ffff_0000_0000 | DATA,
            0x1_0000_0000 | (DATA + 0x1000),
            0x1_0000_0004,
        );
        assert_eq!(run64(&mut it, &[0x67, 0xf3, 0xa4]), RunExit::Halted);
        assert_eq!(get(&it, DATA + 0x1000, 4), vec![1, 2, 3, 4]);
        assert_eq!(regs(&it), (DATA + 4, DATA + 0x1004, 0));
        // Non-REP with 32-bit addressing zero-extends the one register it steps.
        it.cpu.s.gpr[RDI] = 0xabcd_0000_0000_0000 | (DATA + 0x2000);
        it.cpu.s.gpr[RSI] = 0xabcd_0000_0000_0000;
        assert_eq!(run64(&mut it, &[0x67, 0xaa]), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[RDI], DATA + 0x2001);
        assert_eq!(it.cpu.s.gpr[RSI], 0xabcd_0000_0000_0000);
    }

    #[test]
    fn segment_override_in_64_bit_mode() {
        let mut it = machine64();
        put(&it, DATA + 0x1000, &[0xaa]);
        put(&it, DATA, &[0x55]);
        it.cpu.s.seg[FS].base = 0x1000;
        // ES and DS bases are ignored in 64-bit mode.
        it.cpu.s.seg[ES].base = 0x5000;
        it.cpu.s.seg[DS].base = 0x5000;
        set(&mut it, DATA, DATA + 0x100, 0);
        assert_eq!(run64(&mut it, &[0x64, 0xa4]), RunExit::Halted);
        assert_eq!(get(&it, DATA + 0x100, 1), vec![0xaa]);
        set(&mut it, DATA, DATA + 0x101, 0);
        assert_eq!(run64(&mut it, &[0xa4]), RunExit::Halted);
        assert_eq!(get(&it, DATA + 0x101, 1), vec![0x55]);
    }

    #[test]
    fn fault_mid_rep_is_precise_and_restartable() {
        let mut it = machine64();
        let hole = 0x40_0000u64;
        let data = pattern(300, 9);
        put(&it, DATA, &data);
        unmap_2m(&mut it, hole);
        set(&mut it, DATA, hole - 100, 300);
        it.cpu.set_rflags(FIXED1);
        let r = run64(&mut it, &[0x90, 0xf3, 0xa4]);
        assert_eq!(r, RunExit::Exception(Exception::with_code(PF, 2)));
        assert_eq!(it.cpu.s.cr2, hole);
        assert_eq!(it.cpu.s.rip, CODE + 1);
        assert_eq!(regs(&it), (DATA + 100, hole, 200));
        assert_eq!(get(&it, hole - 100, 100), data[..100].to_vec());
        // The handler maps the page and returns: the instruction finishes the copy.
        remap_2m(&mut it, hole);
        assert_eq!(it.run(1000), RunExit::Halted);
        assert_eq!(get(&it, hole - 100, 300), data);
        assert_eq!(regs(&it), (DATA + 300, hole + 200, 0));
        // Source side, qwords, downwards from the page above the hole.
        let mut it = machine64();
        unmap_2m(&mut it, hole);
        let above = hole + 0x20_0000;
        set(&mut it, above + 16, DATA + 0x800, 10);
        let r = run64(&mut it, &[0xfd, 0xf3, 0x48, 0xa5]);
        assert_eq!(r, RunExit::Exception(Exception::with_code(PF, 0)));
        assert_eq!(it.cpu.s.cr2, above - 8);
        assert_eq!(regs(&it), (above - 8, DATA + 0x800 - 24, 7));
        // REPE CMPS keeps the flags of the last comparison it completed.
        let mut it = machine64();
        put(&it, hole - 2, &[0, 0]);
        put(&it, DATA, &[0, 0, 0]);
        unmap_2m(&mut it, hole);
        set(&mut it, hole - 2, DATA, 5);
        it.cpu.set_rflags(FIXED1 | CF);
        let r = run64(&mut it, &[0xf3, 0xa6]);
        assert_eq!(r, RunExit::Exception(Exception::with_code(PF, 0)));
        assert_eq!(regs(&it), (hole, DATA + 2, 3));
        assert_eq!(arith(&it), ZF | crate::state::rflags::PF);
        // A fault on the very first element changes nothing.
        let mut it = machine64();
        unmap_2m(&mut it, hole);
        set(&mut it, DATA, hole, 0x1_0000_0005);
        let r = run64(&mut it, &[0x67, 0xf3, 0xa4]);
        assert!(matches!(r, RunExit::Exception(e) if e.vector == PF));
        assert_eq!(regs(&it), (DATA, hole, 0x1_0000_0005));
    }

    #[test]
    fn stos_to_read_only_page_faults_with_partial_progress() {
        let mut it = machine64();
        // 2 MiB page at 0x40_0000 read-only.
        it.cpu
            .env
            .mem
            .write_u64(0x3000 + 2 * 8, 0x40_0000 | 0x81)
            .unwrap();
        it.cpu.flush_tlb();
        it.cpu.s.gpr[RAX] = 0x77;
        set(&mut it, 0, 0x40_0000 - 3, 8);
        let r = run64(&mut it, &[0xf3, 0x66, 0xab]);
        // Words at -3 and -1 (the second straddles into the read-only page) → 1 done.
        assert_eq!(r, RunExit::Exception(Exception::with_code(PF, 3)));
        assert_eq!(regs(&it), (0, 0x40_0000 - 1, 7));
        assert_eq!(get(&it, 0x40_0000 - 3, 3), vec![0x77, 0, 0]);
    }

    #[test]
    fn mmio_source_reads_all_ones() {
        let mut it = machine64();
        set(&mut it, 0x3000_0000, DATA, 16);
        assert_eq!(run64(&mut it, &[0xf3, 0xa4]), RunExit::Halted);
        assert_eq!(get(&it, DATA, 16), vec![0xff; 16]);
        assert_eq!(regs(&it), (0x3000_0010, DATA + 16, 0));
    }

    struct Fifo {
        next: u8,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Device for Fifo {
        fn name(&self) -> &'static str {
            "fifo"
        }
        fn read(&mut self, _offset: u64, data: &mut [u8]) {
            for b in data {
                *b = self.next;
                self.next = self.next.wrapping_add(1);
            }
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.out.lock().unwrap().extend_from_slice(data);
        }
    }

    fn machine_with_fifo(
        state: impl FnOnce(&twinvm_devices::GuestMemory) -> CpuState,
    ) -> (Interpreter, Arc<Mutex<Vec<u8>>>) {
        let mut e = crate::testing::env(64 << 20);
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut bus = twinvm_devices::Bus::new();
        bus.insert(
            0x3f8,
            8,
            Arc::new(Mutex::new(Fifo {
                next: 1,
                out: out.clone(),
            })),
        )
        .unwrap();
        e.pio = Arc::new(bus);
        let s = state(&e.mem);
        let mut it = Interpreter::new(e, s);
        it.stop_on_exception = true;
        (it, out)
    }

    #[test]
    fn ins_and_outs() {
        let (mut it, out) = machine_with_fifo(crate::testing::long_mode_state);
        it.cpu.s.gpr[RDX] = 0x3f8;
        set(&mut it, DATA, DATA + 0x100, 3);
        // REP INSW: three words from the FIFO.
        assert_eq!(run64(&mut it, &[0xf3, 0x66, 0x6d]), RunExit::Halted);
        assert_eq!(get(&it, DATA + 0x100, 6), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(regs(&it), (DATA, DATA + 0x106, 0));
        // REP OUTSB, DF=1.
        put(&it, DATA, &[10, 11, 12]);
        set(&mut it, DATA + 2, 0, 3);
        assert_eq!(run64(&mut it, &[0xfd, 0xf3, 0x6e]), RunExit::Halted);
        assert_eq!(*out.lock().unwrap(), vec![12, 11, 10]);
        assert_eq!(regs(&it), (DATA - 1, 0, 0));
        // OUTSD, INSB without REP.
        put(&it, DATA, &[1, 2, 3, 4]);
        set(&mut it, DATA, DATA + 0x200, 9);
        assert_eq!(run64(&mut it, &[0xfc, 0x6f, 0x6c]), RunExit::Halted);
        assert_eq!(out.lock().unwrap()[3..], [1, 2, 3, 4]);
        assert_eq!(get(&it, DATA + 0x200, 1), vec![7]);
        assert_eq!(regs(&it), (DATA + 4, DATA + 0x201, 9));
        // INS to an unmapped page faults before reading the port.
        unmap_2m(&mut it, 0x40_0000);
        set(&mut it, 0, 0x40_0000, 1);
        let r = run64(&mut it, &[0x6c]);
        assert!(matches!(r, RunExit::Exception(e) if e.vector == PF));
        remap_2m(&mut it, 0x40_0000);
        assert_eq!(run64(&mut it, &[0x6c]), RunExit::Halted);
        assert_eq!(get(&it, 0x40_0000, 1), vec![8]);
    }

    #[test]
    fn ins_outs_need_iopl_at_cpl3() {
        let (mut it, out) = machine_with_fifo(|_| {
            let mut s = CpuState::protected_flat();
            // CPL 3 (SS.DPL) in 32-bit protected mode with paging off; IOPL 0.
            for seg in s.seg.iter_mut() {
                seg.attr |= 3 << crate::state::seg_attr::DPL_SHIFT;
            }
            s.rip = 0x1000;
            s.gpr[RDX] = 0x3f8;
            s.gpr[RSI] = 0x5000;
            // A TSS without room for an I/O permission bitmap: every port is denied.
            s.tr.limit = 0x67;
            s
        });
        it.cpu.env.mem.write(0x1000, &[0x6e, 0xf4]).unwrap();
        assert_eq!(it.run(10), RunExit::Exception(Exception::with_code(GP, 0)));
        assert_eq!(it.cpu.s.gpr[RSI], 0x5000);
        // IOPL 3 allows it (then the HLT after it faults: HLT needs CPL 0).
        let f = it.cpu.rflags();
        it.cpu.set_rflags(f | rflags::IOPL);
        assert_eq!(it.run(10), RunExit::Exception(Exception::with_code(GP, 0)));
        assert_eq!(it.cpu.s.rip, 0x1001);
        assert_eq!(out.lock().unwrap().len(), 1);
        assert_eq!(it.cpu.s.gpr[RSI], 0x5001);
    }

    fn machine32(setup: impl FnOnce(&mut CpuState)) -> Interpreter {
        let e = crate::testing::env(16 << 20);
        let mut s = CpuState::protected_flat();
        s.rip = 0x1000;
        s.gpr[4] = 0x8000;
        setup(&mut s);
        let mut it = Interpreter::new(e, s);
        it.stop_on_exception = true;
        it
    }

    fn run_at(it: &mut Interpreter, at: u64, code: &[u8]) -> RunExit {
        let mut c = code.to_vec();
        c.push(0xf4);
        it.cpu.env.mem.write(at, &c).unwrap();
        it.cache.clear(&mut it.cpu);
        it.cpu.s.events.halted = false;
        // CS bases are 0 in these tests, so the offset is the linear address.
        it.cpu.s.rip = at;
        it.run(100_000)
    }

    #[test]
    fn segments_and_16_bit_addressing_in_32_bit_code() {
        let mut it = machine32(|s| {
            s.seg[DS].base = 0x10000;
            s.seg[ES].base = 0x20000;
        });
        put(&it, 0x10000 + 0x100, &[1, 2, 3, 4]);
        put(&it, 0x20000 + 0x100, &[9, 9, 9, 9]);
        set(&mut it, 0x100, 0x200, 4);
        assert_eq!(run_at(&mut it, 0x1000, &[0xf3, 0xa4]), RunExit::Halted);
        assert_eq!(get(&it, 0x20200, 4), vec![1, 2, 3, 4]);
        // ES override on the source.
        set(&mut it, 0x100, 0x300, 2);
        assert_eq!(
            run_at(&mut it, 0x1000, &[0x26, 0xf3, 0x66, 0xa5]),
            RunExit::Halted
        );
        assert_eq!(get(&it, 0x20300, 4), vec![9, 9, 9, 9]);
        assert_eq!(regs(&it), (0x104, 0x304, 0));
        // 16-bit addressing (0x67): DI wraps at 64 KiB and only DI/CX's low halves change.
        it.cpu.s.gpr[RAX] = 0x5a;
        set(&mut it, 0xdead_0000, 0xbeef_fffe, 0x1234_0004);
        assert_eq!(
            run_at(&mut it, 0x1000, &[0x67, 0xf3, 0xaa]),
            RunExit::Halted
        );
        assert_eq!(get(&it, 0x2fffe, 2), vec![0x5a, 0x5a]);
        assert_eq!(get(&it, 0x20000, 2), vec![0x5a, 0x5a]);
        assert_eq!(regs(&it), (0xdead_0000, 0xbeef_0002, 0x1234_0000));
    }

    #[test]
    fn real_mode_string_ops() {
        let e = crate::testing::env(16 << 20);
        let mut s = CpuState::reset();
        s.seg = [Segment::real(0); 6];
        s.seg[DS] = Segment::real(0x1000);
        s.seg[ES] = Segment::real(0x2000);
        s.rip = 0x7c00;
        s.gpr[4] = 0x7000;
        let mut it = Interpreter::new(e, s);
        it.stop_on_exception = true;
        put(&it, 0x10000 + 0xfffe, b"ab");
        put(&it, 0x10000, b"cd");
        // REP MOVSB with SI wrapping: copies "abcd".
        set(&mut it, 0xfffe, 0x10, 4);
        assert_eq!(run_at(&mut it, 0x7c00, &[0xf3, 0xa4]), RunExit::Halted);
        assert_eq!(get(&it, 0x20010, 4), b"abcd".to_vec());
        assert_eq!(regs(&it), (2, 0x14, 0));
        // REPNE SCASB for 'c' in ES:0x10.., then a 32-bit-addressed LODSD (0x66 0x67).
        it.cpu.s.gpr[RAX] = b'c' as u64;
        set(&mut it, 0, 0x10, 10);
        assert_eq!(run_at(&mut it, 0x7c00, &[0xf2, 0xae]), RunExit::Halted);
        assert_eq!(regs(&it), (0, 0x13, 7));
        // A dword at DS:0xFFFE crosses the 64 KiB real-mode limit: #GP(0).
        set(&mut it, 0xfffe, 0, 0);
        assert_eq!(
            run_at(&mut it, 0x7c00, &[0x66, 0x67, 0xad]),
            RunExit::Exception(crate::exception::Exception::with_code(13, 0))
        );
        set(&mut it, 0xfffc, 0, 0);
        assert_eq!(
            run_at(&mut it, 0x7c00, &[0x66, 0x67, 0xad]),
            RunExit::Halted
        );
        assert_eq!(it.cpu.s.gpr[RAX] as u32, u32::from_le_bytes(*b"\0\0ab"));
        assert_eq!(it.cpu.s.gpr[RSI], 0x1_0000);
    }
}
