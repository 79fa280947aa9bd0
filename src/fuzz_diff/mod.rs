//! `twinvm fuzz-diff`: the ring-3 hardware oracle. Random instruction streams run at CPL 3
//! natively under KVM and in the interpreter from the same state; the ends (registers,
//! flags, sandbox memory, the exception with its error code and CR2) are compared, and a
//! divergent stream is minimised and printed.
//!
//! Files: `machine` (the shared system image and CPL-3 state), `kvm_side`, `interp_side`,
//! `stream` (generation), `departures` (THE table of what this host's KVM gets wrong and
//! how fuzz-diff keeps out of its way), `outcome` (comparison), `minimize`.

pub mod departures;
pub mod interp_side;
pub mod kvm_side;
pub mod machine;
pub mod minimize;
pub mod outcome;
pub mod stream;
pub mod watchdog;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use twinvm_cpu::oracle::{disassemble, State};

use crate::error::status;
use interp_side::InterpSide;
use kvm_side::KvmSide;
use outcome::End;
use stream::Streams;

/// Exit status when some stream diverged (as `diff` and `cmp` do).
pub const DIVERGED: i32 = 1;

#[derive(Args, Debug, Clone)]
pub struct FuzzDiffArgs {
    /// Random instructions to run (counted as the interpreter retires them).
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Seed of the stream generator (a seed reproduces a run).
    #[arg(long, default_value_t = 1, value_parser = crate::cli::parse_number)]
    pub seed: u64,
    /// The KVM device file.
    #[arg(long, default_value = crate::kvm::DEFAULT_DEVICE)]
    pub kvm_device: PathBuf,
    /// Divergences minimised and printed in full (all are counted).
    #[arg(long, default_value_t = 5)]
    pub max_reports: usize,
    /// Print the departures table (what is kept out of the streams, and why) and exit.
    #[arg(long)]
    pub list_departures: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub streams: u64,
    pub instructions: u64,
    pub kvm_entries: u64,
    pub divergences: u64,
    pub elapsed: Duration,
    pub rejected: Vec<(&'static str, u64)>,
    /// Divergences recognised as one of the table's `Recognised` departures.
    pub recognised: Vec<(&'static str, u64)>,
    /// Where the time went: generating streams, KVM, the interpreter.
    pub time_gen: Duration,
    pub time_kvm: Duration,
    pub time_interp: Duration,
    /// Streams that ran away on both engines (a RET to a corrupted return address can
    /// loop): not compared.
    pub ran_away: u64,
    /// How streams ended: by exception vector (255: the final UD2).
    pub stops: std::collections::BTreeMap<u8, u64>,
}

impl Summary {
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut s = format!(
            "fuzz-diff: {} instructions in {} streams ({} KVM entries), {:.1}s, {:.0} instructions/s, {} divergent",
            self.instructions,
            self.streams,
            self.kvm_entries,
            secs,
            self.instructions as f64 / secs,
            self.divergences
        );
        let _ = write!(
            s,
            " (time: generating {:.1}s, kvm {:.1}s, interpreter {:.1}s)",
            self.time_gen.as_secs_f64(),
            self.time_kvm.as_secs_f64(),
            self.time_interp.as_secs_f64()
        );
        let stops: Vec<String> = self
            .stops
            .iter()
            .map(|(v, n)| match v {
                255 => format!("end {n}"),
                v => format!("#{} {n}", vector_name(*v)),
            })
            .collect();
        let _ = write!(s, "; streams ended by: {}", stops.join(", "));
        if self.ran_away > 0 {
            let _ = write!(
                s,
                "; {} ran away on both engines (not compared)",
                self.ran_away
            );
        }
        if !self.rejected.is_empty() {
            let r: Vec<String> = self
                .rejected
                .iter()
                .map(|(n, c)| format!("{n}: {c}"))
                .collect();
            let _ = write!(
                s,
                "; streams kept out by the departures table: {}",
                r.join(", ")
            );
        }
        if !self.recognised.is_empty() {
            let r: Vec<String> = self
                .recognised
                .iter()
                .map(|(n, c)| format!("{n}: {c}"))
                .collect();
            let _ = write!(s, "; known KVM departures recognised: {}", r.join(", "));
        }
        s
    }
}

fn vector_name(v: u8) -> String {
    const NAMES: [&str; 21] = [
        "DE", "DB", "NMI", "BP", "OF", "BR", "UD", "NM", "DF", "CSO", "TS", "NP", "SS", "GP", "PF",
        "15", "MF", "AC", "MC", "XM", "VE",
    ];
    NAMES
        .get(v as usize)
        .map_or_else(|| format!("{v}"), |n| n.to_string())
}

/// Both engines.
pub struct Engines {
    pub kvm: KvmSide,
    pub interp: InterpSide,
}

impl Engines {
    pub fn new(device: &std::path::Path) -> Result<Engines, String> {
        let kvm = KvmSide::new(device).map_err(|e| e.to_string())?;
        let interp = InterpSide::new()?;
        Ok(Engines { kvm, interp })
    }

    pub fn run(&mut self, code: &[u8], init: &State) -> Result<(End, End), String> {
        let k = self.kvm.run(code, init).map_err(|e| e.to_string())?;
        let i = self.interp.run(code, init)?;
        Ok((k, i))
    }
}

/// Runs streams until `count` instructions have been compared, printing each divergence
/// (up to `max_reports` in full) to `out`.
pub fn fuzz(args: &FuzzDiffArgs, out: &mut dyn std::io::Write) -> Result<Summary, String> {
    let mut eng = Engines::new(&args.kvm_device)?;
    let mut streams = Streams::new(args.seed);
    let start = Instant::now();
    let mut sum = Summary::default();
    let mut minimising = Duration::ZERO;
    let mut recognised = std::collections::BTreeMap::new();
    // Counted from the streams only, not from the re-runs that minimise a divergence.
    while sum.instructions < args.count {
        let t0 = Instant::now();
        let s = streams.next_stream();
        sum.streams += 1;
        let t1 = Instant::now();
        let k = eng.kvm.run(&s.code, &s.init).map_err(|e| e.to_string())?;
        let t2 = Instant::now();
        let i = eng.interp.run(&s.code, &s.init)?;
        let t3 = Instant::now();
        sum.time_gen += t1 - t0;
        sum.time_kvm += t2 - t1;
        sum.time_interp += t3 - t2;
        if let outcome::Stop::Exception { vector, .. } = k.stop {
            let end = vector == 6
                && k.state.rip + 2 == twinvm_cpu::oracle::Layout::get().code + s.code.len() as u64;
            let v = if end { 255 } else { vector };
            *sum.stops.entry(v).or_insert(0) += 1;
        }
        sum.instructions = eng.interp.instructions;
        sum.kvm_entries = eng.kvm.entries;
        if outcome::diff(&k, &i).is_empty() {
            continue;
        }
        if let Some(name) = departures::recognised(&k, &i) {
            *recognised.entry(name).or_insert(0u64) += 1;
            continue;
        }
        if ran_away(&k, &i) {
            sum.ran_away += 1;
            continue;
        }
        sum.divergences += 1;
        if sum.divergences as usize <= args.max_reports {
            let t = Instant::now();
            let text = report(&mut eng, args.seed, sum.streams, &s, &(k, i))?;
            minimising += t.elapsed();
            let _ = out.write_all(text.as_bytes());
        }
        eng.interp.instructions = sum.instructions;
    }
    // Throughput is the fuzzing's, without the time spent minimising.
    sum.elapsed = start.elapsed().saturating_sub(minimising);
    sum.rejected = streams.rejected.into_iter().collect();
    sum.recognised = recognised.into_iter().collect();
    Ok(sum)
}

/// Whether two ends count as a divergence: they differ, and not in a way the departures
/// table recognises. Both engines running away (KVM's time-out, the interpreter's budget)
/// is not one: their states at the cut are arbitrary; `fuzz` counts those apart.
fn divergent(k: &End, i: &End) -> bool {
    !outcome::diff(k, i).is_empty() && departures::recognised(k, i).is_none() && !ran_away(k, i)
}

fn ran_away(k: &End, i: &End) -> bool {
    matches!(&k.stop, outcome::Stop::Other(m) if m.starts_with(kvm_side::TIMED_OUT))
        && matches!(&i.stop, outcome::Stop::Other(m) if m.starts_with(interp_side::OUT_OF_BUDGET))
}

/// Minimises `s` and describes the divergence (`first`: the ends of the original run).
fn report(
    eng: &mut Engines,
    seed: u64,
    n: u64,
    s: &stream::Stream,
    first: &(End, End),
) -> Result<String, String> {
    let mut err = None;
    // A shrunk candidate must still satisfy the departures table (dropping the PUSH of a
    // `push imm; popf` would let POPF load anything).
    let mut diverges = |code: &[u8]| {
        if stream::departure(code, true).is_some() {
            return false;
        }
        match eng.run(code, &s.init) {
            Ok((k, i)) => divergent(&k, &i),
            Err(e) => {
                err.get_or_insert(e);
                false
            }
        }
    };
    let code = minimize::minimize(&s.code, &mut diverges);
    if let Some(e) = err {
        return Err(e);
    }
    let (k, i) = eng.run(&code, &s.init)?;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "DIVERGENCE (seed {seed:#x}, stream {n}, {}; minimised from {} to {} bytes)",
        s.origin,
        s.code.len(),
        code.len()
    );
    let hex: String = code.iter().map(|b| format!("{b:02x}")).collect();
    let _ = writeln!(t, "code {hex}:\n{}", disassemble(&code));
    let (k, i) = if divergent(&k, &i) {
        (k, i)
    } else {
        let _ = writeln!(
            t,
            "(the divergence did not reproduce on a re-run: shown as first seen)"
        );
        (first.0.clone(), first.1.clone())
    };
    let _ = write!(t, "{}", outcome::side_by_side(&s.init, &k, &i));
    let _ = writeln!(t, "differences:");
    for d in outcome::diff(&k, &i) {
        let _ = writeln!(t, "  {d}");
    }
    Ok(t)
}

/// The command.
pub fn cmd_fuzz_diff(args: &FuzzDiffArgs) -> i32 {
    if args.list_departures {
        print!("{}", departures::describe());
        return 0;
    }
    let mut stdout = std::io::stdout();
    match fuzz(args, &mut stdout) {
        Ok(sum) => {
            let _ = stdout.flush();
            println!("{}", sum.line());
            if sum.divergences > 0 {
                DIVERGED
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("twinvm: fuzz-diff: {e}");
            status::KVM_UNAVAILABLE
        }
    }
}
