//! Opening the KVM device, checking what twinvm needs of it, creating the VM and vCPU.

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};

/// The KVM API version every KVM since Linux 2.6.22 reports.
const KVM_API_VERSION: i32 = 12;

/// Where KVM gets its 3-page TSS and its identity-map page (Intel, for real mode without
/// unrestricted guest): in the PCI hole below the largest firmware (16 MiB under 4 GiB) and
/// above the LAPIC page, so they never shadow RAM, ROM or a device.
const TSS_ADDRESS: usize = 0xfeff_d000;
const IDENTITY_MAP_ADDRESS: u64 = 0xfeff_c000;

/// Why KVM cannot be used. Each names what is missing, in one line.
#[derive(Debug)]
pub enum KvmError {
    /// The device could not be opened.
    Open {
        path: PathBuf,
        err: std::io::Error,
    },
    BadApiVersion {
        path: PathBuf,
        version: i32,
    },
    MissingCap {
        what: &'static str,
    },
    /// An ioctl failed during setup or running.
    Ioctl {
        what: &'static str,
        err: kvm_ioctls::Error,
    },
    /// Something else about the setup (e.g. too many memory regions).
    Setup(String),
}

impl fmt::Display for KvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvmError::Open { path, err } => {
                let hint = match err.kind() {
                    std::io::ErrorKind::NotFound => {
                        " (no such device: is the kvm module loaded? --accel interp needs no KVM)"
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        " (permission denied: add your user to the group owning it, e.g. 'kvm')"
                    }
                    _ => "",
                };
                write!(
                    f,
                    "KVM unavailable: cannot open {}: {err}{hint}",
                    path.display()
                )
            }
            KvmError::BadApiVersion { path, version } => write!(
                f,
                "KVM unavailable: {} reports API version {version}, twinvm needs {KVM_API_VERSION}",
                path.display()
            ),
            KvmError::MissingCap { what } => {
                write!(f, "KVM unavailable: this KVM lacks the capability {what}")
            }
            KvmError::Ioctl { what, err } => write!(f, "KVM: {what} failed: {err}"),
            KvmError::Setup(m) => write!(f, "KVM: {m}"),
        }
    }
}

impl std::error::Error for KvmError {}

pub fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |err| KvmError::Ioctl { what, err }
}

/// Optional capabilities, looked up once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Caps {
    pub xsave: bool,
    pub xcrs: bool,
    pub debugregs: bool,
    pub vcpu_events: bool,
}

/// An open KVM device and one VM on it.
pub struct KvmVm {
    pub kvm: Kvm,
    pub vm: VmFd,
    pub caps: Caps,
    pub path: PathBuf,
}

fn open_device(path: &Path) -> Result<Kvm, KvmError> {
    let open_err = |err| KvmError::Open {
        path: path.to_path_buf(),
        err,
    };
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        open_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path contains a NUL byte",
        ))
    })?;
    Kvm::new_with_path(&c).map_err(|e| open_err(std::io::Error::from_raw_os_error(e.errno())))
}

impl KvmVm {
    /// Opens `path`, checks the API version and the capabilities twinvm cannot do without,
    /// and creates a VM.
    pub fn open(path: &Path) -> Result<KvmVm, KvmError> {
        let kvm = open_device(path)?;
        let version = kvm.get_api_version();
        if version != KVM_API_VERSION {
            return Err(KvmError::BadApiVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let required = [
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
            (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
        ];
        for (cap, what) in required {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCap { what });
            }
        }
        // ROM regions must be read-only slots so guest writes exit instead of changing them.
        if kvm.check_extension_raw(kvm_bindings::KVM_CAP_READONLY_MEM as _) <= 0 {
            return Err(KvmError::MissingCap {
                what: "KVM_CAP_READONLY_MEM",
            });
        }
        let caps = Caps {
            xsave: kvm.check_extension(Cap::Xsave),
            xcrs: kvm.check_extension(Cap::Xcrs),
            debugregs: kvm.check_extension_raw(kvm_bindings::KVM_CAP_DEBUGREGS as _) > 0,
            vcpu_events: kvm.check_extension(Cap::VcpuEvents),
        };
        let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        if kvm.check_extension(Cap::SetTssAddr) {
            vm.set_tss_address(TSS_ADDRESS)
                .map_err(ioctl("KVM_SET_TSS_ADDR"))?;
        }
        if kvm.check_extension(Cap::SetIdentityMapAddr) {
            vm.set_identity_map_address(IDENTITY_MAP_ADDRESS)
                .map_err(ioctl("KVM_SET_IDENTITY_MAP_ADDR"))?;
        }
        Ok(KvmVm {
            kvm,
            vm,
            caps,
            path: path.to_path_buf(),
        })
    }

    pub fn create_vcpu(&self, id: u64) -> Result<VcpuFd, KvmError> {
        self.vm.create_vcpu(id).map_err(ioctl("KVM_CREATE_VCPU"))
    }
}

/// Whether KVM is usable at `path`: the device opens and a VM can be created. Tests use it
/// to skip (with the returned reason) where KVM is not there.
pub fn probe(path: &Path) -> Result<(), KvmError> {
    let vm = KvmVm::open(path)?;
    vm.create_vcpu(0).map(|_| ())
}
