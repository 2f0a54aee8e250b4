//! Child processes of a test: killed when the test ends however it ends, their output read
//! line by line without blocking the test, stopped with SIGTERM; and the test venv's Python.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills a child when the test ends, however it ends.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's pipe, read on a thread so the test can wait with a timeout.
pub fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Sends `child` (`what`, for the messages) SIGTERM and checks that it exits successfully
/// within `wait`.
pub fn assert_stops_on_sigterm(child: &mut Child, what: &str, wait: Duration) {
    let pid = child.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(kill.success(), "kill -TERM {pid} ({what}) failed: {kill}");
    let deadline = Instant::now() + wait;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{what} ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{what} exited with {status}");
}

/// The test venv's interpreter (tests/run-all.sh creates target/py-venv), or $VMDEP_PYTHON;
/// a missing venv fails the test with how to make it.
pub fn venv_python() -> String {
    if let Ok(path) = std::env::var("VMDEP_PYTHON") {
        return path;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py-venv/bin/python");
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: create it with\n  python3 -m venv target/py-venv && \
         target/py-venv/bin/pip install -r tests/python/requirements.txt\n\
         (tests/run-all.sh does this)"
    );
    path.to_string()
}

/// The `vmdep` binary of this build, as a command to run.
pub fn vmdep_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vmdep"))
}
