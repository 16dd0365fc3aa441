//! Names of the derived topics and of the processor's published positions.

/// The topics the processor writes, each with the event partition count; quarantine
/// has one more partition, the last, for master-data records.
pub const SILVER_TOPIC: &str = "silver.usage_events";
pub const QUARANTINE_TOPIC: &str = "quarantine";
pub const WINDOWS_TOPIC: &str = "speed.usage_windows";
pub const DAILY_TOPIC: &str = "speed.daily_usage";
pub const LATE_TOPIC: &str = "speed.late_events";

/// Consumer name under which the processor publishes, after each commit, its committed
/// output positions and the raw input positions they account for, in one file: readers
/// of the outputs (the compactor) never read what a crash may still take back.
pub const COMMITTED_OUTPUTS: &str = "processor.outputs";
