//! What a network-namespace lab left behind, found by its name prefix: the checks that a lab
//! removed everything it made.

use std::path::Path;

/// Interfaces (in the root namespace) and named network namespaces called `{prefix}-…`.
pub fn lab_names_left(prefix: &str) -> Vec<String> {
    let mut left = Vec::new();
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        if let Some(name) = line.split(": ").nth(1) {
            if name.starts_with(&format!("{prefix}-")) {
                left.push(name.to_string());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{prefix}-")) {
                left.push(name);
            }
        }
    }
    left
}

/// Processes whose command line contains `needle`, as "pid: command line".
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

/// Processes whose command line mentions `dir`.
pub fn processes_using(dir: &Path) -> Vec<String> {
    processes_mentioning(&dir.to_string_lossy())
}
