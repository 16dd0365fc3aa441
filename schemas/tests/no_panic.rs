//! No byte string makes a parser panic.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use proptest::prelude::*;
use schemas::{MasterTables, Source};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn event_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = schemas::event::apply_event_rules(&bytes, &MasterTables::default(), &mut HashSet::new());
        let _ = schemas::event::event_routing(&bytes);
    }

    #[test]
    fn event_parser_never_panics_on_json_like_text(s in r#"\{("[a-z_]{1,12}": ?("[ -~]{0,20}"|-?[0-9.eE+]{1,8}|true|null|\{\}|\[\]), ?){0,8}\}"#) {
        let _ = schemas::event::apply_event_rules(s.as_bytes(), &MasterTables::default(), &mut HashSet::new());
    }

    #[test]
    fn master_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), i in 0usize..8) {
        let source = Source::ALL[i];
        let _ = schemas::master::apply_master_rules(source, &bytes, &MasterTables::default(), &mut HashSet::new());
    }

    #[test]
    fn csv_rows_never_panic(fields in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..14), i in 1usize..8) {
        let source = Source::ALL[i];
        let header: Vec<String> = source.columns().iter().map(|s| s.to_string()).collect();
        let raw: Vec<&[u8]> = fields.iter().map(|f| f.as_slice()).collect();
        let (_, value) = schemas::csv_row_value(source, &header, &raw);
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&value).is_ok());
        let _ = schemas::master::apply_master_rules(source, &value, &MasterTables::default(), &mut HashSet::new());
    }
}
