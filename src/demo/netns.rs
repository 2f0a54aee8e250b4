//! The lab of `vmdep demo --netns`: a topology's servers and VMs built from real Linux parts.
//! Each VM is a network namespace with a real kernel TCP/IP stack; each server is an Open vSwitch
//! bridge (userspace `netdev` datapath) that exports sFlow and mirrors selected VMs' traffic; each
//! server's uplink and each switch-to-switch link is a veth pair whose fabric end a
//! `vmdep switch` opens with AF_PACKET. It owns these namespaces, interfaces, the OVS daemons,
//! their run directory and the sFlow relay, and removes all of them; it runs no switch and no
//! controller (the demo starts those on the interfaces it names).
//!
//! # What is built, and where
//!
//! ```text
//!  VM namespace <p>-vm-web1   OVS namespace <p>-ovs                root namespace
//!  ┌────────────────────┐     ┌──────────────────────────┐
//!  │ eth0 10.0.120.1/32 │─veth─ <p>-v0 ┐                  │
//!  └────────────────────┘     │        │ bridge <p>-b0    │        (no address on any of these)
//!   … one per VM …            │        ├ <p>-u0 ─────────veth──── <p>-w0 ◄ vmdep switch s113 port 3
//!                             │        ├ <p>-m0 ─────────veth──── <p>-d0 ◄ h120's DPI module
//!                             │        └ <p>-ml0 ────────veth──── <p>-dl0 ◄ (same-server frames)
//!                             │ ovs-vswitchd, sFlow relay socket  │
//!                             └──────────────────────────┘
//!  links: <p>-l0a ─veth─ <p>-l0b (s110:1 ↔ s111:1), one pair per topology link, root namespace
//! ```
//!
//! `<p>` is the run's prefix (see [`default_prefix`]); the numbers are indices in the topology
//! (server, VM, link). Interface names are limited to 15 bytes, so a prefix with too many digits
//! for a large topology is refused before anything is created.
//!
//! # Addresses and ARP
//!
//! A VM's `eth0` carries its address as a /32 and a default route straight out of `eth0`; it
//! never sends ARP. Every other VM of the topology has a permanent neighbour entry: a VM of the
//! same server with its own MAC (the bridge delivers it locally), a VM behind the fabric with the
//! MAC of the server's uplink switch port (the gateway, as on a routed data-center fabric; the
//! P4 switches route on IPv4, rewrite MACs hop by hop and answer no ARP). So no gateway address
//! is invented and any address plan works. IPv6 is off in the VMs, so nothing but the
//! workloads' own traffic reaches the bridges (no router solicitations, no MLD).
//!
//! Root-namespace interfaces get no IPv4 address, IPv6 off (so not even a link-local address),
//! ARP off and IPv4 forwarding off, so the host's own stack neither talks on them nor routes
//! what arrives there. TX checksum offload is off on each VM's `eth0`: the VM's kernel would
//! leave TCP/UDP checksums to the "hardware", the netdev datapath forwards them unfinished, and
//! the receiver drops the segments (the integration test fails without it). The bridge-side
//! ends need nothing: OVS sends finished frames.
//!
//! # Open vSwitch
//!
//! One private OVS instance per lab with one bridge per server: ovsdb-server and ovs-vswitchd
//! with database, sockets, pidfiles and logs in `<tmp>/<prefix>-ovs` (nothing system-wide is
//! used). ovs-vswitchd runs in the lab's own namespace `<prefix>-ovs`, because the userspace
//! datapath creates a tap device named `ovs-netdev` in its namespace, the same name in every
//! instance: two labs in one namespace would collide. The bridges' sFlow therefore goes to a
//! relay socket on that namespace's loopback, and the relay sends each datagram unchanged to the
//! collector on the root namespace's loopback.
//!
//! The sFlow `agent` column of OVS 3.1 accepts an IP address literal (or a device name), so each
//! bridge's datagrams carry its server's `sflow_agent` from the topology (the reference
//! topology's 127.0.0.12x, which need not be configured anywhere) and the controller tells
//! servers apart as usual. OVS samples every packet that enters a bridge, from VMs and from the
//! uplink alike, so a cross-server packet can be sampled at both servers (as in any OVS
//! deployment); a flow sample's input interface tells the two apart
//! ([`NetnsLab::uplink_if_index`]).
//!
//! The flows are in the `ovs` submodule's documentation: not a learning switch, since frames
//! toward the fabric carry the gateway's MAC, which is nobody's on the bridge.
//!
//! # Mirrors
//!
//! OVS mirrors select by port or VLAN, not by address pair. [`NetnsLab::set_mirror`] takes the
//! pairs to mirror and selects the ports of the server's VMs that are an end of one of them, in
//! both directions; the DPI module, which reads [`ServerInterfaces::dpi`], keeps the frames of
//! its pairs and ignores the other traffic of those VMs.
//!
//! Same-server pairs do not wait for a mirror: their counting rules also copy each frame they
//! deliver to [`ServerInterfaces::local_dpi`] (through the local-copy port), from the pair's
//! first frame on. The controller mirrors every pair a server counts, but it learns of one only
//! from the server's next count report and sends the new set at its next window's end, after a
//! short conversation is over: a DNS lookup (one datagram each way) or a connection's opening
//! would never reach DPI. The copies go to a port of their own because an OVS mirror that
//! selects a VM's port copies its same-server frames too: on one port they would arrive twice.
//! The DPI module therefore reads same-server frames only from `local_dpi`, and cross-server
//! frames only from `dpi`.
//!
//! # Removal
//!
//! Everything is found again by prefix, not only from this struct's records, so the same sweep
//! serves [`NetnsLab::destroy`], `Drop`, a Ctrl-C handler ([`LabCleanup`]) and the leftovers of a
//! crashed run ([`cleanup_leftovers`], [`cleanup_dead_runs`]).

mod cleanup;
mod command;
mod names;
mod ovs;
mod relay;
mod setns;

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use thiserror::Error;

use crate::controller::topology::{PortPeer, ServerId, SwitchPort, Topology, VmId};
use crate::controller::VmPair;
use crate::switch::ports::{PortBackend, PortSpec};

use command::{cmd, run};
use names::LabNames;
use ovs::{BridgeVm, Ovs, FIRST_VM_OFPORT, LOCAL_COPY_OFPORT, MIRROR_OFPORT, UPLINK_OFPORT};
use relay::SflowRelay;

pub use cleanup::Removed;
pub use names::{default_prefix, IFNAME_MAX, PREFIX_MAX};
pub use ovs::PairRuleCount;

/// Why the lab could not be built or changed.
#[derive(Debug, Error)]
pub enum LabError {
    #[error("the netns lab needs root (network namespaces, veths, Open vSwitch)")]
    NotRoot,
    #[error(
        "lab prefix {0:?}: expected 1 to {PREFIX_MAX} ASCII letters and digits, starting with a \
         letter"
    )]
    BadPrefix(String),
    #[error(
        "interface name {name} is longer than {IFNAME_MAX} bytes: use a shorter prefix or a \
         smaller topology"
    )]
    NameTooLong { name: String },
    #[error(
        "{0} already exists: another run uses this prefix, or a crashed run left it (remove \
         with cleanup_leftovers)"
    )]
    RunDirExists(PathBuf),
    #[error("the run directory {0} is too long for Open vSwitch's unix sockets; set TMPDIR")]
    RunDirTooLong(PathBuf),
    #[error(
        "cannot run {program}: {source} (the netns lab needs iproute2, ethtool and \
         openvswitch-switch)"
    )]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {after:?}")]
    Timeout { command: String, after: Duration },
    #[error("Open vSwitch gave port {port} OpenFlow number {got:?}, not {wanted}; its log ends with:\n{log}")]
    OvsPort {
        port: String,
        wanted: u16,
        got: String,
        log: String,
    },
    #[error("{daemon} did not start; its log ends with:\n{log}")]
    OvsStart { daemon: String, log: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {namespace}: {source}")]
    Namespace {
        namespace: String,
        source: std::io::Error,
    },
    #[error("no VM named {0:?} in the lab's topology")]
    UnknownVm(String),
    #[error("no server named {0:?} in the lab's topology")]
    UnknownServer(String),
    #[error("no switch named {0:?} in the lab's topology")]
    UnknownSwitch(String),
    #[error("{0} is not the address of a VM of the lab's topology")]
    UnknownPairAddress(Ipv4Addr),
    #[error("pair {pair} has no VM on server {server}, which can only mirror its own VMs")]
    PairNotOnServer { pair: VmPair, server: String },
    #[error("sFlow target {0} is not a loopback address; the lab's traffic stays on loopback")]
    TargetNotLoopback(SocketAddr),
    #[error("the sFlow sampling rate must be at least 1 (one in N packets)")]
    ZeroSampling,
    #[error("server {0} has more VMs than a bridge has OpenFlow ports")]
    TooManyVms(String),
    #[error("interfaces still present after removal: {0:?}")]
    Leftovers(Vec<String>),
}

/// How to build a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// The prefix of every name; `None` takes [`default_prefix`] (unique per process and lab).
    pub prefix: Option<String>,
    /// sFlow counter polling interval, in seconds (OVS's `polling`).
    pub sflow_polling_secs: u32,
    /// Bytes of each sampled packet sent to the collector (OVS's `header`).
    pub sflow_header_bytes: u32,
}

impl Default for LabOptions {
    fn default() -> LabOptions {
        LabOptions {
            prefix: None,
            sflow_polling_secs: 10,
            sflow_header_bytes: 128,
        }
    }
}

/// A server's bridge and the interfaces around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInterfaces {
    /// The OVS bridge (also the name of its internal tap device in the OVS namespace, which
    /// stays down).
    pub bridge: String,
    /// The bridge's end of the uplink veth (OpenFlow port 1), in the OVS namespace.
    pub uplink_bridge_end: String,
    /// The fabric's end of the uplink veth, in the root namespace without address: the
    /// interface of the uplink switch port (`vmdep switch -i PORT@IFACE`).
    pub uplink: String,
    /// The bridge's end of the mirror veth, the mirrors' output port (OpenFlow port 2), in the
    /// OVS namespace.
    pub mirror_port: String,
    /// The other end, in the root namespace without address: the DPI module reads the mirrored
    /// frames here (AF_PACKET).
    pub dpi: String,
    /// The bridge's end of the local-copy veth (OpenFlow port 3), in the OVS namespace: the
    /// same-server pairs' counting rules copy every frame they deliver here.
    pub local_copy_port: String,
    /// The other end, in the root namespace without address: the DPI module reads the
    /// server's same-server frames here, from each pair's first frame on.
    pub local_dpi: String,
}

/// A VM's namespace and its bridge port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInterfaces {
    /// The network namespace (`ip netns exec NAME …` works too).
    pub namespace: String,
    /// The bridge's end of the VM's veth, in the OVS namespace (the VM's end is `eth0`).
    pub bridge_port: String,
    /// Its OpenFlow port number on the bridge.
    pub ofport: u16,
}

/// The two ends of a switch-to-switch link, in the topology link's `a`/`b` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInterfaces {
    pub a: String,
    pub b: String,
}

/// A running lab; removed by [`NetnsLab::destroy`] or on drop.
#[derive(Debug)]
pub struct NetnsLab {
    topology: Topology,
    options: LabOptions,
    names: LabNames,
    run_dir: PathBuf,
    ovs_namespace: String,
    ovs: Option<Ovs>,
    relay: Option<SflowRelay>,
    servers: Vec<ServerInterfaces>,
    vms: Vec<VmInterfaces>,
    links: Vec<LinkInterfaces>,
    removed: bool,
}

impl NetnsLab {
    /// Builds the lab for `topology`. On failure, whatever was made is removed again.
    pub fn create(topology: &Topology, options: LabOptions) -> Result<NetnsLab, LabError> {
        require_root()?;
        let names = LabNames::new(options.prefix.clone().unwrap_or_else(default_prefix))?;
        let Plan {
            servers,
            vms,
            links,
        } = plan(topology, &names)?;
        let run_dir = cleanup::run_dir(names.prefix());
        // The run directory doubles as the run's lock: it is created first, exclusively, and
        // only a lab that created it may sweep the prefix.
        std::fs::create_dir(&run_dir).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                LabError::RunDirExists(run_dir.clone())
            } else {
                LabError::Io {
                    what: format!("creating {}", run_dir.display()),
                    source,
                }
            }
        })?;
        let mut lab = NetnsLab {
            topology: topology.clone(),
            options,
            names: names.clone(),
            run_dir,
            ovs_namespace: names.ovs_namespace(),
            ovs: None,
            relay: None,
            servers,
            vms,
            links,
            removed: false,
        };
        // An error drops `lab`, which sweeps the prefix.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), LabError> {
        add_quiet_namespace(&self.ovs_namespace)?;
        self.ovs = Some(Ovs::start(&self.run_dir, &self.ovs_namespace)?);
        self.relay = Some(SflowRelay::start(&self.ovs_namespace)?);
        for server in &self.servers {
            veth_pair(
                (&server.uplink_bridge_end, Some(&self.ovs_namespace)),
                (&server.uplink, None),
            )?;
            veth_pair(
                (&server.mirror_port, Some(&self.ovs_namespace)),
                (&server.dpi, None),
            )?;
            veth_pair(
                (&server.local_copy_port, Some(&self.ovs_namespace)),
                (&server.local_dpi, None),
            )?;
        }
        for index in 0..self.topology.vms().len() {
            self.build_vm(VmId(index))?;
        }
        for (index, server) in self.servers.iter().enumerate() {
            self.build_bridge(ServerId(index), server)?;
        }
        for link in &self.links {
            veth_pair((&link.a, None), (&link.b, None))?;
        }
        Ok(())
    }

    /// The VM's namespace, its veth, address, route and neighbours.
    fn build_vm(&self, vm: VmId) -> Result<(), LabError> {
        let plan = &self.vms[vm.0];
        let spec = self.topology.vm(vm);
        add_quiet_namespace(&plan.namespace)?;
        veth_pair(
            (&plan.bridge_port, Some(&self.ovs_namespace)),
            ("eth0", Some(&plan.namespace)),
        )?;

        let gateway = self
            .topology
            .port_mac(self.topology.server(spec.server).uplink);
        // eth0 is already up (veth_pair); a MAC change needs it down for a moment.
        let mut batch = format!(
            "link set eth0 down\n\
             link set eth0 address {mac}\n\
             addr add {ip}/32 dev eth0\n\
             link set eth0 arp on up\n\
             route add default dev eth0\n",
            mac = spec.mac,
            ip = spec.ipv4,
        );
        for (other_index, other) in self.topology.vms().iter().enumerate() {
            if other_index == vm.0 {
                continue;
            }
            let mac = if other.server == spec.server {
                other.mac
            } else {
                gateway
            };
            batch.push_str(&format!(
                "neigh replace {} lladdr {mac} dev eth0 nud permanent\n",
                other.ipv4
            ));
        }
        let batch_file = self.run_dir.join(format!("vm{}.ip", vm.0));
        std::fs::write(&batch_file, batch).map_err(|source| LabError::Io {
            what: format!("writing {}", batch_file.display()),
            source,
        })?;
        run(Command::new("ip")
            .args(["-n", &plan.namespace, "-batch"])
            .arg(&batch_file))?;
        run(&mut cmd(
            "ip",
            &[
                "netns",
                "exec",
                &plan.namespace,
                "ethtool",
                "-K",
                "eth0",
                "tx",
                "off",
            ],
        ))
        .map(drop)
    }

    /// The server's bridge with its ports (fixed OpenFlow numbers) and flows.
    fn build_bridge(
        &self,
        server: ServerId,
        interfaces: &ServerInterfaces,
    ) -> Result<(), LabError> {
        let ovs = self.ovs();
        let br = &interfaces.bridge;
        let mut args: Vec<String> = vec![
            "add-br".into(),
            br.clone(),
            "--".into(),
            "set".into(),
            "bridge".into(),
            br.clone(),
            "datapath_type=netdev".into(),
            "fail_mode=secure".into(),
        ];
        let mut add_port = |port: &str, ofport: u16| {
            args.extend(
                ["--", "add-port", br, port, "--", "set", "interface", port].map(String::from),
            );
            args.push(format!("ofport_request={ofport}"));
        };
        add_port(&interfaces.uplink_bridge_end, UPLINK_OFPORT);
        add_port(&interfaces.mirror_port, MIRROR_OFPORT);
        add_port(&interfaces.local_copy_port, LOCAL_COPY_OFPORT);
        let mut bridge_vms = Vec::new();
        for &vm in self.topology.vms_of_server(server) {
            let plan = &self.vms[vm.0];
            add_port(&plan.bridge_port, plan.ofport);
            bridge_vms.push(BridgeVm {
                mac: self.topology.vm(vm).mac,
                ipv4: self.topology.vm(vm).ipv4,
                ofport: plan.ofport,
            });
        }
        ovs.vsctl(&args)?;
        // OVS honours ofport_request when the number is free, which it is on a new bridge;
        // checked, because every flow depends on it.
        for (port, wanted) in std::iter::once((&interfaces.uplink_bridge_end, UPLINK_OFPORT))
            .chain(std::iter::once((&interfaces.mirror_port, MIRROR_OFPORT)))
            .chain(std::iter::once((
                &interfaces.local_copy_port,
                LOCAL_COPY_OFPORT,
            )))
            .chain(
                self.topology
                    .vms_of_server(server)
                    .iter()
                    .map(|vm| (&self.vms[vm.0].bridge_port, self.vms[vm.0].ofport)),
            )
        {
            let got = ovs.vsctl(&["get", "interface", port, "ofport"])?;
            if got.trim() != wanted.to_string() {
                return Err(LabError::OvsPort {
                    port: port.clone(),
                    wanted,
                    got: got.trim().to_string(),
                    log: ovs.log_tail("ovs-vswitchd"),
                });
            }
        }
        ovs.replace_flows(br, &ovs::bridge_flows(&bridge_vms))
    }

    fn relay(&self) -> &SflowRelay {
        self.relay
            .as_ref()
            .expect("the sFlow relay runs from build() until removal")
    }

    fn ovs(&self) -> &Ovs {
        self.ovs
            .as_ref()
            .expect("Open vSwitch runs from build() until removal")
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The prefix of every name of this lab.
    pub fn prefix(&self) -> &str {
        self.names.prefix()
    }

    /// OVS's run directory (database, logs, sockets).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn server(&self, name: &str) -> Result<&ServerInterfaces, LabError> {
        let id = self
            .topology
            .server_id(name)
            .ok_or_else(|| LabError::UnknownServer(name.to_string()))?;
        Ok(&self.servers[id.0])
    }

    pub fn vm(&self, name: &str) -> Result<&VmInterfaces, LabError> {
        let id = self
            .topology
            .vm_id(name)
            .ok_or_else(|| LabError::UnknownVm(name.to_string()))?;
        Ok(&self.vms[id.0])
    }

    /// The interfaces of every topology link, in the topology's link order.
    pub fn links(&self) -> &[LinkInterfaces] {
        &self.links
    }

    /// The interface of one switch port: a link end or a server's uplink.
    pub fn port_interface(&self, port: SwitchPort) -> Option<&str> {
        match self.topology.ports(port.switch).get(&port.port)? {
            PortPeer::Server(server) => Some(&self.servers[server.0].uplink),
            PortPeer::Switch(_) => {
                self.topology
                    .links()
                    .iter()
                    .zip(&self.links)
                    .find_map(|(link, ends)| {
                        if link.a == port {
                            Some(ends.a.as_str())
                        } else if link.b == port {
                            Some(ends.b.as_str())
                        } else {
                            None
                        }
                    })
            }
        }
    }

    /// The ports of a switch on their interfaces, for `vmdep::switch::runner` (or as
    /// `-i PORT@IFACE` options of `vmdep switch`), by port number.
    pub fn switch_ports(&self, switch: &str) -> Result<Vec<PortSpec>, LabError> {
        let id = self
            .topology
            .switch_id(switch)
            .ok_or_else(|| LabError::UnknownSwitch(switch.to_string()))?;
        Ok(self
            .topology
            .ports(id)
            .keys()
            .filter_map(|&port| {
                let name = self.port_interface(SwitchPort { switch: id, port })?;
                Some(PortSpec {
                    port: u32::from(port),
                    backend: PortBackend::Interface {
                        name: name.to_string(),
                    },
                })
            })
            .collect())
    }

    /// Exports sFlow from every bridge to `target` (a loopback address of the root namespace,
    /// through the relay): one in `sampling` packets, each bridge with its server's agent
    /// address. Replaces an earlier setting.
    pub fn set_sflow(&self, target: SocketAddr, sampling: u32) -> Result<(), LabError> {
        if !target.ip().is_loopback() {
            return Err(LabError::TargetNotLoopback(target));
        }
        if sampling == 0 {
            return Err(LabError::ZeroSampling);
        }
        let relay = self.relay();
        let mut args: Vec<String> = Vec::new();
        for (index, server) in self.servers.iter().enumerate() {
            let agent = self.topology.server(ServerId(index)).sflow_agent;
            let id = format!("@sflow{index}");
            args.extend([
                "--".into(),
                format!("--id={id}"),
                "create".into(),
                "sflow".into(),
                format!("agent=\"{agent}\""),
                format!("targets=\"{}\"", relay.listen_addr()),
                format!("sampling={sampling}"),
                format!("polling={}", self.options.sflow_polling_secs),
                format!("header={}", self.options.sflow_header_bytes),
                "--".into(),
                "set".into(),
                "bridge".into(),
                server.bridge.clone(),
                format!("sflow={id}"),
            ]);
        }
        relay.set_target(Some(target));
        self.ovs().vsctl(&args)?;
        self.ovs().settle()
    }

    /// The ifIndex of a server's uplink port as its bridge's sFlow samples report it (the
    /// `input` of a packet that came from the fabric, the `output` of one that leaves for it).
    pub fn uplink_if_index(&self, server: &str) -> Result<u32, LabError> {
        let port = &self.server(server)?.uplink_bridge_end;
        let listing = run(&mut cmd(
            "ip",
            &["-n", &self.ovs_namespace, "-o", "link", "show", "dev", port],
        ))?;
        // `INDEX: NAME@PEER: <FLAGS> …`
        listing
            .split(':')
            .next()
            .and_then(|index| index.trim().parse().ok())
            .ok_or_else(|| LabError::Command {
                command: format!("ip -n {} -o link show dev {port}", self.ovs_namespace),
                status: "unexpected answer".into(),
                stderr: listing.trim().to_string(),
            })
    }

    /// sFlow datagrams passed on to the target so far.
    pub fn sflow_relayed(&self) -> u64 {
        self.relay().relayed()
    }

    /// Stops sFlow on every bridge.
    pub fn clear_sflow(&self) -> Result<(), LabError> {
        let mut args: Vec<String> = Vec::new();
        for server in &self.servers {
            args.extend(["--", "clear", "bridge", &server.bridge, "sflow"].map(String::from));
        }
        self.relay().set_target(None);
        self.ovs().vsctl(&args)?;
        self.ovs().settle()
    }

    /// Mirrors the traffic of `pairs` on `server` to its DPI interface, replacing the earlier
    /// set; an empty set removes the mirror. Each pair needs an end on this server. The mirror
    /// selects the ports of those local ends (see the module documentation). Once it returns,
    /// the change applies to every packet.
    pub fn set_mirror(&self, server: &str, pairs: &[VmPair]) -> Result<(), LabError> {
        let server_id = self
            .topology
            .server_id(server)
            .ok_or_else(|| LabError::UnknownServer(server.to_string()))?;
        let mut local = std::collections::BTreeSet::new();
        for &pair in pairs {
            let mut on_server = false;
            for addr in [pair.src, pair.dst] {
                let vm = self
                    .topology
                    .vm_by_ipv4(addr)
                    .ok_or(LabError::UnknownPairAddress(addr))?;
                if self.topology.vm(vm).server == server_id {
                    local.insert(vm);
                    on_server = true;
                }
            }
            if !on_server {
                return Err(LabError::PairNotOnServer {
                    pair,
                    server: server.to_string(),
                });
            }
        }
        let interfaces = &self.servers[server_id.0];
        if local.is_empty() {
            self.ovs()
                .vsctl(&["clear", "bridge", &interfaces.bridge, "mirrors"])?;
            return self.ovs().settle();
        }
        let mut args: Vec<String> = ["--", "--id=@out", "get", "port", &interfaces.mirror_port]
            .map(String::from)
            .to_vec();
        let mut refs = Vec::new();
        for vm in &local {
            let id = format!("@vm{}", vm.0);
            args.extend([
                "--".into(),
                format!("--id={id}"),
                "get".into(),
                "port".into(),
                self.vms[vm.0].bridge_port.clone(),
            ]);
            refs.push(id);
        }
        let refs = refs.join(",");
        args.extend([
            "--".into(),
            "--id=@m".into(),
            "create".into(),
            "mirror".into(),
            format!("name={}-dpi", interfaces.bridge),
            format!("select_src_port={refs}"),
            format!("select_dst_port={refs}"),
            "output_port=@out".into(),
            "--".into(),
            "set".into(),
            "bridge".into(),
            interfaces.bridge.clone(),
            "mirrors=@m".into(),
        ]);
        self.ovs().vsctl(&args)?;
        self.ovs().settle()
    }

    /// The current flows of a server's bridge with their counters (`ovs-ofctl dump-flows`).
    pub fn dump_flows(&self, server: &str) -> Result<String, LabError> {
        let bridge = &self.server(server)?.bridge;
        self.ovs().dump_flows(bridge)
    }

    /// The exact counts of the pairs of `server`'s VMs among themselves, cumulative since the
    /// lab was built: the counters of the bridge's per-pair rules (see the `ovs` submodule),
    /// pairs that sent nothing included. Every packet the bridge forwarded before the call is
    /// counted.
    pub fn local_pair_counts(&self, server: &str) -> Result<Vec<PairRuleCount>, LabError> {
        let bridge = &self.server(server)?.bridge;
        self.ovs().sync_rule_counters()?;
        let dump = self.ovs().dump_flows(bridge)?;
        ovs::parse_local_pair_counts(&dump).map_err(|problem| LabError::Command {
            command: format!("ovs-ofctl dump-flows {bridge}"),
            status: "unexpected answer".into(),
            stderr: problem,
        })
    }

    /// Runs `f` on a thread inside the VM's namespace and returns its result. Sockets opened
    /// there (std or, through a runtime made in `f`, tokio) are the VM's, wherever they are used
    /// later: e.g. bind a listener in `f`, return it, and serve from any thread.
    pub fn in_vm<F, R>(&self, vm: &str, f: F) -> Result<R, LabError>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let namespace = &self.vm(vm)?.namespace;
        setns::in_namespace(namespace, f)
    }

    /// A command that runs `program` inside the VM's namespace (`ip netns exec`).
    pub fn vm_command(&self, vm: &str, program: impl AsRef<OsStr>) -> Result<Command, LabError> {
        let namespace = &self.vm(vm)?.namespace;
        let mut command = Command::new("ip");
        command.args(["netns", "exec", namespace]).arg(program);
        Ok(command)
    }

    /// A handle that removes this lab from elsewhere (a Ctrl-C handler): it sweeps the prefix.
    pub fn cleanup_handle(&self) -> LabCleanup {
        LabCleanup {
            prefix: self.names.prefix().to_string(),
        }
    }

    /// Removes everything: the OVS daemons (gracefully first), namespaces, interfaces and the
    /// run directory. Reports what the final sweep found.
    pub fn destroy(mut self) -> Result<Removed, LabError> {
        self.remove()
    }

    fn remove(&mut self) -> Result<Removed, LabError> {
        self.removed = true;
        self.relay = None;
        let stopped = match self.ovs.take() {
            Some(mut ovs) => ovs.stop(),
            None => Ok(()),
        };
        let swept = cleanup::remove_by_prefix(self.names.prefix());
        stopped.and(swept)
    }
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = self.remove() {
                tracing::warn!("removing netns lab {}: {e}", self.names.prefix());
            }
        }
    }
}

/// Removes a lab by its prefix, from any thread (e.g. on Ctrl-C, while the lab is in use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabCleanup {
    prefix: String,
}

impl LabCleanup {
    /// The prefix of every name of the lab.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn run(&self) -> Result<Removed, LabError> {
        cleanup::remove_by_prefix(&self.prefix)
    }
}

/// Removes whatever carries `prefix` (`<prefix>-…` interfaces and namespaces, OVS daemons of
/// its run directory, the directory): for a run that crashed. Never call it with the prefix of a
/// lab still in use elsewhere.
pub fn cleanup_leftovers(prefix: &str) -> Result<Removed, LabError> {
    require_root()?;
    cleanup::remove_by_prefix(prefix)
}

/// Removes the leftovers of every crashed run with a default prefix (whose process is gone),
/// leaving live runs alone. Returns each prefix swept and what was removed.
pub fn cleanup_dead_runs() -> Result<Vec<(String, Removed)>, LabError> {
    require_root()?;
    cleanup::remove_dead_runs()
}

/// The names of a lab's parts, by topology index.
struct Plan {
    servers: Vec<ServerInterfaces>,
    vms: Vec<VmInterfaces>,
    links: Vec<LinkInterfaces>,
}

/// Every name of the lab, computed (and length-checked) before anything is created.
fn plan(topology: &Topology, names: &LabNames) -> Result<Plan, LabError> {
    let servers = (0..topology.servers().len())
        .map(|s| {
            Ok(ServerInterfaces {
                bridge: names.interface(&format!("b{s}"))?,
                uplink_bridge_end: names.interface(&format!("u{s}"))?,
                uplink: names.interface(&format!("w{s}"))?,
                mirror_port: names.interface(&format!("m{s}"))?,
                dpi: names.interface(&format!("d{s}"))?,
                local_copy_port: names.interface(&format!("ml{s}"))?,
                local_dpi: names.interface(&format!("dl{s}"))?,
            })
        })
        .collect::<Result<Vec<_>, LabError>>()?;
    let mut vms = Vec::with_capacity(topology.vms().len());
    for (index, vm) in topology.vms().iter().enumerate() {
        let position = topology
            .vms_of_server(vm.server)
            .iter()
            .position(|&v| v == VmId(index))
            .expect("a VM is among its server's VMs");
        let ofport = u16::try_from(position)
            .ok()
            .and_then(|p| p.checked_add(FIRST_VM_OFPORT))
            .filter(|&p| p < 0xff00)
            .ok_or_else(|| LabError::TooManyVms(topology.server(vm.server).name.clone()))?;
        vms.push(VmInterfaces {
            namespace: names.namespace(&vm.name, index),
            bridge_port: names.interface(&format!("v{index}"))?,
            ofport,
        });
    }
    let links = (0..topology.links().len())
        .map(|l| {
            Ok(LinkInterfaces {
                a: names.interface(&format!("l{l}a"))?,
                b: names.interface(&format!("l{l}b"))?,
            })
        })
        .collect::<Result<Vec<_>, LabError>>()?;
    Ok(Plan {
        servers,
        vms,
        links,
    })
}

/// A network namespace with IPv6 off (set before any interface exists there, so none gets a
/// link-local address or sends solicitations) and its loopback up.
fn add_quiet_namespace(name: &str) -> Result<(), LabError> {
    run(&mut cmd("ip", &["netns", "add", name]))?;
    setns::in_namespace(name, || {
        for scope in ["all", "default"] {
            write_sysctl(&format!("net/ipv6/conf/{scope}/disable_ipv6"), "1")?;
        }
        Ok::<(), LabError>(())
    })??;
    run(&mut cmd(
        "ip",
        &["-n", name, "link", "set", "dev", "lo", "up"],
    ))
    .map(drop)
}

/// A veth pair, each end in the given namespace (`None`: the root namespace), both quiet (see
/// [`quiet_interface`]) and up.
fn veth_pair(a: (&str, Option<&str>), b: (&str, Option<&str>)) -> Result<(), LabError> {
    let mut args = vec!["link", "add", a.0];
    if let Some(ns) = a.1 {
        args.extend(["netns", ns]);
    }
    args.extend(["type", "veth", "peer", "name", b.0]);
    if let Some(ns) = b.1 {
        args.extend(["netns", ns]);
    }
    run(&mut cmd("ip", &args))?;
    quiet_interface(a.0, a.1)?;
    quiet_interface(b.0, b.1)
}

/// Makes an interface invisible to its namespace's own stack (no IPv6, no ARP, no forwarding of
/// what arrives) and brings it up. In our namespaces IPv6 is off from the start; in the root
/// namespace it is switched off here, before the interface is up (an up interface gets an IPv6
/// link-local address at once).
fn quiet_interface(name: &str, namespace: Option<&str>) -> Result<(), LabError> {
    let mut ip = vec![];
    match namespace {
        Some(ns) => ip.extend(["-n", ns]),
        None => {
            // A kernel without IPv6 has no such file, and nothing to switch off.
            match write_sysctl(&format!("net/ipv6/conf/{name}/disable_ipv6"), "1") {
                Err(LabError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
            write_sysctl(&format!("net/ipv4/conf/{name}/forwarding"), "0")?;
        }
    }
    ip.extend(["link", "set", "dev", name, "arp", "off", "up"]);
    run(&mut cmd("ip", &ip)).map(drop)
}

/// Writes a sysctl of the calling thread's network namespace.
fn write_sysctl(key: &str, value: &str) -> Result<(), LabError> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(|source| LabError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// The effective user must be root ([`LabError::NotRoot`] otherwise).
pub fn require_root() -> Result<(), LabError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|source| LabError::Io {
        what: "reading /proc/self/status".into(),
        source,
    })?;
    // "Uid:\treal\teffective\tsaved\tfs"
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if effective == Some("0") {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}
