//! Reading a topic partition up to a committed position, decoded record by record.

use std::collections::VecDeque;

use anyhow::{Context, Result, bail};
use eventlog::{Log, PartitionReader, StoredRecord};

/// Records read at a time: about one batch of the log, so that a batch's buffer is
/// free for the reader to reuse by the time it reads the next ones.
const POLL_RECORDS: u64 = 2048;

/// Reads one topic partition from a position up to (not including) `end`.
pub struct Cursor<R, T> {
    reader: R,
    /// Records as polled, before decoding (kept for its allocation).
    polled: Vec<StoredRecord>,
    buf: VecDeque<(u64, T)>,
    end: u64,
    what: String,
    decode: fn(StoredRecord) -> Result<(u64, T)>,
}

impl<R: PartitionReader, T> Cursor<R, T> {
    pub fn new(
        log: &impl Log<Reader = R>,
        topic: &str,
        p: u32,
        from: u64,
        end: u64,
        decode: fn(StoredRecord) -> Result<(u64, T)>,
    ) -> Result<Self> {
        Ok(Cursor {
            reader: log.reader(topic, p, from.min(end))?,
            polled: Vec::new(),
            buf: VecDeque::new(),
            end,
            what: format!("{topic}/{p}"),
            decode,
        })
    }

    /// The next record's key (its raw offset, or its own offset) and value.
    pub fn peek(&mut self) -> Result<Option<&(u64, T)>> {
        if self.buf.is_empty() && self.reader.position() < self.end {
            let want = (self.end - self.reader.position()).min(POLL_RECORDS) as usize;
            self.reader.poll_into(want, &mut self.polled)?;
            // A reader may skip to `end` without a record (a void range of the Kafka
            // backend ending there).
            if self.polled.is_empty() && self.reader.position() < self.end {
                bail!(
                    "{} ends at {} before its committed position {}",
                    self.what,
                    self.reader.position(),
                    self.end
                );
            }
            for r in self.polled.drain(..).filter(|r| r.offset < self.end) {
                let offset = r.offset;
                self.buf.push_back(
                    (self.decode)(r).with_context(|| format!("{} offset {offset}", self.what))?,
                );
            }
        }
        Ok(self.buf.front())
    }

    /// The next record, decoded, or `None` at `end`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(u64, T)>> {
        self.peek()?;
        Ok(self.pop())
    }

    pub fn pop(&mut self) -> Option<(u64, T)> {
        self.buf.pop_front()
    }
}
