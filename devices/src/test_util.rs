//! Helpers shared by the device models' unit tests.

use crate::bus::Device;

/// One pseudo-random guest access.
pub struct Step {
    /// The raw pseudo-random word, for tests that derive more choices from it.
    pub x: u64,
    /// Virtual time in ns; moves on by up to 2 ms each step.
    pub t: u64,
    pub offset: u64,
    /// 1, 2, 4 or 8 bytes.
    pub width: usize,
    pub write: bool,
    pub bytes: [u8; 8],
}

impl Step {
    /// Performs the access on `dev`.
    pub fn apply(&self, dev: &mut dyn Device) {
        if self.write {
            dev.write(self.offset, &self.bytes[..self.width]);
        } else {
            let mut b = [0u8; 8];
            dev.read(self.offset, &mut b[..self.width]);
        }
    }
}

/// Calls `f` with 50,000 pseudo-random accesses at offsets below `span` (widths 1/2/4/8,
/// reads and writes) while time moves on. The sequence is the same every run, so a failure
/// reproduces.
pub fn random_accesses(span: u64, mut f: impl FnMut(&Step)) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut t = 0u64;
    for _ in 0..50_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += (x >> 40) % 2_000_000;
        f(&Step {
            x,
            t,
            offset: (x >> 8) % span,
            width: [1, 2, 4, 8][(x & 3) as usize],
            write: x & 0x10 != 0,
            bytes: (x >> 20).to_le_bytes(),
        });
    }
}
