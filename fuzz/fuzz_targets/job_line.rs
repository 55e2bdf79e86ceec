//! `raftq add` input lines, plain commands and wr's JSON job objects: parsing never panics,
//! and a line that parses gives a job spec that the wire conversion either accepts or refuses
//! with a field named, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use raftq_node::jobspec::{parse_line, JobDefaults};
use raftq_proto::{convert, pb};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let defaults = JobDefaults::standard();
    for (i, line) in text.lines().enumerate() {
        if let Ok(Some(spec)) = parse_line(i + 1, line, &defaults) {
            let add = pb::AddRequest {
                jobs: vec![spec],
                ..Default::default()
            };
            if let Err(e) = convert::add_request(add) {
                assert!(!e.field.is_empty(), "a refusal without a field: {e}");
            }
        }
    }
});
