//! Running code inside a network namespace made with `ip netns add`: a thread made for the
//! purpose joins the namespace with setns(2) (network namespaces are per thread) and runs the
//! closure there. Sockets it opens belong to that namespace for their whole life, wherever they
//! are used afterwards. The only `unsafe` of the lab lives here (and in [`send_signal`]).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::LabError;

/// Where `ip netns add` binds its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

pub fn namespace_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Runs `f` on a new thread inside namespace `name` and returns its result. A panic in `f`
/// is passed on to the caller, as `std::thread::scope` does.
pub fn in_namespace<F, R>(name: &str, f: F) -> Result<R, LabError>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let path = namespace_path(name);
    let file = File::open(&path).map_err(|source| LabError::Namespace {
        namespace: name.to_string(),
        source,
    })?;
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns {name}"))
            .spawn_scoped(scope, move || {
                enter_network_namespace(&file)?;
                Ok(f())
            })
            .map_err(|source| LabError::Io {
                what: format!("starting a thread for namespace {name}"),
                source,
            })?;
        match thread.join() {
            Ok(result) => result.map_err(|source| LabError::Namespace {
                namespace: name.to_string(),
                source,
            }),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Moves the calling thread (only it) into the network namespace `file` refers to.
fn enter_network_namespace(file: &File) -> io::Result<()> {
    // SAFETY: setns(2) reads nothing but the two integers; `file` keeps the descriptor open for
    // the call. CLONE_NEWNET changes the namespace of the calling thread alone, and callers run
    // this on a thread made for one namespace, so no other code runs in a namespace it did not
    // ask for.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `signal` to process `pid`; false if there is no such process (or no permission).
pub fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negative pids address process groups; never ours to signal.
        return false;
    }
    // SAFETY: kill(2) takes two integers and touches no memory of this process; `pid` is a
    // single positive process id, checked above.
    unsafe { libc::kill(pid, signal) == 0 }
}
