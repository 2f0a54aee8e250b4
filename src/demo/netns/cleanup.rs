//! Removing everything a lab made, found by its prefix rather than by the lab's own records, so
//! the same sweep serves [`NetnsLab::destroy`](super::NetnsLab::destroy), Ctrl-C and the
//! leftovers of a crashed run: the OVS daemons of the run directory (by their pidfiles, checked
//! against the process's command line), interfaces and namespaces named `<prefix>-…`, and the run
//! directory. Names of other prefixes are never touched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::command::{cmd, run};
use super::names::{default_prefix_of, prefix_pid, LabNames};
use super::ovs::PIDFILES;
use super::setns::{send_signal, NETNS_DIR};
use super::LabError;

/// What a sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub processes: Vec<u32>,
    pub interfaces: Vec<String>,
    pub namespaces: Vec<String>,
    pub run_dir: Option<PathBuf>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
            && self.interfaces.is_empty()
            && self.namespaces.is_empty()
            && self.run_dir.is_none()
    }
}

/// The run directory of a prefix: `<temp dir>/<prefix>-ovs`.
pub fn run_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}-ovs"))
}

/// Removes everything named with `prefix` (see the module documentation). Errors on single
/// items do not stop the sweep; the first one is returned after it.
pub fn remove_by_prefix(prefix: &str) -> Result<Removed, LabError> {
    let names = LabNames::new(prefix.to_string())?;
    let owned = |name: &str| names.owns(name);
    let mut removed = Removed::default();
    let mut first_error = None;
    let mut note = |result: Result<(), LabError>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };

    let dir = run_dir(prefix);
    removed.processes = stop_daemons(&dir);

    // Namespaces first: with them go the VMs' veths, and their peers here.
    for name in namespaces()?.into_iter().filter(|n| owned(n)) {
        note(run(&mut cmd("ip", &["netns", "del", &name])).map(drop));
        removed.namespaces.push(name);
    }
    // Deleting one end of a veth deletes its peer, and a namespace's veths go away a moment
    // after the namespace: a name gone by the time we get to it is not an error.
    for name in interfaces()?.into_iter().filter(|n| owned(n)) {
        if let Err(e) = run(&mut cmd("ip", &["link", "del", "dev", &name])) {
            if interface_exists(&name) {
                note(Err(e));
                continue;
            }
        }
        removed.interfaces.push(name);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = interfaces()?.into_iter().filter(|n| owned(n)).collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            note(Err(LabError::Leftovers(left)));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if dir.exists() {
        note(
            std::fs::remove_dir_all(&dir).map_err(|source| LabError::Io {
                what: format!("removing {}", dir.display()),
                source,
            }),
        );
        removed.run_dir = Some(dir);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// Sweeps every default-scheme prefix (`vd<pid><letters>`) whose process is gone: the
/// leftovers of crashed runs. Live runs, this one included, are left alone.
pub fn remove_dead_runs() -> Result<Vec<(String, Removed)>, LabError> {
    let mut prefixes = BTreeSet::new();
    let temp = std::env::temp_dir();
    let dirs = std::fs::read_dir(&temp).map_err(|source| LabError::Io {
        what: format!("listing {}", temp.display()),
        source,
    })?;
    let mut names: Vec<String> = dirs
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with("-ovs"))
        .collect();
    names.extend(interfaces()?);
    names.extend(namespaces()?);
    for name in &names {
        if let Some(prefix) = default_prefix_of(name) {
            prefixes.insert(prefix.to_string());
        }
    }
    let mut swept = Vec::new();
    for prefix in prefixes {
        let alive =
            prefix_pid(&prefix).is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let removed = remove_by_prefix(&prefix)?;
            swept.push((prefix, removed));
        }
    }
    Ok(swept)
}

/// Stops the daemons whose pidfiles are in `dir`, if the process with that id really runs from
/// `dir` (a recycled pid is left alone). Returns the pids stopped.
fn stop_daemons(dir: &Path) -> Vec<u32> {
    let mut stopped = Vec::new();
    for pidfile in PIDFILES {
        let Ok(text) = std::fs::read_to_string(dir.join(pidfile)) else {
            continue;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            continue;
        };
        if !runs_from(pid, dir) {
            continue;
        }
        send_signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while runs_from(pid, dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if runs_from(pid, dir) {
            send_signal(pid, libc::SIGKILL);
        }
        stopped.push(pid);
    }
    stopped
}

/// True if process `pid` is alive (not a zombie) and has `dir` in its command line.
fn runs_from(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // A zombie has an empty command line.
    let needle = dir.as_os_str().as_encoded_bytes();
    !needle.is_empty() && cmdline.windows(needle.len()).any(|w| w == needle)
}

/// The names of all interfaces of this thread's network namespace.
pub fn interfaces() -> Result<Vec<String>, LabError> {
    Ok(parse_link_names(&run(&mut cmd(
        "ip",
        &["-o", "link", "show"],
    ))?))
}

fn interface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// `ip -o link show` lines are `INDEX: NAME[@PEER]: <FLAGS> …`.
fn parse_link_names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let name = line.split(": ").nth(1)?;
            let name = name.split('@').next()?;
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The named network namespaces (files under /run/netns).
pub fn namespaces() -> Result<Vec<String>, LabError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LabError::Io {
                what: format!("listing {NETNS_DIR}"),
                source,
            })
        }
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_are_read_from_ip_output() {
        let listing = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue\\    link/loopback\n\
                       7: vd12a-v0@vd12a-x: <BROADCAST> mtu 1500\\    link/ether 02:00\n\
                       9: vd12a-b0: <BROADCAST,MULTICAST,PROMISC> mtu 1500\n";
        assert_eq!(parse_link_names(listing), ["lo", "vd12a-v0", "vd12a-b0"]);
    }

    #[test]
    fn a_bad_prefix_sweeps_nothing() {
        assert!(matches!(
            remove_by_prefix("vd-"),
            Err(LabError::BadPrefix(_))
        ));
        assert!(matches!(remove_by_prefix(""), Err(LabError::BadPrefix(_))));
    }
}
