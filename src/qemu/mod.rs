//! The QEMU-compatible entry point: `twinvm qemu …`, or the twinvm binary run through a
//! link named `qemu-system-x86_64`, so that test runners written for QEMU work unchanged.
//!
//! Exit statuses follow QEMU: the guest's isa-debug-exit status `(v << 1) | 1`; 0 when the
//! guest powers off, resets or triple-faults with `-no-reboot` (QEMU shuts down then); 1
//! for a refused command line or an unreadable image. Outcomes QEMU has no status for keep
//! twinvm's (a halt nothing can wake: 8, where QEMU would hang; unsupported guest
//! operation: 10; host error: 12), never 0 or 1, so they cannot pass for a success.

mod args;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::status;

/// The program name QEMU runners invoke.
pub const QEMU_NAME: &str = "qemu-system-x86_64";

pub fn version() -> String {
    format!(
        "QEMU emulator version 7.2.0 (twinvm {}: qemu-system-x86_64 compatible command line)\n",
        env!("CARGO_PKG_VERSION")
    )
}

pub fn usage() -> String {
    format!(
        "usage: {QEMU_NAME} [options]   (twinvm's QEMU-compatible entry point; also `twinvm qemu`)

Accepted options (-opt and --opt alike); any other option is refused by name:
  -kernel FILE            multiboot kernel (ELF32/ELF64, kvm-unit-tests .flat)
  -initrd FILE[,FILE…]    multiboot modules
  -append STR             kernel command line
  -bios FILE              firmware image started at the reset vector
  -m [size=]SIZE          guest RAM (default 128M; a plain number is MiB)
  -smp N                  N vCPUs (1 to 254)
  -cpu max|qemu64|kvm64|host   all select twinvm's one CPU model; no feature flags
  -machine [pc][,accel=A[:B…]] / -M, -accel A, -enable-kvm
                          engine: tcg = interp{}
  -device isa-debug-exit[,iobase=0xf4,iosize=4]   (always present in twinvm)
  -device pc-testdev      accepted; not modelled yet
  -device help | -device '?'   list these devices
  -serial stdio|mon:stdio|none|null|file:PATH
  -display none  -vnc none  -monitor none  -nographic  -nodefaults  -no-reboot
  -version  -h/-help/--help

Exit status: the guest's isa-debug-exit status (v<<1)|1; 0 on power-off, or on reset or
triple fault with -no-reboot; 1 for a refused option or a bad image; 8 halted forever,
10 unsupported guest operation, 12 host error (twinvm's own, where QEMU has none).
",
        crate::accel::ENGINES
            .iter()
            .filter(|e| **e != "interp")
            .map(|e| format!(", {e}"))
            .collect::<String>()
    )
}

/// QEMU's status for a `twinvm run` status.
fn qemu_status(code: i32) -> i32 {
    match code {
        status::BAD_INPUT => 1,
        status::TRIPLE_FAULT | status::GUEST_RESET => 0,
        c => c,
    }
}

/// Runs QEMU's command line `args` (without the program name); returns the exit status.
pub fn main(args: &[String]) -> i32 {
    let plan = match args::parse(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{QEMU_NAME}: {e}");
            return 1;
        }
    };
    let run_args = match plan {
        args::Plan::Print(text) => {
            print!("{text}");
            return 0;
        }
        args::Plan::Run(a) => a,
    };
    let argv = ["twinvm", "run"]
        .into_iter()
        .map(String::from)
        .chain(run_args);
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Run(a),
        }) => qemu_status(crate::run::cmd_run(&a)),
        Ok(_) => {
            eprintln!("{QEMU_NAME}: internal error: the run command was not parsed as such");
            1
        }
        Err(e) => {
            // A value `twinvm run` refuses (e.g. an engine this build does not have).
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid option value");
            eprintln!("{QEMU_NAME}: {first}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_qemu() {
        assert_eq!(qemu_status(1), 1);
        assert_eq!(qemu_status(3), 3);
        assert_eq!(qemu_status(0), 0);
        assert_eq!(qemu_status(status::BAD_INPUT), 1);
        assert_eq!(qemu_status(status::TRIPLE_FAULT), 0);
        assert_eq!(qemu_status(status::GUEST_RESET), 0);
        assert_eq!(qemu_status(status::DEAD_HALT), status::DEAD_HALT);
    }
}
