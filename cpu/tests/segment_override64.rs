//! In 64-bit mode ES/CS/SS/DS override prefixes are ignored: a non-canonical address is
//! #SS when its default segment is SS (RSP/RBP base) and #GP otherwise, whatever the
//! prefix says (found by `twinvm fuzz-diff` against this host's CPU).

use twinvm_cpu::exception::{GP, SS};
use twinvm_cpu::testing::{machine64, run64};
use twinvm_cpu::{Exception, RunExit};

const NON_CANONICAL: u64 = 0x4000_0000_0000_0002;

fn exc(vector: u8) -> RunExit {
    RunExit::Exception(Exception {
        vector,
        error_code: Some(0),
    })
}

#[test]
fn ignored_prefixes_keep_the_default_segment() {
    let cases: &[(&str, &[u8], u8)] = &[
        ("mov al, [rbp]", &[0x8a, 0x45, 0x00], SS),
        ("cs: mov al, [rbp]", &[0x2e, 0x8a, 0x45, 0x00], SS),
        ("ds: mov al, [rbp]", &[0x3e, 0x8a, 0x45, 0x00], SS),
        ("es: mov al, [rsp]", &[0x26, 0x8a, 0x04, 0x24], SS),
        ("ss: mov al, [rbx]", &[0x36, 0x8a, 0x03], GP),
        ("mov al, [rbx]", &[0x8a, 0x03], GP),
        ("ss: lodsb", &[0x36, 0xac], GP),
    ];
    for (name, code, vector) in cases {
        let mut it = machine64();
        for r in [3, 4, 5, 6] {
            it.cpu.s.gpr[r] = NON_CANONICAL; // rbx, rsp, rbp, rsi
        }
        assert_eq!(run64(&mut it, code), exc(*vector), "{name}");
    }
}
