//! Running the lab's helper programs (`ip`, `ethtool`, `ovs-*`) with a time limit, a failure
//! becoming a [`LabError`] that carries the command line and its stderr. It owns no state.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LabError;

/// No helper the lab runs takes this long unless it hangs.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The command line, for messages.
pub fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `command` to its end (at most [`COMMAND_TIMEOUT`], then it is killed) and returns its
/// standard output; a non-zero exit is an error with its standard error.
pub fn run(command: &mut Command) -> Result<String, LabError> {
    let line = describe(command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })?;
    // Readers on their own threads, so a chatty command never blocks on a full pipe while we
    // wait for it.
    let stdout = child.stdout.take().map(read_to_end);
    let stderr = child.stderr.take().map(read_to_end);
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::Timeout {
                    command: line,
                    after: COMMAND_TIMEOUT,
                });
            }
            Err(source) => {
                return Err(LabError::Io {
                    what: format!("waiting for `{line}`"),
                    source,
                })
            }
        }
    };
    let collect = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| {
        reader
            .and_then(|r| r.join().ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    };
    let out = collect(stdout);
    let err = collect(stderr);
    if status.success() {
        Ok(out)
    } else {
        Err(LabError::Command {
            command: line,
            status: status.to_string(),
            stderr: err.trim().to_string(),
        })
    }
}

fn read_to_end(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the output early; the exit status still tells success.
        let _ = from.read_to_end(&mut bytes);
        bytes
    })
}

/// `program args…` as a [`Command`].
pub fn cmd<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_failures_are_reported() {
        assert_eq!(run(&mut cmd("sh", &["-c", "echo hi"])).unwrap(), "hi\n");
        match run(&mut cmd("sh", &["-c", "echo oops >&2; exit 3"])) {
            Err(LabError::Command {
                command, stderr, ..
            }) => {
                assert_eq!(command, "sh -c echo oops >&2; exit 3");
                assert_eq!(stderr, "oops");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(&mut cmd::<&str>("/nonexistent/vmdep-helper", &[])),
            Err(LabError::Spawn { .. })
        ));
    }
}
