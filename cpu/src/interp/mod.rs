//! Instruction semantics, one file per family (in the style of Bochs's cpu/ folder). Each
//! family's `lookup` maps a decoded instruction to its handler; the decoder calls them once
//! per instruction, never at execution time.

use iced_x86::Instruction;

use crate::decode::Handler;
use crate::model::CpuModel;

pub mod arith;
pub mod atomic;
pub mod bcd;
pub mod bits;
pub mod bound;
pub mod control;
pub mod data;
pub mod flagctl;
pub mod logic;
pub mod paging;
pub mod segment;
pub mod shift;
pub mod string;
pub mod syscall;
pub mod system;

type Lookup = fn(&Instruction, &CpuModel) -> Option<Handler>;

const FAMILIES: &[Lookup] = &[
    data::lookup,
    arith::lookup,
    logic::lookup,
    control::lookup,
    shift::lookup,
    bits::lookup,
    string::lookup,
    atomic::lookup,
    bcd::lookup,
    flagctl::lookup,
    system::lookup,
    paging::lookup,
    segment::lookup,
    syscall::lookup,
    bound::lookup,
];

/// The handler for `i`, or `None` when no family implements it (the decoder then raises
/// #UD and counts it).
pub fn lookup(i: &Instruction, model: &CpuModel) -> Option<Handler> {
    FAMILIES.iter().find_map(|f| f(i, model))
}

/// Instructions after which decoding must stop because they may change how the following
/// bytes decode or execute (mode, paging, segment bases, interrupt flag…).
pub fn ends_block(i: &Instruction) -> bool {
    system::ends_block(i) || paging::ends_block(i) || flagctl::ends_block(i) || data::ends_block(i)
}
