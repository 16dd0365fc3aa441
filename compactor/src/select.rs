//! Exact percentiles of a column spread over many Parquet files, in bounded memory:
//! a radix selection that reads the column a few times (16 bits of the value's order
//! key per pass, then the few values left in the chosen bucket), instead of holding
//! every value to sort it.

use std::path::PathBuf;

use anyhow::Result;
use schemas::stats::percentile_cont;

/// Once a bucket holds at most this many values they are collected and sorted.
const COLLECT_AT_MOST: u64 = 1 << 20;

/// A total order of doubles as unsigned integers (negative values below positive).
fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

/// Where the search for one rank stands.
#[derive(Debug, Clone)]
struct Target {
    /// Rank among the values that match `prefix`.
    rank: u64,
    prefix: u64,
    /// How many leading bits of the key `prefix` fixes.
    bits: u32,
    /// Collect the matching values in the next pass (few enough).
    collect: bool,
    found: Option<f64>,
}

impl Target {
    fn matches(&self, k: u64) -> bool {
        self.bits == 0 || (k >> (64 - self.bits)) == self.prefix
    }
}

/// Yields the values of one file to the sink.
pub type ReadValues<'a> = dyn Fn(&PathBuf, &mut dyn FnMut(f64)) -> Result<()> + 'a;

/// `percentile_cont(p)` (linear interpolation between the closest ranks) of the values
/// that `read` yields from `files`; `read` is called once per file per pass, and must
/// yield the same values each time. `None` when there are none.
pub fn percentile_of_files(files: &[PathBuf], p: f64, read: &ReadValues) -> Result<Option<f64>> {
    let mut n = 0u64;
    let mut hist = vec![0u64; 1 << 16];
    for f in files {
        read(f, &mut |x| {
            n += 1;
            hist[(key(x) >> 48) as usize] += 1;
        })?;
    }
    if n == 0 {
        return Ok(None);
    }
    let rank = p.clamp(0.0, 1.0) * (n - 1) as f64;
    let (lo, hi) = (rank.floor() as u64, rank.ceil() as u64);
    let mut targets: Vec<Target> = [lo, hi].iter().map(|&r| descend(&hist, r, 0, 0)).collect();
    while targets.iter().any(|t| t.found.is_none()) {
        let mut hists: Vec<Vec<u64>> = targets
            .iter()
            .map(|t| {
                if t.found.is_none() && !t.collect {
                    vec![0; 1 << 16]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let mut collected: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        for f in files {
            read(f, &mut |x| {
                let k = key(x);
                for (i, t) in targets.iter().enumerate() {
                    if t.found.is_some() || !t.matches(k) {
                        continue;
                    }
                    if t.collect {
                        collected[i].push(x);
                    } else {
                        hists[i][((k << t.bits) >> 48) as usize] += 1;
                    }
                }
            })?;
        }
        for (i, t) in targets.iter_mut().enumerate() {
            if t.found.is_some() {
                continue;
            }
            if t.collect || t.bits >= 64 {
                let v = &mut collected[i];
                v.sort_by(f64::total_cmp);
                t.found = v.get(t.rank as usize).copied();
                if t.found.is_none() {
                    anyhow::bail!("the values changed between passes");
                }
            } else {
                *t = descend(&hists[i], t.rank, t.prefix, t.bits);
            }
        }
    }
    let (a, b) = (
        targets[0].found.unwrap_or_default(),
        targets[1].found.unwrap_or_default(),
    );
    // The same interpolation as `percentile_cont`, so both agree to the bit.
    Ok(percentile_cont(&[a, b], rank - lo as f64))
}

/// Picks the 16-bit bucket of `hist` holding `rank`, under `prefix`.
fn descend(hist: &[u64], rank: u64, prefix: u64, bits: u32) -> Target {
    let mut before = 0;
    for (d, &c) in hist.iter().enumerate() {
        if rank < before + c {
            let bits = bits + 16;
            return Target {
                rank: rank - before,
                prefix: (prefix << 16) | d as u64,
                bits,
                collect: c <= COLLECT_AT_MOST || bits >= 64,
                found: None,
            };
        }
        before += c;
    }
    Target {
        rank,
        prefix,
        bits,
        collect: true,
        found: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(values: &[f64], per_file: usize, p: f64) {
        let files: Vec<PathBuf> = (0..values.len().div_ceil(per_file).max(1))
            .map(|i| PathBuf::from(i.to_string()))
            .collect();
        let read = |f: &PathBuf, sink: &mut dyn FnMut(f64)| -> Result<()> {
            let i: usize = f.to_str().unwrap().parse().unwrap();
            for x in values.iter().skip(i * per_file).take(per_file) {
                sink(*x);
            }
            Ok(())
        };
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let want = schemas::stats::percentile_cont(&sorted, p);
        assert_eq!(
            percentile_of_files(&files, p, &read).unwrap(),
            want,
            "p = {p}"
        );
    }

    #[test]
    fn equals_sorting_everything() {
        let mut x = 5u64;
        let mut v: Vec<f64> = (0..50_000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 20) % 100_000) as f64 / 7.0 - 3000.0
            })
            .collect();
        for p in [0.0, 0.5, 0.99, 1.0] {
            check(&v, 977, p);
        }
        // Many equal values, and ranks straddling two buckets.
        v.extend(std::iter::repeat_n(1.0, 30_000));
        check(&v, 5000, 0.99);
        check(&[1.0, 100.0], 1, 0.99);
        check(&[7.0], 1, 0.99);
        assert_eq!(percentile_of_files(&[], 0.5, &|_, _| Ok(())).unwrap(), None);
    }

    #[test]
    fn narrows_when_a_bucket_is_too_big_to_collect() {
        // Over a million values sharing their top 16 bits of key: a second
        // histogram pass narrows the bucket before collecting.
        let v: Vec<f64> = (0..1_200_000).map(|i| 1.0 + i as f64 * 1e-9).collect();
        check(&v, 100_000, 0.99);
    }
}
