//! A log that passes every call through to another, after asking a hook about its
//! appends and fsyncs: how tests make a disk fail or stall at a chosen moment
//! without a process or a real fault.

use crate::{Log, Record, Result};

/// A call the hook is asked about before it reaches the inner log.
#[derive(Debug, Clone, Copy)]
pub enum Call<'c> {
    Append { topic: &'c str, partition: u32 },
    FlushPartitions(&'c [(&'c str, u32)]),
}

/// `inner`, with `hook` run before each [`Call`]: an error it returns is the call's
/// error (the inner log is not called); it may also wait, as a slow disk would.
pub struct Hooked<'a, L> {
    inner: &'a L,
    hook: Box<dyn Fn(Call<'_>) -> Result<()> + Send + Sync + 'a>,
}

impl<'a, L: Log> Hooked<'a, L> {
    pub fn new(inner: &'a L, hook: impl Fn(Call<'_>) -> Result<()> + Send + Sync + 'a) -> Self {
        Hooked {
            inner,
            hook: Box::new(hook),
        }
    }
}

impl<L: Log> Log for Hooked<'_, L> {
    type Reader = L::Reader;
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        self.inner.ensure_topic(topic, partitions)
    }
    fn ensure_compacted_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        self.inner.ensure_compacted_topic(topic, partitions)
    }
    fn finite_retention(&self, topic: &str) -> Result<Option<String>> {
        self.inner.finite_retention(topic)
    }
    fn partitions(&self, topic: &str) -> Result<Option<u32>> {
        self.inner.partitions(topic)
    }
    fn topics(&self) -> Result<Vec<(String, u32)>> {
        self.inner.topics()
    }
    fn append(&self, topic: &str, partition: u32, records: &[Record]) -> Result<u64> {
        (self.hook)(Call::Append { topic, partition })?;
        self.inner.append(topic, partition, records)
    }
    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        self.inner.end_offset(topic, partition)
    }
    fn end_offsets(&self, partitions: &[(&str, u32)]) -> Result<Vec<u64>> {
        self.inner.end_offsets(partitions)
    }
    fn reader(&self, topic: &str, partition: u32, from: u64) -> Result<Self::Reader> {
        self.inner.reader(topic, partition, from)
    }
    fn committed_many(
        &self,
        consumer: &str,
        partitions: &[(&str, u32)],
    ) -> Result<Vec<Option<u64>>> {
        self.inner.committed_many(consumer, partitions)
    }
    fn commit(&self, consumer: &str, offsets: &[(&str, u32, u64)]) -> Result<()> {
        self.inner.commit(consumer, offsets)
    }
    fn publish(&self, consumer: &str, offsets: &[(&str, u32, u64)]) -> Result<()> {
        self.inner.publish(consumer, offsets)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn flush_partitions(&self, partitions: &[(&str, u32)]) -> Result<()> {
        (self.hook)(Call::FlushPartitions(partitions))?;
        self.inner.flush_partitions(partitions)
    }
    fn truncate(&self, topic: &str, partition: u32, end: u64) -> Result<()> {
        self.inner.truncate(topic, partition, end)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use super::*;
    use crate::{EmbeddedLog, LogConfig};

    #[test]
    fn the_hook_sees_appends_and_fsyncs_and_its_error_stops_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path().join("log"), LogConfig::default()).unwrap();
        log.ensure_topic("t", 2).unwrap();
        let seen = Mutex::new(Vec::new());
        let hooked = Hooked::new(&log, |call| {
            seen.lock().unwrap().push(format!("{call:?}"));
            match call {
                Call::Append { partition: 1, .. } => Err(crate::Error::Config("refused".into())),
                _ => Ok(()),
            }
        });
        let r = [Record::new(None::<Vec<u8>>, b"x".to_vec())];
        assert_eq!(hooked.append("t", 0, &r).unwrap(), 0);
        assert!(hooked.append("t", 1, &r).is_err());
        hooked.flush_partitions(&[("t", 0)]).unwrap();
        assert_eq!(log.end_offset("t", 0).unwrap(), 1);
        assert_eq!(
            log.end_offset("t", 1).unwrap(),
            0,
            "the refused append never ran"
        );
        assert_eq!(hooked.end_offsets(&[("t", 0), ("t", 1)]).unwrap(), [1, 0]);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                r#"Append { topic: "t", partition: 0 }"#,
                r#"Append { topic: "t", partition: 1 }"#,
                r#"FlushPartitions([("t", 0)])"#,
            ]
        );
    }
}
