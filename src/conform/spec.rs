//! What one conformance test is: an image, how to boot it, what it should do.

use std::ffi::OsString;
use std::path::PathBuf;

/// How the image is booted (`twinvm run --kernel` or `--firmware`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Kernel,
    Firmware,
}

/// The expected result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// isa-debug-exit 0 (status 1) or a power-off, no `FAIL` line, no failures in `SUMMARY:`.
    Pass,
    /// The guest reports a failure (a `FAIL` line, `SUMMARY:` failures or an odd
    /// isa-debug-exit status other than 1).
    Fail,
    /// Exactly this process status of `twinvm run` (e.g. 4 for a triple fault).
    Exit(i32),
}

#[derive(Clone, Debug)]
pub struct TestSpec {
    pub name: String,
    /// Where the test was defined (manifest:line, or the image path), for messages.
    pub origin: String,
    pub kind: ImageKind,
    pub image: PathBuf,
    pub initrd: Vec<PathBuf>,
    pub append: Option<String>,
    pub mem: Option<String>,
    pub smp: u32,
    pub flat_addr: Option<String>,
    pub entry: Option<String>,
    pub expect: Expect,
    /// Seconds; the command line's `--timeout` when absent.
    pub timeout: Option<f64>,
    /// Per-engine time limits (`timeout.kvm = 300`).
    pub engine_timeouts: Vec<(String, f64)>,
    /// Known deviations: (engine, reason).
    pub deviations: Vec<(String, String)>,
}

impl TestSpec {
    /// A test with default settings for a bare image.
    pub fn image(name: String, kind: ImageKind, image: PathBuf) -> TestSpec {
        TestSpec {
            origin: image.display().to_string(),
            name,
            kind,
            image,
            initrd: Vec::new(),
            append: None,
            mem: None,
            smp: 1,
            flat_addr: None,
            entry: None,
            expect: Expect::Pass,
            timeout: None,
            engine_timeouts: Vec::new(),
            deviations: Vec::new(),
        }
    }

    pub fn deviation(&self, engine: &str) -> Option<&str> {
        self.deviations
            .iter()
            .find(|(e, _)| e == engine)
            .map(|(_, r)| r.as_str())
    }

    pub fn timeout_for(&self, engine: &str, default: f64) -> f64 {
        self.engine_timeouts
            .iter()
            .find(|(e, _)| e == engine)
            .map(|(_, t)| *t)
            .or(self.timeout)
            .unwrap_or(default)
    }

    /// Why this test cannot run at all (on any engine), if it cannot.
    pub fn skip_reason(&self) -> Option<String> {
        (self.smp == 0 || self.smp > 254)
            .then(|| format!("smp = {}: twinvm runs 1 to 254 vCPUs", self.smp))
    }

    /// The arguments of `twinvm run` for this test on `engine`, serial on stdout.
    pub fn run_args(&self, engine: &str) -> Vec<OsString> {
        let mut a: Vec<OsString> = ["run", "--no-reboot", "--serial", "stdio", "--accel", engine]
            .iter()
            .map(OsString::from)
            .collect();
        let flag = match self.kind {
            ImageKind::Kernel => "--kernel",
            ImageKind::Firmware => "--firmware",
        };
        a.push(flag.into());
        a.push(self.image.clone().into());
        for p in &self.initrd {
            a.push("--initrd".into());
            a.push(p.clone().into());
        }
        let opts = [
            ("--append", &self.append),
            ("--mem", &self.mem),
            ("--flat-addr", &self.flat_addr),
            ("--entry", &self.entry),
        ];
        if self.smp != 1 {
            a.push("--smp".into());
            a.push(self.smp.to_string().into());
        }
        for (flag, v) in opts {
            if let Some(v) = v {
                a.push(flag.into());
                a.push(v.into());
            }
        }
        a
    }
}
