//! From the command line's paths to a list of tests: image files, folders of them, manifests.

use std::path::{Path, PathBuf};

use super::manifest;
use super::spec::{ImageKind, TestSpec};

/// How a file given as a test (or found in a folder) is booted, by its extension:
/// multiboot kernels (`.elf`, and `.flat` as kvm-unit-tests names its x86 ELF images) and
/// firmware images (`.rom`, `.bin`, `.fd`).
fn image_kind(p: &Path) -> Option<ImageKind> {
    match p.extension()?.to_str()? {
        "elf" | "flat" => Some(ImageKind::Kernel),
        "rom" | "bin" | "fd" => Some(ImageKind::Firmware),
        _ => None,
    }
}

fn is_manifest(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "manifest" || name.ends_with(".manifest")
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Every test named by `paths`, in order; a test name seen twice gets its path as name.
pub fn collect(paths: &[PathBuf], images_dir: Option<&Path>) -> Result<Vec<TestSpec>, String> {
    let mut tests = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            let m = p.join("manifest");
            if m.is_file() {
                tests.extend(load_manifest(&m, images_dir)?);
                continue;
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && image_kind(f).is_some())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(format!(
                    "{}: no manifest and no test images (.elf, .flat, .rom, .bin, .fd) in this folder",
                    p.display()
                ));
            }
            for f in files {
                let kind = image_kind(&f).unwrap_or(ImageKind::Kernel);
                tests.push(TestSpec::image(stem(&f), kind, f));
            }
        } else if is_manifest(p) {
            tests.extend(load_manifest(p, images_dir)?);
        } else {
            // A single image: the extension decides, a multiboot kernel otherwise.
            let kind = image_kind(p).unwrap_or(ImageKind::Kernel);
            tests.push(TestSpec::image(stem(p), kind, p.clone()));
        }
    }
    if tests.is_empty() {
        return Err("no tests to run".into());
    }
    let names: Vec<String> = tests.iter().map(|t| t.name.clone()).collect();
    for (i, t) in tests.iter_mut().enumerate() {
        if names.iter().filter(|n| **n == t.name).count() > 1 {
            t.name = format!("{}#{}", t.name, i + 1);
        }
    }
    Ok(tests)
}

fn load_manifest(p: &Path, images_dir: Option<&Path>) -> Result<Vec<TestSpec>, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    manifest::parse(&text, p, images_dir)
}
