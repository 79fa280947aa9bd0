//! The streams: the native oracle's generator (`cpu::oracle::gen`, every general-purpose
//! family, faults included) with longer cases, plus streams of random encodings — valid
//! general-purpose instructions with random operands and invalid byte sequences — all
//! filtered through the departures table.

use iced_x86::{CpuidFeature, Decoder, DecoderOptions, FlowControl, Instruction, OpKind};
use twinvm_cpu::oracle::gen::{Family, Generator, Rng};
use twinvm_cpu::oracle::{Layout, State};
use twinvm_cpu::CpuModel;

use super::departures;

/// A stream to run on both engines: code ending in UD2, and the state it starts from.
#[derive(Clone, Debug)]
pub struct Stream {
    pub code: Vec<u8>,
    pub init: State,
    /// What made it (a family name, or "random").
    pub origin: String,
}

pub struct Streams {
    gen: Generator,
    rng: Rng,
    model: CpuModel,
    /// Streams rejected because an instruction is in the departures table, by entry.
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
}

/// Units per generated stream (at most): enough that a KVM entry runs tens of instructions.
const MAX_UNITS: usize = 120;

impl Streams {
    pub fn new(seed: u64) -> Streams {
        let mut gen = Generator::new(seed);
        gen.max_units = MAX_UNITS;
        // NT stays clear: see the "RFLAGS.NT" entry of the departures table.
        gen.popf_extra = 0x200 | 0x3000;
        Streams {
            gen,
            rng: Rng(seed ^ 0x5eed_f0dd_1ff0_0000),
            model: CpuModel::max(),
            rejected: Default::default(),
        }
    }

    pub fn next_stream(&mut self) -> Stream {
        loop {
            let s = if self.rng.chance(1, 8) {
                self.random_stream()
            } else {
                // The families that end a stream at once (BCD, privileged) are rarer, so
                // that most streams run long.
                let family = if self.rng.chance(1, 10) {
                    self.rng.pick(&[Family::Bcd, Family::System])
                } else {
                    self.rng.pick(&Family::ALL[..9])
                };
                let c = self.gen.case(family);
                Stream {
                    code: c.code,
                    init: c.init,
                    origin: format!("{family:?}"),
                }
            };
            match departure(&s.code, s.origin == "random") {
                Some(name) => *self.rejected.entry(name).or_default() += 1,
                None => return s,
            }
        }
    }

    /// 1–12 random encodings from the general-purpose instruction set, sometimes ending in
    /// an invalid one; registers and memory from a generated case.
    fn random_stream(&mut self) -> Stream {
        let base = self.gen.case(Family::Data).init;
        let l = Layout::get();
        let n = 1 + self.rng.below(12);
        let mut code = Vec::new();
        let mut ip = l.code;
        let mut k = 0;
        let mut tries = 0;
        while k < n && tries < 1000 {
            tries += 1;
            let bytes = self.random_bytes();
            let i = Decoder::with_ip(64, &bytes, ip, DecoderOptions::NONE).decode();
            if i.is_invalid() {
                if self.rng.chance(1, 20) && invalid_everywhere(&bytes) {
                    code.extend_from_slice(&bytes);
                    break;
                }
                continue;
            }
            if !self.usable(&i) {
                continue;
            }
            code.extend_from_slice(&bytes[..i.len()]);
            ip += i.len() as u64;
            k += 1;
        }
        code.extend_from_slice(&[0x0f, 0x0b]);
        Stream {
            code,
            init: base,
            origin: "random".into(),
        }
    }

    fn random_bytes(&mut self) -> Vec<u8> {
        const PREFIXES: [u8; 16] = [
            0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x2e, 0x3e, 0x26, 0x64, 0x65, 0x36, 0x40, 0x41, 0x44,
            0x48, 0x4c,
        ];
        let mut b = Vec::with_capacity(15);
        while b.len() < 3 && self.rng.chance(1, 3) {
            b.push(self.rng.pick(&PREFIXES));
        }
        if self.rng.chance(1, 3) {
            b.push(0x0f);
        }
        while b.len() < 15 {
            b.push(self.rng.next_u64() as u8);
        }
        b
    }

    /// A random valid instruction is kept when both engines can be expected to run it the
    /// same: general-purpose (no FPU/SSE/system registers, whose state the streams don't
    /// set or compare), no control transfer (forward-only control flow keeps streams
    /// finite; the generator makes the branches), implemented by the interpreter.
    fn usable(&self, i: &Instruction) -> bool {
        if !matches!(i.flow_control(), FlowControl::Next | FlowControl::Exception) {
            return false;
        }
        if !i.cpuid_features().iter().all(|f| GP_FEATURES.contains(f)) {
            return false;
        }
        let gp_operands = (0..i.op_count()).all(|k| {
            i.op_kind(k) != OpKind::Register || {
                let r = i.op_register(k);
                r.is_gpr() || r.is_segment_register()
            }
        });
        gp_operands && twinvm_cpu::interp::lookup(i, &self.model).is_some()
    }
}

/// CPUID features of the general-purpose instructions the interpreter's model has.
const GP_FEATURES: &[CpuidFeature] = &[
    CpuidFeature::INTEL8086,
    CpuidFeature::INTEL186,
    CpuidFeature::INTEL286,
    CpuidFeature::INTEL386,
    CpuidFeature::INTEL486,
    CpuidFeature::X64,
    CpuidFeature::CMOV,
    CpuidFeature::CX8,
    CpuidFeature::CMPXCHG16B,
    CpuidFeature::POPCNT,
    CpuidFeature::LZCNT,
    CpuidFeature::MOVBE,
    CpuidFeature::MULTIBYTENOP,
];

/// Invalid for iced and not an encoding some CPUs give a meaning (the 0F escape space and
/// the VEX/XOP/EVEX leads hold vendor-specific instructions, so only one-byte opcodes
/// count).
fn invalid_everywhere(bytes: &[u8]) -> bool {
    let op = bytes.iter().copied().find(|b| {
        !matches!(
            b,
            0x66 | 0x67 | 0xf2 | 0xf3 | 0xf0 | 0x2e | 0x3e | 0x26 | 0x64 | 0x65 | 0x36 | 0x40
                ..=0x4f
        )
    });
    !matches!(op, Some(0x0f | 0xc4 | 0xc5 | 0x8f | 0x62) | None)
}

/// The departures entry that keeps `code` out, if any.
pub fn departure(code: &[u8], random: bool) -> Option<&'static str> {
    let base = Layout::get().code;
    decode(code)
        .iter()
        .find_map(|i| {
            let off = (i.ip() - base) as usize;
            // From the instruction on (an invalid one's length says little); matchers
            // look only at its prefixes and opcode.
            let bytes = code.get(off..).unwrap_or(&[]);
            departures::excluded(i, bytes, random)
        })
        .map(|d| d.name)
}

/// The instructions of `code`, in order (straight-line decode).
pub fn decode(code: &[u8]) -> Vec<Instruction> {
    Decoder::with_ip(64, code, Layout::get().code, DecoderOptions::NONE)
        .into_iter()
        .collect()
}
