//! The gdb stub driven by the real gdb in batch mode, against the `gdbtest` guest.
//!
//! The engine under test is `interp` unless TWINVM_GDB_ENGINE names another (e.g. `kvm`);
//! each run of `stepi_100_records_the_rip_sequence` leaves its RIP sequence in
//! CARGO_TARGET_TMPDIR/gdb-stepi-ENGINE.txt and compares it with every other engine's.
//! Without gdb installed the tests print why and pass without running.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::firmware;

const LIMIT: Duration = Duration::from_secs(90);

fn engine() -> String {
    std::env::var("TWINVM_GDB_ENGINE").unwrap_or_else(|_| "interp".into())
}

fn have_gdb() -> bool {
    let ok = Command::new("gdb")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping: gdb is not installed (apt-get install gdb)");
    }
    ok
}

/// A twinvm running gdbtest under the stub.
struct Vm {
    child: Child,
    addr: String,
    serial: PathBuf,
    stderr: mpsc::Receiver<String>,
}

impl Vm {
    fn start(name: &str, wait: bool) -> Vm {
        let serial = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("gdb-{name}-{}.serial", std::process::id()));
        let _ = std::fs::remove_file(&serial);
        let kernel = firmware("gdbtest.elf");
        let mut args = vec![
            "run".to_string(),
            "--accel".into(),
            engine(),
            "--no-reboot".into(),
            "--kernel".into(),
            kernel.display().to_string(),
            "--serial".into(),
            format!("file:{}", serial.display()),
            "--gdb".into(),
            "tcp:127.0.0.1:0".into(),
        ];
        if wait {
            args.push("--gdb-wait".into());
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_twinvm"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn twinvm");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("twinvm printed nothing");
        let addr = first
            .split("listening on ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no listening address in: {first}"))
            .to_string();
        Vm {
            child,
            addr,
            serial,
            stderr: rx,
        }
    }

    fn serial(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// Waits for twinvm to end; its status and the rest of its stderr.
    fn finish(mut self) -> (i32, String) {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                let rest: Vec<String> = self.stderr.try_iter().collect();
                return (s.code().unwrap_or(-1), rest.join("\n"));
            }
            if start.elapsed() > LIMIT {
                let _ = self.child.kill();
                panic!("twinvm did not end; serial:\n{}", self.serial());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts gdb on `vm` running `cmds` (a gdb script) after attaching.
fn spawn_gdb(vm: &Vm, name: &str, cmds: &str) -> Child {
    let script = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gdb-{name}-{}.gdb", std::process::id()));
    let text = format!(
        "set pagination off\nset confirm off\nfile {}\ntarget remote {}\n{cmds}\n",
        firmware("gdbtest.debug").display(),
        vm.addr
    );
    std::fs::write(&script, text).expect("write gdb script");
    Command::new("gdb")
        .args(["-q", "-batch", "-nx", "-x"])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gdb")
}

fn gdb_output(mut g: Child) -> String {
    let start = Instant::now();
    while g.try_wait().expect("wait gdb").is_none() {
        if start.elapsed() > LIMIT {
            let _ = g.kill();
            let out = g.wait_with_output().expect("gdb output");
            panic!(
                "gdb did not finish:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = g.wait_with_output().expect("gdb output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Remote 'g' packet") && !text.contains("Remote communication error"),
        "gdb reported a protocol error:\n{text}"
    );
    text
}

fn gdb_output_killed(mut g: Child) -> String {
    let _ = g.kill();
    let out = g.wait_with_output().expect("gdb output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gdb(vm: &Vm, name: &str, cmds: &str) -> String {
    gdb_output(spawn_gdb(vm, name, cmds))
}

/// The value gdb printed for `info registers NAME` (hex column).
fn reg(out: &str, name: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no register {name} in:\n{out}"));
    let v = line.split_whitespace().nth(1).expect("value");
    u64::from_str_radix(v.trim_start_matches("0x"), 16).expect("hex value")
}

#[test]
fn attach_at_entry_break_in_long_mode_registers_and_kill() {
    if !have_gdb() {
        return;
    }
    let vm = Vm::start("regs", true);
    let out = gdb(
        &vm,
        "regs",
        "info registers rip eflags cs cr0 efer\n\
         break gdb_report\n\
         continue\n\
         echo --- long mode\\n\n\
         info registers\n\
         set $xmm0.v2_int64[0] = 0x1122334455667788\n\
         p/x $xmm0.v2_int64\n\
         p $st0\n\
         p/x $mxcsr\n\
         kill\n",
    );
    let (entry, long) = out.split_once("--- long mode").expect(&out);
    // 32-bit multiboot entry, shown zero-extended.
    assert!(entry.contains("in _start ()"), "{out}");
    assert_eq!(reg(entry, "cs"), 0x10, "{out}");
    assert_eq!(reg(entry, "cr0") & 0x8000_0001, 1, "{out}");
    assert_eq!(reg(entry, "efer"), 0, "{out}");
    // Past the switch to long mode, the same description: every group shows.
    assert!(out.contains("Breakpoint 1, 0x0000000000102"), "{out}");
    assert!(out.contains("in gdb_report ()"), "{out}");
    for r in [
        "rax",
        "r15",
        "rip",
        "eflags",
        "ss",
        "gs",
        "fs_base",
        "k_gs_base",
        "cr2",
        "cr4",
    ] {
        reg(long, r);
    }
    assert_eq!(reg(long, "cs"), 0x18, "{out}");
    assert_eq!(reg(long, "efer") & 0x500, 0x500, "LME|LMA: {out}");
    assert_ne!(reg(long, "cr3"), 0, "{out}");
    assert_eq!(reg(long, "cr0") & 0x8000_0001, 0x8000_0001, "{out}");
    assert_eq!(reg(long, "fs_base"), 0x1234_5000, "{out}");
    assert!(out.contains("{0x1122334455667788, 0x0}"), "xmm0: {out}");
    assert!(out.contains("= 0x1f80"), "mxcsr: {out}");
    let (status, err) = vm.finish();
    assert_eq!(status, 0, "{err}");
    assert!(err.contains("killed by the debugger"), "{err}");
}

#[test]
fn stepi_100_records_the_rip_sequence() {
    if !have_gdb() {
        return;
    }
    let vm = Vm::start("stepi", true);
    let cmds = "stepi\np/x $pc\n".repeat(100) + "kill\n";
    let out = gdb(&vm, "stepi", &cmds);
    let rips: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix('$'))
        .filter_map(|l| l.split("= 0x").nth(1))
        .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
        .collect();
    assert_eq!(rips.len(), 100, "{out}");
    // _start: cli; cld; mov [mb_magic],eax; mov [mb_info],ebx; lgdt; ljmp; mov ax,10h …
    assert_eq!(
        rips[..6],
        [0x10000d, 0x10000e, 0x100013, 0x100019, 0x100020, 0x100027],
        "{out}"
    );
    // The .bss clear is `rep stosb`: one iteration per step keeps RIP in place.
    let repeats = rips.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(
        repeats >= 10,
        "REP must step one iteration at a time: {rips:x?}"
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let text: String = rips.iter().map(|r| format!("{r:#x}\n")).collect();
    std::fs::write(dir.join(format!("gdb-stepi-{}.txt", engine())), &text).expect("write");
    // Engines must agree step for step.
    for other in ["interp", "kvm", "jit"] {
        if let Ok(t) = std::fs::read_to_string(dir.join(format!("gdb-stepi-{other}.txt"))) {
            assert_eq!(t, text, "stepi RIP sequence differs from engine {other}");
        }
    }
    vm.finish();
}

#[test]
fn write_read_and_access_watchpoints() {
    if !have_gdb() {
        return;
    }
    let vm = Vm::start("watch", true);
    let out = gdb(
        &vm,
        "watch",
        "break gdb_touch\n\
         continue\n\
         delete\n\
         watch *(long *)&gdb_counter\n\
         continue\n\
         delete\n\
         echo --- rwatch\\n\n\
         rwatch *(long *)&gdb_counter\n\
         continue\n\
         p/x $pc\n\
         delete\n\
         echo --- awatch\\n\n\
         awatch *(long *)&gdb_counter\n\
         continue\n\
         continue\n\
         delete\n\
         continue\n",
    );
    let (write, rest) = out.split_once("--- rwatch").expect(&out);
    let (read, access) = rest.split_once("--- awatch").expect(&out);
    assert!(write.contains("Old value = 0\nNew value = 5"), "{out}");
    assert!(write.contains("in gdb_touch ()"), "{out}");
    assert!(read.contains("Value = 5"), "{out}");
    assert!(read.contains("in gdb_touch ()"), "{out}");
    // The touch(3) write, then the one-instruction read-modify-write in gdb_rmw.
    assert!(access.contains("Old value = 5\nNew value = 8"), "{out}");
    assert!(
        access.contains("Old value = 8\nNew value = 9") && access.contains("in gdb_rmw ()"),
        "{out}"
    );
    assert!(out.contains("exited with code 01"), "{out}");
    let (status, _) = vm.finish();
    assert_eq!(status, 1);
}

#[test]
fn hardware_breakpoint_then_changed_register_and_memory_change_the_output() {
    if !have_gdb() {
        return;
    }
    let vm = Vm::start("change", true);
    let serial = vm.serial.clone();
    let out = gdb(
        &vm,
        "change",
        "hbreak gdb_report\n\
         continue\n\
         set $rdi = 1234\n\
         set var *(char *)&gdb_message = 'O'\n\
         delete\n\
         continue\n",
    );
    assert!(out.contains("Hardware assisted breakpoint 1"), "{out}");
    assert!(out.contains("Breakpoint 1, 0x"), "{out}");
    assert!(out.contains("in gdb_report ()"), "{out}");
    assert!(out.contains("exited with code 01"), "{out}");
    let (status, _) = vm.finish();
    assert_eq!(status, 1);
    let text = std::fs::read_to_string(serial).expect("serial");
    assert!(text.contains("value 1234\n"), "{text}");
    assert!(text.contains("message Original\n"), "{text}");
}

fn interrupt(g: &Child) {
    // SAFETY: kill has no memory preconditions; the pid is our live child.
    unsafe { libc::kill(g.id() as libc::pid_t, libc::SIGINT) };
}

#[test]
fn ctrl_c_stops_a_spinning_guest_twice_then_detach_lets_it_run_on() {
    if !have_gdb() {
        return;
    }
    let vm = Vm::start("ctrlc", true);
    let g = spawn_gdb(
        &vm,
        "ctrlc",
        "break test_main\n\
         continue\n\
         delete\n\
         set var *(int *)&gdb_spin_enable = 1\n\
         continue\n\
         echo --- first stop\\n\n\
         p *(long *)&gdb_spins > 0\n\
         continue\n\
         echo --- second stop\\n\n\
         set var *(int *)&gdb_spin_stop = 1\n\
         detach\n",
    );
    let start = Instant::now();
    while !vm.serial().contains("spinning") {
        if start.elapsed() > LIMIT {
            panic!("guest never spun; gdb said:\n{}", gdb_output_killed(g));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&g);
    std::thread::sleep(Duration::from_millis(1500));
    interrupt(&g);
    let out = gdb_output(g);
    assert_eq!(
        out.matches("received signal SIGINT").count(),
        2,
        "two Ctrl-C stops expected:\n{out}"
    );
    assert!(out.contains("--- first stop\n$1 = 1"), "{out}");
    assert!(out.contains("--- second stop"), "{out}");
    assert!(out.contains("detached"), "{out}");
    // Detached, the guest runs on to its end.
    let serial = vm.serial.clone();
    let (status, _) = vm.finish();
    assert_eq!(status, 1);
    let s = std::fs::read_to_string(serial).expect("serial");
    assert!(
        s.contains("spun\n") && s.contains("all checks passed"),
        "{s}"
    );
}

fn packet(body: &[u8]) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    let mut p = vec![b'$'];
    p.extend_from_slice(body);
    p.extend_from_slice(format!("#{sum:02x}").as_bytes());
    p
}

fn raw_session(addr: &str, bytes: &[&[u8]]) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    for b in bytes {
        // The stub may drop us midway (that is the point); keep going regardless.
        let _ = s.write_all(b);
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
    }
}

#[test]
fn malformed_packets_leave_the_vm_and_stub_usable() {
    if !have_gdb() {
        return;
    }
    let vm = Vm::start("garbage", true);
    let huge = vec![b'm'; 100_000];
    let bad_regs = packet(b"G0011");
    let bad_mem = packet(b"M100000,4:zzzzzzzz");
    let short_mem = packet(b"M100000,8:00000000");
    let cut = packet(b"qSupported:multiprocess+");
    let sessions: Vec<Vec<&[u8]>> = vec![
        vec![b"garbage\x00\xff\x7f+-+-"],
        vec![b"$g#00", b"$?#00"],
        vec![&cut[..5]],
        vec![&huge],
        vec![b"$", &huge],
        vec![&bad_regs, &bad_mem, &short_mem],
        vec![b"\x03\x03\x03", b"$c#63"[..3].as_ref()],
    ];
    for s in &sessions {
        raw_session(&vm.addr, s);
    }
    // A normal debugger then finds the guest as it was: held at its entry, memory and
    // registers untouched.
    let out = gdb(
        &vm,
        "garbage",
        "info registers rip rax\n\
         x/2xw 0x100000\n\
         continue\n",
    );
    assert!(out.contains("in _start ()"), "{out}");
    assert_eq!(reg(&out, "rax"), 0x2bad_b002, "{out}");
    assert!(out.contains("0x1badb002\t0x00000003"), "{out}");
    assert!(out.contains("exited with code 01"), "{out}");
    let (status, _) = vm.finish();
    assert_eq!(status, 1);
}
