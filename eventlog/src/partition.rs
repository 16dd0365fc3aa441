//! Where a keyed record goes: the partition Kafka's own clients choose for its key.
//!
//! Kafka's Java producer (its default partitioner, for a record with a key) and
//! librdkafka's `murmur2_random` partitioner both take the 32-bit MurmurHash2 of the
//! key bytes (seed `0x9747b28c`), clear its sign bit, and take it modulo the partition
//! count. Every backend and every binary of the pipeline partitions with
//! [`partition_for`], so a record that Kafka Connect, Vector or a Java service appends
//! to `raw.usage_events` lands in the partition ours would have chosen, and an org's
//! events stay in one partition whoever produced them.

/// The name the embedded log records beside each topic it creates, so that a log
/// partitioned otherwise (by CRC32C, before) is recognised rather than mixed with.
pub const PARTITIONER: &str = "murmur2";

/// MurmurHash2 of `data` as Kafka's `Utils.murmur2` and librdkafka's `rd_murmur2`
/// compute it (signed, as Java returns it).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a key among `partitions`: `murmur2(key) & 0x7fffffff` modulo the
/// count, as the Java client's `Utils.toPositive(Utils.murmur2(key)) % n` and
/// librdkafka's `murmur2_random`.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) as u32 & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Java client's own test vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn murmur2_equals_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    /// librdkafka's own test vectors (`unittest_murmur2` in `rdmurmur2.c`), which
    /// cover every tail length and the empty key.
    #[test]
    fn murmur2_equals_librdkafka() {
        let unaligned = "PreAmbleWillBeRemoved,ThePrePartThatIs";
        let cases: [(&str, u32); 11] = [
            ("kafka", 0xd067_cf64),
            ("giberish123456789", 0x8f55_2b0c),
            ("1234", 0x9fc9_7b14),
            ("234", 0xe7c0_09ca),
            ("34", 0x8739_30da),
            ("4", 0x5a4b_5ca1),
            (unaligned, 0x7842_4f1c),
            (&unaligned[1..], 0x4a62_b377),
            (&unaligned[2..], 0xe0e4_e09e),
            (&unaligned[3..], 0x62b8_b43f),
            ("", 0x106e_08d9),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key.as_bytes()) as u32, want, "{key:?}");
        }
    }

    /// Key -> partition pairs as the Java client assigns them: `toPositive(murmur2) %
    /// n`, from the hashes above (a negative hash keeps its low 31 bits).
    #[test]
    fn partitions_are_the_clients_choice() {
        // -973932308 & 0x7fffffff = 1173551340.
        assert_eq!(partition_for(b"21", 4), 1_173_551_340 % 4);
        assert_eq!(partition_for(b"21", 7), 1_173_551_340 % 7);
        // 479470107 is positive already.
        assert_eq!(partition_for(b"abc", 4), 479_470_107 % 4);
        assert_eq!(partition_for(b"abc", 10), 479_470_107 % 10);
        // 0xd067cf64 & 0x7fffffff = 0x5067cf64.
        assert_eq!(partition_for(b"kafka", 12), 0x5067_cf64 % 12);
        assert_eq!(partition_for(b"anything", 1), 0);
        assert_eq!(partition_for(b"anything", 0), 0);
    }
}
