//! Job records, arbitrary: a request record's value and headers through the
//! job path's parsing. Never a panic; a job that parses names a jobId that
//! can key a reply; the bearer token of a header is never in what a refusal
//! or a dead-letter record says; a reply goes to an allowed topic only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_kafka_sidecar::jobs::record::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    // First byte: where the value ends; the rest of the bytes are the header.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (value, header) = rest.split_at((split as usize).min(rest.len()));
    let token = record::bearer(Some(header));
    let parsed = record::parse(Some(value));
    let said = match &parsed {
        Parsed::Job(job) => {
            assert!(
                !job.job_id.is_empty() && job.job_id.len() <= 128 && !job.job_id.starts_with('@')
            );
            assert!(job.arguments.is_object());
            String::new()
        }
        Parsed::Refused { job_id, error, .. } => {
            assert!(!job_id.is_empty());
            error.message.clone()
        }
        Parsed::Unusable(error) => {
            let letter =
                record::dead_letter(error, "t", 0, 0, Some(value), vec!["authorization".into()]);
            letter["error"].to_string()
        }
    };
    // What is said comes from the value only: a token that the value does not
    // carry itself is never in it.
    let in_value = |t: &str| String::from_utf8_lossy(value).contains(t);
    if let Some(token) = token.filter(|t| t.len() >= 8 && !in_value(t)) {
        assert!(!said.contains(&token), "{said}");
    }
    let allowed = vec!["replies".to_string()];
    let (topic, _) = record::reply_topic(Some(header), &allowed);
    assert_eq!(
        topic, "replies",
        "a reply goes to an allowed topic, whatever the header"
    );
});
