//! Running `twinvm run` children: own process group, captured output, a hard time limit.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Output kept per stream; a guest that floods its serial port is cut here (and drained).
const OUTPUT_CAP: usize = 8 << 20;

/// How a child ended.
#[derive(Clone, Debug)]
pub struct ChildResult {
    /// The exit status, if it exited.
    pub status: Option<i32>,
    /// The signal that ended it, if one did (and it was not our time-out kill).
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 16 << 10];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return kept,
                Ok(n) => {
                    let room = OUTPUT_CAP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    })
}

/// Runs `exe ARGS…` with stdin closed, in a process group of its own, killing the whole
/// group when `limit` passes. The child also dies with the thread that started it (which
/// waits for it here), so an interrupted runner leaves nothing behind either.
pub fn run_child(exe: &Path, args: &[OsString], limit: Duration) -> std::io::Result<ChildResult> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl and
    // getppid, which are async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let out = drain(child.stdout.take().expect("stdout is piped"));
    let err = drain(child.stderr.take().expect("stderr is piped"));
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() >= limit {
            timed_out = true;
            // The child is not reaped yet, so its pid still names its process group.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    Ok(ChildResult {
        status: status.code(),
        signal: if timed_out { None } else { status.signal() },
        timed_out,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed,
    })
}

/// Runs `jobs` on `workers` threads; results come back in the jobs' order.
pub fn run_parallel<J: Sync, R: Send>(
    jobs: &[J],
    workers: usize,
    f: impl Fn(&J) -> R + Sync,
) -> Vec<R> {
    let next = Mutex::new(0usize);
    let results: Vec<Mutex<Option<R>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(job) = jobs.get(i) else { return };
                let r = f(job);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every job ran")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_kills_the_whole_group() {
        // A shell that starts a grandchild and waits: both must be gone after the kill.
        let args: Vec<OsString> = vec!["-c".into(), "sleep 30 & echo $!; sleep 30".into()];
        let r = run_child(Path::new("/bin/sh"), &args, Duration::from_millis(300)).expect("spawn");
        assert!(r.timed_out);
        assert!(r.elapsed < Duration::from_secs(5));
        let grandchild: i32 = String::from_utf8_lossy(&r.stdout)
            .trim()
            .parse()
            .expect("pid");
        // SIGKILL is delivered asynchronously: give the kernel a moment to finish it (a
        // zombie reparented to init counts as gone).
        let gone = || {
            let stat =
                std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            stat.is_empty() || stat.contains(") Z ")
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(gone(), "grandchild {grandchild} survived the time-out");
    }

    #[test]
    fn exit_status_and_output() {
        let args: Vec<OsString> = vec!["-c".into(), "echo out; echo err >&2; exit 3".into()];
        let r = run_child(Path::new("/bin/sh"), &args, Duration::from_secs(10)).expect("spawn");
        assert_eq!(r.status, Some(3));
        assert!(!r.timed_out);
        assert_eq!(r.stdout, b"out\n");
        assert_eq!(r.stderr, b"err\n");
    }

    #[test]
    fn parallel_keeps_order() {
        let jobs: Vec<u32> = (0..50).collect();
        let out = run_parallel(&jobs, 4, |j| j * 2);
        assert_eq!(out, (0..50).map(|j| j * 2).collect::<Vec<_>>());
    }
}
