//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::accel::Accel;

#[derive(Parser, Debug)]
#[command(
    name = "twinvm",
    version,
    about = "Full-system x86-64 emulator and virtual machine monitor"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a guest (with no image: the built-in demo guest).
    Run(RunArgs),
    /// Run the CPU-bound benchmark guests and print guest MIPS.
    Bench(BenchArgs),
    /// Run test guests on every chosen engine in parallel; report a table, JSON, JUnit.
    Conform(crate::conform::ConformArgs),
    /// Run one guest on several engines and compare serial output, exit status, final CPU
    /// state and guest memory (--lockstep: not implemented yet).
    Compare(crate::compare::CompareArgs),
    /// qemu-system-x86_64's command line (the part test runners use); also run when this
    /// binary is invoked through a link named qemu-system-x86_64. `twinvm qemu --help`
    /// lists the accepted options.
    #[command(disable_help_flag = true)]
    Qemu {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Ring-3 hardware oracle: random instruction streams run under KVM and in the
    /// interpreter, compared.
    FuzzDiff(crate::fuzz_diff::FuzzDiffArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Execution engine: interp (twinvm's interpreter) or kvm (Linux KVM, with the
    /// interpreter for what KVM cannot run).
    #[arg(long, default_value = "interp")]
    pub accel: Accel,
    /// The KVM device file, for --accel kvm.
    #[arg(long, default_value = crate::kvm::DEFAULT_DEVICE)]
    pub kvm_device: PathBuf,
    /// With --accel kvm, hide every CPUID feature KVM lacks, even those the interpreter
    /// fallback would run.
    #[arg(long)]
    pub kvm_strict_cpuid: bool,
    /// Kernel image: multiboot v1 (ELF32/ELF64, or flat with header address fields), or a
    /// raw binary with --flat-addr.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk(s), handed to a multiboot kernel as modules (repeatable).
    #[arg(long)]
    pub initrd: Vec<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "")]
    pub append: String,
    /// Guest RAM, e.g. 256M, 2G (suffixes K, M, G; plain numbers are MiB).
    #[arg(long, default_value = "256M")]
    pub mem: String,
    /// Firmware image mapped below 4 GiB and started at the reset vector (F000:FFF0).
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Load --kernel as a raw binary at this guest-physical address (hex with 0x).
    #[arg(long, value_parser = parse_number)]
    pub flat_addr: Option<u64>,
    /// Entry point for --flat-addr (default: the load address); entered in 32-bit flat
    /// protected mode.
    #[arg(long, value_parser = parse_number, requires = "flat_addr")]
    pub entry: Option<u64>,
    /// Where COM1 goes: stdio, file:PATH or none.
    #[arg(long, default_value = "stdio")]
    pub serial: String,
    /// Stop instead of resetting when the guest resets or triple-faults.
    #[arg(long)]
    pub no_reboot: bool,
    /// Print instructions executed, guest MIPS and exits by kind when the guest stops.
    #[arg(long)]
    pub stats: bool,
    /// Start the gdb remote stub: tcp:HOST:PORT, tcp::PORT or PORT (host defaults to
    /// 127.0.0.1; port 0 picks a free one, printed on stderr).
    #[arg(long, value_name = "ADDR")]
    pub gdb: Option<String>,
    /// Hold the guest at its first instruction until a debugger resumes it (implies
    /// --gdb tcp:127.0.0.1:1234 when --gdb is not given).
    #[arg(long)]
    pub gdb_wait: bool,
    /// Deterministic virtual time: the clock advances 2^SHIFT ns per instruction executed
    /// (default 0: 1 ns) instead of following the host, so runs repeat exactly.
    #[arg(long, value_name = "SHIFT", num_args = 0..=1, default_missing_value = "0",
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub icount: Option<u32>,
    /// Number of vCPUs (1–254): vCPU 0 boots, the others wait for INIT/SIPI.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=254))]
    pub smp: u16,
    /// CPU model and feature changes: MODEL[,+FEATURE,-FEATURE…] with MODEL max or qemu64
    /// and features named as in /proc/cpuinfo (e.g. qemu64,+popcnt).
    #[arg(long, default_value = "max")]
    pub cpu: String,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Benchmark guests to run (default: all built-in ones).
    pub guests: Vec<String>,
    /// Runs per guest; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
}

/// Parses a number in decimal or 0x-hex.
pub fn parse_number(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("'{s}' is not a number"))
}

/// Parses a memory size: K/M/G/T suffixes (powers of two); a plain number means MiB, as
/// QEMU's -m does.
pub fn parse_mem_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'B' => 1,
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "memory size '{s}': unknown suffix '{c}' (use K, M or G)"
                    ))
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1 << 20),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("memory size '{s}' is not a number"))?;
    n.checked_mul(mul)
        .ok_or_else(|| format!("memory size '{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_sizes() {
        assert_eq!(parse_mem_size("256M"), Ok(256 << 20));
        assert_eq!(parse_mem_size("2G"), Ok(2 << 30));
        assert_eq!(parse_mem_size("128"), Ok(128 << 20));
        assert!(parse_mem_size("12Q").is_err());
        assert!(parse_mem_size("lots").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x100000"), Ok(0x10_0000));
        assert_eq!(parse_number("4096"), Ok(4096));
        assert!(parse_number("0xzz").is_err());
    }
}
