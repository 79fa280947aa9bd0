use twinvm_cpu::testing::{machine64, run64};
#[test]
fn perf() {
    let mut m = machine64();
    // mov ecx, 3000000; loop: add rax,rdx; sub rdx,rsi; xor rsi,rax; shl rdi,3; add rdi,rax; shr r8,2; xor r8,rdi; add rsi,7; dec rcx; jnz loop
    let code: Vec<u8> = vec![0xb9, 0xc0, 0xc6, 0x2d, 0x00,
      0x48,0x01,0xd0, 0x48,0x29,0xf2, 0x48,0x31,0xc6, 0x48,0xc1,0xe7,0x03, 0x48,0x01,0xc7, 0x49,0xc1,0xe8,0x02, 0x49,0x31,0xf8, 0x48,0x83,0xc6,0x07, 0x48,0xff,0xc9, 0x75, 0xdc];
    let mut bytes = code.clone(); bytes.push(0xf4);
    m.cpu.env.mem.write(twinvm_cpu::testing::CODE, &bytes).unwrap();
    m.cpu.s.rip = twinvm_cpu::testing::CODE;
    let t = std::time::Instant::now();
    let mut n = 0;
    loop { let e = m.run(100_000_000); n += 1; if e != twinvm_cpu::RunExit::Budget || n > 10 { println!("{e:?}"); break; } }
    let el = t.elapsed().as_secs_f64();
    let ins = m.cpu.stats.instructions;
    println!("{} insns in {:.3}s = {:.1} MIPS", ins, el, ins as f64 / el / 1e6);
    let _ = run64;
}
