//! Port-I/O and MMIO buses: address ranges mapped to [`Device`] models.
//!
//! Every engine calls the same bus, so a device behaves the same whatever runs the guest.

use std::fmt;
use std::sync::{Arc, Mutex};

/// A device model on a bus. `offset` is relative to the start of the range it was
/// registered at; `data.len()` is the access width (1, 2, 4 or 8 bytes).
pub trait Device: Send {
    /// A short name for error messages and statistics.
    fn name(&self) -> &'static str;
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

pub type SharedDevice = Arc<Mutex<dyn Device>>;

#[derive(Debug, PartialEq, Eq)]
pub struct BusConflict {
    pub name: &'static str,
    pub start: u64,
    pub len: u64,
    pub existing: &'static str,
}

impl fmt::Display for BusConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "device {} at {:#x}+{:#x} overlaps device {}",
            self.name, self.start, self.len, self.existing
        )
    }
}

impl std::error::Error for BusConflict {}

struct Mapping {
    start: u64,
    len: u64,
    name: &'static str,
    device: SharedDevice,
}

/// A set of non-overlapping ranges, looked up by binary search.
#[derive(Default)]
pub struct Bus {
    mappings: Vec<Mapping>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(
        &mut self,
        start: u64,
        len: u64,
        device: SharedDevice,
    ) -> Result<(), BusConflict> {
        let name = device.lock().map(|d| d.name()).unwrap_or("poisoned");
        if let Some(m) = self
            .mappings
            .iter()
            .find(|m| start < m.start + m.len && m.start < start + len)
        {
            return Err(BusConflict {
                name,
                start,
                len,
                existing: m.name,
            });
        }
        let pos = self.mappings.partition_point(|m| m.start < start);
        self.mappings.insert(
            pos,
            Mapping {
                start,
                len,
                name,
                device,
            },
        );
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<&Mapping> {
        let pos = self.mappings.partition_point(|m| m.start <= addr);
        let m = self.mappings.get(pos.checked_sub(1)?)?;
        (addr < m.start + m.len).then_some(m)
    }

    /// Whether any device claims `addr`.
    pub fn claims(&self, addr: u64) -> bool {
        self.find(addr).is_some()
    }

    /// Reads from the device at `addr`; unclaimed addresses read as all ones, as on a PC.
    /// Returns the device's name, or None when nothing claimed the access.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> Option<&'static str> {
        match self.find(addr) {
            Some(m) => {
                lock(&m.device).read(addr - m.start, data);
                Some(m.name)
            }
            None => {
                data.fill(0xff);
                None
            }
        }
    }

    /// Writes to the device at `addr`; unclaimed writes are dropped.
    pub fn write(&self, addr: u64, data: &[u8]) -> Option<&'static str> {
        let m = self.find(addr)?;
        lock(&m.device).write(addr - m.start, data);
        Some(m.name)
    }
}

/// Locks a device, recovering from a poisoned lock: device state is plain data, and one
/// panicked access must not take the whole machine down with it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(u8);
    impl Device for Scratch {
        fn name(&self) -> &'static str {
            "scratch"
        }
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0.wrapping_add(offset as u8));
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn dispatch_and_unclaimed() {
        let mut bus = Bus::new();
        bus.insert(0x10, 4, Arc::new(Mutex::new(Scratch(5))))
            .unwrap();
        let mut b = [0u8; 1];
        assert_eq!(bus.read(0x12, &mut b), Some("scratch"));
        assert_eq!(b[0], 7);
        assert_eq!(bus.read(0x14, &mut b), None);
        assert_eq!(b[0], 0xff);
        bus.write(0x10, &[9]);
        bus.read(0x10, &mut b);
        assert_eq!(b[0], 9);
    }

    #[test]
    fn overlap_is_refused() {
        let mut bus = Bus::new();
        bus.insert(0x10, 4, Arc::new(Mutex::new(Scratch(0))))
            .unwrap();
        let err = bus
            .insert(0x13, 2, Arc::new(Mutex::new(Scratch(0))))
            .unwrap_err();
        assert_eq!(err.existing, "scratch");
    }
}
