//! Local APIC, one per vCPU: xAPIC (a 4 KiB MMIO page at the APIC base) and x2APIC (the
//! same registers as MSRs 0x800–0x8FF), the APIC timer (one-shot, periodic, TSC-deadline),
//! interrupt acceptance and priority, and inter-processor interrupts.
//!
//! [`LocalApic`] is a state machine that never calls out while locked: what it sends (IPIs
//! from ICR writes, EOI broadcasts for level-triggered vectors) goes into an outbox that
//! [`ApicBus`] drains after releasing the LAPIC's lock, so that a vCPU sending an IPI to
//! itself, or an EOI that makes the IOAPIC redeliver at once, cannot deadlock.
//!
//! What each vCPU holds is a [`VcpuApic`]: its MSR and MMIO interface (through the bus), its
//! [`InterruptController`] (the LAPIC, plus the 8259 through LINT0 in ExtINT/virtual-wire
//! mode for the vCPU the PIC is wired to), pending NMI and INIT/SIPI events. [`ApicSignals`]
//! mirrors what is pending in atomics, so the engines' per-block checks take no lock.
//!
//! The timer is not ticked: counts are computed from the virtual [`Clock`], and
//! [`Timed::poll`] delivers the expiries that fell due. The APIC bus clock runs at 1 GHz
//! (one count per nanosecond before the divider), as KVM's and QEMU's do.
//!
//! Wiring: create one `Arc<Mutex<LocalApic>>` per vCPU (APIC ID = vCPU index, vCPU 0 the
//! BSP), an [`ApicBus`] over them, an `IoApic` on the bus, a `GsiRouter` as the devices'
//! [`crate::IrqSink`], and one [`VcpuApic`] per vCPU (vCPU 0 with the `IsaInterrupts`). The
//! CPU sends IA32_APIC_BASE (0x1B) and 0x800–0x8FF to `VcpuApic::read_msr`/`write_msr`
//! (errors → #GP), IA32_TSC_DEADLINE (0x6E0) to `read_tsc_deadline`/`write_tsc_deadline`,
//! and physical accesses inside `mmio_base()`'s 4 KiB page to `mmio_read`/`mmio_write`
//! (per vCPU, before the shared MMIO bus; a one-vCPU machine may register [`ApicMmio`] on the
//! bus instead). Each LAPIC goes in the platform's `Timed` list; poll again after guest
//! timer writes, since the deadline may have moved.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use crate::bus::{lock, Device};
use crate::clock::{Clock, Timed};
use crate::irq::InterruptController;
use crate::pic::IsaInterrupts;

pub const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;
pub const APIC_MMIO_LEN: u64 = 0x1000;
pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
pub const MSR_X2APIC_FIRST: u32 = 0x800;
pub const MSR_X2APIC_LAST: u32 = 0x8ff;
/// Version 0x14 (integrated APIC), max LVT entry 5 (timer, thermal, perf, LINT0, LINT1,
/// error), no directed-EOI support.
pub const APIC_VERSION: u32 = 0x0005_0014;
/// Nanoseconds per APIC bus clock before the divide configuration.
pub const APIC_BUS_NS_PER_TICK: u64 = 1;

pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// Bits of IA32_APIC_BASE that must be zero (a 52-bit physical address space is assumed).
const APIC_BASE_RESERVED: u64 = 0xfff0_0000_0000_02ff;

/// A periodic timer never fires more often than this, however small its period: the
/// count reads stay exact, the interrupts coalesce (KVM clamps similarly).
const MIN_PERIODIC_NS: u64 = 50_000;
/// Bounds on queues a guest can fill.
const MAX_EVENTS: usize = 8;
const MAX_OUTBOX: usize = 64;

// Register offsets in the xAPIC page; x2APIC MSR = 0x800 + (offset >> 4).
const REG_ID: u32 = 0x20;
const REG_VERSION: u32 = 0x30;
const REG_TPR: u32 = 0x80;
const REG_APR: u32 = 0x90;
const REG_PPR: u32 = 0xa0;
const REG_EOI: u32 = 0xb0;
const REG_RRD: u32 = 0xc0;
const REG_LDR: u32 = 0xd0;
const REG_DFR: u32 = 0xe0;
const REG_SVR: u32 = 0xf0;
const REG_ISR: u32 = 0x100;
const REG_TMR: u32 = 0x180;
const REG_IRR: u32 = 0x200;
const REG_ESR: u32 = 0x280;
const REG_ICR_LO: u32 = 0x300;
const REG_ICR_HI: u32 = 0x310;
const REG_LVT_FIRST: u32 = 0x320;
const REG_LVT_LAST: u32 = 0x370;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3e0;
const REG_SELF_IPI: u32 = 0x3f0;

/// Indices into [`LocalApicState::lvt`].
pub const LVT_TIMER: usize = 0;
pub const LVT_THERMAL: usize = 1;
pub const LVT_PERF: usize = 2;
pub const LVT_LINT0: usize = 3;
pub const LVT_LINT1: usize = 4;
pub const LVT_ERROR: usize = 5;

const LVT_MASKED: u32 = 1 << 16;
/// Writable bits of each LVT entry (delivery status and remote IRR are read-only).
const LVT_WRITABLE: [u32; 6] = [0x700ff, 0x107ff, 0x107ff, 0x1a7ff, 0x1a7ff, 0x100ff];
const TIMER_ONESHOT: u32 = 0;
const TIMER_PERIODIC: u32 = 1;
const TIMER_TSC_DEADLINE: u32 = 2;

const SVR_ENABLE: u32 = 1 << 8;
const SVR_WRITABLE: u32 = 0x3ff;
const ICR_LO_WRITABLE: u32 = 0x000c_cfff;

/// ESR bits.
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
pub const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// A refused APIC MSR access; the CPU raises #GP(0) for every kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicError {
    /// Not an MSR the LAPIC implements.
    UnknownMsr(u32),
    /// An x2APIC MSR accessed while the APIC is not in x2APIC mode.
    NotX2Apic(u32),
    /// A reserved register, or reserved bits set in the value written.
    Reserved(u32),
    ReadOnly(u32),
    WriteOnly(u32),
    /// An IA32_APIC_BASE write to an invalid mode or mode transition.
    InvalidTransition {
        from: u64,
        to: u64,
    },
}

impl fmt::Display for ApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApicError::UnknownMsr(m) => write!(f, "MSR {m:#x} is not an APIC MSR"),
            ApicError::NotX2Apic(m) => write!(f, "x2APIC MSR {m:#x} accessed outside x2APIC mode"),
            ApicError::Reserved(m) => write!(f, "reserved x2APIC MSR or bits at {m:#x}"),
            ApicError::ReadOnly(m) => write!(f, "x2APIC MSR {m:#x} is read-only"),
            ApicError::WriteOnly(m) => write!(f, "x2APIC MSR {m:#x} is write-only"),
            ApicError::InvalidTransition { from, to } => {
                write!(f, "invalid IA32_APIC_BASE transition {from:#x} -> {to:#x}")
            }
        }
    }
}

impl std::error::Error for ApicError {}

/// How an interrupt message is delivered (ICR, IOAPIC redirection entries, MSI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    StartUp,
    ExtInt,
    Reserved,
}

impl DeliveryMode {
    pub fn from_bits(bits: u64) -> Self {
        match bits & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::StartUp,
            7 => DeliveryMode::ExtInt,
            _ => DeliveryMode::Reserved,
        }
    }
}

/// Who a message is for. `x2apic` marks a 32-bit destination sent by an x2APIC-mode ICR;
/// otherwise it is an 8-bit xAPIC-format destination (IOAPIC, MSI, xAPIC ICR), in which
/// 0xff is the broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    Physical {
        id: u32,
        x2apic: bool,
    },
    Logical {
        mda: u32,
        x2apic: bool,
    },
    /// Shorthands (ICR only): relative to the sending vCPU.
    ToSelf,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An interrupt message on the APIC bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApicMessage {
    pub vector: u8,
    pub mode: DeliveryMode,
    pub dest: Destination,
    pub level_triggered: bool,
}

impl ApicMessage {
    /// Decodes a PCI MSI address/data pair (no interrupt remapping).
    pub fn from_msi(addr: u64, data: u32) -> Self {
        ApicMessage {
            vector: data as u8,
            mode: DeliveryMode::from_bits((data >> 8) as u64),
            dest: if addr & (1 << 2) != 0 {
                Destination::Logical {
                    mda: ((addr >> 12) & 0xff) as u32,
                    x2apic: false,
                }
            } else {
                Destination::Physical {
                    id: ((addr >> 12) & 0xff) as u32,
                    x2apic: false,
                }
            },
            level_triggered: data & (1 << 15) != 0,
        }
    }
}

/// INIT and start-up IPIs received, for the engine to act on in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitSipi {
    /// INIT: the vCPU resets and waits for a SIPI (the LAPIC has already reset itself).
    Init,
    /// Start-up with its vector: the vCPU starts in real mode at CS = vector << 8, IP = 0.
    Sipi(u8),
}

/// What a LAPIC sends, drained by [`ApicBus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicOutput {
    Ipi(ApicMessage),
    /// EOI of a level-triggered vector, for the IOAPICs.
    Eoi(u8),
}

/// Something told about EOIs of level-triggered vectors: the IOAPIC.
pub trait EoiListener: Send + Sync {
    fn eoi(&self, vector: u8);
}

/// A LAPIC's state, as plain data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LocalApicState {
    /// IA32_APIC_BASE.
    pub apic_base: u64,
    /// The initial (x2)APIC ID, which the x2APIC ID register always reads.
    pub initial_id: u32,
    /// The xAPIC ID register's ID field (writable in xAPIC mode).
    pub xapic_id: u8,
    pub tpr: u32,
    pub ldr: u32,
    /// Model bits 31:28; bits 27:0 read as ones.
    pub dfr: u32,
    pub svr: u32,
    pub isr: [u32; 8],
    pub tmr: [u32; 8],
    pub irr: [u32; 8],
    /// ESR as last latched by a write; `esr_pending` collects errors since.
    pub esr: u32,
    pub esr_pending: u32,
    pub icr: u64,
    pub lvt: [u32; 6],
    pub timer_initial: u32,
    pub timer_divide: u32,
    /// Timer: virtual time of the last (re)anchoring and the counts elapsed by then.
    pub timer_anchor_ns: u64,
    pub timer_anchor_ticks: u64,
    /// The next timer interrupt (any mode), in virtual ns.
    pub timer_next_ns: Option<u64>,
    /// IA32_TSC_DEADLINE as written; 0 when disarmed or fired.
    pub tsc_deadline: u64,
    pub nmi_pending: bool,
    pub events: VecDeque<InitSipi>,
    /// LINT0/LINT1 input levels, for edge detection.
    pub lint_levels: [bool; 2],
}

/// Atomic mirrors of a LAPIC's pending state, readable without its lock, and a wake-up
/// for the vCPU thread.
#[derive(Default)]
pub struct ApicSignals {
    intr: AtomicBool,
    nmi: AtomicBool,
    init_sipi: AtomicBool,
    extint: AtomicBool,
    kick: AtomicBool,
    /// The xAPIC MMIO page base while the APIC is in xAPIC mode, else u64::MAX.
    mmio_base: AtomicU64,
    waker: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl ApicSignals {
    /// A fixed interrupt is deliverable (above PPR, APIC enabled).
    pub fn intr(&self) -> bool {
        self.intr.load(Ordering::Acquire)
    }
    pub fn nmi(&self) -> bool {
        self.nmi.load(Ordering::Acquire)
    }
    pub fn init_sipi(&self) -> bool {
        self.init_sipi.load(Ordering::Acquire)
    }
    /// LINT0 passes the 8259's INTR through (ExtINT, or the APIC disabled: virtual wire).
    pub fn extint(&self) -> bool {
        self.extint.load(Ordering::Acquire)
    }
    /// Whether something arrived since the last call: a halted vCPU should look again.
    pub fn take_kick(&self) -> bool {
        self.kick.swap(false, Ordering::AcqRel)
    }
    pub fn mmio_base(&self) -> Option<u64> {
        let b = self.mmio_base.load(Ordering::Acquire);
        (b != u64::MAX).then_some(b)
    }
    /// A function called whenever the vCPU is kicked (e.g. unparking its thread). Set once.
    pub fn set_waker(&self, f: Box<dyn Fn() + Send + Sync>) -> bool {
        self.waker.set(f).is_ok()
    }
    fn kick(&self) {
        self.kick.store(true, Ordering::Release);
        if let Some(w) = self.waker.get() {
            w();
        }
    }
}

fn bit_get(r: &[u32; 8], v: u8) -> bool {
    r[(v >> 5) as usize] & (1 << (v & 31)) != 0
}

fn bit_set(r: &mut [u32; 8], v: u8, on: bool) {
    let w = &mut r[(v >> 5) as usize];
    if on {
        *w |= 1 << (v & 31);
    } else {
        *w &= !(1 << (v & 31));
    }
}

fn highest(r: &[u32; 8]) -> Option<u8> {
    (0..8)
        .rev()
        .find(|&i| r[i] != 0)
        .map(|i| (i as u32 * 32 + 31 - r[i].leading_zeros()) as u8)
}

pub struct LocalApic {
    s: LocalApicState,
    clock: Arc<dyn Clock>,
    tsc_hz: u64,
    signals: Arc<ApicSignals>,
    outbox: Vec<ApicOutput>,
}

impl LocalApic {
    /// A LAPIC in its power-up state: xAPIC mode at the default base, software-disabled.
    /// `tsc_hz` converts TSC-deadline values (1_000_000_000 when the TSC counts virtual ns).
    pub fn new(apic_id: u32, bsp: bool, clock: Arc<dyn Clock>, tsc_hz: u64) -> Self {
        let mut a = LocalApic {
            s: LocalApicState::default(),
            clock,
            tsc_hz: if tsc_hz == 0 { 1_000_000_000 } else { tsc_hz },
            signals: Arc::new(ApicSignals::default()),
            outbox: Vec::new(),
        };
        a.s.initial_id = apic_id;
        a.s.apic_base = APIC_DEFAULT_BASE | APIC_BASE_ENABLE | if bsp { APIC_BASE_BSP } else { 0 };
        a.s.xapic_id = apic_id as u8;
        a.reset_registers();
        a.sync();
        a
    }

    pub fn signals(&self) -> Arc<ApicSignals> {
        self.signals.clone()
    }

    pub fn save_state(&self) -> LocalApicState {
        self.s.clone()
    }

    pub fn restore_state(&mut self, s: &LocalApicState) {
        self.s = s.clone();
        self.outbox.clear();
        self.sync();
    }

    /// The power-up state (RESET), keeping the initial APIC ID and the BSP flag.
    pub fn reset(&mut self) {
        self.s.apic_base =
            APIC_DEFAULT_BASE | APIC_BASE_ENABLE | (self.s.apic_base & APIC_BASE_BSP);
        self.s.events.clear();
        self.s.nmi_pending = false;
        self.s.xapic_id = self.s.initial_id as u8;
        self.reset_registers();
        self.sync();
    }

    /// The register reset of RESET, INIT and hardware disable (SDM 10.4.7.1). IA32_APIC_BASE
    /// and the xAPIC ID are kept (an INIT keeps a rewritten ID; the callers for RESET and
    /// disable restore the initial one).
    fn reset_registers(&mut self) {
        let s = &mut self.s;
        s.tpr = 0;
        s.ldr = 0;
        s.dfr = 0xffff_ffff;
        s.svr = 0xff;
        s.isr = [0; 8];
        s.tmr = [0; 8];
        s.irr = [0; 8];
        s.esr = 0;
        s.esr_pending = 0;
        s.icr = 0;
        s.lvt = [LVT_MASKED; 6];
        s.timer_initial = 0;
        s.timer_divide = 0;
        s.timer_anchor_ns = 0;
        s.timer_anchor_ticks = 0;
        s.timer_next_ns = None;
        s.tsc_deadline = 0;
        s.lint_levels = [false; 2];
        if self.x2apic_mode() {
            self.s.ldr = x2apic_ldr(self.s.initial_id);
        }
    }

    fn x2apic_mode_of(&self, base: u64) -> bool {
        base & (APIC_BASE_ENABLE | APIC_BASE_EXTD) == APIC_BASE_ENABLE | APIC_BASE_EXTD
    }

    pub fn hw_enabled(&self) -> bool {
        self.s.apic_base & APIC_BASE_ENABLE != 0
    }

    pub fn x2apic_mode(&self) -> bool {
        self.x2apic_mode_of(self.s.apic_base)
    }

    pub fn sw_enabled(&self) -> bool {
        self.s.svr & SVR_ENABLE != 0
    }

    fn enabled(&self) -> bool {
        self.hw_enabled() && self.sw_enabled()
    }

    /// The APIC ID as routing sees it: 32 bits in x2APIC mode, 8 in xAPIC mode.
    pub fn apic_id(&self) -> u32 {
        if self.x2apic_mode() {
            self.s.initial_id
        } else {
            self.s.xapic_id as u32
        }
    }

    /// The MMIO page base while in xAPIC mode.
    pub fn mmio_base(&self) -> Option<u64> {
        (self.hw_enabled() && !self.x2apic_mode())
            .then_some(self.s.apic_base & !0xfff & !APIC_BASE_RESERVED)
    }

    /// Refreshes the atomic mirrors. Every public mutating method ends with it.
    fn sync(&self) {
        let sig = &self.signals;
        sig.intr
            .store(self.has_interrupt().is_some(), Ordering::Release);
        sig.nmi.store(self.s.nmi_pending, Ordering::Release);
        sig.init_sipi
            .store(!self.s.events.is_empty(), Ordering::Release);
        sig.extint
            .store(self.extint_passthrough(), Ordering::Release);
        sig.mmio_base
            .store(self.mmio_base().unwrap_or(u64::MAX), Ordering::Release);
    }

    /// LINT0 passes the 8259's INTR to the core: the APIC is globally or software disabled
    /// (virtual wire, as after reset), or LINT0 is unmasked in ExtINT mode.
    pub fn extint_passthrough(&self) -> bool {
        let lvt0 = self.s.lvt[LVT_LINT0];
        !self.enabled() || (lvt0 & LVT_MASKED == 0 && (lvt0 >> 8) & 7 == 7)
    }

    // ---------------------------------------------------------------- priorities

    pub fn ppr(&self) -> u32 {
        let isrv = highest(&self.s.isr).unwrap_or(0) as u32;
        if self.s.tpr >> 4 >= isrv >> 4 {
            self.s.tpr
        } else {
            isrv & 0xf0
        }
    }

    fn apr(&self) -> u32 {
        let isrv = highest(&self.s.isr).unwrap_or(0) as u32;
        let irrv = highest(&self.s.irr).unwrap_or(0) as u32;
        let tpr = self.s.tpr;
        if tpr >> 4 >= irrv >> 4 && tpr >> 4 > isrv >> 4 {
            tpr
        } else {
            (tpr & 0xf0).max(isrv & 0xf0).max(irrv & 0xf0)
        }
    }

    /// The vector the LAPIC would deliver now: the highest in IRR whose priority class is
    /// above PPR's.
    pub fn has_interrupt(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let v = highest(&self.s.irr)?;
        (v as u32 >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// The CPU takes the interrupt: IRR to ISR.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let v = self.has_interrupt();
        if let Some(v) = v {
            bit_set(&mut self.s.irr, v, false);
            bit_set(&mut self.s.isr, v, true);
        }
        self.sync();
        v
    }

    /// A fixed (or lowest-priority) interrupt arrives. Dropped while the APIC is disabled.
    pub fn accept(&mut self, vector: u8, level_triggered: bool) {
        self.accept_inner(vector, level_triggered);
        self.sync();
    }

    fn accept_inner(&mut self, vector: u8, level_triggered: bool) {
        if !self.enabled() {
            return;
        }
        if vector < 16 {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        bit_set(&mut self.s.irr, vector, true);
        bit_set(&mut self.s.tmr, vector, level_triggered);
        self.signals.kick();
    }

    /// An error: latch it and raise the error LVT (never recursively).
    fn error(&mut self, bits: u32) {
        self.s.esr_pending |= bits;
        let lvt = self.s.lvt[LVT_ERROR];
        if lvt & LVT_MASKED == 0 && self.enabled() {
            let v = lvt as u8;
            if v >= 16 {
                bit_set(&mut self.s.irr, v, true);
                bit_set(&mut self.s.tmr, v, false);
                self.signals.kick();
            } else {
                self.s.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR;
            }
        }
    }

    /// Receives a message routed to this LAPIC.
    pub fn receive(&mut self, mode: DeliveryMode, vector: u8, level_triggered: bool) {
        if !self.hw_enabled() {
            return;
        }
        match mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                self.accept_inner(vector, level_triggered)
            }
            DeliveryMode::Nmi => {
                self.s.nmi_pending = true;
                self.signals.kick();
            }
            DeliveryMode::Init => {
                self.reset_registers();
                self.push_event(InitSipi::Init);
            }
            DeliveryMode::StartUp => self.push_event(InitSipi::Sipi(vector)),
            DeliveryMode::Smi | DeliveryMode::ExtInt | DeliveryMode::Reserved => {
                log::debug!("lapic {}: {mode:?} message ignored", self.s.initial_id);
            }
        }
        self.sync();
    }

    fn push_event(&mut self, e: InitSipi) {
        if self.s.events.len() < MAX_EVENTS {
            self.s.events.push_back(e);
        }
        self.signals.kick();
    }

    /// CR8: TPR bits 7:4 (SDM 10.8.6.1), in every APIC mode.
    pub fn cr8(&self) -> u64 {
        ((self.s.tpr >> 4) & 0xf) as u64
    }

    /// A MOV to CR8 sets TPR[7:4] and clears TPR[3:0].
    pub fn set_cr8(&mut self, v: u64) {
        self.s.tpr = ((v & 0xf) << 4) as u32;
        self.sync();
    }

    pub fn take_nmi(&mut self) -> bool {
        let n = std::mem::take(&mut self.s.nmi_pending);
        self.sync();
        n
    }

    pub fn take_init_sipi(&mut self) -> Option<InitSipi> {
        let e = self.s.events.pop_front();
        self.sync();
        e
    }

    /// Level change on LINT0 (`pin` 0) or LINT1 (`pin` 1), delivered per its LVT entry:
    /// NMI and fixed on the active edge (fixed level-triggered while asserted at the edge);
    /// ExtINT is handled by [`VcpuApic`] asking the 8259.
    pub fn set_lint(&mut self, pin: usize, level: bool) {
        let Some(old) = self.s.lint_levels.get(pin).copied() else {
            return;
        };
        self.s.lint_levels[pin] = level;
        let lvt = self.s.lvt[LVT_LINT0 + pin];
        let active_low = lvt & (1 << 13) != 0;
        let (was, now) = (old != active_low, level != active_low);
        if lvt & LVT_MASKED == 0 && now && !was {
            self.deliver_lvt(LVT_LINT0 + pin);
        }
        self.sync();
    }

    fn deliver_lvt(&mut self, idx: usize) {
        let lvt = self.s.lvt[idx];
        let mode = if idx == LVT_TIMER || idx == LVT_ERROR {
            0
        } else {
            (lvt >> 8) & 7
        };
        match mode {
            0 => {
                let level = (idx == LVT_LINT0 || idx == LVT_LINT1) && lvt & (1 << 15) != 0;
                self.accept_inner(lvt as u8, level)
            }
            4 => {
                self.s.nmi_pending = true;
                self.signals.kick();
            }
            _ => {}
        }
    }

    pub fn eoi(&mut self) {
        if let Some(v) = highest(&self.s.isr) {
            bit_set(&mut self.s.isr, v, false);
            if bit_get(&self.s.tmr, v) {
                self.push_output(ApicOutput::Eoi(v));
            }
        }
        self.sync();
    }

    fn push_output(&mut self, o: ApicOutput) {
        if self.outbox.len() < MAX_OUTBOX {
            self.outbox.push(o);
        } else {
            log::warn!("lapic {}: outbox full, dropping {o:?}", self.s.initial_id);
        }
    }

    /// What this LAPIC sent since the last call (IPIs, EOI broadcasts). [`ApicBus`] drains
    /// it after every access it makes; anyone driving a LAPIC directly must do the same.
    pub fn take_output(&mut self) -> Vec<ApicOutput> {
        std::mem::take(&mut self.outbox)
    }

    // ---------------------------------------------------------------- the ICR

    fn send_ipi(&mut self, icr: u64) {
        let vector = icr as u8;
        let mode = DeliveryMode::from_bits(icr >> 8);
        let logical = icr & (1 << 11) != 0;
        let assert = icr & (1 << 14) != 0;
        let level_triggered = icr & (1 << 15) != 0;
        let x2 = self.x2apic_mode();
        if mode == DeliveryMode::Init && level_triggered && !assert {
            // INIT level de-assert: only resynchronises arbitration IDs.
            return;
        }
        if matches!(mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
            self.error(ESR_SEND_ILLEGAL_VECTOR);
            return;
        }
        let dest_field = if x2 {
            (icr >> 32) as u32
        } else {
            (icr >> 56) as u32
        };
        let dest = match (icr >> 18) & 3 {
            0 if logical => Destination::Logical {
                mda: dest_field,
                x2apic: x2,
            },
            0 => Destination::Physical {
                id: dest_field,
                x2apic: x2,
            },
            1 => Destination::ToSelf,
            2 => Destination::AllIncludingSelf,
            _ => Destination::AllExcludingSelf,
        };
        self.push_output(ApicOutput::Ipi(ApicMessage {
            vector,
            mode,
            dest,
            level_triggered,
        }));
    }

    // ---------------------------------------------------------------- the timer

    fn timer_mode(&self) -> u32 {
        match (self.s.lvt[LVT_TIMER] >> 17) & 3 {
            TIMER_PERIODIC => TIMER_PERIODIC,
            TIMER_TSC_DEADLINE => TIMER_TSC_DEADLINE,
            _ => TIMER_ONESHOT,
        }
    }

    fn divisor(&self) -> u64 {
        let d = self.s.timer_divide;
        let n = (d & 3) | ((d >> 1) & 4);
        if n == 7 {
            1
        } else {
            2 << n
        }
    }

    fn ns_per_count(&self) -> u64 {
        self.divisor() * APIC_BUS_NS_PER_TICK
    }

    fn timer_ticks(&self, now: u64) -> u64 {
        self.s
            .timer_anchor_ticks
            .saturating_add(now.saturating_sub(self.s.timer_anchor_ns) / self.ns_per_count())
    }

    pub fn timer_current_count(&self, now: u64) -> u32 {
        let n = self.s.timer_initial as u64;
        if self.timer_mode() == TIMER_TSC_DEADLINE || n == 0 {
            return 0;
        }
        let t = self.timer_ticks(now);
        if self.timer_mode() == TIMER_PERIODIC {
            (n - t % n) as u32
        } else {
            n.saturating_sub(t) as u32
        }
    }

    /// The next expiry after `now` of a one-shot or periodic count.
    fn count_expiry(&self, now: u64) -> Option<u64> {
        let n = self.s.timer_initial as u64;
        if self.timer_mode() == TIMER_TSC_DEADLINE || n == 0 {
            return None;
        }
        let t = self.timer_ticks(now);
        let target = if self.timer_mode() == TIMER_PERIODIC {
            (t / n).saturating_add(1).saturating_mul(n)
        } else if t >= n {
            return None;
        } else {
            n
        };
        let dt = target
            .saturating_sub(self.s.timer_anchor_ticks)
            .saturating_mul(self.ns_per_count());
        Some(self.s.timer_anchor_ns.saturating_add(dt))
    }

    /// Re-anchors the count at `now` (before a divide or mode change), keeping its value.
    fn reanchor(&mut self, now: u64) {
        let n = self.s.timer_initial as u64;
        if n != 0 {
            let t = self.timer_ticks(now);
            self.s.timer_anchor_ticks = if self.timer_mode() == TIMER_PERIODIC {
                t % n
            } else {
                t.min(n)
            };
        }
        self.s.timer_anchor_ns = now;
    }

    fn set_timer_initial(&mut self, v: u32, now: u64) {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            return;
        }
        self.s.timer_initial = v;
        self.s.timer_anchor_ns = now;
        self.s.timer_anchor_ticks = 0;
        self.s.timer_next_ns = self.count_expiry(now);
    }

    fn write_timer_lvt(&mut self, v: u32, now: u64) {
        let old_mode = self.timer_mode();
        if old_mode != TIMER_TSC_DEADLINE {
            self.reanchor(now);
        }
        self.s.lvt[LVT_TIMER] = v;
        let new_mode = self.timer_mode();
        if old_mode != new_mode
            && (old_mode == TIMER_TSC_DEADLINE || new_mode == TIMER_TSC_DEADLINE)
        {
            self.s.timer_initial = 0;
            self.s.tsc_deadline = 0;
            self.s.timer_next_ns = None;
        } else if new_mode != TIMER_TSC_DEADLINE && old_mode != new_mode {
            self.s.timer_next_ns = self.count_expiry(now);
        }
    }

    fn set_divide(&mut self, v: u32, now: u64) {
        self.reanchor(now);
        self.s.timer_divide = v & 0xb;
        if self.timer_mode() != TIMER_TSC_DEADLINE {
            self.s.timer_next_ns = self.count_expiry(now);
        }
    }

    /// IA32_TSC_DEADLINE reads: the armed deadline, 0 outside TSC-deadline mode.
    pub fn read_tsc_deadline(&self) -> u64 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.s.tsc_deadline
        } else {
            0
        }
    }

    /// IA32_TSC_DEADLINE writes, given the TSC now. Ignored outside TSC-deadline mode; 0
    /// disarms; a deadline already passed fires at once.
    pub fn write_tsc_deadline(&mut self, deadline: u64, tsc_now: u64) {
        if self.timer_mode() != TIMER_TSC_DEADLINE {
            return;
        }
        let now = self.clock.now_ns();
        self.s.tsc_deadline = deadline;
        self.s.timer_next_ns = (deadline != 0).then(|| {
            let delta = deadline.saturating_sub(tsc_now) as u128;
            let ns = (delta * 1_000_000_000).div_ceil(self.tsc_hz as u128);
            now.saturating_add(ns.min(u64::MAX as u128) as u64)
        });
        self.poll_timer(now);
        self.sync();
    }

    fn poll_timer(&mut self, now: u64) -> Option<u64> {
        let due = self.s.timer_next_ns?;
        if now < due {
            return Some(due);
        }
        if self.s.lvt[LVT_TIMER] & LVT_MASKED == 0 {
            self.deliver_lvt(LVT_TIMER);
        }
        self.s.timer_next_ns = match self.timer_mode() {
            TIMER_TSC_DEADLINE => {
                self.s.tsc_deadline = 0;
                None
            }
            TIMER_PERIODIC => self
                .count_expiry(now)
                .map(|t| t.max(now.saturating_add(MIN_PERIODIC_NS))),
            _ => self.count_expiry(now),
        };
        self.s.timer_next_ns
    }

    // ---------------------------------------------------------------- registers

    /// Reads a register by its xAPIC offset; None for a reserved one.
    fn read_reg(&self, reg: u32) -> Option<u32> {
        let s = &self.s;
        Some(match reg {
            REG_ID => {
                if self.x2apic_mode() {
                    s.initial_id
                } else {
                    (s.xapic_id as u32) << 24
                }
            }
            REG_VERSION => APIC_VERSION,
            REG_TPR => s.tpr,
            REG_APR => self.apr(),
            REG_PPR => self.ppr(),
            REG_EOI | REG_RRD => 0,
            REG_LDR => s.ldr,
            REG_DFR => s.dfr | 0x0fff_ffff,
            REG_SVR => s.svr,
            0x100..=0x270 => {
                let i = ((reg & 0x70) >> 4) as usize;
                match reg & !0x7f {
                    REG_ISR => s.isr[i],
                    REG_TMR => s.tmr[i],
                    _ => {
                        debug_assert_eq!(reg & !0x7f, REG_IRR);
                        s.irr[i]
                    }
                }
            }
            REG_ESR => s.esr,
            REG_ICR_LO => s.icr as u32 & !(1 << 12),
            REG_ICR_HI => (s.icr >> 32) as u32,
            REG_LVT_FIRST..=REG_LVT_LAST => s.lvt[((reg - REG_LVT_FIRST) >> 4) as usize],
            REG_TIMER_INIT => s.timer_initial,
            REG_TIMER_CUR => self.timer_current_count(self.clock.now_ns()),
            REG_TIMER_DIV => s.timer_divide,
            _ => return None,
        })
    }

    /// Writes a register by its xAPIC offset (the x2APIC-only rules are checked by
    /// `write_msr`). Returns false for a reserved register; read-only ones ignore writes.
    fn write_reg(&mut self, reg: u32, v: u32) -> bool {
        let now = self.clock.now_ns();
        match reg {
            REG_ID => self.s.xapic_id = (v >> 24) as u8,
            REG_TPR => self.s.tpr = v & 0xff,
            REG_EOI => self.eoi(),
            REG_LDR => self.s.ldr = v & 0xff00_0000,
            REG_DFR => self.s.dfr = v | 0x0fff_ffff,
            REG_SVR => {
                self.s.svr = v & SVR_WRITABLE;
                if v & SVR_ENABLE == 0 {
                    for l in &mut self.s.lvt {
                        *l |= LVT_MASKED;
                    }
                }
            }
            REG_ESR => {
                self.s.esr = std::mem::take(&mut self.s.esr_pending);
            }
            REG_ICR_LO => {
                self.s.icr = (self.s.icr & !0xffff_ffff) | (v & ICR_LO_WRITABLE) as u64;
                self.send_ipi(self.s.icr);
            }
            REG_ICR_HI => {
                self.s.icr = (self.s.icr & 0xffff_ffff) | ((v & 0xff00_0000) as u64) << 32
            }
            REG_LVT_FIRST..=REG_LVT_LAST => {
                let i = ((reg - REG_LVT_FIRST) >> 4) as usize;
                let mut nv =
                    (v & LVT_WRITABLE[i]) | (self.s.lvt[i] & !LVT_WRITABLE[i] & !LVT_MASKED);
                if !self.sw_enabled() {
                    nv |= LVT_MASKED;
                }
                if i == LVT_TIMER {
                    self.write_timer_lvt(nv, now);
                } else {
                    self.s.lvt[i] = nv;
                }
            }
            REG_TIMER_INIT => self.set_timer_initial(v, now),
            REG_TIMER_DIV => self.set_divide(v, now),
            REG_VERSION | REG_APR | REG_PPR | REG_RRD | 0x100..=0x270 | REG_TIMER_CUR => {}
            _ => return false,
        }
        true
    }

    /// An xAPIC MMIO read at `offset` in the APIC page. Registers are 32 bits at 16-byte
    /// strides; narrower reads see their bytes, bytes past the register read 0. While the
    /// APIC is not in xAPIC mode the page is not decoded (all ones).
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        if self.mmio_base().is_none() {
            data.fill(0xff);
            return;
        }
        let reg = (offset & 0xff0) as u32;
        let v = match self.read_reg(reg) {
            Some(v) => v,
            None => {
                self.error(ESR_ILLEGAL_REGISTER);
                self.sync();
                0
            }
        };
        let bytes = v.to_le_bytes();
        let start = (offset & 0xf) as usize;
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(start + i).copied().unwrap_or(0);
        }
    }

    /// An xAPIC MMIO write. Only aligned 32-bit writes reach a register (narrower ones are
    /// dropped, as KVM does); 64-bit writes write the low half.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        if self.mmio_base().is_none() || offset & 0xf != 0 || data.len() < 4 {
            return;
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let reg = (offset & 0xff0) as u32;
        if !self.write_reg(reg, v) {
            self.error(ESR_ILLEGAL_REGISTER);
        }
        self.sync();
    }

    // ---------------------------------------------------------------- MSRs

    /// RDMSR of IA32_APIC_BASE or an x2APIC register.
    pub fn read_msr(&mut self, msr: u32) -> Result<u64, ApicError> {
        if msr == MSR_APIC_BASE {
            return Ok(self.s.apic_base);
        }
        if !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return Err(ApicError::UnknownMsr(msr));
        }
        if !self.x2apic_mode() {
            return Err(ApicError::NotX2Apic(msr));
        }
        let reg = (msr - MSR_X2APIC_FIRST) << 4;
        match reg {
            REG_ICR_LO => Ok(self.s.icr & !(1 << 12)),
            REG_EOI | REG_SELF_IPI => Err(ApicError::WriteOnly(msr)),
            REG_APR | REG_RRD | REG_DFR | REG_ICR_HI => Err(ApicError::Reserved(msr)),
            _ => self
                .read_reg(reg)
                .map(u64::from)
                .ok_or(ApicError::Reserved(msr)),
        }
    }

    /// WRMSR of IA32_APIC_BASE or an x2APIC register. Errors mean #GP(0).
    pub fn write_msr(&mut self, msr: u32, value: u64) -> Result<(), ApicError> {
        let r = self.write_msr_inner(msr, value);
        self.sync();
        r
    }

    fn write_msr_inner(&mut self, msr: u32, value: u64) -> Result<(), ApicError> {
        if msr == MSR_APIC_BASE {
            return self.set_apic_base(value);
        }
        if !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return Err(ApicError::UnknownMsr(msr));
        }
        if !self.x2apic_mode() {
            return Err(ApicError::NotX2Apic(msr));
        }
        let reg = (msr - MSR_X2APIC_FIRST) << 4;
        if reg == REG_ICR_LO {
            self.s.icr = value & (0xffff_ffff_0000_0000 | ICR_LO_WRITABLE as u64);
            self.send_ipi(self.s.icr);
            return Ok(());
        }
        if value >> 32 != 0 {
            return Err(ApicError::Reserved(msr));
        }
        let v = value as u32;
        match reg {
            REG_ID | REG_VERSION | REG_PPR | REG_LDR | REG_TIMER_CUR | 0x100..=0x270 => {
                Err(ApicError::ReadOnly(msr))
            }
            REG_APR | REG_RRD | REG_DFR | REG_ICR_HI => Err(ApicError::Reserved(msr)),
            REG_EOI | REG_ESR if v != 0 => Err(ApicError::Reserved(msr)),
            REG_SELF_IPI => {
                if v > 0xff {
                    return Err(ApicError::Reserved(msr));
                }
                self.accept_inner(v as u8, false);
                Ok(())
            }
            _ => {
                if self.write_reg(reg, v) {
                    Ok(())
                } else {
                    Err(ApicError::Reserved(msr))
                }
            }
        }
    }

    /// IA32_APIC_BASE: disabled → xAPIC → x2APIC → disabled; x2APIC → xAPIC, disabled →
    /// x2APIC and EXTD without EN are refused. Disabling resets the APIC's registers.
    fn set_apic_base(&mut self, value: u64) -> Result<(), ApicError> {
        let old = self.s.apic_base;
        let err = Err(ApicError::InvalidTransition {
            from: old,
            to: value,
        });
        if value & APIC_BASE_RESERVED != 0 {
            return err;
        }
        let mode = |b: u64| match (b & APIC_BASE_ENABLE != 0, b & APIC_BASE_EXTD != 0) {
            (false, false) => Some(0),
            (true, false) => Some(1),
            (true, true) => Some(2),
            (false, true) => None,
        };
        let (Some(from), Some(to)) = (mode(old), mode(value)) else {
            return err;
        };
        if (from == 2 && to == 1) || (from == 0 && to == 2) {
            return err;
        }
        self.s.apic_base = (value & !APIC_BASE_BSP) | (old & APIC_BASE_BSP);
        if to == 0 && from != 0 {
            let keep_events = std::mem::take(&mut self.s.events);
            self.reset_registers();
            self.s.events = keep_events;
            self.s.xapic_id = self.s.initial_id as u8;
        }
        if to == 2 && from != 2 {
            self.s.ldr = x2apic_ldr(self.s.initial_id);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- routing

    /// Whether a message for `dest` (not a shorthand) is for this LAPIC.
    pub fn matches(&self, dest: &Destination) -> bool {
        if !self.hw_enabled() {
            return false;
        }
        let x2 = self.x2apic_mode();
        match *dest {
            Destination::Physical { id, x2apic } => {
                if x2apic {
                    id == u32::MAX || id == self.apic_id()
                } else {
                    let id = id & 0xff;
                    id == 0xff
                        || (if x2 {
                            id == self.apic_id()
                        } else {
                            id as u8 == self.s.xapic_id
                        })
                }
            }
            Destination::Logical { mda, x2apic } => {
                if (x2apic && mda == u32::MAX) || (!x2apic && mda & 0xff == 0xff) {
                    return true;
                }
                if x2 {
                    let mda = if x2apic { mda } else { mda & 0xff };
                    mda >> 16 == self.s.ldr >> 16 && mda & self.s.ldr & 0xffff != 0
                } else {
                    let mda = mda & 0xff;
                    let ldr = self.s.ldr >> 24;
                    if self.s.dfr >> 28 == 0xf {
                        mda & ldr != 0
                    } else {
                        mda >> 4 == ldr >> 4 && mda & ldr & 0xf != 0
                    }
                }
            }
            Destination::ToSelf | Destination::AllIncludingSelf | Destination::AllExcludingSelf => {
                true
            }
        }
    }
}

/// The x2APIC logical ID: cluster (ID bits 31:4) in bits 31:16, one bit of 16 below.
fn x2apic_ldr(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xf))
}

impl Timed for LocalApic {
    fn poll(&mut self, now_ns: u64) -> Option<u64> {
        let r = self.poll_timer(now_ns);
        self.sync();
        r
    }
}

// ==================================================================== the APIC bus

/// Every vCPU's LAPIC, in vCPU order; routes IPIs and IOAPIC/MSI messages and passes
/// EOIs of level-triggered vectors to the IOAPICs.
pub struct ApicBus {
    cpus: Vec<Arc<Mutex<LocalApic>>>,
    signals: Vec<Arc<ApicSignals>>,
    eoi_listeners: RwLock<Vec<Weak<dyn EoiListener>>>,
}

impl ApicBus {
    pub fn new(lapics: Vec<Arc<Mutex<LocalApic>>>) -> Arc<Self> {
        let signals = lapics.iter().map(|l| lock(l).signals()).collect();
        Arc::new(ApicBus {
            cpus: lapics,
            signals,
            eoi_listeners: RwLock::new(Vec::new()),
        })
    }

    pub fn len(&self) -> usize {
        self.cpus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cpus.is_empty()
    }

    pub fn lapic(&self, cpu: usize) -> Option<&Arc<Mutex<LocalApic>>> {
        self.cpus.get(cpu)
    }

    pub fn signals(&self, cpu: usize) -> Option<&Arc<ApicSignals>> {
        self.signals.get(cpu)
    }

    pub fn add_eoi_listener(&self, l: Weak<dyn EoiListener>) {
        self.eoi_listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(l);
    }

    /// Runs `f` on vCPU `cpu`'s LAPIC, then acts on what it sent, with its lock released.
    pub fn with_lapic<R>(&self, cpu: usize, f: impl FnOnce(&mut LocalApic) -> R) -> Option<R> {
        let l = self.cpus.get(cpu)?;
        let (r, out) = {
            let mut a = lock(l);
            let r = f(&mut a);
            (r, a.take_output())
        };
        self.dispatch(cpu, out);
        Some(r)
    }

    fn dispatch(&self, cpu: usize, out: Vec<ApicOutput>) {
        for o in out {
            match o {
                ApicOutput::Ipi(m) => self.deliver(&m, Some(cpu)),
                ApicOutput::Eoi(v) => {
                    let ls: Vec<_> = self
                        .eoi_listeners
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .filter_map(Weak::upgrade)
                        .collect();
                    for l in ls {
                        l.eoi(v);
                    }
                }
            }
        }
    }

    /// Delivers a message; `source` is the sending vCPU for ICR shorthands (None for the
    /// IOAPIC and MSIs). Lowest priority goes to the matching LAPIC with the lowest TPR.
    pub fn deliver(&self, m: &ApicMessage, source: Option<usize>) {
        let targets: Vec<usize> = match m.dest {
            Destination::ToSelf => {
                // Only fixed interrupts may be sent to self.
                if m.mode != DeliveryMode::Fixed {
                    return;
                }
                source.into_iter().collect()
            }
            Destination::AllIncludingSelf => (0..self.cpus.len()).collect(),
            Destination::AllExcludingSelf => (0..self.cpus.len())
                .filter(|&c| Some(c) != source)
                .collect(),
            _ => (0..self.cpus.len())
                .filter(|&c| lock(&self.cpus[c]).matches(&m.dest))
                .collect(),
        };
        if m.mode == DeliveryMode::LowestPriority {
            let best = targets
                .iter()
                .filter_map(|&c| {
                    let a = lock(&self.cpus[c]);
                    (a.hw_enabled() && a.sw_enabled()).then(|| (a.s.tpr, c))
                })
                .min();
            if let Some((_, c)) = best {
                lock(&self.cpus[c]).receive(m.mode, m.vector, m.level_triggered);
            }
            return;
        }
        for c in targets {
            lock(&self.cpus[c]).receive(m.mode, m.vector, m.level_triggered);
        }
    }
}

// ==================================================================== one vCPU's view

/// One vCPU's interrupt interface: its [`InterruptController`], its LAPIC's MSRs and MMIO
/// page, and the NMI and INIT/SIPI it received. Give the vCPU the 8259 pair wires its
/// INTR to LINT0 (vCPU 0 on a PC) as `pic`.
pub struct VcpuApic {
    bus: Arc<ApicBus>,
    cpu: usize,
    lapic: Arc<Mutex<LocalApic>>,
    signals: Arc<ApicSignals>,
    pic: Option<Arc<IsaInterrupts>>,
}

impl VcpuApic {
    /// None if `cpu` is not on the bus.
    pub fn new(bus: &Arc<ApicBus>, cpu: usize, pic: Option<Arc<IsaInterrupts>>) -> Option<Self> {
        Some(VcpuApic {
            lapic: bus.lapic(cpu)?.clone(),
            signals: bus.signals(cpu)?.clone(),
            bus: bus.clone(),
            cpu,
            pic,
        })
    }

    pub fn cpu(&self) -> usize {
        self.cpu
    }

    pub fn lapic(&self) -> &Arc<Mutex<LocalApic>> {
        &self.lapic
    }

    pub fn signals(&self) -> &Arc<ApicSignals> {
        &self.signals
    }

    fn with<R>(&self, f: impl FnOnce(&mut LocalApic) -> R) -> R {
        let (r, out) = {
            let mut a = lock(&self.lapic);
            let r = f(&mut a);
            (r, a.take_output())
        };
        self.bus.dispatch(self.cpu, out);
        r
    }

    /// Whether `msr` is one this LAPIC handles through `read_msr`/`write_msr`
    /// (IA32_TSC_DEADLINE has its own methods).
    pub fn handles_msr(msr: u32) -> bool {
        msr == MSR_APIC_BASE || (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr)
    }

    pub fn read_msr(&self, msr: u32) -> Result<u64, ApicError> {
        self.with(|a| a.read_msr(msr))
    }

    pub fn write_msr(&self, msr: u32, value: u64) -> Result<(), ApicError> {
        self.with(|a| a.write_msr(msr, value))
    }

    pub fn read_tsc_deadline(&self) -> u64 {
        lock(&self.lapic).read_tsc_deadline()
    }

    pub fn write_tsc_deadline(&self, deadline: u64, tsc_now: u64) {
        self.with(|a| a.write_tsc_deadline(deadline, tsc_now))
    }

    /// The guest-physical page this vCPU's xAPIC decodes, if any (lock-free).
    pub fn mmio_base(&self) -> Option<u64> {
        self.signals.mmio_base()
    }

    /// An access at `offset` into the APIC page.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        self.with(|a| a.mmio_read(offset, data))
    }

    pub fn mmio_write(&self, offset: u64, data: &[u8]) {
        self.with(|a| a.mmio_write(offset, data))
    }

    pub fn cr8(&self) -> u64 {
        lock(&self.lapic).cr8()
    }

    pub fn set_cr8(&self, v: u64) {
        self.with(|a| a.set_cr8(v))
    }

    pub fn take_nmi(&self) -> bool {
        self.signals.nmi() && lock(&self.lapic).take_nmi()
    }

    pub fn take_init_sipi(&self) -> Option<InitSipi> {
        if !self.signals.init_sipi() {
            return None;
        }
        lock(&self.lapic).take_init_sipi()
    }

    fn extint_pending(&self) -> bool {
        self.signals.extint() && self.pic.as_ref().is_some_and(|p| p.intr_pending())
    }
}

impl InterruptController for VcpuApic {
    /// The LAPIC has a deliverable vector, or LINT0 passes an 8259 request through.
    fn intr_pending(&self) -> bool {
        self.signals.intr() || self.extint_pending()
    }

    /// ExtINT first (it bypasses the APIC's priorities, as KVM orders it), then the LAPIC.
    fn acknowledge(&self) -> Option<u8> {
        if self.extint_pending() {
            if let Some(p) = &self.pic {
                return p.acknowledge();
            }
        }
        lock(&self.lapic).acknowledge()
    }
}

/// The xAPIC page as a bus [`Device`], for a machine whose MMIO bus is not per-vCPU:
/// register it at [`APIC_DEFAULT_BASE`] for a single-vCPU machine. It serves the page only
/// while the LAPIC is in xAPIC mode at that base.
pub struct ApicMmio {
    vcpu: Arc<VcpuApic>,
    base: u64,
}

impl ApicMmio {
    pub fn new(vcpu: Arc<VcpuApic>, base: u64) -> Self {
        ApicMmio { vcpu, base }
    }
}

impl Device for ApicMmio {
    fn name(&self) -> &'static str {
        "lapic"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if self.vcpu.mmio_base() == Some(self.base) {
            self.vcpu.mmio_read(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if self.vcpu.mmio_base() == Some(self.base) {
            self.vcpu.mmio_write(offset, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::irq::IrqSink;

    struct Rig {
        clock: Arc<ManualClock>,
        bus: Arc<ApicBus>,
        cpus: Vec<Arc<VcpuApic>>,
        pic: Arc<IsaInterrupts>,
    }

    fn rig(n: usize) -> Rig {
        let clock = Arc::new(ManualClock::default());
        let lapics = (0..n)
            .map(|i| {
                Arc::new(Mutex::new(LocalApic::new(
                    i as u32,
                    i == 0,
                    clock.clone(),
                    1_000_000_000,
                )))
            })
            .collect();
        let bus = ApicBus::new(lapics);
        let pic = IsaInterrupts::new();
        let cpus = (0..n)
            .map(|i| Arc::new(VcpuApic::new(&bus, i, (i == 0).then(|| pic.clone())).unwrap()))
            .collect();
        Rig {
            clock,
            bus,
            cpus,
            pic,
        }
    }

    fn w(v: &VcpuApic, reg: u32, val: u32) {
        v.mmio_write(reg as u64, &val.to_le_bytes());
    }

    fn r(v: &VcpuApic, reg: u32) -> u32 {
        let mut b = [0u8; 4];
        v.mmio_read(reg as u64, &mut b);
        u32::from_le_bytes(b)
    }

    fn enable(v: &VcpuApic) {
        w(v, REG_SVR, 0x1ff);
    }

    fn irr(v: &VcpuApic, vector: u8) -> bool {
        bit_get(&lock(v.lapic()).s.irr, vector)
    }

    fn to_x2apic(v: &VcpuApic) {
        let base = v.read_msr(MSR_APIC_BASE).unwrap();
        v.write_msr(MSR_APIC_BASE, base | APIC_BASE_EXTD).unwrap();
    }

    fn x2(reg: u32) -> u32 {
        MSR_X2APIC_FIRST + (reg >> 4)
    }

    #[test]
    fn power_up_state() {
        let rg = rig(2);
        let (a, b) = (&rg.cpus[0], &rg.cpus[1]);
        assert_eq!(a.read_msr(MSR_APIC_BASE), Ok(0xfee0_0900));
        assert_eq!(b.read_msr(MSR_APIC_BASE), Ok(0xfee0_0800));
        assert_eq!(r(b, REG_ID), 1 << 24);
        assert_eq!(r(a, REG_VERSION), 0x0005_0014);
        assert_eq!(r(a, REG_SVR), 0xff);
        assert_eq!(r(a, REG_DFR), 0xffff_ffff);
        for reg in (REG_LVT_FIRST..=REG_LVT_LAST).step_by(16) {
            assert_eq!(r(a, reg), LVT_MASKED);
        }
        assert_eq!(a.mmio_base(), Some(APIC_DEFAULT_BASE));
        // Software-disabled after reset: LINT0 passes the 8259 through (virtual wire).
        assert!(a.signals().extint());
    }

    #[test]
    fn xapic_register_semantics() {
        let rg = rig(1);
        let a = &rg.cpus[0];
        // LVTs stay masked while software-disabled.
        w(a, 0x350, 0x700);
        assert_eq!(r(a, 0x350), 0x10700);
        enable(a);
        assert_eq!(r(a, REG_SVR), 0x1ff);
        w(a, REG_TPR, 0x1234);
        assert_eq!(r(a, REG_TPR), 0x34);
        w(a, REG_LDR, 0x1234_5678);
        assert_eq!(r(a, REG_LDR), 0x1200_0000);
        w(a, REG_DFR, 0);
        assert_eq!(r(a, REG_DFR), 0x0fff_ffff);
        w(a, REG_ID, 0x0500_0000);
        assert_eq!(r(a, REG_ID), 0x0500_0000);
        w(a, REG_ICR_HI, 0xffff_ffff);
        assert_eq!(r(a, REG_ICR_HI), 0xff00_0000);
        w(a, REG_TIMER_DIV, 0xff);
        assert_eq!(r(a, REG_TIMER_DIV), 0xb);
        // LVT writable bits: LINT0 keeps polarity, trigger, mode; remote IRR/status read-only.
        w(a, 0x350, 0xffff_ffff);
        assert_eq!(r(a, 0x350), 0x1a7ff);
        w(a, 0x320, 0xffff_ffff);
        assert_eq!(r(a, 0x320), 0x700ff);
        w(a, 0x370, 0xffff_ffff);
        assert_eq!(r(a, 0x370), 0x100ff);
        // Clearing the enable bit masks every LVT.
        w(a, 0x350, 0x700);
        w(a, REG_SVR, 0xff);
        assert_eq!(r(a, 0x350), 0x10700);
        enable(a);
        // Read-only registers ignore writes.
        w(a, REG_VERSION, 0);
        w(a, REG_PPR, 0xff);
        assert_eq!(r(a, REG_VERSION), APIC_VERSION);
        assert_eq!(r(a, REG_PPR), 0x34);
        // Narrow and offset reads see the register's bytes; bytes past it read 0.
        let mut b = [0u8; 2];
        a.mmio_read(REG_VERSION as u64 + 2, &mut b);
        assert_eq!(b, [0x05, 0x00]);
        let mut b = [0u8; 8];
        a.mmio_read(REG_VERSION as u64, &mut b);
        assert_eq!(b, [0x14, 0, 5, 0, 0, 0, 0, 0]);
        // Narrow or misaligned writes are dropped.
        a.mmio_write(REG_TPR as u64, &[0x77]);
        a.mmio_write(REG_TPR as u64 + 4, &0x77u32.to_le_bytes());
        assert_eq!(r(a, REG_TPR), 0x34);
    }

    #[test]
    fn esr_is_write_then_read() {
        let rg = rig(1);
        let a = &rg.cpus[0];
        enable(a);
        w(a, 0x370, 0x3e); // error LVT, vector 0x3e
        w(a, REG_ICR_LO, 0x4_0005); // self IPI with illegal vector 5
        assert_eq!(r(a, REG_ESR), 0);
        assert!(irr(a, 0x3e), "the error LVT fired");
        w(a, REG_ESR, 0);
        assert_eq!(r(a, REG_ESR), ESR_SEND_ILLEGAL_VECTOR);
        w(a, REG_ESR, 0);
        assert_eq!(r(a, REG_ESR), 0);
        // A reserved register.
        r(a, 0x2f0);
        w(a, 0x400 - 0x10 * 3, 1);
        w(a, REG_ESR, 0);
        assert_eq!(r(a, REG_ESR), ESR_ILLEGAL_REGISTER);
        // Receiving an illegal vector.
        lock(a.lapic()).accept(7, false);
        w(a, REG_ESR, 0);
        assert_eq!(r(a, REG_ESR), ESR_RECEIVE_ILLEGAL_VECTOR);
        assert!(!irr(a, 7));
    }

    #[test]
    fn priorities_acceptance_and_eoi() {
        let rg = rig(1);
        let a = &rg.cpus[0];
        let l = a.lapic();
        lock(l).accept(0x45, false);
        assert_eq!(
            lock(l).has_interrupt(),
            None,
            "dropped while software-disabled"
        );
        enable(a);
        lock(l).accept(0x31, false);
        lock(l).accept(0x45, false);
        assert_eq!(lock(l).has_interrupt(), Some(0x45));
        assert!(a.intr_pending());
        w(a, REG_TPR, 0x50);
        assert_eq!(lock(l).has_interrupt(), None);
        assert!(!a.intr_pending());
        w(a, REG_TPR, 0x40);
        assert_eq!(lock(l).has_interrupt(), None, "same class as TPR is held");
        assert_eq!(r(a, REG_APR), 0x40);
        w(a, REG_TPR, 0x3f);
        assert_eq!(a.acknowledge(), Some(0x45));
        assert_eq!(r(a, REG_PPR), 0x40);
        assert_eq!(r(a, REG_ISR + 0x20), 1 << 5);
        assert_eq!(r(a, REG_IRR + 0x10), 1 << 17);
        lock(l).accept(0x41, false);
        assert_eq!(lock(l).has_interrupt(), None);
        lock(l).accept(0x51, false);
        assert_eq!(a.acknowledge(), Some(0x51));
        assert_eq!(r(a, REG_PPR), 0x50);
        w(a, REG_EOI, 0);
        assert_eq!(r(a, REG_PPR), 0x40);
        w(a, REG_EOI, 0);
        assert_eq!(r(a, REG_PPR), 0x3f);
        assert_eq!(a.acknowledge(), Some(0x41));
        w(a, REG_EOI, 0);
        assert_eq!(a.acknowledge(), None, "0x31 is below TPR 0x3f's class");
        w(a, REG_TPR, 0);
        assert_eq!(a.acknowledge(), Some(0x31));
        // Level-triggered acceptance sets TMR; its EOI is broadcast.
        lock(l).accept(0x60, true);
        assert_eq!(r(a, REG_TMR + 0x30), 1);
        assert_eq!(a.acknowledge(), Some(0x60));
        lock(l).eoi();
        assert_eq!(lock(l).take_output(), vec![ApicOutput::Eoi(0x60)]);
        lock(l).eoi(); // 0x31: edge, no broadcast
        assert!(lock(l).take_output().is_empty());
    }

    #[test]
    fn timer_one_shot_and_divide() {
        let rg = rig(1);
        let a = &rg.cpus[0];
        let l = a.lapic();
        enable(a);
        w(a, 0x320, 0x40); // one-shot, vector 0x40
        rg.clock.set(1000);
        w(a, REG_TIMER_INIT, 1000); // divide 2: expires at 1000 + 2000
        assert_eq!(r(a, REG_TIMER_INIT), 1000);
        assert_eq!(lock(l).poll(1000), Some(3000));
        rg.clock.set(1500);
        assert_eq!(r(a, REG_TIMER_CUR), 750);
        assert_eq!(lock(l).poll(2999), Some(3000));
        assert!(!irr(a, 0x40));
        assert_eq!(lock(l).poll(3000), None);
        assert!(irr(a, 0x40));
        rg.clock.set(5000);
        assert_eq!(r(a, REG_TIMER_CUR), 0);
        // Divide by 16 (0b011), changed halfway to divide by 1 (0b1011).
        rg.clock.set(10_000);
        w(a, REG_TIMER_DIV, 3);
        w(a, REG_TIMER_INIT, 100);
        assert_eq!(lock(l).poll(10_000), Some(11_600));
        rg.clock.set(10_800);
        assert_eq!(r(a, REG_TIMER_CUR), 50);
        w(a, REG_TIMER_DIV, 0xb);
        assert_eq!(r(a, REG_TIMER_CUR), 50);
        assert_eq!(lock(l).poll(10_800), Some(10_850));
        rg.clock.set(10_810);
        assert_eq!(r(a, REG_TIMER_CUR), 40);
        // Writing 0 stops the timer.
        w(a, REG_TIMER_INIT, 0);
        assert_eq!(lock(l).poll(20_000), None);
        // Masked: the count still runs out, without an interrupt.
        lock(l).acknowledge();
        w(a, REG_EOI, 0);
        w(a, 0x320, 0x10040);
        w(a, REG_TIMER_INIT, 10);
        assert_eq!(lock(l).poll(30_000), None);
        assert!(!irr(a, 0x40));
    }

    #[test]
    fn timer_periodic() {
        let rg = rig(1);
        let a = &rg.cpus[0];
        let l = a.lapic();
        enable(a);
        w(a, REG_TIMER_DIV, 0xb);
        w(a, 0x320, 0x20041); // periodic, vector 0x41
        w(a, REG_TIMER_INIT, 100_000);
        assert_eq!(lock(l).poll(0), Some(100_000));
        rg.clock.set(30_000);
        assert_eq!(r(a, REG_TIMER_CUR), 70_000);
        assert_eq!(lock(l).poll(100_000), Some(200_000));
        assert_eq!(a.acknowledge(), Some(0x41));
        w(a, REG_EOI, 0);
        rg.clock.set(250_000);
        assert_eq!(r(a, REG_TIMER_CUR), 50_000);
        // A late poll delivers one interrupt and re-aligns to the period.
        assert_eq!(lock(l).poll(450_000), Some(500_000));
        assert_eq!(a.acknowledge(), Some(0x41));
        assert_eq!(a.acknowledge(), None);
        // Switching to one-shot keeps the count running out.
        rg.clock.set(460_000);
        w(a, 0x320, 0x41);
        assert_eq!(r(a, REG_TIMER_CUR), 40_000);
        assert_eq!(lock(l).poll(460_000), Some(500_000));
        lock(l).poll(500_000);
        assert_eq!(lock(l).poll(500_001), None);
        // A tiny period is rate-limited.
        w(a, 0x320, 0x20041);
        rg.clock.set(600_000);
        w(a, REG_TIMER_INIT, 1);
        assert_eq!(lock(l).poll(600_001), Some(600_001 + MIN_PERIODIC_NS));
    }

    #[test]
    fn timer_tsc_deadline() {
        let clock = Arc::new(ManualClock::default());
        // A 2 GHz TSC: two ticks per virtual ns.
        let lapic = Arc::new(Mutex::new(LocalApic::new(
            0,
            true,
            clock.clone(),
            2_000_000_000,
        )));
        let bus = ApicBus::new(vec![lapic.clone()]);
        let a = VcpuApic::new(&bus, 0, None).unwrap();
        enable(&a);
        a.write_tsc_deadline(5000, 0);
        assert_eq!(
            a.read_tsc_deadline(),
            0,
            "ignored outside TSC-deadline mode"
        );
        w(&a, 0x320, 0x40042);
        w(&a, REG_TIMER_INIT, 1234);
        assert_eq!(r(&a, REG_TIMER_INIT), 0, "the count registers are unused");
        assert_eq!(r(&a, REG_TIMER_CUR), 0);
        clock.set(1000);
        a.write_tsc_deadline(10_000, 2000);
        assert_eq!(a.read_tsc_deadline(), 10_000);
        assert_eq!(lock(&lapic).poll(1000), Some(5000));
        assert_eq!(lock(&lapic).poll(4999), Some(5000));
        assert!(!a.intr_pending());
        assert_eq!(lock(&lapic).poll(5000), None);
        assert_eq!(a.acknowledge(), Some(0x42));
        assert_eq!(a.read_tsc_deadline(), 0, "cleared when it fires");
        // A deadline already passed fires at once; 0 disarms.
        a.write_tsc_deadline(10, 20_000);
        assert!(irr(&a, 0x42));
        a.write_tsc_deadline(1 << 40, 0);
        a.write_tsc_deadline(0, 0);
        assert_eq!(lock(&lapic).poll(u64::MAX), None);
        // Leaving TSC-deadline mode disarms.
        a.write_tsc_deadline(1 << 40, 0);
        w(&a, 0x320, 0x42);
        assert_eq!(lock(&lapic).poll(u64::MAX), None);
        assert_eq!(a.read_tsc_deadline(), 0);
    }

    #[test]
    fn apic_base_transitions() {
        let rg = rig(1);
        let a = &rg.cpus[0];
        let en = APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_BSP;
        let ext = en | APIC_BASE_EXTD;
        let bad = |from: u64, to: u64| Err(ApicError::InvalidTransition { from, to });
        assert_eq!(
            a.write_msr(MSR_APIC_BASE, en | 1),
            bad(en, en | 1),
            "reserved bit"
        );
        assert_eq!(
            a.write_msr(MSR_APIC_BASE, en | (1 << 60)),
            bad(en, en | (1 << 60))
        );
        assert_eq!(
            a.write_msr(MSR_APIC_BASE, APIC_DEFAULT_BASE | APIC_BASE_EXTD),
            bad(en, APIC_DEFAULT_BASE | APIC_BASE_EXTD)
        );
        enable(a);
        w(a, REG_TPR, 0x20);
        w(a, REG_ID, 0x0700_0000);
        assert_eq!(a.write_msr(MSR_APIC_BASE, ext), Ok(()));
        assert_eq!(a.mmio_base(), None);
        assert_eq!(
            a.read_msr(x2(REG_TPR)),
            Ok(0x20),
            "state survives xAPIC -> x2APIC"
        );
        assert_eq!(a.read_msr(x2(REG_ID)), Ok(0), "x2APIC ID is the initial ID");
        assert_eq!(
            a.write_msr(MSR_APIC_BASE, en),
            bad(ext, en),
            "x2APIC -> xAPIC"
        );
        // Disable: registers reset.
        let off = APIC_DEFAULT_BASE | APIC_BASE_BSP;
        assert_eq!(a.write_msr(MSR_APIC_BASE, off), Ok(()));
        assert_eq!(a.read_msr(MSR_APIC_BASE), Ok(off));
        assert_eq!(a.mmio_base(), None);
        assert!(
            a.signals().extint(),
            "a disabled APIC passes the 8259 through"
        );
        let mut b = [0u8; 4];
        a.mmio_read(REG_VERSION as u64, &mut b);
        assert_eq!(b, [0xff; 4], "the page is not decoded");
        assert_eq!(
            a.write_msr(MSR_APIC_BASE, ext),
            bad(off, ext),
            "disabled -> x2APIC"
        );
        assert_eq!(a.write_msr(MSR_APIC_BASE, en), Ok(()));
        assert_eq!(r(a, REG_TPR), 0);
        assert_eq!(r(a, REG_SVR), 0xff);
        // The BSP flag is not writable; the base moves.
        assert_eq!(a.write_msr(MSR_APIC_BASE, 0xfed0_0800), Ok(()));
        assert_eq!(a.read_msr(MSR_APIC_BASE), Ok(0xfed0_0900));
        assert_eq!(a.mmio_base(), Some(0xfed0_0000));
    }

    #[test]
    fn x2apic_msr_rules() {
        let rg = rig(1);
        let clock = rg.clock.clone();
        let lapic = Arc::new(Mutex::new(LocalApic::new(0x123, true, clock, 0)));
        let bus = ApicBus::new(vec![lapic]);
        let a = VcpuApic::new(&bus, 0, None).unwrap();
        assert_eq!(a.read_msr(x2(REG_TPR)), Err(ApicError::NotX2Apic(0x808)));
        assert_eq!(a.write_msr(0x808, 0), Err(ApicError::NotX2Apic(0x808)));
        assert_eq!(a.read_msr(0x10), Err(ApicError::UnknownMsr(0x10)));
        assert_eq!(r(&a, REG_ID), 0x2300_0000);
        to_x2apic(&a);
        assert_eq!(a.read_msr(0x802), Ok(0x123));
        assert_eq!(a.read_msr(0x803), Ok(APIC_VERSION as u64));
        assert_eq!(a.read_msr(0x80d), Ok(0x0012_0008), "cluster 0x12, bit 3");
        assert_eq!(a.write_msr(0x802, 5), Err(ApicError::ReadOnly(0x802)));
        assert_eq!(a.write_msr(0x80d, 5), Err(ApicError::ReadOnly(0x80d)));
        assert_eq!(a.write_msr(0x803, 5), Err(ApicError::ReadOnly(0x803)));
        assert_eq!(a.write_msr(0x810, 5), Err(ApicError::ReadOnly(0x810)));
        assert_eq!(a.read_msr(0x80e), Err(ApicError::Reserved(0x80e)), "no DFR");
        assert_eq!(a.read_msr(0x809), Err(ApicError::Reserved(0x809)), "no APR");
        assert_eq!(
            a.read_msr(0x831),
            Err(ApicError::Reserved(0x831)),
            "no ICR high"
        );
        assert_eq!(
            a.read_msr(0x82f),
            Err(ApicError::Reserved(0x82f)),
            "no CMCI LVT"
        );
        assert_eq!(a.read_msr(0x804), Err(ApicError::Reserved(0x804)));
        assert_eq!(a.read_msr(0x80b), Err(ApicError::WriteOnly(0x80b)));
        assert_eq!(a.read_msr(0x83f), Err(ApicError::WriteOnly(0x83f)));
        assert_eq!(a.write_msr(0x80f, 1 << 32), Err(ApicError::Reserved(0x80f)));
        assert_eq!(a.write_msr(0x80f, 0x1ff), Ok(()));
        assert_eq!(a.write_msr(0x80b, 1), Err(ApicError::Reserved(0x80b)));
        assert_eq!(a.write_msr(0x80b, 0), Ok(()));
        assert_eq!(a.write_msr(0x828, 1), Err(ApicError::Reserved(0x828)));
        assert_eq!(a.write_msr(0x828, 0), Ok(()));
        assert_eq!(a.write_msr(0x83f, 0x100), Err(ApicError::Reserved(0x83f)));
        // SELF_IPI.
        assert_eq!(a.write_msr(0x83f, 0x55), Ok(()));
        assert_eq!(a.acknowledge(), Some(0x55));
        // ICR is one 64-bit register; its write sends.
        assert_eq!(a.write_msr(0x830, (0x123u64 << 32) | 0x66), Ok(()));
        assert_eq!(a.read_msr(0x830), Ok((0x123u64 << 32) | 0x66));
        assert_eq!(
            a.acknowledge(),
            Some(0x66),
            "physical IPI to our own 32-bit ID"
        );
        // The timer registers work as MSRs too.
        assert_eq!(a.write_msr(0x83e, 0xb), Ok(()));
        assert_eq!(a.write_msr(0x838, 500), Ok(()));
        assert_eq!(a.read_msr(0x839), Ok(500));
        assert_eq!(a.write_msr(0x839, 1), Err(ApicError::ReadOnly(0x839)));
        // The MMIO page is not decoded in x2APIC mode.
        assert_eq!(r(&a, REG_VERSION), 0xffff_ffff);
    }

    fn physical(id: u32, vector: u8) -> u64 {
        ((id as u64) << 56) | vector as u64
    }

    #[test]
    fn ipi_physical_and_shorthands() {
        let rg = rig(4);
        for c in &rg.cpus {
            enable(c);
        }
        let (a, c) = (&rg.cpus[0], &rg.cpus);
        for k in &c[1..] {
            assert!(!k.signals().take_kick());
        }
        w(a, REG_ICR_HI, (physical(2, 0) >> 32) as u32);
        w(a, REG_ICR_LO, 0x50);
        assert!(irr(&c[2], 0x50) && !irr(&c[1], 0x50) && !irr(a, 0x50));
        assert!(c[2].signals().take_kick());
        assert!(c[2].intr_pending());
        assert_eq!(r(a, REG_ICR_LO) & (1 << 12), 0, "delivery status idle");
        // Broadcast by destination 0xff.
        w(a, REG_ICR_HI, 0xff00_0000);
        w(a, REG_ICR_LO, 0x51);
        assert!(c.iter().all(|k| irr(k, 0x51)));
        // Shorthands: self, all including self, all excluding self.
        w(a, REG_ICR_HI, 0);
        w(&c[1], REG_ICR_LO, 0x4_0052);
        assert!(irr(&c[1], 0x52) && !irr(a, 0x52) && !irr(&c[3], 0x52));
        w(&c[1], REG_ICR_LO, 0x8_0053);
        assert!(c.iter().all(|k| irr(k, 0x53)));
        w(&c[1], REG_ICR_LO, 0xc_0054);
        assert!(!irr(&c[1], 0x54) && irr(a, 0x54) && irr(&c[2], 0x54) && irr(&c[3], 0x54));
        // Nobody with ID 9.
        w(a, REG_ICR_HI, 0x0900_0000);
        w(a, REG_ICR_LO, 0x55);
        assert!(c.iter().all(|k| !irr(k, 0x55)));
        // A software-disabled APIC drops fixed IPIs.
        w(&c[3], REG_SVR, 0xff);
        w(a, REG_ICR_HI, 0x0300_0000);
        w(a, REG_ICR_LO, 0x56);
        assert!(!irr(&c[3], 0x56));
    }

    #[test]
    fn ipi_logical_flat_cluster_and_lowest_priority() {
        let rg = rig(4);
        let c = &rg.cpus;
        for (i, k) in c.iter().enumerate() {
            enable(k);
            w(k, REG_LDR, (1 << i) << 24);
        }
        // Flat: bitmask 0b1010 reaches CPUs 1 and 3.
        w(&c[0], REG_ICR_HI, 0x0a00_0000);
        w(&c[0], REG_ICR_LO, 0x800 | 0x60);
        let hit: Vec<bool> = c.iter().map(|k| irr(k, 0x60)).collect();
        assert_eq!(hit, [false, true, false, true]);
        // Cluster: CPUs 0,1 in cluster 1 (bits 0, 1); CPUs 2,3 in cluster 2.
        for (i, k) in c.iter().enumerate() {
            w(k, REG_DFR, 0x0fff_ffff);
            let cluster = 1 + (i as u32 / 2);
            w(k, REG_LDR, ((cluster << 4) | (1 << (i % 2))) << 24);
        }
        w(&c[0], REG_ICR_HI, 0x2300_0000);
        w(&c[0], REG_ICR_LO, 0x800 | 0x61);
        let hit: Vec<bool> = c.iter().map(|k| irr(k, 0x61)).collect();
        assert_eq!(hit, [false, false, true, true]);
        w(&c[0], REG_ICR_HI, 0x1200_0000);
        w(&c[0], REG_ICR_LO, 0x800 | 0x62);
        let hit: Vec<bool> = c.iter().map(|k| irr(k, 0x62)).collect();
        assert_eq!(hit, [false, true, false, false]);
        // Lowest priority among cluster 2: the lower TPR wins.
        w(&c[2], REG_TPR, 0x30);
        w(&c[3], REG_TPR, 0x10);
        w(&c[0], REG_ICR_HI, 0x2300_0000);
        w(&c[0], REG_ICR_LO, 0x800 | 0x100 | 0x63);
        let hit: Vec<bool> = c.iter().map(|k| irr(k, 0x63)).collect();
        assert_eq!(hit, [false, false, false, true]);
    }

    #[test]
    fn ipi_x2apic_logical_cluster() {
        let rg = rig(20);
        for k in &rg.cpus {
            to_x2apic(k);
            k.write_msr(0x80f, 0x1ff).unwrap();
        }
        // Cluster 1 (IDs 16..31), members 17 and 19 (bits 1 and 3).
        rg.cpus[0]
            .write_msr(0x830, (0x1_000a_u64 << 32) | 0x800 | 0x70)
            .unwrap();
        let hit: Vec<usize> = (0..20).filter(|&i| irr(&rg.cpus[i], 0x70)).collect();
        assert_eq!(hit, [17, 19]);
        // Physical broadcast in x2APIC format.
        rg.cpus[5]
            .write_msr(0x830, (0xffff_ffffu64 << 32) | 0x71)
            .unwrap();
        assert!(rg.cpus.iter().all(|k| irr(k, 0x71)));
    }

    #[test]
    fn nmi_init_and_sipi() {
        let rg = rig(2);
        let (a, b) = (&rg.cpus[0], &rg.cpus[1]);
        enable(a);
        // NMI, INIT and SIPI are received even while software-disabled.
        w(a, REG_ICR_HI, 0x0100_0000);
        w(a, REG_ICR_LO, 0x400);
        assert!(b.signals().nmi());
        assert!(b.take_nmi());
        assert!(!b.take_nmi());
        // INIT resets the target's registers (not its ID) and queues the event.
        enable(b);
        w(b, REG_TPR, 0x20);
        w(b, REG_ID, 0x0400_0000);
        w(a, REG_ICR_HI, 0x0400_0000);
        w(a, REG_ICR_LO, 0xc500); // INIT, level assert
        w(a, REG_ICR_LO, 0x8500); // INIT level de-assert: nothing
        w(a, REG_ICR_LO, 0x4608); // SIPI, vector 8
        assert!(b.signals().init_sipi());
        assert_eq!(b.take_init_sipi(), Some(InitSipi::Init));
        assert_eq!(b.take_init_sipi(), Some(InitSipi::Sipi(8)));
        assert_eq!(b.take_init_sipi(), None);
        assert!(!b.signals().init_sipi());
        assert_eq!(r(b, REG_TPR), 0);
        assert_eq!(r(b, REG_SVR), 0xff);
        assert_eq!(r(b, REG_ID), 0x0400_0000);
        // SMI is ignored; the queue is bounded.
        w(a, REG_ICR_LO, 0x4200);
        for _ in 0..100 {
            w(a, REG_ICR_LO, 0xc_4609);
        }
        assert_eq!(lock(b.lapic()).s.events.len(), MAX_EVENTS);
        // LINT1 in NMI mode.
        w(a, 0x360, 0x400);
        lock(a.lapic()).set_lint(1, true);
        assert!(a.take_nmi());
        lock(a.lapic()).set_lint(1, true);
        assert!(!a.take_nmi(), "edge only");
        // LINT1 in fixed mode.
        w(a, 0x360, 0x77);
        lock(a.lapic()).set_lint(1, false);
        lock(a.lapic()).set_lint(1, true);
        assert!(irr(a, 0x77));
    }

    #[test]
    fn extint_through_lint0() {
        let rg = rig(2);
        let (a, b) = (&rg.cpus[0], &rg.cpus[1]);
        // Program the 8259 as a BIOS would, and raise IRQ 1.
        rg.pic.with_pic(|p| {
            for (slave, base, icw3) in [(false, 0x08, 0x04), (true, 0x70, 0x02)] {
                p.write_port(slave, 0, 0x11);
                p.write_port(slave, 1, base);
                p.write_port(slave, 1, icw3);
                p.write_port(slave, 1, 0x01);
                p.write_port(slave, 1, 0x00);
            }
        });
        rg.pic.set_irq(1, true);
        // Virtual wire after reset.
        assert!(a.intr_pending());
        assert!(!b.intr_pending(), "only vCPU 0 is wired to the 8259");
        // APIC enabled, LINT0 masked: the PIC is cut off.
        enable(a);
        assert!(!a.intr_pending());
        // LINT0 ExtINT: passes, and ExtINT is acknowledged through the 8259 first.
        w(a, 0x350, 0x700);
        lock(a.lapic()).accept(0x90, false);
        assert!(a.intr_pending());
        assert_eq!(a.acknowledge(), Some(0x09));
        assert_eq!(a.acknowledge(), Some(0x90));
        rg.pic.with_pic(|p| p.write_port(false, 0, 0x20));
        rg.pic.set_irq(1, false);
        rg.pic.set_irq(1, true);
        assert!(a.intr_pending());
        // Globally disabled: passes too.
        w(a, 0x350, 0x10700);
        assert!(!a.intr_pending());
        a.write_msr(MSR_APIC_BASE, APIC_DEFAULT_BASE).unwrap();
        assert!(a.intr_pending());
        assert_eq!(a.acknowledge(), Some(0x09));
    }

    #[test]
    fn eoi_broadcast_reaches_listeners() {
        struct Rec(Mutex<Vec<u8>>);
        impl EoiListener for Rec {
            fn eoi(&self, v: u8) {
                lock(&self.0).push(v);
            }
        }
        let rg = rig(1);
        let rec = Arc::new(Rec(Mutex::new(Vec::new())));
        let weak: Weak<dyn EoiListener> = Arc::downgrade(&rec) as _;
        rg.bus.add_eoi_listener(weak);
        let a = &rg.cpus[0];
        enable(a);
        rg.bus.deliver(
            &ApicMessage {
                vector: 0x80,
                mode: DeliveryMode::Fixed,
                dest: Destination::Physical {
                    id: 0,
                    x2apic: false,
                },
                level_triggered: true,
            },
            None,
        );
        assert_eq!(a.acknowledge(), Some(0x80));
        w(a, REG_EOI, 0);
        assert_eq!(*lock(&rec.0), [0x80]);
        // A level-triggered IPI behaves the same.
        w(a, REG_ICR_LO, 0x4_8081);
        assert_eq!(a.acknowledge(), Some(0x81));
        w(a, REG_EOI, 0);
        assert_eq!(*lock(&rec.0), [0x80, 0x81]);
    }

    #[test]
    fn waker_and_kick() {
        use std::sync::atomic::AtomicUsize;
        let rg = rig(2);
        let woken = Arc::new(AtomicUsize::new(0));
        let w2 = woken.clone();
        assert!(rg.cpus[1].signals().set_waker(Box::new(move || {
            w2.fetch_add(1, Ordering::SeqCst);
        })));
        enable(&rg.cpus[1]);
        w(&rg.cpus[0], REG_ICR_HI, 0x0100_0000);
        w(&rg.cpus[0], REG_ICR_LO, 0x400); // NMI
        w(&rg.cpus[0], REG_ICR_LO, 0x40); // fixed
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        assert!(rg.cpus[1].signals().take_kick());
        assert!(!rg.cpus[1].signals().take_kick());
        assert!(rg.cpus[1].signals().intr() && rg.cpus[1].signals().nmi());
    }

    #[test]
    fn msi_decoding() {
        let m = ApicMessage::from_msi(0xfee0_3004, 0x4031);
        assert_eq!(m.vector, 0x31);
        assert_eq!(m.mode, DeliveryMode::Fixed);
        assert_eq!(
            m.dest,
            Destination::Logical {
                mda: 3,
                x2apic: false
            }
        );
        assert!(!m.level_triggered);
        let m = ApicMessage::from_msi(0xfee0_1000, 0x8400);
        assert_eq!(m.mode, DeliveryMode::Nmi);
        assert_eq!(
            m.dest,
            Destination::Physical {
                id: 1,
                x2apic: false
            }
        );
        assert!(m.level_triggered);
    }

    #[test]
    fn save_and_restore() {
        let rg = rig(1);
        let a = &rg.cpus[0];
        enable(a);
        w(a, REG_TPR, 0x10);
        w(a, 0x320, 0x20040);
        w(a, REG_TIMER_INIT, 1_000_000);
        lock(a.lapic()).accept(0x99, true);
        let saved = lock(a.lapic()).save_state();
        let rg2 = rig(1);
        let b = &rg2.cpus[0];
        assert!(!b.intr_pending());
        lock(b.lapic()).restore_state(&saved);
        assert_eq!(lock(b.lapic()).save_state(), saved);
        assert!(b.intr_pending(), "the atomic mirrors follow a restore");
        assert_eq!(r(b, REG_TPR), 0x10);
        assert_eq!(lock(b.lapic()).poll(0), Some(2_000_000));
        lock(b.lapic()).reset();
        assert_eq!(
            lock(b.lapic()).save_state(),
            lock(rig(1).cpus[0].lapic()).save_state()
        );
    }

    #[test]
    fn random_accesses_never_panic() {
        let rg = rig(3);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..60_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = &rg.cpus[(x % 3) as usize];
            let off = (x >> 8) & 0xfff;
            let width = [1, 2, 4, 8][((x >> 4) & 3) as usize];
            let bytes = (x >> 11).to_le_bytes();
            match (x >> 30) % 8 {
                0 => c.mmio_write(off & !0xf, &bytes[..4]),
                1 => c.mmio_write(off, &bytes[..width]),
                2 => {
                    let mut b = [0u8; 8];
                    c.mmio_read(off, &mut b[..width]);
                }
                3 => {
                    let _ = c.write_msr(0x800 + ((x >> 40) & 0xff) as u32, x >> 3);
                }
                4 => {
                    let _ = c.read_msr(0x800 + ((x >> 40) & 0xff) as u32);
                }
                5 => {
                    let _ = c.write_msr(MSR_APIC_BASE, (x >> 20) & 0xc00 | APIC_DEFAULT_BASE);
                }
                6 => c.write_tsc_deadline(x >> 20, i),
                _ => {
                    c.take_nmi();
                    c.take_init_sipi();
                }
            }
            rg.clock.set(i * 1000);
            for k in &rg.cpus {
                lock(k.lapic()).poll(i * 1000);
                if k.intr_pending() {
                    k.acknowledge();
                }
            }
        }
    }
}
