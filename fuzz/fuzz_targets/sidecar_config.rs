//! The sidecar's config parser on arbitrary text: never panics, and what it
//! accepts renders to YAML that parses back to the same config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_kafka_sidecar::config::SidecarConfig;

fuzz_target!(|text: &str| {
    if let Ok(config) = SidecarConfig::parse(text) {
        let again = SidecarConfig::parse(&config.to_yaml()).expect("a rendered config parses");
        assert_eq!(again, config, "rendering and parsing round-trip");
    }
});
