//! Client arbitration (P4Runtime spec, "Client Arbitration and Controller Replication"): which
//! live stream is the primary controller of the device, and who must hear about a change.
//!
//! Pure bookkeeping: it returns the notifications to send and never touches a stream, the data
//! plane or gRPC. Only the default role exists (named roles are refused by the stream handler).
//!
//! The rules, as the spec states them:
//! - the primary is the live controller whose election id equals the highest election id the
//!   device has ever received (`highest`); an unset election id is lower than any other;
//! - live controllers' election ids are unique (a duplicate is INVALID_ARGUMENT);
//! - when the primary's stream closes there is no primary until some controller claims an
//!   election id ≥ `highest` again (a backup does not take over by itself);
//! - notifications carry `highest` and, per receiver, OK (primary), ALREADY_EXISTS (a backup
//!   while a primary exists) or NOT_FOUND (a backup while there is none).

use std::collections::BTreeMap;

use thiserror::Error;

use crate::p4rt::rpc::{self, Code};
use crate::p4rt::v1::{MasterArbitrationUpdate, Uint128};

/// Identifies one `StreamChannel` call for the lifetime of the server.
pub type StreamId = u64;

/// An election id as the protocol's 128-bit unsigned integer.
pub fn election_id(value: &Uint128) -> u128 {
    (u128::from(value.high) << 64) | u128::from(value.low)
}

fn to_uint128(value: u128) -> Uint128 {
    Uint128 {
        high: (value >> 64) as u64,
        low: value as u64,
    }
}

/// A `MasterArbitrationUpdate` the arbitration refuses; the stream must end with this error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArbitrationError {
    /// INVALID_ARGUMENT
    #[error("election id {0} is already used by another live controller")]
    DuplicateElectionId(u128),
}

/// One message to send: the arbitration update for one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub stream: StreamId,
    pub update: MasterArbitrationUpdate,
}

/// The live controllers of the device (default role) and the election history.
#[derive(Debug, Default)]
pub struct Arbitration {
    device_id: u64,
    /// Live controllers by stream, with their election id (None when unset).
    controllers: BTreeMap<StreamId, Option<u128>>,
    /// The highest election id ever received.
    highest: Option<u128>,
    primary: Option<StreamId>,
}

impl Arbitration {
    pub fn new(device_id: u64) -> Arbitration {
        Arbitration {
            device_id,
            ..Arbitration::default()
        }
    }

    /// Whether `stream` has joined (sent an accepted arbitration update).
    pub fn is_live(&self, stream: StreamId) -> bool {
        self.controllers.contains_key(&stream)
    }

    /// The primary's stream, if there is a primary.
    pub fn primary(&self) -> Option<StreamId> {
        self.primary
    }

    /// Whether a request carrying `election_id` comes from the primary.
    pub fn is_primary_election_id(&self, election_id: Option<u128>) -> bool {
        match (self.primary, election_id) {
            (Some(stream), Some(id)) => self.controllers.get(&stream) == Some(&Some(id)),
            _ => false,
        }
    }

    /// Handles an arbitration update from `stream` (its first, or a later one) carrying
    /// `election_id`, and returns the notifications to send.
    pub fn update(
        &mut self,
        stream: StreamId,
        election_id: Option<u128>,
    ) -> Result<Vec<Notification>, ArbitrationError> {
        if let Some(id) = election_id {
            let taken = self
                .controllers
                .iter()
                .any(|(&other, &other_id)| other != stream && other_id == Some(id));
            if taken {
                return Err(ArbitrationError::DuplicateElectionId(id));
            }
        }
        self.controllers.insert(stream, election_id);
        let was_primary = self.primary == Some(stream);
        let claims = match (election_id, self.highest) {
            (Some(id), Some(highest)) => id >= highest,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if claims {
            self.highest = election_id;
            self.primary = Some(stream);
            return Ok(self.notify_all());
        }
        if was_primary {
            // The primary downgraded itself: nobody is primary now, and everyone hears it.
            self.primary = None;
            return Ok(self.notify_all());
        }
        Ok(vec![self.notification(stream)])
    }

    /// Removes the controller of a closed stream; returns the notifications to send.
    pub fn leave(&mut self, stream: StreamId) -> Vec<Notification> {
        if self.controllers.remove(&stream).is_none() {
            return Vec::new();
        }
        if self.primary == Some(stream) {
            self.primary = None;
            return self.notify_all();
        }
        Vec::new()
    }

    fn notify_all(&self) -> Vec<Notification> {
        self.controllers
            .keys()
            .map(|&stream| self.notification(stream))
            .collect()
    }

    fn notification(&self, stream: StreamId) -> Notification {
        let (code, message) = match self.primary {
            Some(primary) if primary == stream => (Code::Ok, "you are the primary controller"),
            Some(_) => (Code::AlreadyExists, "another controller is the primary"),
            None => (Code::NotFound, "there is no primary controller"),
        };
        Notification {
            stream,
            update: MasterArbitrationUpdate {
                device_id: self.device_id,
                role: None,
                election_id: self.highest.map(to_uint128),
                status: Some(rpc::Status {
                    code: code as i32,
                    message: message.to_string(),
                    details: Vec::new(),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(notes: &[Notification]) -> Vec<(StreamId, i32)> {
        notes
            .iter()
            .map(|n| (n.stream, n.update.status.as_ref().unwrap().code))
            .collect()
    }

    const OK: i32 = Code::Ok as i32;
    const BACKUP: i32 = Code::AlreadyExists as i32;
    const NONE: i32 = Code::NotFound as i32;

    #[test]
    fn highest_election_id_is_primary_and_everyone_hears_of_changes() {
        let mut arb = Arbitration::new(7);
        let notes = arb.update(1, Some(10)).unwrap();
        assert_eq!(codes(&notes), vec![(1, OK)]);
        assert_eq!(notes[0].update.device_id, 7);
        assert_eq!(notes[0].update.election_id, Some(to_uint128(10)));

        // A lower id becomes a backup; only it is told.
        assert_eq!(codes(&arb.update(2, Some(5)).unwrap()), vec![(2, BACKUP)]);
        assert!(arb.is_primary_election_id(Some(10)));
        assert!(!arb.is_primary_election_id(Some(5)));
        assert!(!arb.is_primary_election_id(None));

        // A higher id takes over; everyone is told.
        let notes = arb.update(3, Some(20)).unwrap();
        assert_eq!(codes(&notes), vec![(1, BACKUP), (2, BACKUP), (3, OK)]);
        assert_eq!(notes[0].update.election_id, Some(to_uint128(20)));
        assert_eq!(arb.primary(), Some(3));

        // Closing a backup changes nothing; closing the primary leaves no primary.
        assert!(arb.leave(1).is_empty());
        assert_eq!(codes(&arb.leave(3)), vec![(2, NONE)]);
        assert_eq!(arb.primary(), None);
        assert!(!arb.is_primary_election_id(Some(20)));

        // A backup below the highest id ever seen does not become primary...
        assert_eq!(codes(&arb.update(2, Some(19)).unwrap()), vec![(2, NONE)]);
        // ...until it claims an id at least as high.
        assert_eq!(codes(&arb.update(2, Some(20)).unwrap()), vec![(2, OK)]);
    }

    #[test]
    fn duplicates_unset_ids_and_downgrades() {
        let mut arb = Arbitration::new(1);
        arb.update(1, Some(10)).unwrap();
        assert_eq!(
            arb.update(2, Some(10)),
            Err(ArbitrationError::DuplicateElectionId(10))
        );
        assert!(!arb.is_live(2));
        // Unset ids never collide and never win.
        assert_eq!(codes(&arb.update(2, None).unwrap()), vec![(2, BACKUP)]);
        assert_eq!(codes(&arb.update(3, None).unwrap()), vec![(3, BACKUP)]);
        // Re-sending its own id keeps the primary primary and tells everyone.
        assert_eq!(
            codes(&arb.update(1, Some(10)).unwrap()),
            vec![(1, OK), (2, BACKUP), (3, BACKUP)]
        );
        // The primary downgrades itself: everyone hears there is no primary.
        assert_eq!(
            codes(&arb.update(1, Some(3)).unwrap()),
            vec![(1, NONE), (2, NONE), (3, NONE)]
        );
        let first = arb.update(4, Some(11)).unwrap();
        assert_eq!(
            codes(&first),
            vec![(1, BACKUP), (2, BACKUP), (3, BACKUP), (4, OK)]
        );
        assert_eq!(arb.leave(99), Vec::new());
    }

    #[test]
    fn election_ids_use_all_128_bits() {
        let id = Uint128 { high: 1, low: 2 };
        assert_eq!(election_id(&id), (1u128 << 64) | 2);
        assert_eq!(to_uint128(election_id(&id)), id);
    }
}
