//! The part of `qemu-system-x86_64`'s command line that test runners use, mapped onto
//! `twinvm run`'s options. Everything else is refused by name.

use crate::cli::parse_number;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Run a guest with these `twinvm run` arguments (without the leading "run").
    Run(Vec<String>),
    /// Print this text and exit 0 (--help, -version, -device help).
    Print(String),
}

/// Devices `-device` accepts, as QEMU's `-device help` lists them.
pub const DEVICES: &[(&str, &str)] = &[("isa-debug-exit", "ISA"), ("pc-testdev", "ISA")];

pub fn device_list() -> String {
    let mut s = String::from("Misc devices:\n");
    for (name, bus) in DEVICES {
        s.push_str(&format!("name \"{name}\", bus {bus}\n"));
    }
    s
}

/// Options that take a value.
const WITH_VALUE: &[&str] = &[
    "kernel", "initrd", "append", "bios", "smp", "m", "cpu", "machine", "M", "accel", "device",
    "serial", "display", "vnc", "monitor",
];

#[derive(Default)]
struct Parsed {
    kernel: Option<String>,
    bios: Option<String>,
    initrd: Vec<String>,
    append: Option<String>,
    mem: Option<String>,
    cpus: u64,
    accel: Option<String>,
    serial: Option<String>,
    nodefaults: bool,
    no_reboot: bool,
}

/// Splits "a,b=c,d" into (first bare item, key=value pairs); QEMU escapes commas as ",,".
fn split_opts(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                out.last_mut().expect("never empty").push(',');
            } else {
                out.push(String::new());
            }
        } else {
            out.last_mut().expect("never empty").push(c);
        }
    }
    out
}

/// Picks the first engine of a QEMU accelerator list ("kvm:tcg") that this build has;
/// QEMU's `tcg` (its software engine) is twinvm's `interp`.
fn pick_accel(list: &str) -> Result<String, String> {
    let names: Vec<&str> = list.split(':').collect();
    for n in &names {
        let twin = if *n == "tcg" { "interp" } else { n };
        if crate::accel::ENGINES.contains(&twin) {
            return Ok(twin.to_string());
        }
    }
    Err(format!(
        "accelerator '{list}' is not available (twinvm engines in this build: {}; tcg means interp)",
        crate::accel::ENGINES.join(", ")
    ))
}

fn machine(v: &str, p: &mut Parsed) -> Result<(), String> {
    for (i, item) in split_opts(v).iter().enumerate() {
        let (k, val) = match item.split_once('=') {
            Some((k, val)) => (k, val),
            None if i == 0 => ("type", item.as_str()),
            None => return Err(format!("-machine {v}: '{item}' is not supported")),
        };
        match k {
            "type" if val == "pc" || val.starts_with("pc-i440fx") => {}
            "type" => {
                return Err(format!(
                    "-machine {v}: machine type '{val}' is not supported (twinvm models the 'pc' machine)"
                ))
            }
            "accel" => p.accel = Some(pick_accel(val)?),
            _ => return Err(format!("-machine {v}: property '{k}' is not supported (type and accel are)")),
        }
    }
    Ok(())
}

fn smp(v: &str) -> Result<u64, String> {
    let mut cpus = 1u64;
    for (i, item) in split_opts(v).iter().enumerate() {
        let (k, val) = match item.split_once('=') {
            Some((k, val)) => (k, val),
            None if i == 0 => ("cpus", item.as_str()),
            None => return Err(format!("-smp {v}: '{item}' is not understood")),
        };
        let n = parse_number(val).map_err(|e| format!("-smp {v}: {e}"))?;
        match k {
            "cpus" | "maxcpus" | "sockets" | "cores" | "threads" | "dies" => cpus = cpus.max(n),
            _ => return Err(format!("-smp {v}: '{k}' is not understood")),
        }
    }
    if !(1..=254).contains(&cpus) {
        return Err(format!("-smp {v}: twinvm runs 1 to 254 vCPUs"));
    }
    Ok(cpus)
}

fn cpu(v: &str) -> Result<(), String> {
    let items = split_opts(v);
    match items[0].as_str() {
        "max" | "qemu64" | "kvm64" | "host" => {}
        other => {
            return Err(format!(
                "-cpu {other}: not supported (twinvm has one CPU model; -cpu max, qemu64, kvm64 \
                 and host all select it)"
            ))
        }
    }
    if items.len() > 1 {
        return Err(format!(
            "-cpu {v}: CPU feature flags are not supported (twinvm's CPU model is fixed)"
        ));
    }
    Ok(())
}

fn device(v: &str) -> Result<Option<Plan>, String> {
    let items = split_opts(v);
    match items[0].as_str() {
        "help" | "?" => return Ok(Some(Plan::Print(device_list()))),
        "isa-debug-exit" => {
            for item in &items[1..] {
                let (k, val) = item
                    .split_once('=')
                    .ok_or_else(|| format!("-device {v}: '{item}' is not understood"))?;
                let n = parse_number(val).map_err(|e| format!("-device {v}: {e}"))?;
                let want = match k {
                    "iobase" => 0xf4,
                    "iosize" => 4,
                    _ => return Err(format!("-device {v}: property '{k}' is not supported")),
                };
                if n != want {
                    return Err(format!(
                        "-device {v}: twinvm's isa-debug-exit is fixed at iobase=0xf4,iosize=4"
                    ));
                }
            }
        }
        // Accepted so that kvm-unit-tests' command line works; not modelled yet (its ports
        // read as an absent device).
        "pc-testdev" if items.len() == 1 => {}
        name => {
            let known: Vec<&str> = DEVICES.iter().map(|d| d.0).collect();
            return Err(format!(
                "-device {name}: not supported (twinvm accepts: {})",
                known.join(", ")
            ));
        }
    }
    Ok(None)
}

/// Parses QEMU's arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Plan, String> {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let raw = &args[i];
        i += 1;
        // QEMU accepts -opt and --opt alike.
        let name = raw
            .strip_prefix("--")
            .or_else(|| raw.strip_prefix('-'))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                format!("'{raw}': not an option (twinvm takes no disk image argument)")
            })?;
        let value = if WITH_VALUE.contains(&name) {
            let v = args
                .get(i)
                .ok_or_else(|| format!("-{name}: requires an argument"))?;
            i += 1;
            v.as_str()
        } else {
            ""
        };
        match name {
            "h" | "help" => return Ok(Plan::Print(super::usage())),
            "version" => return Ok(Plan::Print(super::version())),
            "kernel" => p.kernel = Some(value.into()),
            "bios" => p.bios = Some(value.into()),
            // Multiboot modules, comma-separated, each "file [args]".
            "initrd" => {
                for m in split_opts(value) {
                    let file = m.split_whitespace().next().unwrap_or("");
                    if file.is_empty() {
                        return Err(format!("-initrd {value}: empty module name"));
                    }
                    p.initrd.push(file.into());
                }
            }
            "append" => p.append = Some(value.into()),
            "m" => {
                let items = split_opts(value);
                let size = items[0].strip_prefix("size=").unwrap_or(&items[0]);
                if items.len() > 1 {
                    return Err(format!(
                        "-m {value}: only a size is supported (no slots/maxmem)"
                    ));
                }
                p.mem = Some(size.into());
            }
            "smp" => p.cpus = smp(value)?,
            "cpu" => cpu(value)?,
            "machine" | "M" => machine(value, &mut p)?,
            "accel" => {
                let items = split_opts(value);
                if items.len() > 1 {
                    return Err(format!(
                        "-accel {value}: accelerator properties are not supported"
                    ));
                }
                p.accel = Some(pick_accel(&items[0])?);
            }
            "enable-kvm" => p.accel = Some(pick_accel("kvm")?),
            "device" => {
                if let Some(plan) = device(value)? {
                    return Ok(plan);
                }
            }
            "serial" => {
                p.serial = Some(match value {
                    "stdio" | "mon:stdio" => "stdio".to_string(),
                    "none" | "null" => "none".to_string(),
                    v if v.starts_with("file:") && v.len() > 5 => v.to_string(),
                    v => {
                        return Err(format!(
                            "-serial {v}: not supported (stdio, mon:stdio, none, null, file:PATH)"
                        ))
                    }
                })
            }
            "display" | "vnc" | "monitor" if value == "none" => {}
            "display" | "vnc" | "monitor" => {
                return Err(format!(
                    "-{name} {value}: not supported (only '-{name} none')"
                ))
            }
            "nographic" => {
                p.serial.get_or_insert_with(|| "stdio".into());
            }
            "nodefaults" => p.nodefaults = true,
            "no-reboot" => p.no_reboot = true,
            other => {
                return Err(format!(
                    "option -{other} is not supported by twinvm's qemu-system-x86_64 compatibility \
                     (see 'twinvm qemu --help')"
                ))
            }
        }
    }
    let mut run: Vec<String> = Vec::new();
    match (&p.kernel, &p.bios) {
        (Some(k), _) => run.extend(["--kernel".into(), k.clone()]),
        (None, Some(_)) => {}
        (None, None) => {
            return Err(
                "no -kernel or -bios given (twinvm has no BIOS that boots from a disk)".into(),
            )
        }
    }
    if let Some(b) = &p.bios {
        run.extend(["--firmware".into(), b.clone()]);
    }
    for m in &p.initrd {
        run.extend(["--initrd".into(), m.clone()]);
    }
    if let Some(a) = &p.append {
        run.extend(["--append".into(), a.clone()]);
    }
    // QEMU's default RAM is 128 MiB.
    run.extend(["--mem".into(), p.mem.unwrap_or_else(|| "128M".into())]);
    if p.cpus > 1 {
        run.extend(["--smp".into(), p.cpus.to_string()]);
    }
    let serial = p
        .serial
        .unwrap_or_else(|| if p.nodefaults { "none" } else { "stdio" }.into());
    run.extend(["--serial".into(), serial]);
    run.extend(["--accel".into(), p.accel.unwrap_or_else(|| "interp".into())]);
    if p.no_reboot {
        run.push("--no-reboot".into());
    }
    Ok(Plan::Run(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn kvm_unit_tests_command_line() {
        let plan = parse(&args(
            "--no-reboot -nodefaults -device pc-testdev -device isa-debug-exit,iobase=0xf4,iosize=0x4 \
             -vnc none -serial stdio -machine accel=tcg -kernel x86/msr.flat -smp 1 -cpu max -m 256 \
             -display none -monitor none -append a",
        ))
        .expect("accepted");
        assert_eq!(
            plan,
            Plan::Run(args(
                "--kernel x86/msr.flat --append a --mem 256 --serial stdio --accel interp --no-reboot"
            ))
        );
    }

    #[test]
    fn refusals_name_the_option() {
        let cases = [
            ("-kernel k -hda disk.img", "option -hda is not supported"),
            ("-kernel k -smp 300", "-smp 300: twinvm runs 1 to 254 vCPUs"),
            ("-kernel k -smp cpus=1,sockets=400", "1 to 254 vCPUs"),
            ("-kernel k -cpu Haswell", "-cpu Haswell: not supported"),
            (
                "-kernel k -cpu qemu64,+x2apic",
                "feature flags are not supported",
            ),
            ("-kernel k -device e1000", "-device e1000: not supported"),
            (
                "-kernel k -device isa-debug-exit,iobase=0x501",
                "fixed at iobase=0xf4",
            ),
            ("-kernel k -machine q35", "machine type 'q35'"),
            (
                "-kernel k -machine accel=hvf",
                "accelerator 'hvf' is not available",
            ),
            ("-kernel k -display gtk", "-display gtk: not supported"),
            ("-kernel k -serial tcp::4444", "-serial tcp::4444"),
            ("-kernel", "-kernel: requires an argument"),
            ("-m 256", "no -kernel or -bios"),
            ("-kernel k disk.img", "'disk.img': not an option"),
        ];
        for (line, want) in cases {
            let e = parse(&args(line)).expect_err(line);
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn help_version_and_devices() {
        for q in ["-device ?", "-device help"] {
            match parse(&args(q)) {
                Ok(Plan::Print(t)) => {
                    assert!(t.contains("name \"isa-debug-exit\", bus ISA"), "{t}")
                }
                other => panic!("{q}: {other:?}"),
            }
        }
        assert!(matches!(parse(&args("--help")), Ok(Plan::Print(t)) if t.contains("-kernel")));
        assert!(
            matches!(parse(&args("-version")), Ok(Plan::Print(t)) if t.contains("QEMU emulator version"))
        );
    }

    #[test]
    fn firmware_memory_and_accel_lists() {
        let plan = parse(&args(
            "-bios fw.rom -m size=64M -M pc,accel=kvm:tcg -nographic",
        ))
        .expect("ok");
        // kvm when this build has it, else QEMU's fallback tcg = interp.
        let engine = if crate::accel::ENGINES.contains(&"kvm") {
            "kvm"
        } else {
            "interp"
        };
        assert_eq!(
            plan,
            Plan::Run(args(&format!(
                "--firmware fw.rom --mem 64M --serial stdio --accel {engine}"
            )))
        );
        assert_eq!(
            split_opts("a,,b,c=d"),
            vec!["a,b".to_string(), "c=d".to_string()]
        );
    }
}
