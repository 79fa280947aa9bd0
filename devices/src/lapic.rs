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
    InvalidTransition { from: u64, to: u64 },
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
    Physical { id: u32, x2apic: bool },
    Logical { mda: u32, x2apic: bool },
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
                Destination::Logical { mda: ((addr >> 12) & 0xff) as u32, x2apic: false }
            } else {
                Destination::Physical { id: ((addr >> 12) & 0xff) as u32, x2apic: false }
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
        self.s.apic_base = APIC_DEFAULT_BASE | APIC_BASE_ENABLE | (self.s.apic_base & APIC_BASE_BSP);
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
        (self.hw_enabled() && !self.x2apic_mode()).then_some(self.s.apic_base & !0xfff & !APIC_BASE_RESERVED)
    }

    /// Refreshes the atomic mirrors. Every public mutating method ends with it.
    fn sync(&self) {
        let sig = &self.signals;
        sig.intr.store(self.has_interrupt().is_some(), Ordering::Release);
        sig.nmi.store(self.s.nmi_pending, Ordering::Release);
        sig.init_sipi.store(!self.s.events.is_empty(), Ordering::Release);
        sig.extint.store(self.extint_passthrough(), Ordering::Release);
        sig.mmio_base.store(self.mmio_base().unwrap_or(u64::MAX), Ordering::Release);
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
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => self.accept_inner(vector, level_triggered),
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
        let mode = if idx == LVT_TIMER || idx == LVT_ERROR { 0 } else { (lvt >> 8) & 7 };
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
        let dest_field = if x2 { (icr >> 32) as u32 } else { (icr >> 56) as u32 };
        let dest = match (icr >> 18) & 3 {
            0 if logical => Destination::Logical { mda: dest_field, x2apic: x2 },
            0 => Destination::Physical { id: dest_field, x2apic: x2 },
            1 => Destination::ToSelf,
            2 => Destination::AllIncludingSelf,
            _ => Destination::AllExcludingSelf,
        };
        self.push_output(ApicOutput::Ipi(ApicMessage { vector, mode, dest, level_triggered }));
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
        self.s.timer_anchor_ticks + now.saturating_sub(self.s.timer_anchor_ns) / self.ns_per_count()
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
            (t / n + 1) * n
        } else if t >= n {
            return None;
        } else {
            n
        };
        let dt = (target - self.s.timer_anchor_ticks).saturating_mul(self.ns_per_count());
        Some(self.s.timer_anchor_ns.saturating_add(dt))
    }

    /// Re-anchors the count at `now` (before a divide or mode change), keeping its value.
    fn reanchor(&mut self, now: u64) {
        let n = self.s.timer_initial as u64;
        if n != 0 {
            let t = self.timer_ticks(now);
            self.s.timer_anchor_ticks = if self.timer_mode() == TIMER_PERIODIC { t % n } else { t.min(n) };
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
        if old_mode != new_mode && (old_mode == TIMER_TSC_DEADLINE || new_mode == TIMER_TSC_DEADLINE) {
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
            TIMER_PERIODIC => self.count_expiry(now).map(|t| t.max(now + MIN_PERIODIC_NS)),
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
            REG_ICR_HI => self.s.icr = (self.s.icr & 0xffff_ffff) | ((v & 0xff00_0000) as u64) << 32,
            REG_LVT_FIRST..=REG_LVT_LAST => {
                let i = ((reg - REG_LVT_FIRST) >> 4) as usize;
                let mut nv = (v & LVT_WRITABLE[i]) | (self.s.lvt[i] & !LVT_WRITABLE[i] & !LVT_MASKED);
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
            _ => self.read_reg(reg).map(u64::from).ok_or(ApicError::Reserved(msr)),
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
        let err = Err(ApicError::InvalidTransition { from: old, to: value });
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
                    id == 0xff || (if x2 { id == self.apic_id() } else { id as u8 == self.s.xapic_id })
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
            Destination::ToSelf | Destination::AllIncludingSelf | Destination::AllExcludingSelf => true,
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
        Arc::new(ApicBus { cpus: lapics, signals, eoi_listeners: RwLock::new(Vec::new()) })
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
        self.eoi_listeners.write().unwrap_or_else(|e| e.into_inner()).push(l);
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
            Destination::AllExcludingSelf => (0..self.cpus.len()).filter(|&c| Some(c) != source).collect(),
            _ => (0..self.cpus.len()).filter(|&c| lock(&self.cpus[c]).matches(&m.dest)).collect(),
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
