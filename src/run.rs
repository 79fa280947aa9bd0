//! `twinvm run`: build the machine, run it, map the outcome to an exit status.

use std::path::Path;
use std::sync::Arc;

use crate::accel::Accel;
use crate::cli::{parse_mem_size, RunArgs};
use crate::console::{self, InputQueue, RawMode};
use crate::engine::{self, InterpVcpu, Outcome, RunReport};
use crate::error::{status, VmError};
use crate::gdb::{GdbServer, InterpTarget};
use crate::kvm::KvmOptions;
use crate::loader::Module;
use crate::vm::{Machine, MachineConfig, SerialOut};

/// Largest guest RAM accepted: what the host could plausibly back.
fn host_memory_limit() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        u64::MAX
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, VmError> {
    let data = std::fs::read(path)
        .map_err(|e| VmError::Input(format!("cannot read {what} {}: {e}", path.display())))?;
    if data.is_empty() {
        return Err(VmError::Input(format!(
            "{what} {} is empty",
            path.display()
        )));
    }
    Ok(data)
}

pub fn parse_serial(s: &str) -> Result<SerialOut, VmError> {
    match s {
        "stdio" => Ok(SerialOut::Stdio),
        "none" => Ok(SerialOut::None),
        _ => match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(SerialOut::File(p.into())),
            _ => Err(VmError::Input(format!(
                "--serial '{s}': expected stdio, file:PATH or none"
            ))),
        },
    }
}

pub fn config_from_args(a: &RunArgs) -> Result<MachineConfig, VmError> {
    let mem_size = parse_mem_size(&a.mem).map_err(VmError::Input)?;
    if mem_size < (1 << 20) {
        return Err(VmError::Input(format!(
            "--mem {}: the guest needs at least 1 MiB of RAM",
            a.mem
        )));
    }
    if mem_size % 4096 != 0 {
        return Err(VmError::Input(format!(
            "--mem {}: must be a multiple of 4 KiB",
            a.mem
        )));
    }
    let limit = host_memory_limit();
    if mem_size > limit {
        return Err(VmError::Input(format!(
            "--mem {}: more than this host's {} MiB of memory",
            a.mem,
            limit >> 20
        )));
    }
    let kernel = match &a.kernel {
        Some(p) => Some(read_file(p, "kernel")?),
        None if a.firmware.is_none() => Some(crate::firmware::HELLO.to_vec()),
        None => None,
    };
    let mut modules = Vec::new();
    for p in &a.initrd {
        modules.push(Module {
            name: p.display().to_string(),
            data: read_file(p, "initrd")?,
        });
    }
    let firmware = match &a.firmware {
        Some(p) => Some(read_file(p, "firmware")?),
        None => None,
    };
    if a.icount.is_some() && a.smp > 1 {
        return Err(VmError::Input(
            "--icount runs one vCPU deterministically; it cannot be combined with --smp above 1 yet".into(),
        ));
    }
    if a.flat_addr.is_some() && a.kernel.is_none() {
        return Err(VmError::Input("--flat-addr needs --kernel".into()));
    }
    Ok(MachineConfig {
        mem_size,
        serial: parse_serial(&a.serial)?,
        kernel,
        cmdline: a.append.clone(),
        modules,
        firmware,
        flat_addr: a.flat_addr,
        flat_entry: a.entry,
        model: twinvm_cpu::cpu_models::parse_cpu_spec(&a.cpu)
            .map_err(|e| VmError::Input(format!("--cpu {}: {e}", a.cpu)))?,
        icount: a.icount,
        cpus: a.smp as usize,
    })
}

/// Runs the guest, resetting as often as it asks (unless --no-reboot); returns the final
/// report.
pub fn run_machine(
    cfg: &MachineConfig,
    no_reboot: bool,
    interactive: bool,
) -> Result<RunReport, VmError> {
    run_machine_on(
        cfg,
        no_reboot,
        interactive,
        Accel::Interp,
        &KvmOptions::default(),
        None,
    )
}

/// `run_machine` on a chosen engine, under the gdb stub when `gdb` is given.
pub fn run_machine_on(
    cfg: &MachineConfig,
    no_reboot: bool,
    interactive: bool,
    accel: Accel,
    kvm: &KvmOptions,
    mut gdb: Option<&mut GdbServer>,
) -> Result<RunReport, VmError> {
    let input = interactive.then(|| Arc::new(InputQueue::default()));
    let mut reader_started = false;
    loop {
        let m = Arc::new(Machine::build(cfg)?);
        if let (Some(q), false) = (&input, reader_started) {
            console::spawn_reader(q.clone(), m.control.clone());
            reader_started = true;
        }
        let report = match (gdb.as_deref_mut(), accel) {
            (Some(server), Accel::Interp) => {
                let vcpu = InterpTarget::new(InterpVcpu::new(m.clone(), input.clone()));
                let (outcome, vcpus) = server.run(vec![Box::new(vcpu)]);
                match vcpus.first() {
                    Some(v) => v.report(outcome),
                    None => return Err(VmError::Host("the machine has no vCPU".into())),
                }
            }
            (Some(_), other) => {
                return Err(VmError::Input(format!(
                    "--gdb is not available with --accel {other} yet (use --accel interp)"
                )))
            }
            (None, _) => engine::run(&m, input.clone(), accel, kvm)?,
        };
        match report.outcome {
            Outcome::Reset | Outcome::TripleFault { .. } if !no_reboot => {
                log::info!("guest reset ({:?}); restarting", report.outcome);
                continue;
            }
            _ => return Ok(report),
        }
    }
}

/// The process status for an outcome, and the message to print (if any).
pub fn outcome_status(o: &Outcome) -> (i32, Option<String>) {
    match o {
        Outcome::DebugExit(s) => (*s, None),
        Outcome::PowerOff | Outcome::UserQuit => (0, None),
        Outcome::Killed => (0, Some("killed by the debugger".into())),
        Outcome::Reset => (
            status::GUEST_RESET,
            Some("guest reset the machine (--no-reboot)".into()),
        ),
        Outcome::TripleFault { cs, rip } => (
            status::TRIPLE_FAULT,
            Some(format!("triple fault at {cs:#x}:{rip:#x}")),
        ),
        Outcome::DeadHalt { cs, rip } => (
            status::DEAD_HALT,
            Some(format!(
                "guest halted with interrupts disabled at {cs:#x}:{rip:#x}; nothing can wake it"
            )),
        ),
        Outcome::Unsupported { what, cs, rip } => (
            status::UNSUPPORTED,
            Some(format!(
                "unsupported guest operation at {cs:#x}:{rip:#x}: {what}"
            )),
        ),
    }
}

pub fn print_stats(r: &RunReport) {
    let s = &r.stats;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    eprintln!("twinvm stats:");
    if s.kvm_exits > 0 {
        // KVM does not count the instructions it runs; only the fallback's are known.
        eprintln!("  kvm exits         {}", s.kvm_exits);
        eprintln!(
            "  instructions      {} (run by the interpreter fallback)",
            s.instructions
        );
        eprintln!("  elapsed           {:.3} s", secs);
        let mut fb: Vec<_> = s.fallbacks.iter().collect();
        fb.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (m, n) in fb {
            eprintln!("  fallback          {m} × {n}");
        }
        eprintln!(
            "  exits: pio reads {}, pio writes {}, mmio reads {}, mmio writes {}",
            s.pio_reads, s.pio_writes, s.mmio_reads, s.mmio_writes
        );
        eprintln!("  exits: halts {}, interrupts {}", s.halts, s.interrupts);
        return;
    }
    eprintln!("  instructions      {}", s.instructions);
    if r.vcpu_instructions.len() > 1 {
        for (i, n) in r.vcpu_instructions.iter().enumerate() {
            eprintln!("  vcpu {i:<3} insns     {n}");
        }
    }
    eprintln!("  elapsed           {:.3} s", secs);
    eprintln!(
        "  guest MIPS        {:.1}",
        s.instructions as f64 / secs / 1e6
    );
    eprintln!(
        "  exits: pio reads {}, pio writes {}, mmio reads {}, mmio writes {}",
        s.pio_reads, s.pio_writes, s.mmio_reads, s.mmio_writes
    );
    eprintln!(
        "  exits: halts {}, interrupts {}, exceptions {}",
        s.halts, s.interrupts, s.exceptions
    );
    eprintln!("  blocks decoded    {}", s.blocks_decoded);
    eprintln!("  SMC invalidations {}", s.smc_invalidations);
    eprintln!(
        "  shadow tables (TLB): hits {}, misses {}, page walks {}, flushes {}",
        s.tlb_hits, s.tlb_misses, s.page_walks, s.tlb_flushes
    );
    eprintln!("  CR3 loads         {}", s.cr3_loads);
    let mut un: Vec<_> = s.unimplemented.iter().collect();
    un.sort();
    for (m, n) in un {
        eprintln!("  unimplemented     {m} × {n}");
    }
    let mut msrs: Vec<_> = s.unknown_msrs.iter().collect();
    msrs.sort();
    for (m, n) in msrs {
        eprintln!("  unknown MSR       {m:#x} × {n}");
    }
}

/// The gdb stub asked for on the command line, listening.
fn gdb_server(a: &RunArgs) -> Result<Option<GdbServer>, VmError> {
    let addr = match (&a.gdb, a.gdb_wait) {
        (Some(s), _) => crate::gdb::parse_addr(s)?,
        (None, true) => crate::gdb::parse_addr("tcp:127.0.0.1:1234")?,
        (None, false) => return Ok(None),
    };
    let server = GdbServer::bind(addr, a.gdb_wait, a.no_reboot)?;
    eprintln!(
        "twinvm: gdb stub listening on {}{}",
        server.local_addr(),
        if a.gdb_wait {
            " (the guest waits for the debugger)"
        } else {
            ""
        }
    );
    Ok(Some(server))
}

pub fn cmd_run(a: &RunArgs) -> i32 {
    let cfg = match config_from_args(a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("twinvm: {e}");
            return e.status();
        }
    };
    let mut gdb = match gdb_server(a) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("twinvm: {e}");
            return e.status();
        }
    };
    let interactive = cfg.serial == SerialOut::Stdio;
    let mut raw = if interactive {
        Some(RawMode::enable())
    } else {
        None
    };
    let kvm = KvmOptions {
        device: a.kvm_device.clone(),
        strict_cpuid: a.kvm_strict_cpuid,
    };
    let result = run_machine_on(&cfg, a.no_reboot, interactive, a.accel, &kvm, gdb.as_mut());
    if let Some(r) = raw.as_mut() {
        r.restore();
    }
    match result {
        Ok(report) => {
            if a.stats {
                print_stats(&report);
            }
            let (code, msg) = outcome_status(&report.outcome);
            if let Some(m) = msg {
                eprintln!("twinvm: {m}");
            }
            code
        }
        Err(e) => {
            eprintln!("twinvm: {e}");
            e.status()
        }
    }
}
