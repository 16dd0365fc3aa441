//! The data contract of the pipeline, in one place.
//!
//! This crate owns the eight sources' record types, the parsing of raw topic values
//! (JSONL lines and CSV rows carried as JSON objects of strings), every quality rule
//! and flag of SPEC section 4 (as pure functions, applied in the SPEC's order) and the
//! Arrow schemas of the bronze, silver and quarantine tables.
//!
//! It must not do I/O: the processor (speed path) and the compactor (batch path) both
//! call these functions with their own master-data lookups and dedup state, so the two
//! paths can never disagree about a rule.

pub mod arrow;
pub mod avro;
pub mod domain;
pub mod event;
pub mod master;
pub mod reason;
pub mod source;
pub mod speed;
pub mod stats;
pub mod time;
pub mod topics;
pub mod written;

pub use event::{BronzeEvent, BronzeRef, EventFlags, SilverEvent, parse_event, validate_event};
pub use master::{
    MasterFlags, MasterRecord, Org, Resource, csv_row_value, parse_master, validate_master,
};
pub use reason::{Reason, Stage};
pub use source::Source;

/// What the rules decide for one record: kept (with its flags) or quarantined with
/// exactly one reason, the first rule it fails.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T, F> {
    Kept { record: T, flags: F },
    Quarantined { reason: Reason },
}

impl<T, F> Outcome<T, F> {
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Outcome::Kept { .. } => None,
            Outcome::Quarantined { reason } => Some(*reason),
        }
    }
}

/// Master-data lookups the rules need: kept (silver) orgs and resources. Borrowed
/// when the tables are in memory, owned when they had to be read.
pub trait MasterData {
    fn org(&self, org_id: &str) -> Option<std::borrow::Cow<'_, Org>>;
    fn resource(&self, resource_id: &str) -> Option<std::borrow::Cow<'_, Resource>>;
}

/// The set of natural keys already kept. `insert` returns `false` when the key was
/// already there (the record is a duplicate); the caller decides the horizon.
pub trait SeenKeys {
    fn insert(&mut self, key: &str) -> bool;
}

impl SeenKeys for std::collections::HashSet<String> {
    fn insert(&mut self, key: &str) -> bool {
        if self.contains(key) {
            false
        } else {
            std::collections::HashSet::insert(self, key.to_owned())
        }
    }
}

/// In-memory master data, for tests, the generator and small batch jobs.
#[derive(Debug, Default, Clone)]
pub struct MasterTables {
    pub orgs: foldhash::HashMap<String, Org>,
    pub resources: foldhash::HashMap<String, Resource>,
}

impl MasterData for MasterTables {
    fn org(&self, org_id: &str) -> Option<std::borrow::Cow<'_, Org>> {
        self.orgs.get(org_id).map(std::borrow::Cow::Borrowed)
    }
    fn resource(&self, resource_id: &str) -> Option<std::borrow::Cow<'_, Resource>> {
        self.resources
            .get(resource_id)
            .map(std::borrow::Cow::Borrowed)
    }
}

impl MasterTables {
    /// Keeps a kept master record that other rules look up (orgs and resources).
    pub fn absorb(&mut self, record: &MasterRecord) {
        match record {
            MasterRecord::Org(o) => {
                self.orgs.insert(o.org_id.clone(), o.clone());
            }
            MasterRecord::Resource(r) => {
                self.resources.insert(r.resource_id.clone(), r.clone());
            }
            _ => {}
        }
    }
}
