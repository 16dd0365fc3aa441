//! A CSV extract of one master source (chosen by the first byte), read row by row as
//! `producer replay` reads it, each row then parsed as the processor parses it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, csv)) = data.split_first() else {
        return;
    };
    let source = schemas::Source::MASTER[pick as usize % schemas::Source::MASTER.len()];
    let _ = producer::replay::csv_rows(csv, source, |_key, value, _line| {
        let _ = schemas::parse_master(source, &value);
        Ok(())
    });
});
