//! bmv2's `--pcap DIR`: each port's frames in two capture files, `DIR/NAME_in.pcap` (every frame
//! the port received, before the pipeline sees it) and `DIR/NAME_out.pcap` (every frame the
//! switch handed the port to send), where NAME is the port's interface name, as bmv2 names them
//! (`port<N>` for a UDP wire or an in-process port, which have none).
//!
//! Classic pcap (microsecond timestamps, Ethernet link type, the files bmv2 writes), flushed after
//! each batch of frames, so that tshark or Wireshark can read a capture while the switch runs.
//! A file that cannot be written any more is closed with a warning; the frames themselves are
//! never held up or dropped because of a capture. This module owns only the files: the device
//! calls it on its frame path.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// The largest frame length a capture keeps whole (pcap's snaplen; longer frames are cut, their
/// original length recorded).
const SNAPLEN: u32 = 65_535;

/// pcap's link type for Ethernet frames.
const LINKTYPE_ETHERNET: u32 = 1;

#[derive(Debug, Error)]
#[error("cannot create the capture file {}: {source}", path.display())]
pub struct CaptureError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The capture files of every port.
#[derive(Debug)]
pub struct PortCaptures {
    ports: HashMap<u32, PortFiles>,
}

#[derive(Debug)]
struct PortFiles {
    received: CaptureFile,
    sent: CaptureFile,
}

impl PortCaptures {
    /// Creates (truncating) both files of each `(port, name)` in `dir`, which must exist.
    pub fn create(
        dir: &Path,
        ports: impl IntoIterator<Item = (u32, String)>,
    ) -> Result<PortCaptures, CaptureError> {
        let mut files = HashMap::new();
        for (port, name) in ports {
            files.insert(
                port,
                PortFiles {
                    received: CaptureFile::create(dir.join(format!("{name}_in.pcap")))?,
                    sent: CaptureFile::create(dir.join(format!("{name}_out.pcap")))?,
                },
            );
        }
        Ok(PortCaptures { ports: files })
    }

    /// The file name a port without an interface name gets (`port<N>`).
    pub fn unnamed(port: u32) -> String {
        format!("port{port}")
    }

    /// A batch of frames `port` received; `None` for a port without files.
    pub fn received(&self, port: u32) -> Option<CaptureBatch<'_>> {
        self.ports.get(&port).map(|p| p.received.batch())
    }

    /// A batch of frames handed to `port` to send; `None` for a port without files.
    pub fn sent(&self, port: u32) -> Option<CaptureBatch<'_>> {
        self.ports.get(&port).map(|p| p.sent.batch())
    }
}

#[derive(Debug)]
struct CaptureFile {
    path: PathBuf,
    /// `None` once a write failed.
    writer: Mutex<Option<BufWriter<File>>>,
}

impl CaptureFile {
    fn create(path: PathBuf) -> Result<CaptureFile, CaptureError> {
        let opened = File::create(&path).and_then(|file| {
            let mut writer = BufWriter::new(file);
            writer.write_all(&file_header())?;
            writer.flush()?;
            Ok(writer)
        });
        match opened {
            Ok(writer) => Ok(CaptureFile {
                path,
                writer: Mutex::new(Some(writer)),
            }),
            Err(source) => Err(CaptureError { path, source }),
        }
    }

    fn batch(&self) -> CaptureBatch<'_> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        CaptureBatch {
            path: &self.path,
            // A panic while writing a capture leaves a file at worst truncated: keep going.
            writer: self
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            seconds: u32::try_from(since_epoch.as_secs()).unwrap_or(u32::MAX),
            micros: since_epoch.subsec_micros(),
        }
    }
}

/// Frames written to one capture file under one lock and one timestamp (a batch takes
/// microseconds); flushed when dropped.
pub struct CaptureBatch<'a> {
    path: &'a Path,
    writer: MutexGuard<'a, Option<BufWriter<File>>>,
    seconds: u32,
    micros: u32,
}

impl CaptureBatch<'_> {
    pub fn write(&mut self, frame: &[u8]) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        let result = writer
            .write_all(&record_header(self.seconds, self.micros, frame.len()))
            .and_then(|()| writer.write_all(&frame[..frame.len().min(SNAPLEN as usize)]));
        if let Err(err) = result {
            self.stop(err);
        }
    }

    fn stop(&mut self, err: std::io::Error) {
        tracing::warn!(path = %self.path.display(), %err, "capture file not writable; capture stopped");
        *self.writer = None;
    }
}

impl Drop for CaptureBatch<'_> {
    fn drop(&mut self) {
        if let Some(Err(err)) = self.writer.as_mut().map(|w| w.flush()) {
            self.stop(err);
        }
    }
}

/// pcap's file header: magic (microsecond timestamps), version 2.4, no time zone offset, snaplen,
/// link type; little-endian, which the magic tells readers.
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// A record's header: timestamp, bytes kept (up to the snaplen), original length.
pub fn record_header(seconds: u32, micros: u32, len: usize) -> [u8; 16] {
    let original = u32::try_from(len).unwrap_or(u32::MAX);
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&seconds.to_le_bytes());
    h[4..8].copy_from_slice(&micros.to_le_bytes());
    h[8..12].copy_from_slice(&original.min(SNAPLEN).to_le_bytes());
    h[12..16].copy_from_slice(&original.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records of a capture file written by this module: (timestamp, kept bytes, original
    /// length), read back by the format's definition.
    fn records(bytes: &[u8]) -> Vec<((u32, u32), Vec<u8>, u32)> {
        assert_eq!(bytes[..24], file_header());
        let mut rest = &bytes[24..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let word = |at: usize| u32::from_le_bytes(rest[at..at + 4].try_into().unwrap());
            let (kept, original) = (word(8) as usize, word(12));
            out.push(((word(0), word(4)), rest[16..16 + kept].to_vec(), original));
            rest = &rest[16 + kept..];
        }
        out
    }

    #[test]
    fn batches_are_flushed_in_order_and_long_frames_cut_at_the_snaplen() {
        let dir = tempfile::tempdir().unwrap();
        let captures =
            PortCaptures::create(dir.path(), [(3, "veth3".to_string()), (7, "port7".into())])
                .unwrap();
        let long = vec![0xab; SNAPLEN as usize + 10];
        {
            let mut batch = captures.received(3).unwrap();
            batch.write(&[1, 2, 3]);
            batch.write(&long);
        }
        // Flushed when the batch ended: readable while the switch runs.
        let read = records(&std::fs::read(dir.path().join("veth3_in.pcap")).unwrap());
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].1, [1, 2, 3]);
        assert_eq!(read[0].2, 3);
        assert_eq!(read[1].1.len(), SNAPLEN as usize);
        assert_eq!(read[1].2, SNAPLEN + 10);
        assert_eq!(read[0].0, read[1].0, "one timestamp per batch");
        captures.sent(7).unwrap().write(&[9]);
        let sent = records(&std::fs::read(dir.path().join("port7_out.pcap")).unwrap());
        assert_eq!(sent.len(), 1);
        assert!(records(&std::fs::read(dir.path().join("veth3_out.pcap")).unwrap()).is_empty());
        assert!(captures.received(4).is_none());
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        let err = PortCaptures::create(&missing, [(1, "veth1".to_string())]).unwrap_err();
        assert_eq!(err.path, missing.join("veth1_in.pcap"));
        assert!(err.to_string().contains("veth1_in.pcap"), "{err}");
    }

    #[test]
    fn a_file_that_cannot_be_written_stops_its_capture_only() {
        // /dev/full refuses every write: the first batch's flush fails.
        let file = CaptureFile {
            path: PathBuf::from("/dev/full"),
            writer: Mutex::new(Some(BufWriter::new(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            ))),
        };
        file.batch().write(&[1, 2, 3]);
        assert!(file.writer.lock().unwrap().is_none(), "capture stopped");
        // Later batches are no-ops, not errors.
        file.batch().write(&[4]);
    }
}
