//! Raw throughput of the embedded log: append N records (replay-sized: a key, a
//! ~270-byte value, two lineage headers) in batches, then read them all back.
//! Usage: logbench <dir> [records] [batch] [fsync]; prints one JSON line.

use std::time::Instant;

use eventlog::{EmbeddedLog, Log, LogConfig, PartitionReader, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or("usage: logbench <dir> [records] [batch] [fsync]")?;
    let n: usize = args.get(2).map_or(Ok(2_000_000), |s| s.parse())?;
    let batch: usize = args.get(3).map_or(Ok(2000), |s| s.parse())?;
    let fsync = args.get(4).map_or("100ms", String::as_str).parse()?;
    let config = LogConfig {
        fsync,
        ..LogConfig::default()
    };
    let value = eventlog::Bytes::from(vec![b'x'; 270]);
    let records: Vec<Record> = (0..batch)
        .map(|i| Record {
            key: Some(format!("org_{:08}", i % 80).into_bytes().into()),
            value: value.clone(),
            headers: vec![
                (
                    "source_file".into(),
                    eventlog::Bytes::from_static(b"usage_events_stream/events_part_0000.jsonl"),
                ),
                ("line_no".into(), i.to_string().into_bytes().into()),
            ],
            timestamp_ms: 1_750_000_000_000 + i as i64,
        })
        .collect();
    let log = EmbeddedLog::open(dir, config.clone())?;
    log.ensure_topic("bench", 1)?;
    let t = Instant::now();
    let mut written = 0;
    while written < n {
        let k = batch.min(n - written);
        log.append("bench", 0, &records[..k])?;
        written += k;
    }
    log.flush()?;
    let append_s = t.elapsed().as_secs_f64();
    let bytes = std::fs::read_dir(std::path::Path::new(dir).join("bench/0"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum::<u64>() as f64;
    drop(log);

    let log = EmbeddedLog::open(dir, config)?;
    let t = Instant::now();
    let mut reader = log.reader("bench", 0, 0)?;
    let mut read = 0usize;
    loop {
        let got = reader.poll(10_000)?;
        if got.is_empty() {
            break;
        }
        read += got.len();
    }
    let read_s = t.elapsed().as_secs_f64();
    assert_eq!(read, n, "read back what was written");
    println!(
        "{{\"records\": {n}, \"bytes\": {bytes}, \"append_records_per_s\": {:.0}, \"append_mb_per_s\": {:.1}, \"read_records_per_s\": {:.0}, \"read_mb_per_s\": {:.1}}}",
        n as f64 / append_s,
        bytes / append_s / 1e6,
        n as f64 / read_s,
        bytes / read_s / 1e6
    );
    Ok(())
}
