//! A REX prefix followed by a legacy prefix is ignored (SDM vol. 2, 2.2.1): `f3 48 67 98`
//! is CWDE, not CDQE (found by `twinvm fuzz-diff` against this host's CPU).

use twinvm_cpu::testing::{machine64, run64};
use twinvm_cpu::RunExit;

fn rax_after(code: &[u8], rax: u64) -> u64 {
    let mut it = machine64();
    it.cpu.s.gpr[0] = rax;
    assert_eq!(run64(&mut it, code), RunExit::Halted, "{code:x?}");
    it.cpu.s.gpr[0]
}

#[test]
fn rex_before_a_legacy_prefix_is_ignored() {
    let rax = 0x1234_5678_9abc_c746;
    assert_eq!(
        rax_after(&[0xf3, 0x48, 0x67, 0x98], rax),
        0xffff_c746,
        "cwde"
    );
    assert_eq!(
        rax_after(&[0x48, 0x66, 0x98], rax),
        0x1234_5678_9abc_0046,
        "cbw"
    );
    assert_eq!(
        rax_after(&[0x67, 0x48, 0x98], rax),
        0xffff_ffff_9abc_c746,
        "cdqe"
    );
    assert_eq!(rax_after(&[0x48, 0x98], rax), 0xffff_ffff_9abc_c746, "cdqe");
}
