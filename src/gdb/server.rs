//! The listening stub: accepts debuggers, pumps the gdbstub state machine, runs the guest
//! in slices while polling the connection (Ctrl-C), and survives anything a debugger does
//! — garbage, oversized packets, vanishing mid-packet — by dropping that connection and
//! listening again, with the guest left running (or held, if no debugger ever resumed
//! it under --gdb-wait).

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, MultiThreadStopReason};

use super::session::{Driven, GdbSession};
use super::target::DebugTarget;
use crate::engine::Outcome;
use crate::error::VmError;

/// Largest packet accepted; gdb learns it from qSupported and splits memory writes.
const PACKET_BUFFER: usize = 16 * 1024;
/// Instructions between polls of the debugger connection while the guest runs under it.
const DEBUG_SLICE: u64 = 100_000;
/// Instructions between polls for a new debugger while none is attached.
const FREE_SLICE: u64 = 200_000;

type Machine = GdbStubStateMachine<'static, GdbSession, TcpStream>;

/// Parses `--gdb`: `tcp:HOST:PORT`, `tcp::PORT` or `PORT` (host defaults to 127.0.0.1).
pub fn parse_addr(s: &str) -> Result<SocketAddr, VmError> {
    let bad = || {
        VmError::Input(format!(
            "--gdb '{s}': expected tcp:HOST:PORT, tcp::PORT or PORT"
        ))
    };
    let rest = s.strip_prefix("tcp:").unwrap_or(s);
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), p),
        None => ("", rest),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| VmError::Input(format!("--gdb '{s}': {e}")))?
        .next()
        .ok_or_else(bad)
}

pub struct GdbServer {
    listener: TcpListener,
    addr: SocketAddr,
    /// --gdb-wait: the guest does not run until a debugger resumes it.
    wait: bool,
    /// Resets and triple faults end the run (otherwise the machine is rebuilt and the
    /// debugger stays attached).
    no_reboot: bool,
    session: GdbSession,
    sm: Option<Machine>,
}

impl GdbServer {
    pub fn bind(addr: SocketAddr, wait: bool, no_reboot: bool) -> Result<Self, VmError> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| VmError::Input(format!("--gdb: cannot listen on {addr}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| VmError::Host(format!("gdb listener: {e}")))?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(GdbServer {
            listener,
            addr,
            wait,
            no_reboot,
            session: GdbSession::new(),
            sm: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn held(&self) -> bool {
        self.wait && !self.session.resumed_once
    }

    /// Runs the machine's vCPUs under the stub until the guest is done; gives them back
    /// (for the final report) with the outcome.
    pub fn run(
        &mut self,
        vcpus: Vec<Box<dyn DebugTarget>>,
    ) -> (Outcome, Vec<Box<dyn DebugTarget>>) {
        self.session.attach_vcpus(vcpus);
        let outcome = self.serve();
        (outcome, std::mem::take(&mut self.session.vcpus))
    }

    fn serve(&mut self) -> Outcome {
        loop {
            if let Some(conn) = self.try_accept() {
                if self.sm.is_some() {
                    log::warn!("gdb: a new debugger connected; dropping the previous one");
                    self.lost_debugger();
                }
                self.start_session(conn);
            }
            let Some(sm) = self.sm.take() else {
                if self.held() {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                if let Driven::Exited(o) = self.session.drive(FREE_SLICE) {
                    return o;
                }
                continue;
            };
            match self.pump(sm) {
                Ok(Some(o)) => return o,
                Ok(None) => {}
                Err(e) => {
                    log::warn!("gdb: debugger connection ended ({e}); listening again");
                    self.lost_debugger();
                }
            }
        }
    }

    fn try_accept(&mut self) -> Option<TcpStream> {
        match self.listener.accept() {
            Ok((conn, peer)) => {
                log::info!("gdb: debugger connected from {peer}");
                let _ = conn.set_nonblocking(false);
                Some(conn)
            }
            Err(_) => None,
        }
    }

    fn start_session(&mut self, conn: TcpStream) {
        let stub = match GdbStub::<GdbSession, TcpStream>::builder(conn)
            .packet_buffer_size(PACKET_BUFFER)
            .build()
        {
            Ok(s) => s,
            Err(e) => {
                log::warn!("gdb: cannot start a session: {e}");
                return;
            }
        };
        match stub.run_state_machine(&mut self.session) {
            Ok(sm) => self.sm = Some(sm),
            Err(e) => log::warn!("gdb: cannot start a session: {e}"),
        }
    }

    /// The debugger is gone (detach, error, disconnect): its breakpoints go with it and
    /// the guest runs on, unless --gdb-wait still holds it.
    fn lost_debugger(&mut self) {
        self.sm = None;
        self.session.clear_points();
    }

    /// One step of the protocol state machine.
    fn pump(&mut self, sm: Machine) -> Result<Option<Outcome>, String> {
        let s = &mut self.session;
        match sm {
            GdbStubStateMachine::Idle(mut inner) => {
                // The guest is stopped: wait for the debugger, a little at a time so that
                // a new connection can take over from a silent one.
                match inner.borrow_conn().peek().map_err(|e| e.to_string())? {
                    Some(_) => {
                        let b = inner.borrow_conn().read().map_err(|e| e.to_string())?;
                        self.sm = Some(inner.incoming_data(s, b).map_err(|e| e.to_string())?);
                    }
                    None => {
                        std::thread::sleep(Duration::from_millis(1));
                        self.sm = Some(GdbStubStateMachine::Idle(inner));
                    }
                }
                Ok(None)
            }
            GdbStubStateMachine::Running(mut inner) => {
                if inner
                    .borrow_conn()
                    .peek()
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    let b = inner.borrow_conn().read().map_err(|e| e.to_string())?;
                    self.sm = Some(inner.incoming_data(s, b).map_err(|e| e.to_string())?);
                    return Ok(None);
                }
                match s.drive(DEBUG_SLICE) {
                    Driven::Running => self.sm = Some(GdbStubStateMachine::Running(inner)),
                    Driven::Stopped(r) => {
                        self.sm = Some(inner.report_stop(s, r).map_err(|e| e.to_string())?)
                    }
                    Driven::Exited(o) => {
                        if !self.no_reboot
                            && matches!(o, Outcome::Reset | Outcome::TripleFault { .. })
                        {
                            // The machine is rebuilt; the debugger stays attached.
                            self.sm = Some(GdbStubStateMachine::Running(inner));
                            return Ok(Some(o));
                        }
                        // Tell gdb before twinvm ends; a debugger that is already gone
                        // does not matter any more.
                        let _ = inner.report_stop(s, exit_reason(&o));
                        return Ok(Some(o));
                    }
                }
                Ok(None)
            }
            GdbStubStateMachine::CtrlCInterrupt(inner) => {
                let r = s.interrupted();
                self.sm = Some(
                    inner
                        .interrupt_handled(s, Some(r))
                        .map_err(|e| e.to_string())?,
                );
                Ok(None)
            }
            GdbStubStateMachine::Disconnected(inner) => match inner.get_reason() {
                DisconnectReason::Kill => Ok(Some(Outcome::Killed)),
                _ => {
                    log::info!("gdb: debugger detached");
                    self.lost_debugger();
                    Ok(None)
                }
            },
        }
    }
}

/// The W/X packet for a finished guest.
fn exit_reason(o: &Outcome) -> MultiThreadStopReason<u64> {
    match o {
        Outcome::TripleFault { .. } => MultiThreadStopReason::Terminated(Signal::SIGSEGV),
        Outcome::Unsupported { .. } => MultiThreadStopReason::Terminated(Signal::SIGILL),
        _ => MultiThreadStopReason::Exited(crate::run::outcome_status(o).0 as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr("tcp:127.0.0.1:1234").unwrap(),
            "127.0.0.1:1234".parse().unwrap()
        );
        assert_eq!(
            parse_addr("tcp::1234").unwrap(),
            "127.0.0.1:1234".parse().unwrap()
        );
        assert_eq!(
            parse_addr("1234").unwrap(),
            "127.0.0.1:1234".parse().unwrap()
        );
        assert_eq!(
            parse_addr("tcp:0.0.0.0:99").unwrap(),
            "0.0.0.0:99".parse().unwrap()
        );
        assert!(parse_addr("tcp:host").is_err());
        assert!(parse_addr("tcp:1.2.3.4:99999").is_err());
    }
}
