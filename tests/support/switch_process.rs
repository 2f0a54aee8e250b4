//! `vmdep switch` (the built binary) as a child process with UDP wires on loopback, each to a
//! peer socket of the test: started, its addresses read from what it prints, frames received
//! at the peers, stopped with SIGTERM.

use std::ffi::OsStr;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::process::{assert_stops_on_sigterm, lines, Reaper};

const WAIT: Duration = Duration::from_secs(20);

/// `vmdep switch` with ports 0..n, port N a UDP wire to `peers[N]`.
pub struct SwitchProcess {
    pub child: Reaper,
    pub grpc_addr: String,
    /// The switch's end of each wire, by port number.
    pub ports: Vec<SocketAddr>,
    /// The test's end of each wire, by port number.
    pub peers: Vec<UdpSocket>,
    /// The switch's standard output, line by line (its logs with `--log-console`).
    pub stdout: mpsc::Receiver<String>,
}

impl SwitchProcess {
    /// `vmdep switch --device-id 1 -i ... -- --grpc-server-addr 127.0.0.1:0`.
    pub fn start(ports: usize) -> SwitchProcess {
        SwitchProcess::start_with(
            ports,
            [
                "--device-id",
                "1",
                "--",
                "--grpc-server-addr",
                "127.0.0.1:0",
            ],
        )
    }

    /// `vmdep switch -i ...` then `args`, which must make the gRPC address port 0 (the switch
    /// prints the one it bound).
    pub fn start_with<S: AsRef<OsStr>>(
        ports: usize,
        args: impl IntoIterator<Item = S>,
    ) -> SwitchProcess {
        let peers: Vec<UdpSocket> = (0..ports)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s
            })
            .collect();
        let mut switch = Command::new(env!("CARGO_BIN_EXE_vmdep"));
        switch.arg("switch");
        for (port, peer) in peers.iter().enumerate() {
            switch.arg("-i").arg(format!(
                "{port}@udp:127.0.0.1:0={}",
                peer.local_addr().unwrap()
            ));
        }
        switch.args(args);
        let mut child = Reaper(
            switch
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start vmdep switch"),
        );
        let stdout = lines(child.0.stdout.take().unwrap());
        let stderr = lines(child.0.stderr.take().unwrap());
        let mut grpc_addr = None;
        let mut switch_ports: Vec<Option<SocketAddr>> = vec![None; ports];
        while grpc_addr.is_none() || switch_ports.iter().any(Option::is_none) {
            let line = stderr
                .recv_timeout(WAIT)
                .expect("vmdep switch did not print its addresses");
            if let Some(addr) = line.strip_prefix("vmdep switch: P4Runtime on ") {
                grpc_addr = Some(addr.to_string());
            } else if let Some(rest) = line.strip_prefix("vmdep switch: port ") {
                let (port, addr) = rest.split_once(" on udp ").unwrap();
                switch_ports[port.parse::<usize>().unwrap()] = Some(addr.parse().unwrap());
            }
        }
        // Keep draining stderr so the switch never blocks on a full pipe.
        std::thread::spawn(move || while stderr.recv().is_ok() {});
        SwitchProcess {
            child,
            grpc_addr: grpc_addr.unwrap(),
            ports: switch_ports.into_iter().map(Option::unwrap).collect(),
            peers,
            stdout,
        }
    }

    /// Sends `frame` into `port`.
    pub fn send(&self, port: usize, frame: &[u8]) {
        self.peers[port].send_to(frame, self.ports[port]).unwrap();
    }

    /// Waits for the next frame out of `port` and checks it came from the switch's end.
    pub fn receive(&self, port: usize) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let (n, from) = self.peers[port]
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no frame on port {port}: {e}"));
        assert_eq!(from, self.ports[port]);
        buf[..n].to_vec()
    }

    /// Checks that nothing more leaves any port within a short while.
    pub fn assert_quiet(&self) {
        let mut buf = [0u8; 2048];
        for (port, peer) in self.peers.iter().enumerate() {
            peer.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            if let Ok((n, _)) = peer.recv_from(&mut buf) {
                panic!("unexpected frame on port {port}: {:02x?}", &buf[..n]);
            }
        }
    }

    /// SIGTERM stops the switch gracefully; returns what it wrote on standard output since
    /// `start` (or since the test last read `stdout`).
    pub fn stop(mut self) -> Vec<String> {
        assert_stops_on_sigterm(&mut self.child.0, "vmdep switch", WAIT);
        // The switch has exited: its output ends, and so does this.
        std::iter::from_fn(|| self.stdout.recv_timeout(WAIT).ok()).collect()
    }
}
