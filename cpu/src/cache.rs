//! Decoded blocks, cached by guest-physical address plus the mode bits that change
//! decoding, and invalidated when their bytes are written (self-modifying code).

use std::collections::HashMap;

use crate::cpu::Cpu;
use crate::decode::{decode_one, Insn};
use crate::exception::Trap;
use crate::mmu::Access;

/// Longest block, in instructions.
const MAX_BLOCK: usize = 64;
const JUMP_CACHE: usize = 4096;

pub struct Block {
    pub insns: Vec<Insn>,
    /// Guest-physical byte ranges the block was decoded from (one or two pages).
    ranges: Vec<(u64, u64)>,
    /// Linear RIP the block was decoded at, and the physical page of its last byte, to
    /// revalidate blocks whose code crosses into a second page.
    key: u64,
}

#[derive(Clone, Copy, Default)]
struct JumpEntry {
    rip: u64,
    mode: u64,
    block: u32,
}

#[derive(Default)]
pub struct BlockCache {
    blocks: Vec<Option<Block>>,
    free: Vec<u32>,
    by_key: HashMap<u64, u32>,
    /// Physical page → blocks with bytes on it.
    by_page: HashMap<u64, Vec<u32>>,
    /// Linear RIP → block, valid while the TLB is: flushed with it.
    jump: Vec<JumpEntry>,
    jump_tlb_flushes: u64,
}

/// Mode bits that change how bytes decode: the code size.
fn mode_key(cpu: &Cpu) -> u64 {
    cpu.s.code_bits() as u64 >> 4
}

impl BlockCache {
    pub fn new() -> Self {
        BlockCache {
            jump: vec![JumpEntry::default(); JUMP_CACHE],
            ..Default::default()
        }
    }

    pub fn block(&self, id: u32) -> &Block {
        match &self.blocks[id as usize] {
            Some(b) => b,
            None => unreachable!("jump cache and key map hold only live blocks"),
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Drops every block (e.g. on reset or state load).
    pub fn clear(&mut self, cpu: &mut Cpu) {
        *self = BlockCache::new();
        cpu.code_pages.clear();
    }

    /// Applies writes that hit pages with decoded code.
    pub fn process_smc(&mut self, cpu: &mut Cpu) {
        if cpu.smc_pages.is_empty() {
            return;
        }
        let writes = std::mem::take(&mut cpu.smc_pages);
        for (page, start, end) in writes {
            let Some(ids) = self.by_page.get(&page) else {
                continue;
            };
            let hit: Vec<u32> = ids
                .iter()
                .copied()
                .filter(|&id| {
                    self.blocks[id as usize]
                        .as_ref()
                        .is_some_and(|b| b.ranges.iter().any(|&(s, e)| start < e && s < end))
                })
                .collect();
            for id in hit {
                self.remove(cpu, id);
                cpu.stats.smc_invalidations += 1;
            }
        }
    }

    fn remove(&mut self, cpu: &mut Cpu, id: u32) {
        let Some(b) = self.blocks[id as usize].take() else {
            return;
        };
        self.by_key.remove(&b.key);
        for &(s, _) in &b.ranges {
            let page = s & !0xfff;
            if let Some(v) = self.by_page.get_mut(&page) {
                v.retain(|&x| x != id);
                if v.is_empty() {
                    self.by_page.remove(&page);
                    cpu.code_pages.remove(&page);
                }
            }
        }
        self.free.push(id);
        for j in self.jump.iter_mut() {
            if j.block == id {
                j.mode = u64::MAX;
            }
        }
    }

    /// The block starting at the CPU's RIP, decoding it on a miss.
    #[inline]
    pub fn lookup(&mut self, cpu: &mut Cpu) -> Result<u32, Trap> {
        if cpu.stats.tlb_flushes != self.jump_tlb_flushes {
            self.jump_tlb_flushes = cpu.stats.tlb_flushes;
            for j in self.jump.iter_mut() {
                j.mode = u64::MAX;
            }
        }
        let rip = cpu.s.rip;
        // CPL is part of the key because a hit skips the fetch permission check.
        let mode =
            mode_key(cpu) | ((cpu.s.cpl() as u64) << 4) | (cpu.s.seg[crate::state::CS].base << 8);
        let slot = (rip as usize ^ (rip >> 12) as usize) & (JUMP_CACHE - 1);
        let j = self.jump[slot];
        if j.rip == rip && j.mode == mode {
            return Ok(j.block);
        }
        let id = self.lookup_slow(cpu)?;
        self.jump[slot] = JumpEntry {
            rip,
            mode,
            block: id,
        };
        Ok(id)
    }

    fn lookup_slow(&mut self, cpu: &mut Cpu) -> Result<u32, Trap> {
        if !cpu.mode64 && cpu.s.rip > cpu.s.seg[crate::state::CS].limit as u64 {
            return Err(crate::exception::gp0());
        }
        let lin = cpu.seg_linear(crate::state::CS, cpu.s.rip)?;
        let phys = cpu.translate(lin, Access::Exec)?;
        let key = (phys << 4) | mode_key(cpu);
        if let Some(&id) = self.by_key.get(&key) {
            if self.still_valid(cpu, id, lin)? {
                return Ok(id);
            }
            self.remove(cpu, id);
        }
        let block = self.decode_block(cpu, lin, key)?;
        cpu.stats.blocks_decoded += 1;
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.blocks.push(None);
                (self.blocks.len() - 1) as u32
            }
        };
        for &(s, _) in &block.ranges {
            let page = s & !0xfff;
            self.by_page.entry(page).or_default().push(id);
            if cpu.code_pages.insert(page) {
                cpu.tlb.flush_phys_writes(page);
            }
        }
        self.by_key.insert(key, id);
        self.blocks[id as usize] = Some(block);
        Ok(id)
    }

    /// A block whose bytes continue on a second page is valid only while that page maps to
    /// the same physical page.
    fn still_valid(&self, cpu: &mut Cpu, id: u32, lin: u64) -> Result<bool, Trap> {
        let b = self.block(id);
        if b.ranges.len() < 2 {
            return Ok(true);
        }
        let second = (lin & !0xfff).wrapping_add(0x1000);
        let p = cpu.translate(second, Access::Exec)?;
        Ok(p & !0xfff == b.ranges[1].0 & !0xfff)
    }

    fn decode_block(&self, cpu: &mut Cpu, lin: u64, key: u64) -> Result<Block, Trap> {
        let bits = cpu.s.code_bits();
        let phys0 = cpu.translate(lin, Access::Exec)?;
        let mut insns = Vec::new();
        let mut rip = cpu.s.rip;
        let mut lin_at = lin;
        let mut end_phys = phys0;
        let mut crossed: Option<u64> = None;
        let model = cpu.env.model.clone();
        // Fetches past the first instruction are speculative: a fault there must not leave
        // a CR2 the guest never saw a #PF for.
        let cr2 = cpu.s.cr2;
        loop {
            let mut buf = [0u8; 15];
            // Fetch what is there; a fault past the first instruction ends the block early
            // instead of faulting (it faults when execution gets there).
            let in_page = (4096 - (lin_at & 0xfff)) as usize;
            let want = if crossed.is_some() || insns.is_empty() {
                15
            } else {
                in_page.min(15)
            };
            match cpu.fetch(lin_at, &mut buf[..want]) {
                Ok(()) => {}
                Err(e) if insns.is_empty() => {
                    // Only the bytes before the fault may be needed; retry short.
                    let ok = self.fetch_partial(cpu, lin_at, &mut buf, in_page);
                    if ok == 0 {
                        return Err(e);
                    }
                    cpu.s.cr2 = cr2;
                }
                Err(_) => {
                    cpu.s.cr2 = cr2;
                    break;
                }
            }
            let insn = decode_one(&buf[..want.max(1)], rip, bits, &model);
            if want < 15 && insn.raw.code() == iced_x86::Code::INVALID {
                // Cut short by the page end: it starts a block of its own, which fetches
                // across the boundary.
                break;
            }
            let len = insn.len as u64;
            // An instruction reaching past the CS limit faults (#GP(0)) when it is reached.
            if !cpu.mode64 && rip + len - 1 > cpu.s.seg[crate::state::CS].limit as u64 {
                if insns.is_empty() {
                    return Err(crate::exception::gp0());
                }
                break;
            }
            if (lin_at & 0xfff) + len > 4096 {
                if !insns.is_empty() && crossed.is_none() {
                    // Keep page-crossing instructions at the start of their own block.
                    break;
                }
                let second = cpu.translate((lin_at & !0xfff).wrapping_add(0x1000), Access::Exec)?;
                crossed = Some(second & !0xfff);
                end_phys = second + ((lin_at + len) & 0xfff);
            } else {
                end_phys = phys0 + (lin_at - lin) + len;
            }
            let ends = insn.ends_block;
            insns.push(insn);
            rip = rip.wrapping_add(len);
            lin_at = lin_at.wrapping_add(len);
            if ends || insns.len() >= MAX_BLOCK || crossed.is_some() || lin_at & 0xfff == 0 {
                break;
            }
        }
        let ranges = match crossed {
            None => vec![(phys0, end_phys)],
            Some(p) => vec![(phys0, (phys0 & !0xfff) + 0x1000), (p, end_phys.max(p + 1))],
        };
        Ok(Block { insns, ranges, key })
    }

    /// Fetches as many bytes as translate, returning how many.
    fn fetch_partial(&self, cpu: &mut Cpu, lin: u64, buf: &mut [u8; 15], in_page: usize) -> usize {
        let n = in_page.min(15);
        match cpu.fetch(lin, &mut buf[..n]) {
            Ok(()) => n,
            Err(_) => 0,
        }
    }
}
