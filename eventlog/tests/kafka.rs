//! The Kafka backend against the `Log` contract: on librdkafka's mock cluster always,
//! and on a real Kafka-API broker at `KAFKA_TEST_BROKERS` (CI starts one; a CI run
//! without it fails here rather than skipping).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventlog::{KafkaConfig, KafkaLog, Log, PartitionReader, Record, StoredRecord};
use rdkafka::mocking::MockCluster;

fn rec(i: u64) -> Record {
    Record {
        key: (!i.is_multiple_of(3)).then(|| format!("k{}", i % 7).into_bytes().into()),
        value: format!("value-{i}").into_bytes().into(),
        headers: vec![
            ("source_file".into(), b"a.jsonl".to_vec().into()),
            ("line_no".into(), i.to_string().into_bytes().into()),
        ],
        timestamp_ms: 1_700_000_000_000 + i as i64,
    }
}

/// Everything from `from` until the reader says it is caught up.
fn read_all(log: &KafkaLog, topic: &str, p: u32, from: u64) -> Vec<StoredRecord> {
    let mut r = log.reader(topic, p, from).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = r.poll(7).unwrap();
        if batch.is_empty() {
            break;
        }
        out.extend(batch);
    }
    // Past the last record read (further when a void range follows it).
    assert!(r.position() >= out.last().map_or(from, |s| s.offset + 1));
    out
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The contract every backend keeps, as the pipeline relies on it. `precreate` makes
/// topics for a cluster that cannot create them on request (the mock cluster).
/// Creates a topic with this many partitions.
type Precreate<'a> = &'a dyn Fn(&str, u32);

fn contract(brokers: &str, namespace: Option<&str>, precreate: Option<Precreate<'_>>) {
    let t = unique("t");
    if let Some(create) = precreate {
        create(eventlog::kafka::VOIDS_TOPIC, 1);
        create(&t, 3);
    }
    let log = KafkaLog::open(brokers, namespace, &KafkaConfig::default()).unwrap();
    if precreate.is_none() {
        assert_eq!(log.partitions(&t).unwrap(), None);
    }
    assert_eq!(log.ensure_topic(&t, 3).unwrap(), 3);
    assert_eq!(
        log.ensure_topic(&t, 5).unwrap(),
        3,
        "an existing topic keeps its count"
    );
    assert_eq!(log.partitions(&t).unwrap(), Some(3));
    let topics = log.topics().unwrap();
    assert!(topics.contains(&(t.clone(), 3)), "{topics:?}");
    assert!(
        topics.iter().all(|(name, _)| !name.starts_with('_')),
        "internal topics are not listed: {topics:?}"
    );

    // Appends: offsets, bytes, keys, headers and timestamps come back unchanged.
    let first: Vec<Record> = (0..10).map(rec).collect();
    let second: Vec<Record> = (10..25).map(rec).collect();
    assert_eq!(log.append(&t, 1, &first).unwrap(), 0);
    assert_eq!(log.append(&t, 1, &second).unwrap(), 10);
    assert_eq!(log.end_offset(&t, 1).unwrap(), 25);
    assert_eq!(log.end_offset(&t, 0).unwrap(), 0);
    let t0 = std::time::Instant::now();
    let _ = log.end_offsets(&[(&t, 0), (&t, 1), (&t, 2)]);
    eprintln!("TIMING end_offsets {:?}", t0.elapsed());
    let t0 = std::time::Instant::now();
    let _ = log.end_offset(&t, 1);
    eprintln!("TIMING end_offset {:?}", t0.elapsed());
    assert_eq!(
        log.end_offsets(&[(&t, 0), (&t, 1), (&t, 2)]).unwrap(),
        [0, 25, 0],
        "in one request, also for empty partitions"
    );
    assert!(log.end_offsets(&[(&t, 9)]).is_err());
    let all = read_all(&log, &t, 1, 0);
    let expected: Vec<Record> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        all.iter().map(|s| s.offset).collect::<Vec<_>>(),
        (0..25).collect::<Vec<_>>()
    );
    assert_eq!(
        all.into_iter().map(|s| s.record).collect::<Vec<_>>(),
        expected
    );
    // From the middle of a producer batch.
    let tail = read_all(&log, &t, 1, 13);
    assert_eq!(tail.first().unwrap().offset, 13);
    assert_eq!(tail.len(), 12);
    assert!(read_all(&log, &t, 0, 0).is_empty());

    // Unknown topics and partitions are errors, not empty reads.
    assert!(log.end_offset(&unique("nope"), 0).is_err());
    assert!(log.reader(&t, 7, 0).is_err());

    // A reader follows: wait() sees a record appended after it was created.
    let mut r = log.reader(&t, 2, 0).unwrap();
    assert!(r.poll(10).unwrap().is_empty());
    assert!(!r.wait(Duration::from_millis(100)).unwrap());
    log.append(&t, 2, &[rec(99)]).unwrap();
    assert!(r.wait(Duration::from_secs(10)).unwrap());
    assert_eq!(r.poll(10).unwrap()[0].record, rec(99));

    // Commits: per consumer, several partitions at once.
    let c = unique("consumer");
    assert_eq!(log.committed(&c, &t, 1).unwrap(), None);
    log.commit(&c, &[(&t, 1, 25), (&t, 2, 1)]).unwrap();
    assert_eq!(log.committed(&c, &t, 1).unwrap(), Some(25));
    assert_eq!(log.committed(&c, &t, 2).unwrap(), Some(1));
    log.commit(&c, &[(&t, 1, 20)]).unwrap();
    assert_eq!(log.committed(&c, &t, 1).unwrap(), Some(20));
    assert_eq!(log.committed(&c, &t, 2).unwrap(), Some(1), "untouched");
    assert_eq!(log.committed(&unique("other"), &t, 1).unwrap(), None);

    // Truncation cannot cut a Kafka partition: the range becomes void and every reader,
    // also one opened by another client, skips it.
    log.truncate(&t, 1, 20).unwrap();
    log.append(&t, 1, &[rec(200), rec(201)]).unwrap();
    for reader_log in [
        &log,
        &KafkaLog::open(brokers, namespace, &KafkaConfig::default()).unwrap(),
    ] {
        let after = read_all(reader_log, &t, 1, 0);
        let values: Vec<Record> = after.iter().map(|s| s.record.clone()).collect();
        let mut want: Vec<Record> = (0..20).map(rec).collect();
        want.extend([rec(200), rec(201)]);
        assert_eq!(values, want);
        assert_eq!(
            after[20].offset, 25,
            "offsets keep a hole where the void is"
        );
        // A reader positioned inside the void starts after it.
        assert_eq!(read_all(reader_log, &t, 1, 22)[0].record, rec(200));
    }
    // Truncating everything, twice, then appending again.
    log.truncate(&t, 1, 0).unwrap();
    log.truncate(&t, 1, 0).unwrap();
    assert!(read_all(&log, &t, 1, 0).is_empty());
    log.append(&t, 1, &[rec(300)]).unwrap();
    let again = read_all(&log, &t, 1, 0);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].record, rec(300));
    // Truncating at or past the end changes nothing.
    log.truncate(&t, 1, 10_000).unwrap();
    assert_eq!(read_all(&log, &t, 1, 0).len(), 1);
}

#[test]
fn the_contract_on_the_mock_cluster() {
    let cluster = MockCluster::new(1).unwrap();
    // The mock cluster answers no CreateTopics request.
    let create = |topic: &str, partitions: u32| {
        cluster.create_topic(topic, partitions as i32, 1).unwrap();
    };
    contract(&cluster.bootstrap_servers(), None, Some(&create));
}

/// Keys produced by librdkafka's own partitioner, `murmur2_random` (as a Java
/// producer's default partitioner chooses too), with no partition given: each lands
/// where [`eventlog::partition_for`] puts it, so records another producer appends to
/// `raw.usage_events` keep every org in the partition the pipeline uses.
fn foreign_producer_agrees(brokers: &str, topic: &str, partitions: u32) {
    use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
    use std::sync::{Arc, Mutex};

    struct Delivered(Arc<Mutex<Vec<(String, i32)>>>);
    impl rdkafka::ClientContext for Delivered {}
    impl ProducerContext for Delivered {
        type DeliveryOpaque = ();
        fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
            let m = result.as_ref().unwrap();
            let key = String::from_utf8(rdkafka::Message::key(m).unwrap().to_vec()).unwrap();
            self.0
                .lock()
                .unwrap()
                .push((key, rdkafka::Message::partition(m)));
        }
    }
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let producer: ThreadedProducer<Delivered> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("partitioner", "murmur2_random")
        .create_with_context(Delivered(Arc::clone(&delivered)))
        .unwrap();
    let keys: Vec<String> = (0..200)
        .map(|i| format!("org_{i:04}"))
        .chain(["", "a", "kafka", "o-1"].map(String::from))
        .collect();
    for key in &keys {
        producer
            .send(BaseRecord::<str, str>::to(topic).key(key).payload("{}"))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
    let delivered = delivered.lock().unwrap();
    assert_eq!(delivered.len(), keys.len());
    let mut used = std::collections::BTreeSet::new();
    for (key, partition) in delivered.iter() {
        assert_eq!(
            *partition as u32,
            eventlog::partition_for(key.as_bytes(), partitions),
            "{key:?}"
        );
        used.insert(*partition);
    }
    assert_eq!(
        used.len(),
        partitions as usize,
        "the keys reach every partition"
    );
}

#[test]
fn librdkafka_partitions_keys_as_the_pipeline_does_on_the_mock_cluster() {
    let cluster = MockCluster::new(1).unwrap();
    for partitions in [4, 7] {
        let t = unique("keys");
        cluster.create_topic(&t, partitions, 1).unwrap();
        foreign_producer_agrees(&cluster.bootstrap_servers(), &t, partitions as u32);
    }
}

/// The broker CI starts (see `.ci/run`); outside CI, a missing broker skips.
fn live_brokers() -> Option<String> {
    match std::env::var("KAFKA_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var_os("CI").is_some() => {
            panic!("KAFKA_TEST_BROKERS is not set: CI must start the test broker")
        }
        _ => {
            eprintln!("SKIPPED: set KAFKA_TEST_BROKERS=host:port to run against a real broker");
            None
        }
    }
}

#[test]
fn the_contract_on_a_real_broker() {
    if let Some(brokers) = live_brokers() {
        contract(&brokers, None, None);
        let t = unique("keys");
        let log = KafkaLog::open(&brokers, None, &KafkaConfig::default()).unwrap();
        log.ensure_topic(&t, 4).unwrap();
        foreign_producer_agrees(&brokers, &t, 4);
        // In a namespace, and two namespaces do not see each other.
        let (a, b) = (unique("ns"), unique("ns"));
        contract(&brokers, Some(&a), None);
        let config = KafkaConfig::default();
        let (log_a, log_b) = (
            KafkaLog::open(&brokers, Some(&a), &config).unwrap(),
            KafkaLog::open(&brokers, Some(&b), &config).unwrap(),
        );
        log_b.ensure_topic("shared.name", 1).unwrap();
        log_a.ensure_topic("shared.name", 1).unwrap();
        log_a.append("shared.name", 0, &[rec(1), rec(2)]).unwrap();
        assert_eq!(log_a.end_offset("shared.name", 0).unwrap(), 2);
        assert_eq!(log_b.end_offset("shared.name", 0).unwrap(), 0);
        log_a.commit("c", &[("shared.name", 0, 2)]).unwrap();
        assert_eq!(log_b.committed("c", "shared.name", 0).unwrap(), None);
        log_a.truncate("shared.name", 0, 0).unwrap();
        log_b.append("shared.name", 0, &[rec(3)]).unwrap();
        assert_eq!(read_all(&log_b, "shared.name", 0, 0).len(), 1);
        assert!(read_all(&log_a, "shared.name", 0, 0).is_empty());
        assert!(
            log_b
                .topics()
                .unwrap()
                .iter()
                .all(|(t, _)| !t.starts_with("ns-"))
        );
    }
}

#[test]
fn an_unreachable_cluster_is_one_clear_error() {
    let started = std::time::Instant::now();
    let err = match KafkaLog::open("127.0.0.1:1", None, &KafkaConfig::default()) {
        Ok(_) => panic!("opened a log on a closed port"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("cannot reach the Kafka cluster at 127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// What a topic is created with on a real broker, read back: kept forever, or
/// compacted; a topic created otherwise is named by `finite_retention`.
#[test]
fn topics_keep_their_records_on_a_real_broker() {
    let Some(brokers) = live_brokers() else {
        return;
    };
    let log = KafkaLog::open(&brokers, Some(&unique("ret")), &KafkaConfig::default()).unwrap();
    log.ensure_topic("kept", 2).unwrap();
    log.ensure_compacted_topic("latest", 2).unwrap();
    let kept = log.topic_config("kept").unwrap().unwrap();
    assert_eq!(
        kept.get("retention.ms").map(String::as_str),
        Some("-1"),
        "{kept:?}"
    );
    assert_eq!(
        kept.get("retention.bytes").map(String::as_str),
        Some("-1"),
        "{kept:?}"
    );
    assert_ne!(
        kept.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(log.finite_retention("kept").unwrap(), None);
    let latest = log.topic_config("latest").unwrap().unwrap();
    assert_eq!(
        latest.get("cleanup.policy").map(String::as_str),
        Some("compact"),
        "{latest:?}"
    );
    assert_eq!(
        log.finite_retention("latest").unwrap().as_deref(),
        Some("cleanup.policy=compact")
    );
    assert_eq!(log.topic_config("missing").unwrap(), None);
    // The internal topic of void ranges keeps its records too.
    let internal = KafkaLog::open(&brokers, None, &KafkaConfig::default()).unwrap();
    assert_eq!(
        internal
            .finite_retention(eventlog::kafka::VOIDS_TOPIC)
            .unwrap(),
        None
    );
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let config = KafkaConfig {
        replication: 1,
        properties: vec![("sasl.password".into(), "hunter2".into())],
    };
    let shown = format!("{config:?}");
    assert!(shown.contains("sasl.password"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
