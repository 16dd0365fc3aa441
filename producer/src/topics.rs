//! `producer topics`: what the log holds.

use std::io::Write;

use eventlog::Log;
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionEnd {
    pub topic: String,
    pub partition: u32,
    pub end_offset: u64,
}

pub fn list<L: Log>(log: &L) -> Result<Vec<PartitionEnd>> {
    let mut out = Vec::new();
    for (topic, n) in log.topics()? {
        for partition in 0..n {
            let end_offset = log.end_offset(&topic, partition)?;
            out.push(PartitionEnd {
                topic: topic.clone(),
                partition,
                end_offset,
            });
        }
    }
    Ok(out)
}

/// One JSON object per line.
pub fn write_json(rows: &[PartitionEnd], out: &mut impl Write) -> std::io::Result<()> {
    for r in rows {
        serde_json::to_writer(&mut *out, r)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub fn write_table(rows: &[PartitionEnd], out: &mut impl Write) -> std::io::Result<()> {
    let width = rows.iter().map(|r| r.topic.len()).max().unwrap_or(5).max(5);
    writeln!(
        out,
        "{:<width$}  {:>9}  {:>12}",
        "topic", "partition", "end_offset"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<width$}  {:>9}  {:>12}",
            r.topic, r.partition, r.end_offset
        )?;
    }
    Ok(())
}
