//! The fabric description: switches, the links between their ports, the servers hanging off
//! them and the VMs on the servers. It owns the topology file format, its validation and the
//! k-ary fat-tree generator; it computes no paths (that is [`super::paths`]).
//!
//! # The topology file (TOML)
//!
//! Four arrays of tables; every name is unique across switches, servers and VMs:
//!
//! ```toml
//! [[switch]]
//! name = "s110"                  # unique name
//! device_id = 110                # P4Runtime device id, unique, 0..=65535
//! p4runtime = "127.0.0.1:50110"  # the switch's P4Runtime server (gRPC), unique
//! vm_pair_capacity = 4096        # vm_pair entries this switch offers the controller, 0..=16777216
//!
//! [[link]]                       # a cable between two switch ports, "switch:port"
//! a = "s110:1"
//! b = "s111:1"
//!
//! [[server]]
//! name = "h120"
//! sflow_agent = "127.0.0.120"    # agent address in its sFlow datagrams, unique
//! uplink = "s113:3"              # the switch port the server is cabled to
//! prefix = "10.0.120.0/24"       # optional: the server's address block (see below)
//!
//! [[vm]]
//! name = "web1"
//! ipv4 = "10.0.120.1"            # unicast, unique
//! mac = "02:01:0a:00:78:01"      # unicast, unique
//! server = "h120"
//! ```
//!
//! Ports are bmv2 port numbers, 0..=510 (511 is bmv2's drop port); each switch port carries one
//! link or one server. Parallel links between two switches are allowed, a link from a switch to
//! itself is not, and every switch must be reachable from every other. Unknown keys are errors,
//! so a misspelt key never goes unnoticed.
//!
//! Switch ports have MAC addresses derived from the device id and port,
//! `02:00:<device id, 2 bytes>:<port, 2 bytes>` ([`switch_port_mac`]); the routes rewrite frames
//! with them, so no VM may use one, and device ids are limited to 16 bits.
//!
//! A server's `prefix` declares its address block: its VMs must be in it, no other server's VM
//! may be, and blocks do not overlap. Switches other than the server's own then route the whole
//! block with one `ipv4_lpm` entry instead of one per VM, and adjacent blocks behind the same
//! next hop merge (see [`super::paths`]); addresses of the block that no VM has are forwarded to
//! the server's switch and dropped there.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Highest usable port number (bmv2's port 511 drops).
pub const MAX_PORT: u16 = 510;
/// Largest device id: the id fills two bytes of the derived switch-port MACs.
pub const MAX_DEVICE_ID: u64 = 0xffff;
/// Largest vm_pair capacity a switch may declare; it keeps the placement's arithmetic exact.
pub const MAX_VM_PAIR_CAPACITY: u32 = 1 << 24;

/// A 48-bit Ethernet address, written `02:00:00:00:6e:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Group (multicast/broadcast) addresses have the I/G bit set.
    pub fn is_unicast(self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A text that is not a MAC address `xx:xx:xx:xx:xx:xx`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a MAC address (six hex bytes separated by ':')")]
pub struct MacAddrParseError(String);

impl FromStr for MacAddr {
    type Err = MacAddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacAddrParseError(s.to_string());
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(bytes))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = MacAddrParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(mac: MacAddr) -> String {
        mac.to_string()
    }
}

/// An IPv4 prefix, written `10.0.120.0/24`; the bits past the length are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Prefix {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Prefix {
    /// `addr/len`, or None when `len` is above 32 or `addr` has bits past the length.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Ipv4Prefix> {
        (len <= 32 && u32::from(addr) & !Self::mask(len) == 0).then_some(Ipv4Prefix { addr, len })
    }

    pub fn addr(self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(self) -> u8 {
        self.len
    }

    fn mask(len: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
    }

    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & Self::mask(self.len) == u32::from(self.addr)
    }

    /// Whether the two share an address (one contains the other).
    pub fn overlaps(self, other: Ipv4Prefix) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A text that is not an IPv4 prefix `a.b.c.d/n`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not an IPv4 prefix (a.b.c.d/n, n at most 32, no address bits past n)")]
pub struct Ipv4PrefixParseError(String);

impl FromStr for Ipv4Prefix {
    type Err = Ipv4PrefixParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || Ipv4PrefixParseError(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        // Digits only: `u8::from_str` also takes a leading '+'.
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let len: u8 = len.parse().map_err(|_| err())?;
        Ipv4Prefix::new(addr, len).ok_or_else(err)
    }
}

impl TryFrom<String> for Ipv4Prefix {
    type Error = Ipv4PrefixParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Ipv4Prefix> for String {
    fn from(prefix: Ipv4Prefix) -> String {
        prefix.to_string()
    }
}

/// The MAC address of a switch port: `02:00:<device id>:<port>`, each two bytes, big endian.
/// Locally administered (bit 1 of the first byte), unicast.
pub fn switch_port_mac(device_id: u16, port: u16) -> MacAddr {
    let d = device_id.to_be_bytes();
    let p = port.to_be_bytes();
    MacAddr([0x02, 0x00, d[0], d[1], p[0], p[1]])
}

/// `"switch:port"` as written in the file, before the switch name is resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRef {
    pub switch: String,
    pub port: u16,
}

/// A text that is not `switch:port`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a switch port: expected \"switch:port\", port 0..={MAX_PORT}")]
pub struct PortRefParseError(String);

impl FromStr for PortRef {
    type Err = PortRefParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PortRefParseError(s.to_string());
        let (switch, port) = s.rsplit_once(':').ok_or_else(err)?;
        if switch.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let port: u16 = port.parse().map_err(|_| err())?;
        if port > MAX_PORT {
            return Err(err());
        }
        Ok(PortRef {
            switch: switch.to_string(),
            port,
        })
    }
}

impl TryFrom<String> for PortRef {
    type Error = PortRefParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PortRef> for String {
    fn from(p: PortRef) -> String {
        format!("{}:{}", p.switch, p.port)
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.switch, self.port)
    }
}

/// The file's shape, one struct per table kind; [`Topology::from_file_format`] validates it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyFile {
    #[serde(default, rename = "switch")]
    pub switches: Vec<SwitchEntry>,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkEntry>,
    #[serde(default, rename = "server")]
    pub servers: Vec<ServerEntry>,
    #[serde(default, rename = "vm")]
    pub vms: Vec<VmEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchEntry {
    pub name: String,
    pub device_id: u64,
    pub p4runtime: SocketAddr,
    pub vm_pair_capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEntry {
    pub a: PortRef,
    pub b: PortRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    pub name: String,
    pub sflow_agent: IpAddr,
    pub uplink: PortRef,
    /// The server's address block: all its VMs are in it, and other switches route the whole
    /// block toward the server with one entry. Without it, each VM gets its own /32 route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Ipv4Prefix>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmEntry {
    pub name: String,
    pub ipv4: Ipv4Addr,
    pub mac: MacAddr,
    pub server: String,
}

/// Index of a switch in [`Topology::switches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SwitchId(pub usize);
/// Index of a server in [`Topology::servers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ServerId(pub usize);
/// Index of a VM in [`Topology::vms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct VmId(pub usize);

/// A port of a known switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SwitchPort {
    pub switch: SwitchId,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Switch {
    pub name: String,
    pub device_id: u16,
    pub p4runtime: SocketAddr,
    pub vm_pair_capacity: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub a: SwitchPort,
    pub b: SwitchPort,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    pub sflow_agent: IpAddr,
    pub uplink: SwitchPort,
    /// The server's address block (see [`ServerEntry::prefix`]).
    pub prefix: Option<Ipv4Prefix>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Vm {
    pub name: String,
    pub ipv4: Ipv4Addr,
    pub mac: MacAddr,
    pub server: ServerId,
}

/// What a switch port is cabled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPeer {
    Switch(SwitchPort),
    Server(ServerId),
}

/// The kinds of named things, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Switch,
    Server,
    Vm,
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeKind::Switch => "switch",
            NodeKind::Server => "server",
            NodeKind::Vm => "vm",
        })
    }
}

/// Why a topology is rejected.
#[derive(Debug, Error)]
pub enum TopologyError {
    #[error("cannot read topology file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("topology file is not valid: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("the topology has no switch")]
    NoSwitches,
    #[error("name {name:?} is used by a {first} and by a {second}")]
    DuplicateName {
        name: String,
        first: NodeKind,
        second: NodeKind,
    },
    #[error("empty {kind} name")]
    EmptyName { kind: NodeKind },
    #[error("switch {switch:?}: device id {device_id} is larger than {MAX_DEVICE_ID}")]
    DeviceIdTooLarge { switch: String, device_id: u64 },
    #[error("switches {first:?} and {second:?} have the same device id {device_id}")]
    DuplicateDeviceId {
        device_id: u64,
        first: String,
        second: String,
    },
    #[error("switches {first:?} and {second:?} have the same P4Runtime address {address}")]
    DuplicateP4RuntimeAddress {
        address: SocketAddr,
        first: String,
        second: String,
    },
    #[error(
        "switch {switch:?}: vm_pair_capacity {capacity} is larger than {MAX_VM_PAIR_CAPACITY}"
    )]
    CapacityTooLarge { switch: String, capacity: u32 },
    #[error("{user} refers to unknown switch {switch:?}")]
    UnknownSwitch { user: String, switch: String },
    #[error("port {port} of switch {switch:?} is used by {first} and by {second}")]
    PortUsedTwice {
        switch: String,
        port: u16,
        first: String,
        second: String,
    },
    #[error("link {a} - {b} connects switch {switch:?} to itself")]
    SelfLink {
        switch: String,
        a: PortRef,
        b: PortRef,
    },
    #[error("servers {first:?} and {second:?} have the same sFlow agent address {address}")]
    DuplicateSflowAgent {
        address: IpAddr,
        first: String,
        second: String,
    },
    #[error("vm {vm:?} is on unknown server {server:?}")]
    UnknownServer { vm: String, server: String },
    #[error("servers {first:?} ({first_prefix}) and {second:?} ({second_prefix}) have overlapping prefixes")]
    PrefixesOverlap {
        first: String,
        first_prefix: Ipv4Prefix,
        second: String,
        second_prefix: Ipv4Prefix,
    },
    #[error("vm {vm:?}: {ipv4} is outside its server {server:?}'s prefix {prefix}")]
    VmOutsideItsPrefix {
        vm: String,
        ipv4: Ipv4Addr,
        server: String,
        prefix: Ipv4Prefix,
    },
    #[error("vm {vm:?} is on server {server:?}, but {ipv4} is in server {owner:?}'s prefix")]
    VmInAnotherServersPrefix {
        vm: String,
        ipv4: Ipv4Addr,
        server: String,
        owner: String,
    },
    #[error("vm {vm:?}: {ipv4} is not a unicast IPv4 address")]
    NotUnicastIpv4 { vm: String, ipv4: Ipv4Addr },
    #[error("vms {first:?} and {second:?} have the same IPv4 address {ipv4}")]
    DuplicateIpv4 {
        ipv4: Ipv4Addr,
        first: String,
        second: String,
    },
    #[error("vm {vm:?}: {mac} is not a unicast MAC address")]
    NotUnicastMac { vm: String, mac: MacAddr },
    #[error("vms {first:?} and {second:?} have the same MAC address {mac}")]
    DuplicateMac {
        mac: MacAddr,
        first: String,
        second: String,
    },
    #[error("vm {vm:?}: MAC {mac} is the MAC of port {port} of switch {switch:?}")]
    MacOfSwitchPort {
        vm: String,
        mac: MacAddr,
        switch: String,
        port: u16,
    },
    #[error(
        "the fabric is disconnected: switches {unreachable:?} cannot be reached from {from:?}"
    )]
    Disconnected {
        from: String,
        unreachable: Vec<String>,
    },
}

/// A validated topology. Indices ([`SwitchId`], [`ServerId`], [`VmId`]) follow the file's order.
#[derive(Debug, Clone)]
pub struct Topology {
    switches: Vec<Switch>,
    links: Vec<Link>,
    servers: Vec<Server>,
    vms: Vec<Vm>,
    switch_by_name: HashMap<String, SwitchId>,
    server_by_name: HashMap<String, ServerId>,
    vm_by_name: HashMap<String, VmId>,
    vm_by_ipv4: HashMap<Ipv4Addr, VmId>,
    server_by_agent: HashMap<IpAddr, ServerId>,
    /// Per switch, its used ports and what each is cabled to, by port number.
    ports: Vec<BTreeMap<u16, PortPeer>>,
    /// Per server, its VMs in file order.
    vms_of_server: Vec<Vec<VmId>>,
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn from_file(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Topology::from_toml(&text)
    }

    /// Parses and validates the text of a topology file.
    pub fn from_toml(text: &str) -> Result<Topology, TopologyError> {
        let file: TopologyFile = toml::from_str(text)?;
        Topology::from_file_format(file)
    }

    /// The topology as a file, in the same order; `from_toml(to_toml())` gives it back.
    pub fn to_toml(&self) -> String {
        // Serializing plain strings, numbers and arrays of tables cannot fail.
        toml::to_string(&self.to_file_format()).expect("topology serializes to TOML")
    }

    pub fn to_file_format(&self) -> TopologyFile {
        let port_ref = |p: SwitchPort| PortRef {
            switch: self.switches[p.switch.0].name.clone(),
            port: p.port,
        };
        TopologyFile {
            switches: self
                .switches
                .iter()
                .map(|s| SwitchEntry {
                    name: s.name.clone(),
                    device_id: u64::from(s.device_id),
                    p4runtime: s.p4runtime,
                    vm_pair_capacity: s.vm_pair_capacity,
                })
                .collect(),
            links: self
                .links
                .iter()
                .map(|l| LinkEntry {
                    a: port_ref(l.a),
                    b: port_ref(l.b),
                })
                .collect(),
            servers: self
                .servers
                .iter()
                .map(|s| ServerEntry {
                    name: s.name.clone(),
                    sflow_agent: s.sflow_agent,
                    uplink: port_ref(s.uplink),
                    prefix: s.prefix,
                })
                .collect(),
            vms: self
                .vms
                .iter()
                .map(|v| VmEntry {
                    name: v.name.clone(),
                    ipv4: v.ipv4,
                    mac: v.mac,
                    server: self.servers[v.server.0].name.clone(),
                })
                .collect(),
        }
    }

    /// Validates a parsed file; the first problem found is the error.
    pub fn from_file_format(file: TopologyFile) -> Result<Topology, TopologyError> {
        if file.switches.is_empty() {
            return Err(TopologyError::NoSwitches);
        }
        let mut names: HashMap<String, NodeKind> = HashMap::new();
        let mut claim_name = |name: &str, kind: NodeKind| {
            if name.is_empty() {
                return Err(TopologyError::EmptyName { kind });
            }
            if let Some(&first) = names.get(name) {
                return Err(TopologyError::DuplicateName {
                    name: name.to_string(),
                    first,
                    second: kind,
                });
            }
            names.insert(name.to_string(), kind);
            Ok(())
        };

        let mut switches = Vec::with_capacity(file.switches.len());
        let mut switch_by_name = HashMap::new();
        let mut by_device_id: HashMap<u64, &str> = HashMap::new();
        let mut by_address: HashMap<SocketAddr, &str> = HashMap::new();
        for entry in &file.switches {
            claim_name(&entry.name, NodeKind::Switch)?;
            let device_id =
                u16::try_from(entry.device_id).map_err(|_| TopologyError::DeviceIdTooLarge {
                    switch: entry.name.clone(),
                    device_id: entry.device_id,
                })?;
            if let Some(first) = by_device_id.insert(entry.device_id, &entry.name) {
                return Err(TopologyError::DuplicateDeviceId {
                    device_id: entry.device_id,
                    first: first.to_string(),
                    second: entry.name.clone(),
                });
            }
            if let Some(first) = by_address.insert(entry.p4runtime, &entry.name) {
                return Err(TopologyError::DuplicateP4RuntimeAddress {
                    address: entry.p4runtime,
                    first: first.to_string(),
                    second: entry.name.clone(),
                });
            }
            if entry.vm_pair_capacity > MAX_VM_PAIR_CAPACITY {
                return Err(TopologyError::CapacityTooLarge {
                    switch: entry.name.clone(),
                    capacity: entry.vm_pair_capacity,
                });
            }
            switch_by_name.insert(entry.name.clone(), SwitchId(switches.len()));
            switches.push(Switch {
                name: entry.name.clone(),
                device_id,
                p4runtime: entry.p4runtime,
                vm_pair_capacity: entry.vm_pair_capacity,
            });
        }

        // Who uses each port, for the "used twice" error.
        let mut ports: Vec<BTreeMap<u16, PortPeer>> = vec![BTreeMap::new(); switches.len()];
        let mut port_users: HashMap<(SwitchId, u16), String> = HashMap::new();
        let resolve = |r: &PortRef, user: &str| -> Result<SwitchPort, TopologyError> {
            let switch =
                *switch_by_name
                    .get(&r.switch)
                    .ok_or_else(|| TopologyError::UnknownSwitch {
                        user: user.to_string(),
                        switch: r.switch.clone(),
                    })?;
            Ok(SwitchPort {
                switch,
                port: r.port,
            })
        };
        let mut claim_port = |p: SwitchPort, user: String| {
            if let Some(first) = port_users.get(&(p.switch, p.port)) {
                return Err(TopologyError::PortUsedTwice {
                    switch: switches[p.switch.0].name.clone(),
                    port: p.port,
                    first: first.clone(),
                    second: user,
                });
            }
            port_users.insert((p.switch, p.port), user);
            Ok(())
        };

        let mut links = Vec::with_capacity(file.links.len());
        for entry in &file.links {
            let user = format!("link {} - {}", entry.a, entry.b);
            let a = resolve(&entry.a, &user)?;
            let b = resolve(&entry.b, &user)?;
            if a.switch == b.switch {
                return Err(TopologyError::SelfLink {
                    switch: entry.a.switch.clone(),
                    a: entry.a.clone(),
                    b: entry.b.clone(),
                });
            }
            claim_port(a, user.clone())?;
            claim_port(b, user)?;
            ports[a.switch.0].insert(a.port, PortPeer::Switch(b));
            ports[b.switch.0].insert(b.port, PortPeer::Switch(a));
            links.push(Link { a, b });
        }

        let mut servers = Vec::with_capacity(file.servers.len());
        let mut server_by_name = HashMap::new();
        let mut server_by_agent: HashMap<IpAddr, ServerId> = HashMap::new();
        // Server prefixes by their first address.
        let mut blocks: BTreeMap<u32, (Ipv4Prefix, ServerId)> = BTreeMap::new();
        for entry in &file.servers {
            claim_name(&entry.name, NodeKind::Server)?;
            let user = format!("server {:?}", entry.name);
            let uplink = resolve(&entry.uplink, &user)?;
            claim_port(uplink, user)?;
            let id = ServerId(servers.len());
            if let Some(first) = server_by_agent.insert(entry.sflow_agent, id) {
                return Err(TopologyError::DuplicateSflowAgent {
                    address: entry.sflow_agent,
                    first: file.servers[first.0].name.clone(),
                    second: entry.name.clone(),
                });
            }
            ports[uplink.switch.0].insert(uplink.port, PortPeer::Server(id));
            server_by_name.insert(entry.name.clone(), id);
            if let Some(prefix) = entry.prefix {
                // Prefixes never overlap, so only the neighbours by start can.
                let start = u32::from(prefix.addr());
                let before = blocks.range(..=start).next_back();
                let after = blocks.range(start..).next();
                let clash = [before, after]
                    .into_iter()
                    .flatten()
                    .find(|(_, (p, _))| p.overlaps(prefix));
                if let Some((_, &(first_prefix, first))) = clash {
                    return Err(TopologyError::PrefixesOverlap {
                        first: file.servers[first.0].name.clone(),
                        first_prefix,
                        second: entry.name.clone(),
                        second_prefix: prefix,
                    });
                }
                blocks.insert(start, (prefix, id));
            }
            servers.push(Server {
                name: entry.name.clone(),
                sflow_agent: entry.sflow_agent,
                uplink,
                prefix: entry.prefix,
            });
        }

        // Every used switch port's MAC, to keep VMs off them.
        let mut port_macs: HashMap<MacAddr, (SwitchId, u16)> = HashMap::new();
        for (s, used) in ports.iter().enumerate() {
            for &port in used.keys() {
                port_macs.insert(
                    switch_port_mac(switches[s].device_id, port),
                    (SwitchId(s), port),
                );
            }
        }

        let mut vms = Vec::with_capacity(file.vms.len());
        let mut vm_by_name = HashMap::new();
        let mut vm_by_ipv4: HashMap<Ipv4Addr, VmId> = HashMap::new();
        let mut vm_by_mac: HashMap<MacAddr, VmId> = HashMap::new();
        let mut vms_of_server = vec![Vec::new(); servers.len()];
        for entry in &file.vms {
            claim_name(&entry.name, NodeKind::Vm)?;
            let server =
                *server_by_name
                    .get(&entry.server)
                    .ok_or_else(|| TopologyError::UnknownServer {
                        vm: entry.name.clone(),
                        server: entry.server.clone(),
                    })?;
            let ip = entry.ipv4;
            if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
                return Err(TopologyError::NotUnicastIpv4 {
                    vm: entry.name.clone(),
                    ipv4: ip,
                });
            }
            if !entry.mac.is_unicast() {
                return Err(TopologyError::NotUnicastMac {
                    vm: entry.name.clone(),
                    mac: entry.mac,
                });
            }
            let id = VmId(vms.len());
            if let Some(first) = vm_by_ipv4.insert(ip, id) {
                return Err(TopologyError::DuplicateIpv4 {
                    ipv4: ip,
                    first: file.vms[first.0].name.clone(),
                    second: entry.name.clone(),
                });
            }
            if let Some(first) = vm_by_mac.insert(entry.mac, id) {
                return Err(TopologyError::DuplicateMac {
                    mac: entry.mac,
                    first: file.vms[first.0].name.clone(),
                    second: entry.name.clone(),
                });
            }
            if let Some(&(switch, port)) = port_macs.get(&entry.mac) {
                return Err(TopologyError::MacOfSwitchPort {
                    vm: entry.name.clone(),
                    mac: entry.mac,
                    switch: switches[switch.0].name.clone(),
                    port,
                });
            }
            // A VM lies in its own server's block and in no other server's.
            let owner = blocks
                .range(..=u32::from(ip))
                .next_back()
                .filter(|(_, (p, _))| p.contains(ip))
                .map(|(_, &(_, owner))| owner.0);
            match (servers[server.0].prefix, owner) {
                (Some(prefix), None) => {
                    return Err(TopologyError::VmOutsideItsPrefix {
                        vm: entry.name.clone(),
                        ipv4: ip,
                        server: entry.server.clone(),
                        prefix,
                    })
                }
                (_, Some(o)) if o != server.0 => {
                    return Err(TopologyError::VmInAnotherServersPrefix {
                        vm: entry.name.clone(),
                        ipv4: ip,
                        server: entry.server.clone(),
                        owner: servers[o].name.clone(),
                    })
                }
                _ => {}
            }
            vm_by_name.insert(entry.name.clone(), id);
            vms_of_server[server.0].push(id);
            vms.push(Vm {
                name: entry.name.clone(),
                ipv4: ip,
                mac: entry.mac,
                server,
            });
        }

        let topology = Topology {
            switches,
            links,
            servers,
            vms,
            switch_by_name,
            server_by_name,
            vm_by_name,
            vm_by_ipv4,
            server_by_agent,
            ports,
            vms_of_server,
        };
        topology.check_connected()?;
        Ok(topology)
    }

    /// Every switch must reach every other, or some pairs would have no path.
    fn check_connected(&self) -> Result<(), TopologyError> {
        let mut seen = vec![false; self.switches.len()];
        let mut queue = VecDeque::from([SwitchId(0)]);
        seen[0] = true;
        while let Some(s) = queue.pop_front() {
            for (_, peer) in self.switch_neighbours(s) {
                if !seen[peer.switch.0] {
                    seen[peer.switch.0] = true;
                    queue.push_back(peer.switch);
                }
            }
        }
        let unreachable: Vec<String> = seen
            .iter()
            .zip(&self.switches)
            .filter(|(seen, _)| !**seen)
            .map(|(_, s)| s.name.clone())
            .collect();
        if unreachable.is_empty() {
            Ok(())
        } else {
            Err(TopologyError::Disconnected {
                from: self.switches[0].name.clone(),
                unreachable,
            })
        }
    }

    pub fn switches(&self) -> &[Switch] {
        &self.switches
    }
    pub fn links(&self) -> &[Link] {
        &self.links
    }
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }
    pub fn vms(&self) -> &[Vm] {
        &self.vms
    }

    pub fn switch(&self, id: SwitchId) -> &Switch {
        &self.switches[id.0]
    }
    pub fn server(&self, id: ServerId) -> &Server {
        &self.servers[id.0]
    }
    pub fn vm(&self, id: VmId) -> &Vm {
        &self.vms[id.0]
    }

    pub fn switch_id(&self, name: &str) -> Option<SwitchId> {
        self.switch_by_name.get(name).copied()
    }
    pub fn server_id(&self, name: &str) -> Option<ServerId> {
        self.server_by_name.get(name).copied()
    }
    pub fn vm_id(&self, name: &str) -> Option<VmId> {
        self.vm_by_name.get(name).copied()
    }
    /// The VM that owns an IPv4 address (how samples and counters name VMs).
    pub fn vm_by_ipv4(&self, ip: Ipv4Addr) -> Option<VmId> {
        self.vm_by_ipv4.get(&ip).copied()
    }
    /// The server whose sFlow datagrams carry this agent address.
    pub fn server_by_agent(&self, agent: IpAddr) -> Option<ServerId> {
        self.server_by_agent.get(&agent).copied()
    }
    /// The VMs of a server, in file order.
    pub fn vms_of_server(&self, server: ServerId) -> &[VmId] {
        &self.vms_of_server[server.0]
    }
    /// The switch a VM's server hangs off.
    pub fn edge_switch_of_vm(&self, vm: VmId) -> SwitchId {
        self.servers[self.vms[vm.0].server.0].uplink.switch
    }

    /// A switch's used ports, by port number, and what each is cabled to.
    pub fn ports(&self, switch: SwitchId) -> &BTreeMap<u16, PortPeer> {
        &self.ports[switch.0]
    }

    /// The switch's links to other switches: (local port, far end), by local port.
    pub fn switch_neighbours(
        &self,
        switch: SwitchId,
    ) -> impl Iterator<Item = (u16, SwitchPort)> + '_ {
        self.ports[switch.0]
            .iter()
            .filter_map(|(&port, peer)| match peer {
                PortPeer::Switch(far) => Some((port, *far)),
                PortPeer::Server(_) => None,
            })
    }

    /// The MAC address of a switch port ([`switch_port_mac`]).
    pub fn port_mac(&self, port: SwitchPort) -> MacAddr {
        switch_port_mac(self.switches[port.switch.0].device_id, port.port)
    }
}

/// Errors of the fat-tree generator's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FatTreeError {
    #[error("fat-tree arity k = {0} must be even and between 2 and {MAX_FAT_TREE_K}")]
    BadArity(u32),
    #[error(
        "{per_server} VMs per server do not fit the fat-tree address plan (10.pod.edge.host, \
         the last byte shared by the edge's servers: at most {max} per server for this k)"
    )]
    TooManyVms { per_server: u32, max: u32 },
    #[error("vm_pair_capacity {0} is larger than {MAX_VM_PAIR_CAPACITY}")]
    CapacityTooLarge(u32),
}

/// Largest fat-tree arity: 5k²/4 switches must fit 16-bit device ids and loopback P4Runtime
/// ports 50001 and up.
pub const MAX_FAT_TREE_K: u32 = 64;

/// A k-ary fat tree (Al-Fares et al., 2008): k pods of k/2 edge and k/2 aggregation switches,
/// (k/2)² core switches, k/2 servers per edge switch, each with `vms_per_server` VMs.
///
/// Numbering, so the files read well and diff well:
/// - switches `c<j>` (core j), then per pod p `a<p>_<i>` (aggregation i) and `e<p>_<i>` (edge i);
///   device ids 1, 2, ... in that order; P4Runtime at 127.0.0.1:(50000 + device id);
/// - edge switch ports 1..=k/2 go down to servers, k/2+1..=k up to the pod's aggregation switches
///   (port k/2+1+i to aggregation i); aggregation ports 1..=k/2 go down to edge switches (port 1+i
///   to edge i), k/2+1..=k up to cores; core j connects to aggregation j / (k/2) of every pod,
///   core port p+1 to pod p, at that aggregation switch's port k/2+1+(j mod k/2);
/// - server `h<p>_<e>_<s>` (slot s of edge e in pod p), sFlow agent 127.1.0.1 onwards;
/// - addresses as in Al-Fares et al.: edge e of pod p owns 10.p.e.0/24, split into one block
///   per server slot (the smallest power of two of blocks that holds k/2 slots); the block is
///   the server's prefix, so switches route it with one entry and whole edges and pods
///   aggregate. VM `vm<p>_<e>_<s>_<v>` is host v+1 of its block, MAC `02:01:` followed by its
///   IPv4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatTree {
    k: u32,
    vms_per_server: u32,
    vm_pair_capacity: u32,
}

impl FatTree {
    /// A k-ary fat tree with 2 VMs per server and switches offering 4096 vm_pair entries
    /// (vmdep.p4's `VM_PAIR_SIZE`).
    pub fn new(k: u32) -> Result<FatTree, FatTreeError> {
        if k < 2 || !k.is_multiple_of(2) || k > MAX_FAT_TREE_K {
            return Err(FatTreeError::BadArity(k));
        }
        Ok(FatTree {
            k,
            vms_per_server: 2,
            vm_pair_capacity: 4096,
        })
    }

    pub fn vms_per_server(mut self, n: u32) -> Result<FatTree, FatTreeError> {
        let max = self.max_vms_per_server();
        if n > max {
            return Err(FatTreeError::TooManyVms { per_server: n, max });
        }
        self.vms_per_server = n;
        Ok(self)
    }

    /// Bits of the last address byte that number a server's slot under its edge switch.
    fn slot_bits(&self) -> u32 {
        (self.k / 2).next_power_of_two().trailing_zeros()
    }

    /// A block's addresses but its first and last (kept free, like a subnet's).
    fn max_vms_per_server(&self) -> u32 {
        (1 << (8 - self.slot_bits())) - 2
    }

    pub fn vm_pair_capacity(mut self, capacity: u32) -> Result<FatTree, FatTreeError> {
        if capacity > MAX_VM_PAIR_CAPACITY {
            return Err(FatTreeError::CapacityTooLarge(capacity));
        }
        self.vm_pair_capacity = capacity;
        Ok(self)
    }

    pub fn k(&self) -> u32 {
        self.k
    }

    /// The topology, as a file and then validated like any other (which cannot fail for the
    /// parameters `new` and the setters accept; a failure would be a generator bug).
    pub fn topology(&self) -> Topology {
        Topology::from_file_format(self.file())
            .expect("the fat-tree generator produces valid topologies")
    }

    /// The generated topology file.
    pub fn file(&self) -> TopologyFile {
        let k = self.k;
        let half = k / 2;
        let mut file = TopologyFile::default();
        let mut next_device_id = 1u64;
        let mut add_switch = |file: &mut TopologyFile, name: String| {
            let device_id = next_device_id;
            next_device_id += 1;
            file.switches.push(SwitchEntry {
                name,
                device_id,
                // device ids ≤ 5·64²/4 = 5120, so the port stays below 65536.
                p4runtime: SocketAddr::from(([127, 0, 0, 1], 50000 + device_id as u16)),
                vm_pair_capacity: self.vm_pair_capacity,
            });
        };
        let core = |j: u32| format!("c{j}");
        let agg = |p: u32, i: u32| format!("a{p}_{i}");
        let edge = |p: u32, i: u32| format!("e{p}_{i}");
        let port = |switch: String, port: u32| PortRef {
            switch,
            port: port as u16,
        };

        for j in 0..half * half {
            add_switch(&mut file, core(j));
        }
        for p in 0..k {
            for i in 0..half {
                add_switch(&mut file, agg(p, i));
            }
            for i in 0..half {
                add_switch(&mut file, edge(p, i));
            }
        }
        for p in 0..k {
            for e in 0..half {
                for a in 0..half {
                    file.links.push(LinkEntry {
                        a: port(edge(p, e), half + 1 + a),
                        b: port(agg(p, a), 1 + e),
                    });
                }
            }
        }
        for j in 0..half * half {
            for p in 0..k {
                file.links.push(LinkEntry {
                    a: port(core(j), p + 1),
                    b: port(agg(p, j / half), half + 1 + j % half),
                });
            }
        }
        let mut server_index = 0u32;
        let host_bits = 8 - self.slot_bits();
        for p in 0..k {
            for e in 0..half {
                for s in 0..half {
                    server_index += 1;
                    let name = format!("h{p}_{e}_{s}");
                    let agent =
                        Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 0)) + server_index);
                    // k ≤ 64, so pod and edge numbers fit their bytes.
                    let block = Ipv4Addr::new(10, p as u8, e as u8, (s << host_bits) as u8);
                    file.servers.push(ServerEntry {
                        name: name.clone(),
                        sflow_agent: IpAddr::V4(agent),
                        uplink: port(edge(p, e), 1 + s),
                        prefix: Ipv4Prefix::new(block, (24 + self.slot_bits()) as u8),
                    });
                    for v in 0..self.vms_per_server {
                        let ipv4 = Ipv4Addr::from(u32::from(block) + v + 1);
                        let o = ipv4.octets();
                        file.vms.push(VmEntry {
                            name: format!("vm{p}_{e}_{s}_{v}"),
                            ipv4,
                            mac: MacAddr([0x02, 0x01, o[0], o[1], o[2], o[3]]),
                            server: name.clone(),
                        });
                    }
                }
            }
        }
        file
    }
}

#[cfg(test)]
mod tests;
