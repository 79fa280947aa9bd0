//! CMPS reads ES:rDI before DS:rSI: the SDM leaves the order open, and this host's CPU
//! (AMD EPYC) faults on rDI's access first (found by `twinvm fuzz-diff`, confirmed natively).

use twinvm_cpu::exception::PF;
use twinvm_cpu::testing::{machine64, run64};
use twinvm_cpu::{Exception, RunExit};

/// Not mapped by `machine64` (it identity-maps the first 1 GiB).
const HOLE: u64 = 0x4000_0000;

/// CMPS reads ES:rDI before DS:rSI (the SDM leaves the order open; this host's CPU faults
/// on rDI first, even when rSI is non-canonical).
#[test]
fn cmps_faults_on_rdi_first() {
    for (rsi, what) in [
        (HOLE + 0x40, "both unmapped"),
        (1 << 62, "rsi non-canonical"),
    ] {
        for code in [&[0xa6u8][..], &[0x48, 0xa7], &[0xf3, 0xa6]] {
            let mut it = machine64();
            it.cpu.s.gpr[6] = rsi;
            it.cpu.s.gpr[7] = HOLE + 0x80;
            it.cpu.s.gpr[1] = 3;
            let r = run64(&mut it, code);
            assert_eq!(
                r,
                RunExit::Exception(Exception {
                    vector: PF,
                    error_code: Some(0)
                }),
                "{what} {code:x?}"
            );
            assert_eq!(it.cpu.s.cr2, HOLE + 0x80, "{what} {code:x?}");
        }
    }
}
