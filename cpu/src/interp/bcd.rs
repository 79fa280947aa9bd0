//! (family not yet implemented)

use iced_x86::Instruction;

use crate::decode::Handler;
use crate::model::CpuModel;

pub fn lookup(_i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    None
}
