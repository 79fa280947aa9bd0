//! Read-modify-write instructions load their destination with write intent: a page fault
//! on it is reported as a write (error code W=1) even on a not-present page, as hardware
//! does (found by `twinvm fuzz-diff` against this host's CPU).

use twinvm_cpu::exception::PF;
use twinvm_cpu::testing::{machine64, run64};
use twinvm_cpu::{Exception, RunExit};

/// Not mapped by `machine64` (it identity-maps the first 1 GiB).
const HOLE: u64 = 0x4000_0000;
const W: u32 = 2;

fn fault(code: &[u8]) -> (RunExit, u64) {
    let mut it = machine64();
    it.cpu.s.gpr[3] = HOLE; // rbx
    let r = run64(&mut it, code);
    (r, it.cpu.s.cr2)
}

#[test]
fn rmw_destinations_fault_as_writes() {
    let cases: &[(&str, &[u8], u32)] = &[
        ("add [rbx], al", &[0x00, 0x03], W),
        ("adc [rbx], al", &[0x10, 0x03], W),
        ("not byte [rbx]", &[0xf6, 0x13], W),
        ("inc dword [rbx]", &[0xff, 0x03], W),
        ("shl dword [rbx], 1", &[0xd1, 0x23], W),
        ("shrd [rbx], eax, 4", &[0x0f, 0xac, 0x03, 0x04], W),
        ("bts [rbx], eax", &[0x0f, 0xab, 0x03], W),
        ("xchg [rbx], al", &[0x86, 0x03], W),
        ("lock xadd [rbx], eax", &[0xf0, 0x0f, 0xc1, 0x03], W),
        ("cmpxchg [rbx], ecx", &[0x0f, 0xb1, 0x0b], W),
        ("cmpxchg8b [rbx]", &[0x0f, 0xc7, 0x0b], W),
        // Plain reads stay reads.
        ("mov al, [rbx]", &[0x8a, 0x03], 0),
        ("bt [rbx], eax", &[0x0f, 0xa3, 0x03], 0),
        ("cmp [rbx], al", &[0x38, 0x03], 0),
        ("test [rbx], al", &[0x84, 0x03], 0),
    ];
    for (name, code, err) in cases {
        let (r, cr2) = fault(code);
        assert_eq!(
            r,
            RunExit::Exception(Exception {
                vector: PF,
                error_code: Some(*err)
            }),
            "{name}"
        );
        assert_eq!(cr2, HOLE, "{name}");
    }
}

/// ENTER probes the bottom of the new frame for writing.
#[test]
fn enter_probes_the_new_frame_as_a_write() {
    let mut it = machine64();
    it.cpu.s.gpr[4] = 0x100; // rsp: mapped; rsp - 8 - 0x1000 is not
    let r = run64(&mut it, &[0xc8, 0x00, 0x10, 0x00]); // enter 0x1000, 0
    assert_eq!(
        r,
        RunExit::Exception(Exception {
            vector: PF,
            error_code: Some(W)
        })
    );
    assert_eq!(it.cpu.s.cr2, 0xffff_ffff_ffff_f0f8);
    assert_eq!(
        it.cpu.s.gpr[4], 0x100,
        "a faulting ENTER changes no register"
    );
}
