//! twinvm: the machine — CLI, VM assembly, engine glue, boot loaders.

pub mod accel;
pub mod acpi;
pub mod apic_port;
pub mod bench;
pub mod cli;
pub mod compare;
pub mod conform;
pub mod console;
pub mod engine;
pub mod error;
pub mod firmware;
pub mod fuzz_diff;
pub mod gdb;
pub mod kvm;
pub mod loader;
pub mod logger;
pub mod platform;
pub mod qemu;
pub mod run;
pub mod vm;
