//! Assembling the virtual machine: guest memory, buses, the PC devices, the boot image.
//! The result is engine-neutral; an engine takes the initial `CpuState` and runs it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use twinvm_cpu::{CpuModel, CpuState};
use twinvm_devices::bus::SharedDevice;
use twinvm_devices::clock::{Clock, HostClock, IcountClock, Timed};
use twinvm_devices::debug_exit::{DebugExit, DEBUG_EXIT_PORT};
use twinvm_devices::fw_cfg::E820Entry;
use twinvm_devices::gsi::GsiRouter;
use twinvm_devices::i8042::{I8042, I8042_COMMAND_PORT, I8042_DATA_PORT};
use twinvm_devices::pic::{
    IsaInterrupts, PicPortRange, PicPorts, ELCR_BASE, PIC_MASTER_BASE, PIC_PORT_LEN, PIC_SLAVE_BASE,
};
use twinvm_devices::pit::{Pit, Port61, PIT_BASE, PIT_IRQ, PIT_PORT_LEN, PORT61};
use twinvm_devices::rtc::{Rtc, RTC_BASE, RTC_IRQ, RTC_PORT_LEN};
use twinvm_devices::uart::{Uart, COM1_BASE, COM1_IRQ, UART_PORT_LEN};
use twinvm_devices::{Bus, GuestMemory, IrqLine, VmControl};

use crate::error::VmError;
use crate::loader::{self, BootImage, Module};

/// Where COM1's output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialOut {
    Stdio,
    File(std::path::PathBuf),
    None,
}

/// Everything needed to build (and rebuild, on reset) the machine.
pub struct MachineConfig {
    pub mem_size: u64,
    pub serial: SerialOut,
    pub kernel: Option<Vec<u8>>,
    pub cmdline: String,
    pub modules: Vec<Module>,
    pub firmware: Option<Vec<u8>>,
    /// Load the kernel as a raw binary at this address (entered at `flat_entry`).
    pub flat_addr: Option<u64>,
    pub flat_entry: Option<u64>,
    pub model: CpuModel,
    /// `--icount SHIFT`: time advances 2^SHIFT ns per instruction.
    pub icount: Option<u32>,
    /// vCPUs (`--smp`): vCPU 0 boots, the others wait for INIT/SIPI.
    pub cpus: usize,
}

/// What the RTC shows at power-on under `--icount` (2000-01-01 00:00:00 UTC), so that
/// nothing in a run depends on the host.
const ICOUNT_EPOCH_UNIX_NS: i128 = 946_684_800 * 1_000_000_000;

pub struct Machine {
    pub mem: Arc<GuestMemory>,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub control: Arc<VmControl>,
    pub clock: Arc<dyn Clock>,
    pub isa: Arc<IsaInterrupts>,
    pub uart: Arc<Mutex<Uart>>,
    pub timed: Vec<Arc<Mutex<dyn Timed>>>,
    pub boot_state: CpuState,
    pub model: Arc<CpuModel>,
    /// The instruction-driven clock and its shift, under `--icount`.
    pub icount: Option<(Arc<IcountClock>, u32)>,
    /// LAPICs (one per vCPU) and the IOAPIC.
    pub apics: crate::platform::Apics,
    /// Where the ACPI RSDP is, if the tables were built.
    pub rsdp: Option<u64>,
}

fn shared<D: twinvm_devices::Device + 'static>(d: D) -> Arc<Mutex<D>> {
    Arc::new(Mutex::new(d))
}

fn serial_sink(target: &SerialOut) -> Result<Box<dyn Write + Send>, VmError> {
    Ok(match target {
        SerialOut::Stdio => Box::new(std::io::stdout()),
        SerialOut::None => Box::new(std::io::sink()),
        SerialOut::File(p) => Box::new(std::fs::File::create(p).map_err(|e| {
            VmError::Input(format!(
                "cannot create serial output file {}: {e}",
                p.display()
            ))
        })?),
    })
}

impl Machine {
    pub fn build(cfg: &MachineConfig) -> Result<Machine, VmError> {
        let mut mem = GuestMemory::new(cfg.mem_size).map_err(|e| VmError::Input(e.to_string()))?;
        if let Some(fw) = &cfg.firmware {
            mem.add_firmware(fw)
                .map_err(|e| VmError::Input(format!("firmware image: {e}")))?;
        }
        let mem = Arc::new(mem);
        let control = Arc::new(VmControl::new());
        let icount = cfg
            .icount
            .map(|shift| (Arc::new(IcountClock::new()), shift));
        let clock: Arc<dyn Clock> = match &icount {
            Some((c, _)) => c.clone(),
            None => Arc::new(HostClock::new()),
        };
        let isa = IsaInterrupts::new();
        let cpus = cfg.cpus.max(1);
        let mut mmio = Bus::new();
        let apics = crate::platform::add_apics(&mut mmio, cpus, &clock, &isa)?;
        // Device lines reach the 8259s and the IOAPIC alike.
        let gsi: Arc<dyn twinvm_devices::IrqSink> =
            GsiRouter::new(isa.clone(), apics.ioapic.clone());
        let line = |irq: u32| IrqLine::new(gsi.clone(), irq);

        let mut pio = Bus::new();
        let add = |bus: &mut Bus, base: u64, len: u64, dev: SharedDevice| {
            bus.insert(base, len, dev)
                .map_err(|e| VmError::Host(e.to_string()))
        };
        let uart = shared(Uart::new(
            serial_sink(&cfg.serial)?,
            line(COM1_IRQ),
            clock.clone(),
        ));
        add(&mut pio, COM1_BASE, UART_PORT_LEN, uart.clone())?;
        add(
            &mut pio,
            PIC_MASTER_BASE,
            PIC_PORT_LEN,
            shared(PicPorts::new(isa.clone(), PicPortRange::Master)),
        )?;
        add(
            &mut pio,
            PIC_SLAVE_BASE,
            PIC_PORT_LEN,
            shared(PicPorts::new(isa.clone(), PicPortRange::Slave)),
        )?;
        add(
            &mut pio,
            ELCR_BASE,
            2,
            shared(PicPorts::new(isa.clone(), PicPortRange::Elcr)),
        )?;
        let pit = shared(Pit::new(clock.clone(), line(PIT_IRQ)));
        add(&mut pio, PIT_BASE, PIT_PORT_LEN, pit.clone())?;
        add(&mut pio, PORT61, 1, shared(Port61::new(pit.clone())))?;
        let rtc = shared(match icount {
            Some(_) => Rtc::with_unix_ns(clock.clone(), line(RTC_IRQ), ICOUNT_EPOCH_UNIX_NS),
            None => Rtc::new(clock.clone(), line(RTC_IRQ)),
        });
        fill_cmos(&mut rtc.lock().unwrap_or_else(|e| e.into_inner()), &mem);
        add(&mut pio, RTC_BASE, RTC_PORT_LEN, rtc.clone())?;
        let kbc = Arc::new(Mutex::new(I8042::new(control.clone(), line(1), line(12))));
        for port in [I8042_DATA_PORT, I8042_COMMAND_PORT] {
            add(
                &mut pio,
                port,
                1,
                shared(twinvm_devices::i8042::I8042Port::new(kbc.clone(), port)),
            )?;
        }
        add(
            &mut pio,
            DEBUG_EXIT_PORT,
            4,
            shared(DebugExit::new(control.clone())),
        )?;
        crate::platform::add_power_devices(&mut pio, &mut mmio, &control, &clock)?;
        let e820: Vec<E820Entry> = loader::multiboot::memory_map(&mem)
            .into_iter()
            .map(|(addr, len, kind)| E820Entry { addr, len, kind })
            .collect();
        crate::platform::add_qemu_test_devices(
            &mut pio,
            &mut mmio,
            gsi.clone(),
            mem.ram_size(),
            cpus,
            &e820,
        )?;
        let ioapic_id = apics.ioapic.save_state().id;
        let rsdp = crate::acpi::install(
            &mem,
            &crate::acpi::AcpiConfig {
                apic_ids: (0..cpus).map(|i| i as u8).collect(),
                ioapic_id,
            },
        );

        let mut timed: Vec<Arc<Mutex<dyn Timed>>> = vec![pit, rtc, uart.clone()];
        timed.extend(apics.timed());
        let boot = match (&cfg.kernel, cfg.flat_addr) {
            (Some(k), Some(addr)) => BootImage::Flat {
                image: k,
                addr,
                entry: cfg.flat_entry.unwrap_or(addr),
            },
            (Some(k), None) => BootImage::Kernel {
                image: k,
                cmdline: &cfg.cmdline,
                modules: &cfg.modules,
            },
            (None, _) => BootImage::ResetVector,
        };
        let boot_state = loader::load(&mem, &boot).map_err(|e| VmError::Input(e.to_string()))?;
        Ok(Machine {
            mem,
            pio: Arc::new(pio),
            mmio: Arc::new(mmio),
            control,
            clock,
            isa,
            uart,
            timed,
            boot_state,
            model: Arc::new(cfg.model.clone()),
            icount,
            apics,
            rsdp,
        })
    }

    /// Brings every timed device up to now; returns the earliest next deadline.
    pub fn poll_timers(&self) -> Option<u64> {
        let now = self.clock.now_ns();
        self.timed
            .iter()
            .filter_map(|d| twinvm_devices::bus::lock(d).poll(now))
            .min()
    }
}

/// The CMOS bytes a PC BIOS leaves for the OS: memory sizes (as QEMU fills them).
fn fill_cmos(rtc: &mut Rtc, mem: &GuestMemory) {
    let low = mem.low_ram_size();
    let kib_above_1m = (low.saturating_sub(1 << 20) >> 10).min(0xffff);
    let chunks_above_16m = (low.saturating_sub(16 << 20) >> 16).min(0xffff);
    let high_chunks = (mem.ram_size() - low) >> 16;
    rtc.set_cmos(0x15, 0x80);
    rtc.set_cmos(0x16, 0x02);
    for (reg, v) in [
        (0x17, kib_above_1m),
        (0x30, kib_above_1m),
        (0x34, chunks_above_16m),
    ] {
        rtc.set_cmos(reg, v as u8);
        rtc.set_cmos(reg + 1, (v >> 8) as u8);
    }
    rtc.set_cmos(0x5b, high_chunks as u8);
    rtc.set_cmos(0x5c, (high_chunks >> 8) as u8);
    rtc.set_cmos(0x5d, (high_chunks >> 16) as u8);
}
