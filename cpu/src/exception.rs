//! Exceptions raised by instructions, and the other reasons an instruction stops the
//! instruction stream.

use std::fmt;

pub const DE: u8 = 0;
pub const DB: u8 = 1;
pub const NMI: u8 = 2;
pub const BP: u8 = 3;
pub const OF: u8 = 4;
pub const BR: u8 = 5;
pub const UD: u8 = 6;
pub const NM: u8 = 7;
pub const DF: u8 = 8;
pub const TS: u8 = 10;
pub const NP: u8 = 11;
pub const SS: u8 = 12;
pub const GP: u8 = 13;
pub const PF: u8 = 14;
pub const MF: u8 = 16;
pub const AC: u8 = 17;
pub const MC: u8 = 18;
pub const XM: u8 = 19;

/// An architectural exception, with its error code when the vector has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    pub vector: u8,
    pub error_code: Option<u32>,
}

impl Exception {
    pub const fn new(vector: u8) -> Self {
        Exception {
            vector,
            error_code: None,
        }
    }
    pub const fn with_code(vector: u8, code: u32) -> Self {
        Exception {
            vector,
            error_code: Some(code),
        }
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 22] = [
            "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#09", "#TS", "#NP",
            "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
        ];
        match NAMES.get(self.vector as usize) {
            Some(n) => write!(f, "{n}")?,
            None => write!(f, "vector {}", self.vector)?,
        }
        if let Some(c) = self.error_code {
            write!(f, "({c:#x})")?;
        }
        Ok(())
    }
}

/// Why an instruction did not complete normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// A fault or trap to deliver through the IDT/IVT.
    Exception(Exception),
    /// HLT: the vCPU waits for an interrupt. RIP already points past the HLT.
    Halt,
    /// A device asked the machine to stop (debug exit, power-off, reset); the instruction
    /// completed.
    Stop,
    /// The guest did something twinvm does not model; the machine stops with this message.
    Unsupported(&'static str),
}

impl From<Exception> for Trap {
    fn from(e: Exception) -> Self {
        Trap::Exception(e)
    }
}

pub type Flow = Result<(), Trap>;

#[inline]
pub fn ud() -> Trap {
    Trap::Exception(Exception::new(UD))
}

#[inline]
pub fn gp0() -> Trap {
    Trap::Exception(Exception::with_code(GP, 0))
}

#[inline]
pub fn gp(code: u32) -> Trap {
    Trap::Exception(Exception::with_code(GP, code))
}

/// Whether a vector pushes an error code when raised as an exception.
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, DF | TS | NP | SS | GP | PF | AC | 21)
}
