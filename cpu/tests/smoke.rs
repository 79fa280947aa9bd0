use twinvm_cpu::testing::{machine64, run64};
use twinvm_cpu::RunExit;

#[test]
fn mov_push_pop_call_ret_run() {
    let mut m = machine64();
    // mov eax, 5; push rax; pop rbx; call +0 ; pop rcx; mov [rip+0x100], rbx ; mov rdx, [rip+0xf9]
    let code = [
        0xb8, 5, 0, 0, 0, 0x50, 0x5b, 0xe8, 0, 0, 0, 0, 0x59, 0x48, 0x89, 0x1d, 0, 1, 0, 0, 0x48,
        0x8b, 0x15, 0xf9, 0, 0, 0,
    ];
    assert_eq!(run64(&mut m, &code), RunExit::Halted);
    let s = m.cpu.state();
    assert_eq!(s.gpr[0], 5);
    assert_eq!(s.gpr[3], 5);
    assert_eq!(s.gpr[1], twinvm_cpu::testing::CODE + 12);
    assert_eq!(s.gpr[2], 5);
}

#[test]
fn ud2_is_reported() {
    let mut m = machine64();
    match run64(&mut m, &[0x0f, 0x0b]) {
        RunExit::Exception(e) => assert_eq!(e.vector, 6),
        other => panic!("{other:?}"),
    }
}
