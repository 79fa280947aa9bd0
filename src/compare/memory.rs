//! Guest memory at exit: a hash, and where two memories first differ.

use twinvm_devices::GuestMemory;

const CHUNK: usize = 1 << 16;
const PAGE: usize = 4096;

/// (gpa, size) of every region, in address order.
fn layout(m: &GuestMemory) -> Vec<(u64, u64)> {
    let mut l: Vec<(u64, u64)> = m.regions().iter().map(|r| (r.gpa, r.size)).collect();
    l.sort_unstable();
    l
}

/// Calls `f(gpa, bytes)` over all of guest memory, a chunk at a time.
fn for_chunks(m: &GuestMemory, mut f: impl FnMut(u64, &[u8])) {
    let mut buf = vec![0u8; CHUNK];
    for (gpa, size) in layout(m) {
        let mut off = 0;
        while off < size {
            let n = (size - off).min(CHUNK as u64) as usize;
            // Regions come from the memory itself, so the read is in range.
            if m.read(gpa + off, &mut buf[..n]).is_ok() {
                f(gpa + off, &buf[..n]);
            }
            off += n as u64;
        }
    }
}

/// A 64-bit hash of all guest memory (FNV-1a over 8-byte words).
pub fn hash(m: &GuestMemory) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for_chunks(m, |_, bytes| {
        for w in bytes.chunks(8) {
            let mut v = [0u8; 8];
            v[..w.len()].copy_from_slice(w);
            h = (h ^ u64::from_le_bytes(v)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    });
    h
}

/// `None` when equal; otherwise the first differing address, both bytes there, and how
/// many 4 KiB pages differ.
pub fn first_difference(a: &GuestMemory, b: &GuestMemory) -> Option<String> {
    if layout(a) != layout(b) {
        return Some(format!(
            "memory layouts differ: {:x?} vs {:x?}",
            layout(a),
            layout(b)
        ));
    }
    let mut first: Option<(u64, u8, u8)> = None;
    let mut pages = 0u64;
    let mut other = vec![0u8; CHUNK];
    for_chunks(a, |gpa, x| {
        let y = &mut other[..x.len()];
        if b.read(gpa, y).is_err() || x == &y[..] {
            return;
        }
        for (p, (px, py)) in x.chunks(PAGE).zip(y.chunks(PAGE)).enumerate() {
            if px == py {
                continue;
            }
            pages += 1;
            if first.is_none() {
                let i = px.iter().zip(py).position(|(u, v)| u != v).unwrap_or(0);
                first = Some((gpa + (p * PAGE + i) as u64, px[i], py[i]));
            }
        }
    });
    first.map(|(gpa, x, y)| {
        format!("guest memory differs first at {gpa:#x} ({x:#04x} vs {y:#04x}); {pages} pages of 4 KiB differ")
    })
}
