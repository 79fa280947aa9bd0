//! THE table of where the hardware side of fuzz-diff cannot be taken as the truth: where
//! this host's KVM (kvm_pvm, issue 5) departs from the SDM at CPL 3, or where native
//! execution cannot follow the interpreter's CPU model. Each entry says why, and whether
//! the instructions are kept out of the streams (`Excluded`) or run in a machine context in
//! which both engines agree (`Context`, which the fuzz machine in `machine.rs` sets up and
//! the entry describes). The interpreter is never changed to match a departure.

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::outcome::{End, Stop};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Kept out of the streams.
    Excluded,
    /// Run, in a context where both engines agree (described in `why`) which the fuzz
    /// machine sets up for every stream.
    Context,
    /// Run only where the generator's units set up the context `why` describes; kept out
    /// of random encodings, whose operands nothing controls.
    GeneratedOnly,
    /// Cannot be kept out beforehand (it depends on run-time addresses): a divergence of
    /// exactly this shape is recognised in the results by `recognise`, counted and
    /// reported by name — never taken as agreement.
    Recognised,
}

pub struct Departure {
    pub name: &'static str,
    pub handling: Handling,
    pub why: &'static str,
    /// The instruction and the code from its first byte on.
    pub matches: fn(&Instruction, &[u8]) -> bool,
}

/// A `Recognised` departure: the matcher sees the KVM end and the interpreter end.
pub struct Recognised {
    pub name: &'static str,
    pub recognise: fn(&End, &End) -> bool,
}

fn mnemonic_in(i: &Instruction, set: &[Mnemonic]) -> bool {
    set.contains(&i.mnemonic())
}

fn reads_segment_register(i: &Instruction) -> bool {
    (0..i.op_count())
        .any(|k| i.op_kind(k) == OpKind::Register && i.op_register(k).is_segment_register())
        && !writes_segment_register(i)
}

fn writes_segment_register(i: &Instruction) -> bool {
    (i.op_count() > 0 && i.op_kind(0) == OpKind::Register && i.op_register(0).is_segment_register())
        || mnemonic_in(
            i,
            &[
                Mnemonic::Lss,
                Mnemonic::Lfs,
                Mnemonic::Lgs,
                Mnemonic::Lds,
                Mnemonic::Les,
                Mnemonic::Iret,
                Mnemonic::Iretd,
                Mnemonic::Iretq,
                Mnemonic::Retf,
                Mnemonic::Sysexit,
                Mnemonic::Sysexitq,
                Mnemonic::Sysret,
                Mnemonic::Sysretq,
            ],
        )
        || (mnemonic_in(i, &[Mnemonic::Call, Mnemonic::Jmp])
            && i.is_call_far()
                | i.is_jmp_far()
                | i.is_call_far_indirect()
                | i.is_jmp_far_indirect())
}

/// The table. `lookup` consults it for every instruction of every stream.
pub static DEPARTURES: &[Departure] = &[
    Departure {
        name: "segment register reads",
        handling: Handling::Context,
        why: "this KVM shows ring 3 the host's selectors (MOV r/m,Sreg; PUSH FS/GS): the fuzz \
              machine uses the host's Linux user selectors (CS 0x33, SS 0x2b, data 0), so both \
              engines read the same values",
        matches: |i, _| reads_segment_register(i),
    },
    Departure {
        name: "segment register reads with REX.R",
        handling: Handling::Excluded,
        why: "this KVM emulates MOV r/m,Sreg and raises #UD when a REX.R bit is present; the \
              CPU ignores REX.R there (measured natively on this host: `44 8c 03` stores ES)",
        matches: |i, bytes| reads_segment_register(i) && rex(bytes) & 4 != 0,
    },
    Departure {
        name: "MOV Sreg with a reserved register number",
        handling: Handling::Excluded,
        why: "8C/8E with reg 6 or 7 is #UD (natively too, even with a non-canonical memory \
              operand); this KVM emulates it and raises the memory operand's #GP first",
        matches: |i, bytes| i.is_invalid() && matches!(opcode(bytes), Some(0x8c | 0x8e)),
    },
    Departure {
        name: "segment register loads and far transfers",
        handling: Handling::Excluded,
        why: "measured: this KVM checks MOV Sreg against the guest's GDT correctly (#GP(sel) \
              for a DPL-0 data selector, beyond the limit); kept out because a loaded FS/GS \
              is then read back by later instructions, and this KVM shows the host's selectors \
              on reads (see above), so both engines cannot agree. Far CALL/JMP/RET, IRET, \
              LSS/LFS/LGS and SYSRET go with it",
        matches: |i, _| writes_segment_register(i),
    },
    Departure {
        name: "LAR/LSL/VERR/VERW",
        handling: Handling::Excluded,
        why: "this KVM answers them from the host's GDT, not the guest's (issue 5; for the \
              selectors both GDTs share they agree); the interpreter has no LAR/LSL yet (#UD)",
        matches: |i, _| {
            mnemonic_in(
                i,
                &[Mnemonic::Lar, Mnemonic::Lsl, Mnemonic::Verr, Mnemonic::Verw],
            )
        },
    },
    Departure {
        name: "PUSHF",
        handling: Handling::Context,
        why: "this KVM shows PUSHF IF=1, IOPL=0 and does not honour IOPL=3: streams run at \
              IOPL 0 with IF=1",
        matches: |i, _| mnemonic_in(i, &[Mnemonic::Pushf, Mnemonic::Pushfd, Mnemonic::Pushfq]),
    },
    Departure {
        name: "POPF",
        handling: Handling::GeneratedOnly,
        why: "POPF comes only from the generator's `push imm; popf`, whose value keeps TF and AC \
              clear (see #AC; the interpreter has no single-step trap yet) — at CPL 3 it cannot \
              change IF or IOPL (see PUSHF)",
        matches: |i, _| mnemonic_in(i, &[Mnemonic::Popf, Mnemonic::Popfd, Mnemonic::Popfq]),
    },
    Departure {
        name: "RFLAGS.NT",
        handling: Handling::Context,
        why: "POPF may set NT at CPL 3 (natively it sticks), but this KVM's exception frame \
              shows NT=0: the generator's `push imm; popf` values leave NT clear",
        matches: |_, _| false,
    },
    Departure {
        name: "#AC",
        handling: Handling::Context,
        why: "this KVM raises #AC even with CR0.AM=0: RFLAGS.AC is never set by a stream, so no \
              access is alignment-checked on either engine",
        matches: |_, _| false,
    },
    Departure {
        name: "software interrupts",
        handling: Handling::Excluded,
        why: "through the fuzz machine's DPL-0 gates the SDM asks #GP(vector×8+2): this KVM \
              raises #UD for INT imm8 and delivers INT3 as #BP; the interpreter reports #DF for \
              both (a bug in interrupts.rs, reported to its owner). INT n, INT3, INT1, INTO",
        matches: |i, _| {
            mnemonic_in(
                i,
                &[
                    Mnemonic::Int,
                    Mnemonic::Int3,
                    Mnemonic::Int1,
                    Mnemonic::Into,
                ],
            )
        },
    },
    Departure {
        name: "CPUID",
        handling: Handling::Excluded,
        why: "this KVM returns the host's values at CPL 3, not the guest's CPUID table",
        matches: |i, _| i.mnemonic() == Mnemonic::Cpuid,
    },
    Departure {
        name: "time stamp and processor id",
        handling: Handling::Excluded,
        why: "RDTSC/RDTSCP/RDPMC read a clock that differs per engine by nature; RDTSCP and \
              RDPID return the host CPU number under this KVM",
        matches: |i, _| {
            mnemonic_in(
                i,
                &[
                    Mnemonic::Rdtsc,
                    Mnemonic::Rdtscp,
                    Mnemonic::Rdpid,
                    Mnemonic::Rdpmc,
                ],
            )
        },
    },
    Departure {
        name: "FSGSBASE, XGETBV, AVX",
        handling: Handling::Excluded,
        why: "this KVM runs RDFSBASE/WRFSBASE/RDGSBASE/WRGSBASE, XGETBV and VEX/EVEX \
              instructions although the guest has not enabled them (CR4.FSGSBASE, \
              CR4.OSXSAVE clear: the SDM says #UD)",
        matches: |i, _| {
            mnemonic_in(
                i,
                &[
                    Mnemonic::Rdfsbase,
                    Mnemonic::Rdgsbase,
                    Mnemonic::Wrfsbase,
                    Mnemonic::Wrgsbase,
                    Mnemonic::Xgetbv,
                ],
            ) || !matches!(i.encoding(), iced_x86::EncodingKind::Legacy)
        },
    },
    Departure {
        name: "TZCNT",
        handling: Handling::Excluded,
        why: "the interpreter's CPU model has no BMI1, so F3 0F BC is BSF there (as on pre-BMI1 \
              CPUs), while ring 3 runs natively on a host CPU that has TZCNT — CPUID cannot \
              hide it (this KVM's emulator also runs it as BSF in ring 0)",
        matches: |i, _| i.mnemonic() == Mnemonic::Tzcnt,
    },
    Departure {
        name: "SS prefix on a memory operand",
        handling: Handling::Excluded,
        why: "in 64-bit mode an SS override is ignored, so a non-canonical [rbx] or [moffs] is \
              #GP (this host's CPU natively agrees, also for `gs cs ss` prefix runs); this KVM \
              reports #SS(0) whenever an SS prefix byte is present",
        matches: |i, bytes| has_memory_operand(i) && prefixes(bytes).contains(&0x36),
    },
    Departure {
        name: "CMPS with a non-canonical rDI",
        handling: Handling::GeneratedOnly,
        why: "this host's CPU reads ES:rDI first (the interpreter follows it), so a \
              non-canonical rDI is #GP; this KVM reports the #PF of an unmapped DS:rSI instead. \
              CMPS comes only from the generator's string units, which point rSI and rDI into \
              the sandbox",
        matches: |i, _| {
            mnemonic_in(
                i,
                &[
                    Mnemonic::Cmpsb,
                    Mnemonic::Cmpsw,
                    Mnemonic::Cmpsd,
                    Mnemonic::Cmpsq,
                ],
            )
        },
    },
    Departure {
        name: PVM_HOLE,
        handling: Handling::Recognised,
        why: "this KVM reports any access to PML4 slot 256 (0xffff800000000000 to \
              0xffff807fffffffff, which it keeps for itself) as a reserved-bit #PF (P=1, RSVD=1) \
              although the guest maps nothing there (the SDM: not-present, P=0, RSVD=0); random \
              addresses reach it at run time, so the divergence is recognised in the results: a \
              #PF at the same CR2 in that slot whose error codes differ only in P and RSVD, with \
              everything else equal",
        matches: |_, _| false,
    },
    Departure {
        name: "SYSCALL",
        handling: Handling::Excluded,
        why: "measured: this KVM executes a ring-3 SYSCALL (to LSTAR) although EFER.SCE=0, where \
              the SDM says #UD (SYSENTER is #UD on both)",
        matches: |i, _| i.mnemonic() == Mnemonic::Syscall,
    },
];

const PVM_HOLE: &str = "PML4 slot 256";

/// The `Recognised` entries' matchers.
pub static RECOGNISED: &[Recognised] = &[Recognised {
    name: PVM_HOLE,
    recognise: pvm_hole,
}];

fn pvm_hole(kvm: &End, interp: &End) -> bool {
    const P_RSVD: u32 = 1 | 8;
    let (
        Stop::Exception {
            vector: 14,
            error_code: Some(ke),
            cr2: Some(kc),
        },
        Stop::Exception {
            vector: 14,
            error_code: Some(ie),
            cr2: Some(ic),
        },
    ) = (&kvm.stop, &interp.stop)
    else {
        return false;
    };
    let in_slot = (0xffff_8000_0000_0000..0xffff_8080_0000_0000).contains(kc);
    in_slot
        && kc == ic
        && ke & P_RSVD == P_RSVD
        && *ie == ke & !P_RSVD
        && super::outcome::diff(kvm, interp)
            .iter()
            .all(|d| d.starts_with("stop:"))
}

/// The recognised departure a divergence is, if any.
pub fn recognised(kvm: &End, interp: &End) -> Option<&'static str> {
    RECOGNISED
        .iter()
        .find(|r| (r.recognise)(kvm, interp))
        .map(|r| r.name)
}

/// The first entry that keeps `i` (with its `bytes`) out of a stream; `random` for random
/// encodings, which also honour the `GeneratedOnly` entries.
pub fn excluded(i: &Instruction, bytes: &[u8], random: bool) -> Option<&'static Departure> {
    DEPARTURES.iter().find(|d| {
        (d.handling == Handling::Excluded || (random && d.handling == Handling::GeneratedOnly))
            && (d.matches)(i, bytes)
    })
}

fn has_memory_operand(i: &Instruction) -> bool {
    (0..i.op_count()).any(|k| {
        matches!(
            i.op_kind(k),
            OpKind::Memory
                | OpKind::MemorySegSI
                | OpKind::MemorySegESI
                | OpKind::MemorySegRSI
                | OpKind::MemorySegDI
                | OpKind::MemorySegEDI
                | OpKind::MemorySegRDI
        )
    })
}

/// The REX prefix (0 when none): it counts only right before the opcode.
fn rex(bytes: &[u8]) -> u8 {
    match prefixes(bytes).last() {
        Some(&b) if (0x40..=0x4f).contains(&b) => b,
        _ => 0,
    }
}

/// The first byte after the prefixes.
fn opcode(bytes: &[u8]) -> Option<u8> {
    bytes.get(prefixes(bytes).len()).copied()
}

/// The legacy and REX prefix bytes an instruction starts with.
fn prefixes(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|b| {
            matches!(
                b,
                0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x40
                    ..=0x4f
            )
        })
        .count();
    &bytes[..n]
}

/// The table as text (for `--list-departures` and the README).
pub fn describe() -> String {
    let mut s = String::new();
    for d in DEPARTURES {
        let h = match d.handling {
            Handling::Excluded => "excluded",
            Handling::Context => "context",
            Handling::GeneratedOnly => "generated only",
            Handling::Recognised => "recognised in results",
        };
        s.push_str(&format!("{} [{h}]: {}\n", d.name, d.why));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn ex(bytes: &[u8], random: bool) -> Option<&'static str> {
        let i = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE).decode();
        excluded(&i, &bytes[..i.len()], random).map(|d| d.name)
    }

    #[test]
    fn table_entries_match_their_instructions() {
        assert_eq!(ex(&[0xcd, 0x80], false), Some("software interrupts"));
        assert_eq!(ex(&[0xcc], false), Some("software interrupts"));
        assert_eq!(ex(&[0x0f, 0x34], true), None, "SYSENTER");
        assert_eq!(ex(&[0x0f, 0xa2], false), Some("CPUID"));
        assert_eq!(ex(&[0xf3, 0x48, 0x0f, 0xbc, 0xc1], false), Some("TZCNT"));
        assert!(ex(&[0x8e, 0xd8], false).is_some(), "mov ds, ax");
        assert_eq!(ex(&[0x8c, 0xd8], false), None, "mov ax, ds is a read");
        assert!(
            ex(&[0x4c, 0x8c, 0x03], false).is_some(),
            "REX.WR mov [rbx], es"
        );
        assert_eq!(ex(&[0x48, 0x8c, 0x03], false), None, "REX.W mov [rbx], es");
        assert!(ex(&[0x8e, 0x3b], true).is_some(), "8e /7");
        assert!(
            ex(&[0x26, 0x66, 0x4c, 0x8e, 0x3c, 0xb5], true).is_some(),
            "8e /7 with prefixes"
        );
        assert_eq!(ex(&[0x48, 0x0f, 0xbc, 0xc1], false), None, "BSF");
        assert!(ex(&[0xc5, 0xf8, 0x77], false).is_some(), "VZEROUPPER");
        assert!(
            ex(&[0x36, 0x8a, 0x03], false).is_some(),
            "ss: mov al, [rbx]"
        );
        assert!(
            ex(&[0x65, 0x2e, 0x36, 0x19, 0x39], false).is_some(),
            "gs cs ss sbb"
        );
        assert_eq!(ex(&[0x36, 0x89, 0xc3], false), None, "no memory operand");
        assert_eq!(ex(&[0x8a, 0x03], false), None, "mov al, [rbx]");
        // Generated-only entries keep random encodings out, not generated units.
        assert_eq!(ex(&[0x9d], false), None);
        assert_eq!(ex(&[0x9d], true), Some("POPF"));
        assert_eq!(ex(&[0xa6], true), Some("CMPS with a non-canonical rDI"));
        assert_eq!(ex(&[0x9c], true), None, "PUSHF runs in context");
    }

    #[test]
    fn the_pvm_hole_is_recognised_only_in_its_exact_shape() {
        let end = |err: u32, cr2: u64| End {
            state: twinvm_cpu::oracle::State {
                gpr: [0; 16],
                rflags: 2,
                rip: 0x100000,
                data: vec![],
                stack: vec![],
            },
            stop: Stop::Exception {
                vector: 14,
                error_code: Some(err),
                cr2: Some(cr2),
            },
        };
        let a = 0xffff_8000_0000_0093;
        assert_eq!(recognised(&end(15, a), &end(6, a)), Some(PVM_HOLE));
        assert_eq!(recognised(&end(13, a), &end(4, a)), Some(PVM_HOLE));
        assert_eq!(recognised(&end(13, a), &end(6, a)), None, "W differs");
        assert_eq!(
            recognised(&end(13, a + (1 << 39)), &end(4, a + (1 << 39))),
            None
        );
        assert_eq!(recognised(&end(13, a), &end(4, a + 1)), None);
        let mut other = end(4, a);
        other.state.gpr[0] = 1;
        assert_eq!(recognised(&end(13, a), &other), None, "registers differ");
    }

    #[test]
    fn every_entry_says_why() {
        for d in DEPARTURES {
            assert!(d.why.len() > 40, "{}", d.name);
        }
    }
}
