//! The host terminal as the guest's serial console: stdin to COM1 in raw mode when it is a
//! terminal, with QEMU's Ctrl-A escapes (X quits, H helps, Ctrl-A Ctrl-A sends Ctrl-A).

use std::io::Read;
use std::sync::{Arc, Mutex};

use twinvm_devices::{StopRequest, VmControl};

/// Bytes typed for the guest, drained by the engine into the UART.
#[derive(Default)]
pub struct InputQueue(Mutex<Vec<u8>>);

impl InputQueue {
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
    fn push(&self, b: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
    }
}

/// Restores the terminal's mode when dropped.
pub struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    /// Puts stdin in raw mode if it is a terminal.
    pub fn enable() -> RawMode {
        // SAFETY: isatty and tcgetattr only read the descriptor's state into `t`, which is
        // a plain C struct we own.
        unsafe {
            if libc::isatty(0) != 1 {
                return RawMode { saved: None };
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return RawMode { saved: None };
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            // Keep output post-processing so the guest's "\n" still returns the carriage.
            t.c_oflag |= libc::OPOST;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            RawMode { saved: Some(saved) }
        }
    }

    pub fn restore(&mut self) {
        if let Some(t) = self.saved.take() {
            // SAFETY: restores the attributes read by `enable` on the same descriptor.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.restore();
    }
}

const HELP: &str =
    "\r\nC-a h    print this help\r\nC-a x    exit twinvm\r\nC-a C-a  send C-a to the guest\r\n";

/// Starts the thread that reads stdin.
pub fn spawn_reader(queue: Arc<InputQueue>, control: Arc<VmControl>) {
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 256];
            let mut escape = false;
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    if escape {
                        escape = false;
                        match b {
                            b'x' | b'X' => control.request(StopRequest::UserQuit),
                            b'h' | b'H' => eprint!("{HELP}"),
                            0x01 => out.push(0x01),
                            _ => {}
                        }
                    } else if b == 0x01 {
                        escape = true;
                    } else {
                        out.push(b);
                    }
                }
                queue.push(&out);
            }
        });
}
