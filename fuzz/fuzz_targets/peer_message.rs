//! What the peer (Raft) service decodes from the network: AppendEntries, Vote and Forward
//! payloads (ReadIndex reads none), postcard-encoded as `raft_net` reads them. Decoding never panics and
//! never allocates without bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use raft_store::TypeConfig;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            let _ = postcard::from_bytes::<AppendEntriesRequest<TypeConfig>>(body);
        }
        1 => {
            let _ = postcard::from_bytes::<VoteRequest<TypeConfig>>(body);
        }
        _ => {
            let _ = postcard::from_bytes::<raftq_node::node::Forwarded>(body);
        }
    }
});
