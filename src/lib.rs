//! twinvm: the machine — CLI, VM assembly, engine glue, boot loaders.

pub mod accel;
pub mod bench;
pub mod cli;
pub mod console;
pub mod engine;
pub mod error;
pub mod firmware;
pub mod fuzz_diff;
pub mod kvm;
pub mod loader;
pub mod logger;
pub mod platform;
pub mod run;
pub mod vm;
