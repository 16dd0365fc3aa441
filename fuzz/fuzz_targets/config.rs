//! The pipeline config file (TOML), then everything derived from it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = eventlog::PipelineConfig::parse(text) {
        let _ = config.log_config();
        let _ = config.log_url();
        let _ = config.serving_url();
        let _ = config.lake_dir();
    }
});
