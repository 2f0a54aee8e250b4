//! The names of everything one lab creates: one prefix per run, then a role and an index.
//! It owns the naming scheme (and so what counts as "ours" when cleaning up); it creates nothing.
//!
//! A run's prefix is `vd<pid><letters>` by default: the process id keeps parallel runs apart and
//! lets a later run tell a crashed run's leftovers (process gone) from a live run's; the letters
//! count the labs of one process. Every name is `<prefix>-<rest>`, and a prefix never contains
//! `-`, so `<prefix>-` matches exactly one run's names.

use std::sync::atomic::{AtomicU32, Ordering};

use super::LabError;

/// Linux's limit on interface names (IFNAMSIZ − 1).
pub const IFNAME_MAX: usize = 15;
/// Longest prefix accepted: it leaves room for `-` and a role with an index.
pub const PREFIX_MAX: usize = 10;

/// The prefix of the next lab of this process: `vd<pid>` and `a`, `b`, … `z`, `ba`, … (letters
/// count in base 26 with `a` as zero, so different counts never give the same text).
pub fn default_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut letters = Vec::new();
    loop {
        // `n % 26` < 26, so the sum stays within b'a'..=b'z'.
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    letters.reverse();
    format!(
        "vd{}{}",
        std::process::id(),
        String::from_utf8(letters).expect("ASCII letters")
    )
}

/// Checks a prefix: 1..=PREFIX_MAX ASCII letters and digits, starting with a letter.
pub fn check_prefix(prefix: &str) -> Result<(), LabError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= PREFIX_MAX
        && prefix.starts_with(|c: char| c.is_ascii_alphabetic())
        && prefix.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(LabError::BadPrefix(prefix.to_string()))
    }
}

/// The process id a default prefix was made from, or `None` for another prefix.
pub fn prefix_pid(prefix: &str) -> Option<u32> {
    let rest = prefix.strip_prefix("vd")?;
    let digits_end = rest.find(|c: char| !c.is_ascii_digit())?;
    let (digits, letters) = rest.split_at(digits_end);
    if digits.is_empty() || letters.is_empty() || !letters.chars().all(|c| c.is_ascii_lowercase()) {
        return None;
    }
    digits.parse().ok()
}

/// The default-scheme prefix a name of ours starts with (`vd123a` of `vd123a-v0`).
pub fn default_prefix_of(name: &str) -> Option<&str> {
    let (prefix, _) = name.split_once('-')?;
    prefix_pid(prefix).map(|_| prefix)
}

/// Names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNames {
    prefix: String,
}

impl LabNames {
    pub fn new(prefix: String) -> Result<LabNames, LabError> {
        check_prefix(&prefix)?;
        Ok(LabNames { prefix })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// An interface `<prefix>-<role>`, refused if Linux could not hold it.
    pub fn interface(&self, role: &str) -> Result<String, LabError> {
        let name = format!("{}-{role}", self.prefix);
        if name.len() > IFNAME_MAX {
            return Err(LabError::NameTooLong { name });
        }
        Ok(name)
    }

    /// The network namespace of a VM: `<prefix>-vm-<vm name>` when the VM's name is a plain word
    /// (letters, digits, `_`, `.`, `-`; namespaces are files under /run/netns), else
    /// `<prefix>-vm<index>`.
    pub fn namespace(&self, vm_name: &str, vm_index: usize) -> String {
        let plain = !vm_name.is_empty()
            && vm_name.len() <= 64
            && !vm_name.starts_with('.')
            && vm_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if plain {
            format!("{}-vm-{vm_name}", self.prefix)
        } else {
            format!("{}-vm{vm_index}", self.prefix)
        }
    }

    /// The network namespace of the Open vSwitch daemon and its bridges.
    pub fn ovs_namespace(&self) -> String {
        format!("{}-ovs", self.prefix)
    }

    /// True for a name this prefix owns.
    pub fn owns(&self, name: &str) -> bool {
        name.strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('-'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_prefixes_differ_and_carry_the_pid() {
        let a = default_prefix();
        let b = default_prefix();
        assert_ne!(a, b);
        for p in [&a, &b] {
            check_prefix(p).unwrap();
            assert_eq!(prefix_pid(p), Some(std::process::id()));
        }
    }

    #[test]
    fn prefixes_are_checked() {
        for bad in ["", "1vd", "vd-1", "vd 1", "abcdefghijk", "vé"] {
            assert!(
                matches!(check_prefix(bad), Err(LabError::BadPrefix(_))),
                "{bad}"
            );
        }
        check_prefix("vd4194304z").unwrap();
    }

    #[test]
    fn pids_come_only_from_default_prefixes() {
        assert_eq!(prefix_pid("vd123a"), Some(123));
        assert_eq!(prefix_pid("vd123ba"), Some(123));
        assert_eq!(prefix_pid("vd123"), None);
        assert_eq!(prefix_pid("vda"), None);
        assert_eq!(prefix_pid("vd12A"), None);
        assert_eq!(prefix_pid("lab1a"), None);
        assert_eq!(default_prefix_of("vd77c-v3"), Some("vd77c"));
        assert_eq!(default_prefix_of("vd77c"), None);
        assert_eq!(default_prefix_of("eth0"), None);
    }

    #[test]
    fn interface_names_fit_linux_or_are_refused() {
        let names = LabNames::new("vd4194304a".into()).unwrap();
        assert_eq!(names.interface("l12a").unwrap(), "vd4194304a-l12a");
        assert!(matches!(
            names.interface("v1000"),
            Err(LabError::NameTooLong { name }) if name == "vd4194304a-v1000"
        ));
    }

    #[test]
    fn ownership_is_by_prefix_and_dash() {
        let names = LabNames::new("vd12a".into()).unwrap();
        assert!(names.owns("vd12a-v0"));
        assert!(!names.owns("vd12ab-v0"));
        assert!(!names.owns("vd12a"));
        assert_eq!(names.namespace("web1", 0), "vd12a-vm-web1");
        assert_eq!(names.namespace("ovs", 0), "vd12a-vm-ovs");
        assert_eq!(names.ovs_namespace(), "vd12a-ovs");
        assert_eq!(names.namespace("a/b", 4), "vd12a-vm4");
        assert_eq!(names.namespace("..", 5), "vd12a-vm5");
    }
}
