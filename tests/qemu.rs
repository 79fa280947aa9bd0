//! The QEMU-compatible entry point: `twinvm qemu …` and a link named qemu-system-x86_64,
//! with the command line kvm-unit-tests' x86 runner uses.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_guest_passed, firmware, twinvm, Run};

const LIMIT: Duration = Duration::from_secs(120);

/// What kvm-unit-tests' x86/run passes, around the kernel.
fn kut_args(kernel: &str) -> Vec<String> {
    "--no-reboot -nodefaults -device pc-testdev -device isa-debug-exit,iobase=0xf4,iosize=0x4 \
     -vnc none -serial stdio -machine accel=tcg -smp 1 -cpu max -m 256 -display none -monitor none"
        .split_whitespace()
        .map(String::from)
        .chain(["-kernel".to_string(), kernel.to_string()])
        .collect()
}

#[test]
fn twinvm_qemu_runs_a_guest_with_a_test_runner_command_line() {
    let k = firmware("control.elf");
    let mut args = vec!["qemu".to_string()];
    args.extend(kut_args(k.to_str().expect("utf-8")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = twinvm(&args, LIMIT);
    assert_guest_passed("control", &r);
}

fn via_link(args: &[String]) -> Run {
    let dir = std::env::temp_dir().join(format!("twinvm-qemu-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let link = dir.join("qemu-system-x86_64");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_twinvm"), &link).expect("symlink");
    let out = Command::new(&link)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the link");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn link_named_qemu_system_x86_64() {
    let k = firmware("arith.elf");
    let r = via_link(&kut_args(k.to_str().expect("utf-8")));
    assert_guest_passed("arith via link", &r);

    // A failing guest gives QEMU's (1 << 1) | 1.
    let k = firmware("fail-on-purpose.elf");
    let r = via_link(&kut_args(k.to_str().expect("utf-8")));
    assert_eq!(r.status, 3, "{}", r.stderr);

    // Firmware through -bios.
    let rom = firmware("bcd16.rom");
    let args: Vec<String> = ["-nodefaults", "-serial", "stdio", "-no-reboot", "-bios"]
        .iter()
        .map(|s| s.to_string())
        .chain([rom.display().to_string()])
        .collect();
    assert_guest_passed("bcd16 via -bios", &via_link(&args));

    let r = via_link(&["-device".into(), "?".into()]);
    assert_eq!(r.status, 0);
    assert!(
        r.stdout.contains("name \"isa-debug-exit\"") && r.stdout.contains("name \"pc-testdev\"")
    );

    let r = via_link(&["-version".into()]);
    assert!(
        r.status == 0 && r.stdout.starts_with("QEMU emulator version"),
        "{}",
        r.stdout
    );
    let r = via_link(&["--help".into()]);
    assert!(
        r.status == 0 && r.stdout.contains("-kernel"),
        "{}",
        r.stdout
    );
}

#[test]
fn unsupported_options_are_refused_by_name_with_status_1() {
    let k = firmware("hello.elf");
    let k = k.to_str().expect("utf-8");
    for (extra, named) in [
        (vec!["-hda", "disk.img"], "-hda"),
        (vec!["-smp", "300"], "1 to 254 vCPUs"),
        (vec!["-device", "e1000"], "e1000"),
        (vec!["-cpu", "qemu64,+x2apic"], "feature flags"),
    ] {
        let mut args: Vec<String> = vec!["-kernel".into(), k.into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let r = via_link(&args);
        assert_eq!(r.status, 1, "{extra:?}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("qemu-system-x86_64: ") && r.stderr.contains(named),
            "{extra:?}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    // A missing kernel is QEMU's status 1 too.
    let r = via_link(&["-kernel".into(), "/nonexistent.elf".into()]);
    assert_eq!(r.status, 1, "{}", r.stderr);
}
