//! A raw usage-event line (JSONL) as the processor and the compactor read it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let _ = schemas::event::event_routing(line);
    if let Ok(event) = schemas::parse_event(line) {
        // What parsing kept must survive the rules without a panic.
        let masters = schemas::MasterTables::default();
        let mut seen = std::collections::HashSet::<String>::new();
        let _ = schemas::validate_event(event, &masters, &mut seen);
    }
});
