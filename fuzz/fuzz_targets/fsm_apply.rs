//! Bytes → protobuf decode → conversion (field checks) → the state machine's own validation
//! → apply, on a scratch in-memory store, with `check_invariants()` after every command.
//!
//! The input is a sequence of records `kind (1 byte) | length (2 bytes, LE) | message`: the
//! kind picks the request (add, reserve, reports, actions by key, limits, pause/drain, or a
//! timer tick), the message bytes are decoded as that request's protobuf. Time moves forward
//! by a kind-dependent step, so leases expire and delays pass. A panic anywhere, a store error
//! or a broken invariant is a finding; refusals are expected.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use queue_fsm::{Command, Fsm, FsmConfig, MemStore, Request};
use raftq_proto::{convert, pb};

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut fsm = Fsm::open(MemStore::default(), FsmConfig::default()).expect("open a MemStore");
    let mut now: u64 = 1_700_000_000_000;
    let mut rest = data;
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        rest = &rest[3..];
        let (msg, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        // up to ~4 minutes per step: enough to cross TTRs, release delays and lost returns
        now = now.saturating_add(u64::from(kind) * 997);
        let Some(req) = request(kind, msg) else {
            continue;
        };
        let (_outcome, _effects) = fsm
            .apply(now, req)
            .expect("a store error on a scratch store");
        if let Err(e) = fsm.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }
}

/// The request of record `kind` with protobuf body `b`, if it decodes and converts.
fn request(kind: u8, b: &[u8]) -> Option<Request> {
    macro_rules! conv {
        ($msg:ty, $f:path) => {
            $f(<$msg>::decode(b).ok()?).ok()
        };
    }
    match kind % 15 {
        0 | 1 => conv!(pb::AddRequest, convert::add_request),
        2 | 3 => conv!(pb::ReserveRequest, convert::reserve_request),
        4 => conv!(pb::StartedRequest, convert::started_request),
        5 => conv!(pb::TouchRequest, convert::touch_request),
        6 => conv!(pb::ArchiveRequest, convert::archive_request),
        7 => conv!(pb::HandBackRequest, convert::release_request),
        8 => conv!(pb::HandBackRequest, convert::bury_request),
        9 => conv!(pb::KeysRequest, convert::kick_request),
        10 => conv!(pb::KeysRequest, convert::kill_request),
        11 => conv!(pb::KeysRequest, convert::delete_request),
        12 => conv!(pb::ModifyRequest, convert::modify_request),
        13 => match b.first().copied().unwrap_or(0) % 3 {
            0 => conv!(pb::SetLimitRequest, convert::set_limit_request),
            1 => conv!(pb::SetReservingRequest, convert::set_reserving_request),
            _ => Some(Request::new(None, Command::RenewLeases)),
        },
        _ => Some(Request::new(None, Command::Tick)),
    }
}
