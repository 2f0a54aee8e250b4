//! What a test needs from the machine (root, a Debian package): present, or a skip with the
//! reason printed, except under CI (CI=true), where a missing need fails the test.

use std::path::PathBuf;

/// True when CI runs the tests (CI=true): every test must run there, none may skip.
pub fn on_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// True when the effective user is root; false (skip, with the reason printed) outside CI;
/// panics in CI. `needs` says what root is for, e.g. "network namespaces, Open vSwitch".
pub fn root_or_skip(test: &str, needs: &str) -> bool {
    match vmdep::demo::netns::require_root() {
        Ok(()) => return true,
        Err(vmdep::demo::netns::LabError::NotRoot) => {}
        Err(e) => panic!("{test}: cannot tell whether this is root: {e}"),
    }
    assert!(
        !on_ci(),
        "{test} needs root ({needs}) and CI must run it as root"
    );
    eprintln!("{test}: skipped, needs root ({needs})");
    false
}

/// The browser, or None (skip) outside CI when it is missing; panics when missing in CI.
/// $CHROMIUM overrides /usr/bin/chromium.
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if path.exists() {
        return Some(path);
    }
    assert!(
        !on_ci(),
        "{test} needs Chromium at {} (Debian: apt-get install chromium) and CI must run it",
        path.display()
    );
    eprintln!(
        "{test}: skipped, no Chromium at {} (Debian: apt-get install chromium)",
        path.display()
    );
    None
}

/// What the network-namespace labs need root for.
pub const FOR_NETNS_LAB: &str = "network namespaces, veths, Open vSwitch";
