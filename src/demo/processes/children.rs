//! The demo's child processes (`vmdep switch`, `vmdep controller`, `vmdep host`, or a switch
//! command of the user's): started with their output in a log file each, awaited until they
//! announce or open their addresses (bounded, with errors that name the child and its log),
//! signalled, and stopped: SIGTERM with a grace period, then SIGKILL. A child never outlives
//! the demo: dropping a [`Child`] kills it, and the kernel sends it SIGTERM if the demo dies
//! without unwinding (`PR_SET_PDEATHSIG`).
//!
//! It owns process handling only; what the children are for is the caller's.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;

/// Lines of a child's stderr kept in memory for [`Child::wait_line`] (the rest is in its log).
const KEPT_LINES: usize = 64;
/// Lines of a child's log quoted in an error.
const TAIL_LINES: usize = 12;
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Error)]
pub enum ChildError {
    #[error("cannot create the log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        name: String,
        program: String,
        source: std::io::Error,
    },
    #[error("{name} exited ({status}) {when}; the end of its log {log}:\n{tail}")]
    Exited {
        name: String,
        status: ExitStatus,
        when: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{name} did not {what} within {waited:?}; the end of its log {log}:\n{tail}")]
    NotReady {
        name: String,
        what: String,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("cannot signal {name}: {source}")]
    Signal {
        name: String,
        source: std::io::Error,
    },
}

/// One running child process.
pub struct Child {
    name: String,
    process: tokio::process::Child,
    log: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    copier: JoinHandle<()>,
}

/// A program and its first arguments, e.g. `simple_switch_grpc` or `vmdep switch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub program: String,
    pub args: Vec<String>,
}

impl Program {
    /// Splits a command line at whitespace (no quoting: paths with spaces need a wrapper
    /// script). `None` when it names no program.
    pub fn parse(command: &str) -> Option<Program> {
        let mut words = command.split_whitespace().map(str::to_string);
        Some(Program {
            program: words.next()?,
            args: words.collect(),
        })
    }
}

impl Child {
    /// Starts `program args` as `name`, its stdout and stderr in `log_dir/NAME.log`.
    pub fn spawn(
        name: &str,
        program: &Program,
        args: &[String],
        log_dir: &Path,
    ) -> Result<Child, ChildError> {
        let log = log_dir.join(format!("{name}.log"));
        let log_error = |source| ChildError::Log {
            path: log.clone(),
            source,
        };
        std::fs::create_dir_all(log_dir).map_err(log_error)?;
        let mut file = std::fs::File::create(&log).map_err(log_error)?;
        // The command line first: what ran, with which ports, is then in the log.
        let line: Vec<&str> = std::iter::once(program.program.as_str())
            .chain(program.args.iter().map(String::as_str))
            .chain(args.iter().map(String::as_str))
            .collect();
        writeln!(file, "$ {}", line.join(" ")).map_err(log_error)?;
        let stdout = file.try_clone().map_err(log_error)?;
        let mut command = tokio::process::Command::new(&program.program);
        command
            .args(&program.args)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            // Plain text in the logs (tracing's colors are escape codes).
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and makes only
        // async-signal-safe calls (prctl, getppid): the kernel sends the child SIGTERM when the
        // demo's thread that forked it ends (the demo crashed or was killed without
        // unwinding); a demo that died before prctl took effect is caught by getppid.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    // No allocation between fork and exec: a plain errno (no such process).
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut process = command.spawn().map_err(|source| ChildError::Spawn {
            name: name.to_string(),
            program: program.program.clone(),
            source,
        })?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let copier = match process.stderr.take() {
            Some(stderr) => tokio::spawn(copy_lines(
                stderr,
                tokio::fs::File::from_std(file),
                Arc::clone(&lines),
            )),
            None => tokio::spawn(async {}),
        };
        Ok(Child {
            name: name.to_string(),
            process,
            log,
            lines,
            copier,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The child's error if it has exited already.
    fn check_running(&mut self, when: &str) -> Result<(), ChildError> {
        match self.process.try_wait() {
            Ok(Some(status)) => Err(self.exited(status, when)),
            _ => Ok(()),
        }
    }

    fn exited(&self, status: ExitStatus, when: &str) -> ChildError {
        ChildError::Exited {
            name: self.name.clone(),
            status,
            when: when.to_string(),
            log: self.log.clone(),
            tail: log_tail(&self.log),
        }
    }

    fn not_ready(&self, what: &str, waited: Duration) -> ChildError {
        ChildError::NotReady {
            name: self.name.clone(),
            what: what.to_string(),
            waited,
            log: self.log.clone(),
            tail: log_tail(&self.log),
        }
    }

    /// Waits for the first stderr line that starts with `prefix` (an address announcement).
    pub async fn wait_line(&mut self, prefix: &str, limit: Duration) -> Result<String, ChildError> {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|line| line.starts_with(prefix))
                .cloned();
            if let Some(line) = found {
                return Ok(line);
            }
            self.check_running("before it was ready")?;
            if Instant::now() > deadline {
                return Err(self.not_ready(&format!("print `{prefix}…`"), limit));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `addr` accepts TCP connections.
    pub async fn wait_tcp(&mut self, addr: SocketAddr, limit: Duration) -> Result<(), ChildError> {
        let deadline = Instant::now() + limit;
        loop {
            let attempt = tokio::time::timeout(POLL * 10, tokio::net::TcpStream::connect(addr));
            if let Ok(Ok(_)) = attempt.await {
                return Ok(());
            }
            self.check_running("before it was ready")?;
            if Instant::now() > deadline {
                return Err(self.not_ready(&format!("listen on tcp {addr}"), limit));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Fails if the child has exited.
    pub fn ensure_running(&mut self) -> Result<(), ChildError> {
        self.check_running("while the demo ran")
    }

    /// Sends `signal` (e.g. `libc::SIGUSR2`) to the child.
    pub fn signal(&mut self, signal: libc::c_int) -> Result<(), ChildError> {
        self.check_running("before it could be signalled")?;
        let failed = |source| ChildError::Signal {
            name: self.name.clone(),
            source,
        };
        let pid = self
            .process
            .id()
            .ok_or_else(|| failed(std::io::Error::other("it has exited")))?;
        let pid = libc::pid_t::try_from(pid).map_err(|_| failed(std::io::Error::other("pid")))?;
        // SAFETY: kill only sends a signal to the process id of our own child, which has not
        // been reaped (try_wait above), so the id is still its own.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(failed(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Stops the child: SIGTERM, up to `grace` for it to exit, then SIGKILL. An exit status
    /// other than success (or death by our SIGKILL after the grace) is an error.
    pub async fn stop(mut self, grace: Duration) -> Result<(), ChildError> {
        if let Ok(Some(status)) = self.process.try_wait() {
            self.finish_log().await;
            return Err(self.exited(status, "before it was stopped"));
        }
        self.signal(libc::SIGTERM)?;
        let status = match tokio::time::timeout(grace, self.process.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(source)) => {
                return Err(ChildError::Signal {
                    name: self.name.clone(),
                    source,
                })
            }
            Err(_) => {
                let _ = self.process.kill().await;
                self.finish_log().await;
                return Err(self.not_ready("stop on SIGTERM", grace));
            }
        };
        self.finish_log().await;
        if !status.success() {
            return Err(self.exited(status, "with an error on SIGTERM"));
        }
        Ok(())
    }

    /// Lets the copier write the last lines of stderr.
    async fn finish_log(&mut self) {
        let copier = std::mem::replace(&mut self.copier, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(2), copier).await;
    }
}

/// Copies stderr into the log, keeping the first lines for [`Child::wait_line`].
async fn copy_lines(
    stderr: tokio::process::ChildStderr,
    mut log: tokio::fs::File,
    lines: Arc<Mutex<Vec<String>>>,
) {
    let mut reader = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = reader.next_line().await {
        {
            let mut kept = lines.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() < KEPT_LINES {
                kept.push(line.clone());
            }
        }
        if log.write_all(line.as_bytes()).await.is_err() || log.write_all(b"\n").await.is_err() {
            break;
        }
    }
    let _ = log.flush().await;
}

/// The last lines of a log, indented, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    if tail.is_empty() {
        return "    (empty)".to_string();
    }
    tail.iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_split_at_whitespace() {
        assert_eq!(
            Program::parse(" vmdep  switch "),
            Some(Program {
                program: "vmdep".into(),
                args: vec!["switch".into()]
            })
        );
        assert_eq!(Program::parse("   "), None);
    }

    #[tokio::test]
    async fn a_child_that_exits_early_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let sh = Program::parse("sh -c").unwrap();
        let mut child = Child::spawn(
            "early",
            &sh,
            &["echo starting >&2; echo broken >&2; exit 3".into()],
            dir.path(),
        )
        .unwrap();
        let err = child
            .wait_line("ready", Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("early exited"), "{err}");
        assert!(err.contains("broken"), "{err}");
        assert!(err.contains("early.log"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_child_times_out_and_is_killed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let sh = Program::parse("sh -c").unwrap();
        let mut child = Child::spawn("silent", &sh, &["sleep 30".into()], dir.path()).unwrap();
        let pid = child.process.id().unwrap();
        let err = child
            .wait_line("ready", Duration::from_millis(100))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("silent did not print `ready…`"), "{err}");
        drop(child);
        let gone = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}/stat")).exists() && Instant::now() < gone {
            // A killed child stays a zombie until reaped; tokio reaps it in the background.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.contains(") Z ") {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
    }

    #[tokio::test]
    async fn stop_sends_sigterm_and_reports_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let sh = Program::parse("sh -c").unwrap();
        let mut child = Child::spawn(
            "server",
            &sh,
            &["trap 'exit 0' TERM; echo 'up on 1' >&2; while true; do sleep 0.05; done".into()],
            dir.path(),
        )
        .unwrap();
        let line = child
            .wait_line("up on", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(line, "up on 1");
        child.stop(Duration::from_secs(5)).await.unwrap();
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
        assert!(log.contains("up on 1"), "{log}");
    }
}
