//! `monitor` commands: what gdb's own commands cannot show about a whole machine.

use std::fmt::Write;

use twinvm_cpu::state::{cr0, cr4, CS};

use super::session::GdbSession;

const HELP: &str = "twinvm monitor commands:
  info mode            CPU mode, CPL, code size and paging of each vCPU
  info tlb             the engine's cached linear-to-physical translations
  xp ADDR [LEN]        hex dump of guest-physical memory (LEN bytes, default 64, max 4096)
  disas [ADDR [N [BITS]]]
                       disassemble N (default 10) instructions at linear ADDR (default:
                       the next one) as 16-, 32- or 64-bit code (default: the CPU's mode)
  stats                instruction and exit counters
  set step-irq on|off  deliver interrupts while single-stepping (default on)
  help                 this text
";

/// Runs one command line; returns what to print.
pub fn run(s: &mut GdbSession, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["info", "mode"] => info_mode(s),
        ["info", "tlb"] => s
            .vcpus
            .iter_mut()
            .enumerate()
            .map(|(i, v)| format!("vcpu {i}: {}", v.tlb_dump()))
            .collect(),
        ["xp", rest @ ..] => xp(s, rest),
        ["disas", rest @ ..] => disas(s, rest),
        ["stats"] => s
            .vcpus
            .iter_mut()
            .enumerate()
            .map(|(i, v)| format!("vcpu {i} ({}):\n{}", v.engine(), v.stats()))
            .collect(),
        ["set", "step-irq", on @ ("on" | "off")] => {
            s.mask_irq_on_step = *on == "off";
            format!("interrupts while stepping: {on}\n")
        }
        [] | ["help"] => HELP.to_string(),
        _ => format!("unknown monitor command '{}'\n{HELP}", line.trim()),
    }
}

fn info_mode(s: &mut GdbSession) -> String {
    let mut out = String::new();
    for (i, v) in s.vcpus.iter_mut().enumerate() {
        let st = v.state();
        let paging = if st.cr0 & cr0::PG == 0 {
            "off"
        } else if st.long_mode_active() {
            if st.cr4 & cr4::LA57 != 0 {
                "5-level"
            } else {
                "4-level"
            }
        } else if st.cr4 & cr4::PAE != 0 {
            "PAE"
        } else {
            "32-bit"
        };
        let _ = writeln!(
            out,
            "vcpu {i} ({}): {} mode, CPL {}, {}-bit code, paging {paging}, cs:rip {:#x}:{:#x}{}",
            v.engine(),
            st.mode_name(),
            st.cpl(),
            st.code_bits(),
            st.seg[CS].selector,
            st.rip,
            if st.events.halted { ", halted" } else { "" }
        );
    }
    out
}

fn parse_num(s: &str) -> Option<u64> {
    crate::cli::parse_number(s).ok()
}

fn xp(s: &mut GdbSession, args: &[&str]) -> String {
    let (addr, len) = match args {
        [a] => (parse_num(a), Some(64)),
        [a, l] => (parse_num(a), parse_num(l)),
        _ => (None, None),
    };
    let (Some(addr), Some(len)) = (addr, len) else {
        return "usage: xp ADDR [LEN]  (numbers in decimal or 0x-hex)\n".into();
    };
    if len == 0 || len > 4096 {
        return "xp: LEN must be 1..4096\n".into();
    }
    let Some(v) = s.vcpus.first_mut() else {
        return "no vCPU\n".into();
    };
    let mut buf = vec![0u8; len as usize];
    let n = v.read_phys(addr, &mut buf);
    let mut out = String::new();
    for (k, line) in buf[..n].chunks(16).enumerate() {
        let _ = write!(out, "{:#014x}:", addr.wrapping_add(16 * k as u64));
        for b in line {
            let _ = write!(out, " {b:02x}");
        }
        out.push('\n');
    }
    if n < buf.len() {
        let _ = writeln!(
            out,
            "xp: {:#x} is not guest RAM",
            addr.wrapping_add(n as u64)
        );
    }
    out
}

/// gdb's own `x/i` decodes with the description's architecture (x86-64) whatever the CPU
/// mode; this decodes as the CPU does now.
fn disas(s: &mut GdbSession, args: &[&str]) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    let Some(v) = s.vcpus.first_mut() else {
        return "no vCPU\n".into();
    };
    let st = v.state();
    let pc = if st.in_64bit_code() {
        st.rip
    } else {
        st.seg[CS].base.wrapping_add(st.rip) & 0xffff_ffff
    };
    let nums: Vec<Option<u64>> = args.iter().map(|a| parse_num(a)).collect();
    if nums.iter().any(Option::is_none) || nums.len() > 3 {
        return "usage: disas [ADDR [N [16|32|64]]]\n".into();
    }
    let addr = nums.first().copied().flatten().unwrap_or(pc);
    let n = nums.get(1).copied().flatten().unwrap_or(10).min(200) as usize;
    let bits = nums
        .get(2)
        .copied()
        .flatten()
        .unwrap_or(st.code_bits() as u64) as u32;
    if !matches!(bits, 16 | 32 | 64) {
        return "disas: BITS must be 16, 32 or 64\n".into();
    }
    let mut buf = vec![0u8; n * 15];
    let got = v.read_linear(addr, &mut buf);
    buf.truncate(got);
    let mut dec = Decoder::with_ip(bits, &buf, addr, DecoderOptions::NONE);
    let mut fmt = IntelFormatter::new();
    let mut out = String::new();
    let mut text = String::new();
    for _ in 0..n {
        if !dec.can_decode() {
            break;
        }
        let i = dec.decode();
        text.clear();
        fmt.format(&i, &mut text);
        let start = (i.ip() - addr) as usize;
        let bytes: String = buf[start..start + i.len()]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mark = if i.ip() == pc { "=>" } else { "  " };
        let _ = writeln!(out, "{mark} {:#x}: {bytes:<20} {text}", i.ip());
    }
    if out.is_empty() {
        let _ = writeln!(out, "disas: nothing readable at {addr:#x}");
    }
    out
}
