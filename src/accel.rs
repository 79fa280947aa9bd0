//! Execution engines (`--accel`): one parser shared by every command that picks an engine.

use std::fmt;
use std::str::FromStr;

/// An execution engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Accel {
    /// twinvm's own interpreter.
    Interp,
    /// Linux KVM, with the interpreter as fallback for what KVM cannot run.
    Kvm,
}

impl Accel {
    pub const ALL: [Accel; 2] = [Accel::Interp, Accel::Kvm];

    pub fn name(self) -> &'static str {
        match self {
            Accel::Interp => "interp",
            Accel::Kvm => "kvm",
        }
    }

    /// Parses a comma-separated list (`interp,kvm`), refusing duplicates and empty lists.
    pub fn parse_list(s: &str) -> Result<Vec<Accel>, String> {
        let mut out = Vec::new();
        for part in s.split(',') {
            let a: Accel = part.trim().parse()?;
            if out.contains(&a) {
                return Err(format!("--accel '{s}': {} is named twice", a.name()));
            }
            out.push(a);
        }
        Ok(out)
    }
}

impl FromStr for Accel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "interp" | "tcg" => Ok(Accel::Interp),
            "kvm" => Ok(Accel::Kvm),
            _ => Err(format!(
                "unknown accelerator '{s}' (expected one of: interp, kvm)"
            )),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_lists() {
        assert_eq!("kvm".parse::<Accel>(), Ok(Accel::Kvm));
        assert_eq!("interp".parse::<Accel>(), Ok(Accel::Interp));
        assert!("hvf".parse::<Accel>().is_err());
        assert_eq!(
            Accel::parse_list("interp, kvm"),
            Ok(vec![Accel::Interp, Accel::Kvm])
        );
        assert!(Accel::parse_list("kvm,kvm").is_err());
        assert!(Accel::parse_list("").is_err());
    }
}
