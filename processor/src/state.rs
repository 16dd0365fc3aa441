//! The processor's state in RocksDB: one database, one column family per kind of
//! state, and every change of a batch written in one atomic, synced write batch
//! together with the input offsets and output positions it belongs to.
//!
//! ```text
//! meta     in/<topic>/<p>   -> next input offset (u64 BE)
//!          out/<topic>/<p>  -> committed output end (u64 BE)
//!          maxts/<p>        -> highest kept event time seen (i64 BE)
//! master   <source>/<key>   -> the raw row (JSON of strings) of a kept master record
//! dedup    <event_id>       -> 0x80, partition, offset, event time as zig-zag varints
//!                              (expired by a compaction filter past the horizon)
//! windows  <p><start><org>\0<service> -> UsageTotals of an open window
//! daily    <p><date><org>\0<service>  -> UsageTotals of a day
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    WriteBatch, WriteOptions, compaction_filter::Decision,
};
use schemas::avro::{AvroReader, AvroWriter};
use schemas::speed::UsageTotals;

use crate::{Error, Result};

pub const CF_META: &str = "meta";
pub const CF_MASTER: &str = "master";
pub const CF_DEDUP: &str = "dedup";
pub const CF_WINDOWS: &str = "windows";
pub const CF_DAILY: &str = "daily";
const CFS: [&str; 5] = [CF_META, CF_MASTER, CF_DEDUP, CF_WINDOWS, CF_DAILY];
/// All memtables of the database together.
const MEMTABLE_BUDGET: usize = 128 << 20;
const BLOCK_CACHE_BYTES: usize = 64 << 20;
/// Keys per RocksDB `MultiGet` call: its `MultiGetContext::MAX_BATCH_SIZE`.
const MULTI_GET_KEYS: usize = 32;

pub struct State {
    db: DB,
    path: PathBuf,
    /// Dedup entries with an event time below this may be dropped by compaction.
    expire_before: Arc<AtomicI64>,
    /// The size of the last committed batch: the next one reserves it up front,
    /// rather than growing its buffer by copies as its entries are added.
    last_batch_bytes: AtomicUsize,
}

/// Turns off RocksDB's perf context counters for the calling thread. They are on by
/// default (`kEnableCount`), and every lookup and memtable insert then bumps counters
/// in a thread-local context nothing here reads (its access alone was 0.9% of the
/// processor's instructions at 1M events). The level is per thread, and the threads
/// that call RocksDB are the processing and commit threads: each call sets it, a
/// thread-local store.
fn without_perf_counters() {
    rocksdb::perf::set_perf_stats(rocksdb::perf::PerfStatsLevel::Disable);
}

fn db_err(path: &Path, what: &str, e: rocksdb::Error) -> Error {
    Error::State(format!("{what} {}: {e}", path.display()))
}

/// A position in the dedup table: where (partition, offset) and when an event was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub partition: u32,
    pub offset: u64,
    pub ts_micros: i64,
}

/// The first byte of [`Seen`]'s encoding. The fixed 20-byte encoding of earlier
/// versions, still read, starts with the partition's high byte: never 0x80 or more,
/// partitions being below 2^31 (Kafka's are `i32`).
const SEEN_TAG: u8 = 0x80;

impl Seen {
    /// Appends the encoding: [`SEEN_TAG`], then partition, offset and event time as
    /// Avro longs (zig-zag varints), 14 bytes for an event of today in a partition of
    /// a few million records instead of 20 fixed. Dedup entries are nearly all of the
    /// state's writes: every byte less is a byte less in the memtable, the WAL, each
    /// flush and each compaction.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(SEEN_TAG);
        AvroWriter::new(out)
            .long(i64::from(self.partition))
            .long(self.offset as i64)
            .long(self.ts_micros);
    }

    /// The entry of either encoding.
    pub fn decode(b: &[u8]) -> Option<Seen> {
        match b.split_first()? {
            (&SEEN_TAG, rest) => {
                let mut r = AvroReader::new(rest);
                let seen = Seen {
                    partition: u32::try_from(r.long()?).ok()?,
                    offset: u64::try_from(r.long()?).ok()?,
                    ts_micros: r.long()?,
                };
                r.end()?;
                Some(seen)
            }
            _ if b.len() == 20 => Some(Seen {
                partition: u32::from_be_bytes(b[0..4].try_into().ok()?),
                offset: u64::from_be_bytes(b[4..12].try_into().ok()?),
                ts_micros: i64::from_be_bytes(b[12..20].try_into().ok()?),
            }),
            _ => None,
        }
    }
}

pub fn encode_totals(t: &UsageTotals) -> [u8; 64] {
    let mut b = [0u8; 64];
    let parts: [[u8; 8]; 8] = [
        t.events.to_le_bytes(),
        t.requests.to_le_bytes(),
        t.cpu_hours.to_le_bytes(),
        t.storage_gb_hours.to_le_bytes(),
        t.cost_usd.to_le_bytes(),
        t.negative_cost_events.to_le_bytes(),
        t.genai_tokens.to_le_bytes(),
        t.carbon_kg.to_le_bytes(),
    ];
    for (i, p) in parts.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(p);
    }
    b
}

pub fn decode_totals(b: &[u8]) -> Option<UsageTotals> {
    if b.len() != 64 {
        return None;
    }
    let w = |i: usize| -> [u8; 8] {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i * 8..i * 8 + 8]);
        a
    };
    Some(UsageTotals {
        events: i64::from_le_bytes(w(0)),
        requests: f64::from_le_bytes(w(1)),
        cpu_hours: f64::from_le_bytes(w(2)),
        storage_gb_hours: f64::from_le_bytes(w(3)),
        cost_usd: f64::from_le_bytes(w(4)),
        negative_cost_events: i64::from_le_bytes(w(5)),
        genai_tokens: i64::from_le_bytes(w(6)),
        carbon_kg: f64::from_le_bytes(w(7)),
    })
}

/// The order in which RocksDB's bytewise comparator sorts `keys`: their indexes,
/// sorted. Each key's first eight bytes are read once as a big-endian number
/// (zero-padded, which keeps a prefix before its extensions), and only keys whose
/// first eight bytes are equal are compared whole: cheaper than a `memcmp` call for
/// every comparison.
pub fn bytewise_order<'k>(keys: impl ExactSizeIterator<Item = &'k [u8]>) -> Vec<u32> {
    let keys: Vec<&[u8]> = keys.collect();
    let mut order: Vec<(u64, u32)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (head_u64(k), i as u32))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| keys[a.1 as usize].cmp(keys[b.1 as usize]))
    });
    order.into_iter().map(|(_, i)| i).collect()
}

/// `a.cmp(b)` for byte strings, by their first eight bytes as numbers before any
/// `memcmp`: as [`bytewise_order`] does, for a comparison at a time.
pub fn bytewise_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    head_u64(a).cmp(&head_u64(b)).then_with(|| a.cmp(b))
}

fn head_u64(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(head) => u64::from_be_bytes(*head),
        None => {
            let mut head = [0u8; 8];
            head[..key.len()].copy_from_slice(key);
            u64::from_be_bytes(head)
        }
    }
}

/// An i64 whose big-endian bytes sort like the number.
pub fn sortable_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn from_sortable_i64(b: &[u8]) -> Option<i64> {
    let a: [u8; 8] = b.get(0..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(a) ^ (1 << 63)) as i64)
}

/// Key of a window or day: partition, a sortable time, then org and service.
pub fn group_key(partition: u32, time: i64, org: &str, service: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + 8 + org.len() + 1 + service.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&sortable_i64(time));
    k.extend_from_slice(org.as_bytes());
    k.push(0);
    k.extend_from_slice(service.as_bytes());
    k
}

/// (partition, time, org, service) of a [`group_key`].
pub fn parse_group_key(k: &[u8]) -> Option<(u32, i64, String, String)> {
    let partition = u32::from_be_bytes(k.get(0..4)?.try_into().ok()?);
    let time = from_sortable_i64(k.get(4..12)?)?;
    let rest = k.get(12..)?;
    let sep = rest.iter().position(|b| *b == 0)?;
    let org = std::str::from_utf8(&rest[..sep]).ok()?.to_owned();
    let service = std::str::from_utf8(&rest[sep + 1..]).ok()?.to_owned();
    Some((partition, time, org, service))
}

impl State {
    /// Opens (or creates) the state database; a clear error if the directory is
    /// unusable or another process has it open.
    pub fn open(path: &Path) -> Result<State> {
        State::open_shared(path, 1)
    }

    /// As [`open`](Self::open), for one of `ways` states of one process (the
    /// processing threads): each gets that share of the memtable and cache budget,
    /// so the process as a whole stays within it.
    pub fn open_shared(path: &Path, ways: usize) -> Result<State> {
        let ways = ways.max(1);
        let (memtables, cache_bytes) = (MEMTABLE_BUDGET / ways, BLOCK_CACHE_BYTES / ways);
        std::fs::create_dir_all(path)
            .map_err(|e| Error::State(format!("state directory {}: {e}", path.display())))?;
        let expire_before = Arc::new(AtomicI64::new(i64::MIN));
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        // Each state has one writer (its commit thread), so RocksDB never groups
        // writes and inserts a batch into the memtable the plain way: every key a
        // full skip-list search from the top (~5,000 instructions per dedup id at
        // 1M events, the keys being random). Unordered writes put each batch in
        // through the concurrent inserter, which keeps the batch's last position
        // as a hint ([`Batch::commit`]): keys in order then cost a search from
        // their neighbour. What it relaxes, a reader seeing part of a batch being
        // written, nothing here depends on: the processing thread reads a commit in
        // flight from its own copy of it (`InFlight`), and the WAL still holds
        // each batch whole, so recovery applies all of it or none.
        db_opts.set_unordered_write(true);
        // Memory is bounded by configuration, not by history: all memtables together
        // and one shared block cache.
        db_opts.set_db_write_buffer_size(memtables);
        let cache = Cache::new_lru_cache(cache_bytes);
        let cfs = CFS.iter().map(|name| {
            let mut o = Options::default();
            // The dedup ids are nearly all of the writes: their memtable may take
            // three quarters of this state's share (24 MiB of 32 with four threads),
            // so fewer, larger sorted runs are flushed, compacted and probed by each
            // lookup. `db_write_buffer_size` still caps all the memtables together.
            o.set_write_buffer_size(if *name == CF_DEDUP {
                memtables / 4 * 3
            } else {
                memtables / 8
            });
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            // Most dedup lookups are for ids never seen: a bloom filter answers them
            // without reading a block.
            table.set_bloom_filter(10.0, false);
            o.set_block_based_table_factory(&table);
            // The same for the memtable, where recent ids live.
            o.set_memtable_whole_key_filtering(true);
            o.set_memtable_prefix_bloom_ratio(0.05);
            if *name == CF_DEDUP {
                // Event ids are random keys that only arrive: leveled compaction
                // rewrites each one level after level (its threads took 14% of the
                // CPU at 10M events, 11% now); universal compaction merges whole
                // sorted runs, writing each id fewer times, and the bloom filters
                // keep lookups cheap.
                o.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
                let horizon = expire_before.clone();
                o.set_compaction_filter(
                    "dedup-horizon",
                    move |_level, _key: &[u8], value: &[u8]| match Seen::decode(value) {
                        Some(s) if s.ts_micros < horizon.load(Ordering::Relaxed) => {
                            Decision::Remove
                        }
                        _ => Decision::Keep,
                    },
                );
            }
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)
            .map_err(|e| db_err(path, "cannot open the processor state", e))?;
        Ok(State {
            db,
            path: path.to_owned(),
            expire_before,
            last_batch_bytes: AtomicUsize::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::State(format!("column family {name} is missing")))
    }

    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        without_perf_counters();
        self.db
            .get_cf(self.cf(cf)?, key)
            .map_err(|e| db_err(&self.path, "read", e))
    }

    /// The values of `keys`, in their order, read in one batched lookup (RocksDB's
    /// MultiGet: one pass over the memtables and files for the whole batch). The keys
    /// are sorted here, with plain byte comparisons, rather than by RocksDB through
    /// its comparator's virtual calls.
    ///
    /// Asked [`MULTI_GET_KEYS`] keys at a time: RocksDB keeps that many keys' lookup
    /// contexts on the stack, and grows a vector for more, copy by copy.
    pub fn multi_get(&self, cf: &str, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        without_perf_counters();
        let cf = self.cf(cf)?;
        let order = bytewise_order(keys.iter().copied());
        let mut out = vec![None; keys.len()];
        for chunk in order.chunks(MULTI_GET_KEYS) {
            let sorted = chunk.iter().map(|&i| keys[i as usize]);
            let found = self.db.batched_multi_get_cf(cf, sorted, true);
            for (&i, v) in chunk.iter().zip(found) {
                out[i as usize] = v
                    .map_err(|e| db_err(&self.path, "read", e))?
                    .map(|v| v.to_vec());
            }
        }
        Ok(out)
    }

    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        Ok(self
            .get(CF_META, key.as_bytes())?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes)))
    }

    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        Ok(self
            .get(CF_META, key.as_bytes())?
            .and_then(|v| from_sortable_i64(&v)))
    }

    /// Every (key, value) of a column family whose key starts with `prefix`.
    pub fn scan_prefix(&self, cf: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| db_err(&self.path, "scan", e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Lets compaction drop dedup entries older than this event time.
    pub fn expire_dedup_before(&self, ts_micros: i64) {
        self.expire_before.fetch_max(ts_micros, Ordering::Relaxed);
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch {
            state: self,
            // A little over the last one: batches of a steady stream are alike.
            wb: WriteBatch::with_capacity_bytes(
                self.last_batch_bytes.load(Ordering::Relaxed) / 8 * 9,
            ),
        }
    }

    /// A batch that goes on from the changes of another (see [`Batch::into_changes`]):
    /// how a batch prepared on one thread is finished and committed on another.
    pub fn batch_with(&self, changes: WriteBatch) -> Batch<'_> {
        Batch {
            state: self,
            wb: changes,
        }
    }

    /// Approximate bytes on disk (SST files) and in memtables.
    pub fn size_bytes(&self) -> u64 {
        let mut total = 0;
        for name in CFS {
            if let Ok(cf) = self.cf(name) {
                for prop in [
                    "rocksdb.total-sst-files-size",
                    "rocksdb.cur-size-all-mem-tables",
                ] {
                    total += self
                        .db
                        .property_int_value_cf(cf, prop)
                        .ok()
                        .flatten()
                        .unwrap_or(0);
                }
            }
        }
        total
    }

    /// Deletes every key of a column family that starts with `prefix`.
    pub fn delete_prefix(&self, cf: &str, prefix: &[u8]) -> Result<()> {
        let mut b = self.batch();
        for (k, _) in self.scan_prefix(cf, prefix)? {
            b.delete(cf, &k)?;
        }
        b.commit()
    }
}

/// One atomic commit.
pub struct Batch<'a> {
    state: &'a State,
    wb: WriteBatch,
}

impl Batch<'_> {
    pub fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.wb.put_cf(self.state.cf(cf)?, key, value);
        Ok(())
    }

    pub fn delete(&mut self, cf: &str, key: &[u8]) -> Result<()> {
        self.wb.delete_cf(self.state.cf(cf)?, key);
        Ok(())
    }

    pub fn put_u64(&mut self, key: &str, v: u64) -> Result<()> {
        self.put(CF_META, key.as_bytes(), &v.to_be_bytes())
    }

    pub fn put_i64(&mut self, key: &str, v: i64) -> Result<()> {
        self.put(CF_META, key.as_bytes(), &sortable_i64(v))
    }

    /// The changes so far, to be handed to another thread ([`State::batch_with`]).
    pub fn into_changes(self) -> WriteBatch {
        self.wb
    }

    /// Writes the batch atomically and syncs the write-ahead log.
    pub fn commit(self) -> Result<()> {
        without_perf_counters();
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        // The batch's keys are in order: each is inserted from the one before.
        opts.set_memtable_insert_hint_per_batch(true);
        self.state
            .last_batch_bytes
            .store(self.wb.size_in_bytes(), Ordering::Relaxed);
        self.state
            .db
            .write_opt(self.wb, &opts)
            .map_err(|e| db_err(&self.state.path, "commit", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(s: Seen) -> Vec<u8> {
        let mut b = Vec::new();
        s.encode_into(&mut b);
        b
    }

    #[test]
    fn encodings_round_trip_and_sort() {
        let t = UsageTotals {
            events: 3,
            requests: 1.5,
            cost_usd: -2.0,
            genai_tokens: 7,
            ..UsageTotals::default()
        };
        assert_eq!(decode_totals(&encode_totals(&t)), Some(t));
        for s in [
            Seen {
                partition: 3,
                offset: 99,
                ts_micros: -5,
            },
            Seen {
                partition: u32::MAX >> 1,
                offset: u64::MAX >> 1,
                ts_micros: i64::MIN,
            },
            Seen {
                partition: 0,
                offset: 2_500_000,
                ts_micros: 1_764_700_000_000_000,
            },
        ] {
            let mut b = encoded(s);
            assert_eq!(Seen::decode(&b), Some(s));
            b.push(0);
            assert_eq!(Seen::decode(&b), None, "a trailing byte is refused");
        }
        let today = encoded(Seen {
            partition: 3,
            offset: 2_500_000,
            ts_micros: 1_764_700_000_000_000,
        });
        assert_eq!(today.len(), 14);
        // The fixed encoding of earlier versions is still read.
        let mut fixed = Vec::new();
        fixed.extend_from_slice(&3u32.to_be_bytes());
        fixed.extend_from_slice(&99u64.to_be_bytes());
        fixed.extend_from_slice(&(-5i64).to_be_bytes());
        assert_eq!(
            Seen::decode(&fixed),
            Some(Seen {
                partition: 3,
                offset: 99,
                ts_micros: -5
            })
        );
        assert_eq!(Seen::decode(&fixed[..19]), None);
        assert!(sortable_i64(-1) < sortable_i64(0));
        assert!(sortable_i64(5) < sortable_i64(1 << 40));
        let k = group_key(2, 1_000, "org_a", "compute");
        assert_eq!(
            parse_group_key(&k),
            Some((2, 1_000, "org_a".into(), "compute".into()))
        );
        assert!(group_key(2, -5, "z", "z") < group_key(2, 7, "a", "a"));
    }

    #[test]
    fn commits_are_atomic_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = State::open(dir.path()).unwrap();
            let mut b = s.batch();
            b.put_u64("in/x/0", 42).unwrap();
            let seen = encoded(Seen {
                partition: 0,
                offset: 1,
                ts_micros: 2,
            });
            b.put(CF_DEDUP, b"evt", &seen).unwrap();
            b.commit().unwrap();
            assert!(
                State::open(dir.path()).is_err(),
                "a second opener gets an error"
            );
        }
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.get_u64("in/x/0").unwrap(), Some(42));
        assert!(s.get(CF_DEDUP, b"evt").unwrap().is_some());
    }

    #[test]
    fn multi_get_answers_in_the_order_asked_whatever_the_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        let mut b = s.batch();
        for k in ["b", "d", "a", "ab"] {
            b.put(CF_DEDUP, k.as_bytes(), format!("v-{k}").as_bytes())
                .unwrap();
        }
        b.commit().unwrap();
        // Unsorted, repeated, missing, and a key that is a prefix of another.
        let keys: Vec<&[u8]> = vec![b"d", b"c", b"a", b"d", b"ab", b"", b"b", b"a"];
        let got = s.multi_get(CF_DEDUP, &keys).unwrap();
        let expected: Vec<Option<Vec<u8>>> =
            keys.iter().map(|k| s.get(CF_DEDUP, k).unwrap()).collect();
        assert_eq!(got, expected);
        assert_eq!(got[0].as_deref(), Some(&b"v-d"[..]));
        assert_eq!(got[1], None);
        assert_eq!(got[4].as_deref(), Some(&b"v-ab"[..]));
    }

    #[test]
    fn batches_inserted_from_a_hint_keep_every_key_and_the_last_change() {
        // Random keys, each batch in key order as the engine writes them: the
        // memtable inserts each from the one before (unordered writes with a hint
        // per batch). Later batches land between earlier keys, rewrite some keys and
        // delete others; one batch changes a key twice (the later change wins).
        let dir = tempfile::tempdir().unwrap();
        let mut expected = std::collections::BTreeMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        {
            let s = State::open(dir.path()).unwrap();
            for round in 0..20u64 {
                let mut keys: Vec<String> = (0..500)
                    .map(|_| format!("{:016x}", next() % 40_000))
                    .collect();
                keys.sort();
                let mut b = s.batch();
                for k in &keys {
                    if next() % 10 == 0 && expected.contains_key(k) {
                        b.delete(CF_DEDUP, k.as_bytes()).unwrap();
                        expected.remove(k);
                    } else {
                        let v = format!("{round}-{k}");
                        b.put(CF_DEDUP, k.as_bytes(), v.as_bytes()).unwrap();
                        expected.insert(k.clone(), v);
                    }
                }
                b.put(CF_DEDUP, b"twice", format!("{round}-a").as_bytes())
                    .unwrap();
                b.put(CF_DEDUP, b"twice", format!("{round}-b").as_bytes())
                    .unwrap();
                expected.insert("twice".into(), format!("{round}-b"));
                b.commit().unwrap();
            }
            let found: std::collections::BTreeMap<String, String> = s
                .scan_prefix(CF_DEDUP, b"")
                .unwrap()
                .into_iter()
                .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
                .collect();
            assert_eq!(found, expected);
        }
        // Reopened, the write-ahead log replayed: the same.
        let s = State::open(dir.path()).unwrap();
        let names: Vec<&String> = expected.keys().collect();
        let keys: Vec<&[u8]> = names.iter().map(|k| k.as_bytes()).collect();
        let got = s.multi_get(CF_DEDUP, &keys).unwrap();
        for (k, v) in names.iter().zip(got) {
            assert_eq!(v.as_deref(), Some(expected[*k].as_bytes()), "{k}");
        }
        assert_eq!(s.scan_prefix(CF_DEDUP, b"").unwrap().len(), expected.len());
    }

    #[test]
    fn reads_and_commits_count_nothing_in_the_perf_context() {
        use rocksdb::perf::{PerfContext, PerfMetric, PerfStatsLevel, set_perf_stats};
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        // RocksDB's default for a thread: counting on.
        set_perf_stats(PerfStatsLevel::EnableCount);
        let mut ctx = PerfContext::default();
        ctx.reset();
        let mut b = s.batch();
        for k in ["a", "b", "c"] {
            b.put(CF_DEDUP, k.as_bytes(), b"v").unwrap();
        }
        b.commit().unwrap();
        let keys: Vec<&[u8]> = vec![b"a", b"x", b"c"];
        assert_eq!(
            s.multi_get(CF_DEDUP, &keys).unwrap()[0].as_deref(),
            Some(&b"v"[..])
        );
        assert!(s.get(CF_DEDUP, b"b").unwrap().is_some());
        for m in [
            PerfMetric::UserKeyComparisonCount,
            PerfMetric::GetFromMemtableCount,
            PerfMetric::BloomMemtableHitCount,
            PerfMetric::BloomMemtableMissCount,
        ] {
            assert_eq!(ctx.metric(m), 0, "{m:?}");
        }
        // The check can fail: counting on, a lookup counts.
        set_perf_stats(PerfStatsLevel::EnableCount);
        let opts = rocksdb::ReadOptions::default();
        let cf = s.cf(CF_DEDUP).unwrap();
        s.db.get_cf_opt(cf, b"a", &opts).unwrap();
        assert!(ctx.metric(PerfMetric::GetFromMemtableCount) > 0);
    }

    #[test]
    fn multi_get_answers_every_key_of_more_than_one_call() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(dir.path()).unwrap();
        let mut b = s.batch();
        for i in (0..200u32).step_by(3) {
            b.put(CF_DEDUP, format!("id-{i}").as_bytes(), &i.to_be_bytes())
                .unwrap();
        }
        b.commit().unwrap();
        // Several calls' worth of keys, out of order, found and missing, repeated.
        let names: Vec<String> = (0..200u32)
            .rev()
            .chain(0..10)
            .map(|i| format!("id-{}", (i * 7) % 200))
            .collect();
        let keys: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        assert!(keys.len() > 3 * MULTI_GET_KEYS);
        let got = s.multi_get(CF_DEDUP, &keys).unwrap();
        let expected: Vec<Option<Vec<u8>>> =
            keys.iter().map(|k| s.get(CF_DEDUP, k).unwrap()).collect();
        assert_eq!(got, expected);
        assert_eq!(got.iter().filter(|v| v.is_some()).count(), 67 + 4);
    }

    #[test]
    fn bytewise_order_is_the_order_of_the_bytes() {
        // Keys shorter than, as long as and longer than the eight bytes read as a
        // number; prefixes of each other; zero bytes, where the padding is zero too;
        // bytes above 0x7f; equal first eight bytes; repeats.
        let mut keys: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0\0\0\0\0\0".to_vec(),
            b"a\0\0\0\0\0\0\0\0".to_vec(),
            b"ab".to_vec(),
            b"evt_0000".to_vec(),
            b"evt_0000a".to_vec(),
            b"evt_0000b".to_vec(),
            b"evt_0000".to_vec(),
            b"evt_zzzz".to_vec(),
            vec![0xff],
            vec![0x80, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![0x7f; 12],
        ];
        // And a few hundred pseudo-random ones with shared prefixes.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 13) as usize;
            let mut k = b"evt_".to_vec();
            k.extend(x.to_le_bytes().iter().cycle().take(len).map(|b| b % 4));
            keys.push(k);
        }
        let order = bytewise_order(keys.iter().map(Vec::as_slice));
        let got: Vec<&[u8]> = order.iter().map(|&i| keys[i as usize].as_slice()).collect();
        let mut expected: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        expected.sort();
        assert_eq!(got, expected);
        for a in &keys {
            for b in keys.iter().step_by(7) {
                assert_eq!(bytewise_cmp(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
        let mut seen = order.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), keys.len(), "every index exactly once");
    }

    #[test]
    fn a_state_from_before_universal_compaction_still_opens() {
        // Dedup used leveled compaction before; such a state's files sit in levels
        // past 0, each of which universal compaction takes as one sorted run.
        let dir = tempfile::tempdir().unwrap();
        {
            let mut o = Options::default();
            o.create_if_missing(true);
            o.create_missing_column_families(true);
            let db = DB::open_cf(&o, dir.path(), CFS).unwrap();
            let cf = db.cf_handle(CF_DEDUP).unwrap();
            for i in 0..2000u32 {
                db.put_cf(cf, format!("id-{i}"), b"old").unwrap();
            }
            db.flush_cf(cf).unwrap();
            db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
            let deeper: u64 = (1..7)
                .map(|l| {
                    db.property_int_value_cf(cf, &format!("rocksdb.num-files-at-level{l}"))
                        .unwrap()
                        .unwrap_or(0)
                })
                .sum();
            assert!(deeper > 0, "the old state has files past level 0");
        }
        let s = State::open(dir.path()).unwrap();
        assert_eq!(
            s.get(CF_DEDUP, b"id-7").unwrap().as_deref(),
            Some(&b"old"[..])
        );
        for round in 0..3 {
            let mut b = s.batch();
            for i in 0..2000u32 {
                b.put(CF_DEDUP, format!("new-{round}-{i}").as_bytes(), b"new")
                    .unwrap();
            }
            b.commit().unwrap();
            s.db.flush_cf(s.cf(CF_DEDUP).unwrap()).unwrap();
        }
        s.db.compact_range_cf(s.cf(CF_DEDUP).unwrap(), None::<&[u8]>, None::<&[u8]>);
        let keys: Vec<&[u8]> = vec![b"id-1999", b"new-2-5", b"id-2000"];
        let got = s.multi_get(CF_DEDUP, &keys).unwrap();
        assert_eq!(got[0].as_deref(), Some(&b"old"[..]));
        assert_eq!(got[1].as_deref(), Some(&b"new"[..]));
        assert_eq!(got[2], None);
    }
}
