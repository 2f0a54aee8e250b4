//! One private Open vSwitch instance (ovsdb-server + ovs-vswitchd) under the lab's run
//! directory, ovs-vswitchd inside the lab's OVS namespace, and the OpenFlow rules of the lab's
//! bridges. It owns the daemons' lifetime and talks to them only through ovs-vsctl, ovs-ofctl
//! and ovs-appctl pointed at that directory's unix sockets; nothing system-wide
//! (/var/run/openvswitch, /etc/openvswitch) is read or written.
//!
//! # The flows of a server's bridge
//!
//! Ports have fixed OpenFlow numbers: the uplink [`UPLINK_OFPORT`], the DPI mirror output
//! [`MIRROR_OFPORT`], the copy of same-server frames [`LOCAL_COPY_OFPORT`], and the server's
//! VMs from [`FIRST_VM_OFPORT`] on, in topology order. The
//! bridge is not a learning switch (`fail_mode=secure`, no NORMAL action): a learning switch
//! never learns remote VMs' MACs behind the uplink, and frames to the fabric carry the gateway's
//! MAC, which is nobody's on the bridge. The rules:
//!
//! - priority 400: anything entering on the mirror port or the local-copy port is dropped
//!   (those ports only send);
//! - priority 310: one rule per ordered pair of the server's VMs, for IPv4 from the one's port
//!   and addresses to the other's MAC and address, delivering it and copying it to the
//!   local-copy port [`LOCAL_COPY_OFPORT`] (the DPI module's view of same-server traffic): the
//!   rule's counters are the pair's exact same-server counts (no P4 switch sees these frames),
//!   read with [`parse_local_pair_counts`];
//! - priority 300: a frame to a local VM's MAC goes to that VM's port, from a VM or from the
//!   uplink (the edge switch rewrites the destination MAC to the VM's);
//! - priority 200: a unicast IPv4 frame from a VM, with that VM's own source MAC, goes out of
//!   the uplink (toward the gateway, i.e. the fabric);
//! - priority 0: everything else is dropped (broadcast, ARP, foreign source MACs).

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::net::Ipv4Addr;

use crate::controller::topology::MacAddr;

use super::command::{self, describe};
use super::setns::send_signal;
use super::LabError;

pub const UPLINK_OFPORT: u16 = 1;
pub const MIRROR_OFPORT: u16 = 2;
pub const LOCAL_COPY_OFPORT: u16 = 3;
pub const FIRST_VM_OFPORT: u16 = 10;

/// How long the daemons get to start or stop.
const DAEMON_WAIT: Duration = Duration::from_secs(20);
/// ovs-vsctl/ovs-ofctl/ovs-appctl give up after this many seconds (below COMMAND_TIMEOUT).
const OVS_TOOL_TIMEOUT_S: &str = "20";

/// The OVS schema shipped with Debian's openvswitch-common (OVS_PKGDATADIR overrides the dir).
fn schema_path() -> PathBuf {
    let dir = std::env::var_os("OVS_PKGDATADIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/openvswitch"));
    dir.join("vswitch.ovsschema")
}

/// Files in the run directory.
pub const DB_SOCKET: &str = "db.sock";
pub const PIDFILES: [&str; 2] = ["ovs-vswitchd.pid", "ovsdb-server.pid"];

/// The daemons of one lab.
#[derive(Debug)]
pub struct Ovs {
    dir: PathBuf,
    ovsdb: Option<Child>,
    vswitchd: Option<Child>,
}

impl Ovs {
    /// Creates the database in `dir` (which must exist and be empty) and starts both daemons,
    /// ovs-vswitchd inside network namespace `namespace` (its datapath's tap devices, named
    /// alike in every instance, stay there).
    pub fn start(dir: &Path, namespace: &str) -> Result<Ovs, LabError> {
        let mut ovs = Ovs {
            dir: dir.to_path_buf(),
            ovsdb: None,
            vswitchd: None,
        };
        // Unix socket paths are limited to 107 bytes; the longest is a bridge's `.mgmt` socket,
        // `<interface name, at most 15 bytes>.mgmt`.
        let longest = dir.join(format!("{}.mgmt", "b".repeat(super::IFNAME_MAX)));
        if longest.as_os_str().len() > 107 {
            return Err(LabError::RunDirTooLong(dir.to_path_buf()));
        }
        let db = dir.join("conf.db");
        command::run(
            Command::new("ovsdb-tool")
                .arg("create")
                .arg(&db)
                .arg(schema_path()),
        )?;
        let socket = dir.join(DB_SOCKET);
        let mut ovsdb = ovs.tool("ovsdb-server");
        ovsdb
            .arg(&db)
            .arg(format!("--remote=punix:{}", socket.display()))
            .arg(format!(
                "--unixctl={}",
                dir.join("ovsdb-server.ctl").display()
            ));
        ovs.daemon_args(&mut ovsdb, "ovsdb-server");
        ovs.ovsdb = Some(spawn(&mut ovsdb, dir, "ovsdb-server")?);
        ovs.wait_for_file(&socket, "ovsdb-server")?;
        ovs.vsctl(&["--no-wait", "init"])?;

        // `ip netns exec` execs the daemon in place (same pid), with /sys of the namespace.
        let mut vswitchd = ovs.tool("ip");
        vswitchd
            .args(["netns", "exec", namespace, "ovs-vswitchd"])
            .arg(format!("unix:{}", socket.display()))
            .arg(format!(
                "--unixctl={}",
                dir.join("ovs-vswitchd.ctl").display()
            ));
        ovs.daemon_args(&mut vswitchd, "ovs-vswitchd");
        ovs.vswitchd = Some(spawn(&mut vswitchd, dir, "ovs-vswitchd")?);
        ovs.wait_for_file(&dir.join("ovs-vswitchd.ctl"), "ovs-vswitchd")?;
        Ok(ovs)
    }

    /// An OVS program with every default directory pointed at ours.
    fn tool(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            command.env(var, &self.dir);
        }
        command
    }

    fn daemon_args(&self, command: &mut Command, name: &str) {
        command
            .arg(format!(
                "--pidfile={}",
                self.dir.join(format!("{name}.pid")).display()
            ))
            .arg(format!(
                "--log-file={}",
                self.dir.join(format!("{name}.log")).display()
            ))
            .arg("--no-chdir")
            .arg("-vconsole:off");
    }

    /// Waits (bounded) for a daemon's socket; a daemon that exits or never makes it is an
    /// error with the end of its log.
    fn wait_for_file(&mut self, path: &Path, daemon: &str) -> Result<(), LabError> {
        let deadline = Instant::now() + DAEMON_WAIT;
        loop {
            if path.exists() {
                return Ok(());
            }
            let child = match daemon {
                "ovsdb-server" => self.ovsdb.as_mut(),
                _ => self.vswitchd.as_mut(),
            };
            let exited = child.and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                return Err(LabError::OvsStart {
                    daemon: daemon.to_string(),
                    log: self.log_tail(daemon),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of a daemon's log and console output, for error messages.
    pub fn log_tail(&self, daemon: &str) -> String {
        let mut tail = String::new();
        for file in [format!("{daemon}.log"), format!("{daemon}.out")] {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(&file)) {
                let lines: Vec<&str> = text.lines().collect();
                for line in &lines[lines.len().saturating_sub(10)..] {
                    let _ = writeln!(tail, "{file}: {line}");
                }
            }
        }
        tail
    }

    /// ovs-vsctl on our database; it waits until ovs-vswitchd applied the change (unless
    /// `--no-wait`), bounded by its own timeout.
    pub fn vsctl<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String, LabError> {
        let mut command = self.tool("ovs-vsctl");
        command
            .arg(format!("--db=unix:{}", self.dir.join(DB_SOCKET).display()))
            .arg(format!("--timeout={OVS_TOOL_TIMEOUT_S}"))
            .args(args);
        command::run(&mut command)
    }

    /// Makes a configuration change (a mirror, sFlow) apply to every following packet: the
    /// datapath keeps the actions it cached for a flow until the flow idles out (10 s), however
    /// the configuration changed, so the cached flows are purged (packets then go through a
    /// fresh translation) and one revalidation round is awaited.
    pub fn settle(&self) -> Result<(), LabError> {
        for request in ["revalidator/purge", "revalidator/wait"] {
            let mut command = self.appctl();
            command.arg(request);
            command::run(&mut command)?;
        }
        Ok(())
    }

    /// Waits for one revalidation round, which moves the datapath's per-flow statistics into
    /// the OpenFlow rules' counters: a dump after it counts every packet forwarded before the
    /// call (the rules' counters otherwise lag by up to a round, about half a second).
    pub fn sync_rule_counters(&self) -> Result<(), LabError> {
        let mut command = self.appctl();
        command.arg("revalidator/wait");
        command::run(&mut command).map(drop)
    }

    fn appctl(&self) -> Command {
        let mut command = self.tool("ovs-appctl");
        command
            .arg(format!(
                "--target={}",
                self.dir.join("ovs-vswitchd.ctl").display()
            ))
            .arg(format!("--timeout={OVS_TOOL_TIMEOUT_S}"));
        command
    }

    /// Replaces all flows of `bridge` with `flows` (one per line), in one transaction.
    pub fn replace_flows(&self, bridge: &str, flows: &str) -> Result<(), LabError> {
        let file = self.dir.join(format!("{bridge}.flows"));
        std::fs::write(&file, flows).map_err(|source| LabError::Io {
            what: format!("writing {}", file.display()),
            source,
        })?;
        let mut command = self.tool("ovs-ofctl");
        command
            .arg(format!("--timeout={OVS_TOOL_TIMEOUT_S}"))
            .arg("replace-flows")
            .arg(bridge)
            .arg(&file);
        command::run(&mut command).map(drop)
    }

    /// `ovs-ofctl dump-flows BRIDGE`, for diagnostics and tests.
    pub fn dump_flows(&self, bridge: &str) -> Result<String, LabError> {
        let mut command = self.tool("ovs-ofctl");
        command
            .arg(format!("--timeout={OVS_TOOL_TIMEOUT_S}"))
            .args(["dump-flows", bridge]);
        command::run(&mut command)
    }

    /// Stops both daemons: ovs-vswitchd with `exit --cleanup` (which removes its datapath and
    /// the bridges' tap devices), then the database; whatever does not exit in time is killed.
    pub fn stop(&mut self) -> Result<(), LabError> {
        let mut result = Ok(());
        if let Some(mut child) = self.vswitchd.take() {
            // Already gone (a sweep from a Ctrl-C handler stopped it): nothing to ask.
            let running = matches!(child.try_wait(), Ok(None));
            if running {
                let mut exit = self.appctl();
                exit.args(["exit", "--cleanup"]);
                if let Err(e) = command::run(&mut exit) {
                    result = Err(e);
                }
            }
            stop_child(&mut child);
        }
        if let Some(mut child) = self.ovsdb.take() {
            stop_child(&mut child);
        }
        result
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!("stopping the lab's Open vSwitch: {e}");
        }
    }
}

fn spawn(command: &mut Command, dir: &Path, name: &str) -> Result<Child, LabError> {
    let out = dir.join(format!("{name}.out"));
    let console = std::fs::File::create(&out).map_err(|source| LabError::Io {
        what: format!("creating {}", out.display()),
        source,
    })?;
    let console_err = console.try_clone().map_err(|source| LabError::Io {
        what: format!("duplicating {}", out.display()),
        source,
    })?;
    // Their own process group: a Ctrl-C at the terminal reaches vmdep only, which then stops
    // the daemons in order (and removes what they made).
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err)
        .spawn()
        .map_err(|source| LabError::Spawn {
            program: describe(command),
            source,
        })
}

/// SIGTERM, a bounded wait, then SIGKILL; always reaped.
fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    send_signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A local VM as its bridge sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeVm {
    pub mac: MacAddr,
    pub ipv4: Ipv4Addr,
    pub ofport: u16,
}

/// The priority of the per-pair counting rules.
const PAIR_PRIORITY: u16 = 310;

/// The flows of a server's bridge (see the module documentation), one per line, for
/// `ovs-ofctl replace-flows`.
pub fn bridge_flows(vms: &[BridgeVm]) -> String {
    let mut flows = String::new();
    for port in [MIRROR_OFPORT, LOCAL_COPY_OFPORT] {
        let _ = writeln!(flows, "priority=400,in_port={port},actions=drop");
    }
    for src in vms {
        for dst in vms.iter().filter(|d| d.ofport != src.ofport) {
            let _ = writeln!(
                flows,
                "priority={PAIR_PRIORITY},ip,in_port={},dl_src={},dl_dst={},nw_src={},nw_dst={},\
                 actions=output:{},output:{LOCAL_COPY_OFPORT}",
                src.ofport, src.mac, dst.mac, src.ipv4, dst.ipv4, dst.ofport
            );
        }
    }
    for vm in vms {
        let _ = writeln!(
            flows,
            "priority=300,dl_dst={},actions=output:{}",
            vm.mac, vm.ofport
        );
    }
    for vm in vms {
        let _ = writeln!(
            flows,
            "priority=200,ip,in_port={},dl_src={},dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,\
             actions=output:{UPLINK_OFPORT}",
            vm.ofport, vm.mac
        );
    }
    let _ = writeln!(flows, "priority=0,actions=drop");
    flows
}

/// The counters of one same-server pair's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairRuleCount {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub packets: u64,
    /// OVS counts the frames as they entered the bridge: Ethernet without FCS.
    pub bytes: u64,
}

/// The per-pair rules' counters in `ovs-ofctl dump-flows` output, e.g.
/// ` cookie=0x0, duration=2.1s, table=0, n_packets=5, n_bytes=420, priority=310,ip,in_port=10,
/// …,nw_src=10.0.120.1,nw_dst=10.0.120.2 actions=output:11,output:3`. Other lines are skipped; a
/// counting rule whose fields cannot be read is an error (the caller would otherwise report a
/// pair as silent).
pub fn parse_local_pair_counts(dump: &str) -> Result<Vec<PairRuleCount>, String> {
    let marker = format!("priority={PAIR_PRIORITY},");
    let mut counts = Vec::new();
    for line in dump.lines().filter(|l| l.contains(&marker)) {
        // Fields are separated by ", " before the match and by "," inside it; the actions
        // follow a space.
        let field = |name: &str| {
            line.split([',', ' '])
                .find_map(|f| f.trim().strip_prefix(name)?.strip_prefix('='))
        };
        let parsed = (|| {
            Some(PairRuleCount {
                src: field("nw_src")?.parse().ok()?,
                dst: field("nw_dst")?.parse().ok()?,
                packets: field("n_packets")?.parse().ok()?,
                bytes: field("n_bytes")?.parse().ok()?,
            })
        })();
        counts.push(parsed.ok_or_else(|| format!("unreadable counting rule: {}", line.trim()))?);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flows_deliver_locally_by_mac_and_send_the_rest_up() {
        let vms = [
            BridgeVm {
                mac: "02:01:0a:00:78:01".parse().unwrap(),
                ipv4: Ipv4Addr::new(10, 0, 120, 1),
                ofport: FIRST_VM_OFPORT,
            },
            BridgeVm {
                mac: "02:01:0a:00:78:02".parse().unwrap(),
                ipv4: Ipv4Addr::new(10, 0, 120, 2),
                ofport: FIRST_VM_OFPORT + 1,
            },
        ];
        insta::assert_snapshot!(bridge_flows(&vms));
    }

    #[test]
    fn pair_rule_counters_are_read_from_dump_flows() {
        let dump = "NXST_FLOW reply (xid=0x4):\n \
            cookie=0x0, duration=3.512s, table=0, n_packets=0, n_bytes=0, priority=400,in_port=2 actions=drop\n \
            cookie=0x0, duration=3.512s, table=0, n_packets=12, n_bytes=1834, idle_age=0, priority=310,ip,in_port=10,dl_src=02:01:0a:00:78:01,dl_dst=02:01:0a:00:78:02,nw_src=10.0.120.1,nw_dst=10.0.120.2 actions=output:11,output:3\n \
            cookie=0x0, duration=3.512s, table=0, n_packets=7, n_bytes=518, priority=300,dl_dst=02:01:0a:00:78:02 actions=output:11\n";
        assert_eq!(
            parse_local_pair_counts(dump).unwrap(),
            vec![PairRuleCount {
                src: Ipv4Addr::new(10, 0, 120, 1),
                dst: Ipv4Addr::new(10, 0, 120, 2),
                packets: 12,
                bytes: 1834,
            }]
        );
        let broken =
            " cookie=0x0, n_packets=x, n_bytes=1, priority=310,ip,nw_src=10.0.0.1,nw_dst=10.0.0.2";
        assert!(parse_local_pair_counts(broken).is_err());
    }

    proptest! {
        #[test]
        fn any_dump_text_gives_counts_or_an_error(text in "\\PC*") {
            let _ = parse_local_pair_counts(&text);
        }
    }
}
