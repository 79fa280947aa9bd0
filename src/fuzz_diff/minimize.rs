//! Shrinking a divergent stream: the shortest diverging prefix (bisected), then every
//! instruction that can go is replaced by NOPs (which keeps branch offsets valid), then the
//! NOPs are squeezed out if the divergence survives that too.

use super::stream::decode;

const NOP: u8 = 0x90;
const UD2: [u8; 2] = [0x0f, 0x0b];

/// (offset, length) of each instruction before the final UD2.
fn spans(code: &[u8]) -> Vec<(usize, usize)> {
    let body = code.strip_suffix(&UD2).unwrap_or(code);
    let base = twinvm_cpu::oracle::Layout::get().code;
    decode(body)
        .iter()
        .map(|i| ((i.ip() - base) as usize, i.len()))
        .filter(|&(o, n)| o + n <= body.len())
        .collect()
}

fn prefix(code: &[u8], spans: &[(usize, usize)], k: usize) -> Vec<u8> {
    let end = spans.get(k).map_or(code.len().saturating_sub(2), |s| s.0);
    let mut v = code[..end.min(code.len())].to_vec();
    v.extend_from_slice(&UD2);
    v
}

/// Returns the smallest code found for which `diverges` still holds (`code` itself when
/// nothing smaller does). `diverges` runs both engines.
pub fn minimize(code: &[u8], diverges: &mut dyn FnMut(&[u8]) -> bool) -> Vec<u8> {
    let mut best = code.to_vec();
    // 1. Bisect the prefix length (divergence is usually monotone in it; the result is
    //    checked anyway).
    let sp = spans(&best);
    let (mut lo, mut hi) = (0usize, sp.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if diverges(&prefix(&best, &sp, mid + 1)) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let p = prefix(&best, &sp, lo + 1);
    if p.len() < best.len() && diverges(&p) {
        best = p;
    }
    // 2. NOP out instructions, last first.
    let sp = spans(&best);
    for &(off, len) in sp.iter().rev() {
        if best[off..off + len].iter().all(|&b| b == NOP) {
            continue;
        }
        let mut t = best.clone();
        t[off..off + len].fill(NOP);
        if diverges(&t) {
            best = t;
        }
    }
    // 3. Squeeze the NOPs out (branch offsets may change: kept only if it still diverges).
    let body = best.strip_suffix(&UD2).unwrap_or(&best);
    if body.contains(&NOP) {
        let mut t: Vec<u8> = Vec::new();
        for &(off, len) in &spans(&best) {
            let ins = &best[off..off + len];
            if !ins.iter().all(|&b| b == NOP) {
                t.extend_from_slice(ins);
            }
        }
        t.extend_from_slice(&UD2);
        if t.len() < best.len() && diverges(&t) {
            best = t;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_instruction_that_matters() {
        // inc eax; inc ecx; inc edx; inc ebx; ud2 — "diverges" while `inc edx` (ff c2) is there.
        let code = [0xff, 0xc0, 0xff, 0xc1, 0xff, 0xc2, 0xff, 0xc3, 0x0f, 0x0b];
        let mut runs = 0;
        let mut d = |c: &[u8]| {
            runs += 1;
            c.windows(2).any(|w| w == [0xff, 0xc2])
        };
        let m = minimize(&code, &mut d);
        assert_eq!(m, vec![0xff, 0xc2, 0x0f, 0x0b]);
        assert!(runs < 20);
    }

    #[test]
    fn a_stream_that_needs_everything_stays_whole() {
        let code = [0xff, 0xc0, 0xff, 0xc1, 0x0f, 0x0b];
        let m = minimize(&code, &mut |c: &[u8]| c == code);
        assert_eq!(m, code.to_vec());
    }
}
