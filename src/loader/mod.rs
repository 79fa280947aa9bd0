//! Boot paths. Every loader produces one initial machine state — memory contents plus a
//! `CpuState` — that any engine starts from.

pub mod elf;
pub mod multiboot;

use std::fmt;

use twinvm_cpu::CpuState;
use twinvm_devices::GuestMemory;

#[derive(Debug)]
pub enum LoadError {
    /// The image is not in any format this loader understands.
    NotAnImage(String),
    /// The image is in a known format but malformed.
    Malformed(String),
    /// The image (or a module) does not fit in guest RAM.
    TooLarge(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotAnImage(m) | LoadError::Malformed(m) | LoadError::TooLarge(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// A module (multiboot) or initrd to hand to the guest.
pub struct Module {
    pub name: String,
    pub data: Vec<u8>,
}

/// What the guest boots from.
pub enum BootImage<'a> {
    /// A multiboot v1 kernel (ELF, or flat with the address fields of its header).
    Kernel {
        image: &'a [u8],
        cmdline: &'a str,
        modules: &'a [Module],
    },
    /// A raw binary loaded at `addr` and entered at `entry` in 32-bit flat protected mode.
    Flat {
        image: &'a [u8],
        addr: u64,
        entry: u64,
    },
    /// Nothing to load: firmware at the reset vector runs.
    ResetVector,
}

/// Writes `data` at `addr` after checking that it lies in RAM.
pub fn write_ram(mem: &GuestMemory, addr: u64, data: &[u8], what: &str) -> Result<(), LoadError> {
    if !mem.is_ram(addr, data.len() as u64) {
        return Err(LoadError::TooLarge(format!(
            "{what} ({} bytes at {addr:#x}) does not fit in guest RAM ({} MiB); try a larger --mem",
            data.len(),
            mem.ram_size() >> 20
        )));
    }
    mem.write(addr, data)
        .map_err(|e| LoadError::TooLarge(format!("{what}: {e}")))
}

/// Loads the image and returns the vCPU's initial state.
pub fn load(mem: &GuestMemory, boot: &BootImage) -> Result<CpuState, LoadError> {
    match boot {
        BootImage::Kernel {
            image,
            cmdline,
            modules,
        } => multiboot::load(mem, image, cmdline, modules),
        BootImage::Flat { image, addr, entry } => {
            write_ram(mem, *addr, image, "flat image")?;
            let mut s = CpuState::protected_flat();
            s.rip = *entry;
            Ok(s)
        }
        BootImage::ResetVector => Ok(CpuState::reset()),
    }
}
