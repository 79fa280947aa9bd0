//! twinvm-devices: guest memory, the PIO/MMIO buses, interrupt lines, virtual time and the
//! PC device models. Device models know nothing about engines: every engine drives them
//! through the same [`bus::Bus`].

pub mod bus;
pub mod clock;
pub mod control;
pub mod debug_exit;
pub mod irq;
pub mod memory;

pub use bus::{Bus, Device, SharedDevice};
pub use control::{StopRequest, VmControl};
pub use irq::{InterruptController, IrqLine, IrqSink};
pub use memory::GuestMemory;
