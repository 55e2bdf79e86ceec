//! History-building helpers for the tests of the checkers and of the report.

use crate::history::{Event, Kind, Op};

/// An event of `process` on node 1 at `time_ns`, without an error.
pub(crate) fn event(process: u64, kind: Kind, op: Op, time_ns: u64) -> Event {
    Event {
        process,
        kind,
        op,
        node: 1,
        time_ns,
        error: None,
    }
}

/// [`event`] with the time in milliseconds.
pub(crate) fn event_ms(process: u64, kind: Kind, op: Op, t_ms: u64) -> Event {
    event(process, kind, op, t_ms * 1_000_000)
}

/// One operation of `process`: invoked at `invoke_ns`, completed with `outcome` at
/// `complete_ns`. A reserve is invoked without job and fence (they are only known once it
/// completes).
pub(crate) fn call(
    process: u64,
    op: Op,
    outcome: Kind,
    invoke_ns: u64,
    complete_ns: u64,
) -> Vec<Event> {
    let invoked = match &op {
        Op::Reserve { .. } => reserve_invocation(),
        o => o.clone(),
    };
    vec![
        event(process, Kind::Invoke, invoked, invoke_ns),
        event(process, outcome, op, complete_ns),
    ]
}

/// [`call`] with the times in milliseconds.
pub(crate) fn call_ms(
    process: u64,
    op: Op,
    outcome: Kind,
    invoke_ms: u64,
    complete_ms: u64,
) -> Vec<Event> {
    call(
        process,
        op,
        outcome,
        invoke_ms * 1_000_000,
        complete_ms * 1_000_000,
    )
}

/// An add of `job` by process 1, invoked at `t` (ns) and completed with `outcome` at `t + 1`.
pub(crate) fn add(job: &str, outcome: Kind, t: u64) -> Vec<Event> {
    call(1, add_op(job), outcome, t, t + 1)
}

/// An add without priority and delay.
pub(crate) fn add_op(job: &str) -> Op {
    add_op_with(job, None, None)
}

pub(crate) fn add_op_with(job: &str, priority: Option<u32>, delay_ms: Option<u64>) -> Op {
    Op::Add {
        job: job.into(),
        priority,
        delay_ms,
    }
}

/// A reserve as it is invoked: job and fence not known yet.
pub(crate) fn reserve_invocation() -> Op {
    Op::Reserve {
        job: None,
        fence: None,
        ttr_ms: None,
    }
}

/// A reserve ok that granted `fence` on `job`.
pub(crate) fn reserve_op(job: &str, fence: u64) -> Op {
    Op::Reserve {
        job: Some(job.into()),
        fence: Some(fence),
        ttr_ms: None,
    }
}

pub(crate) fn touch_op(job: &str, fence: u64) -> Op {
    Op::Touch {
        job: job.into(),
        fence,
    }
}

pub(crate) fn archive_op(job: &str, fence: u64) -> Op {
    Op::Archive {
        job: job.into(),
        fence,
    }
}

pub(crate) fn release_op(job: &str, fence: u64) -> Op {
    Op::Release {
        job: job.into(),
        fence,
    }
}

pub(crate) fn bury_op(job: &str, fence: u64) -> Op {
    Op::Bury {
        job: job.into(),
        fence,
    }
}

/// A final read of (job, state) pairs.
pub(crate) fn final_read_op(jobs: &[(&str, &str)]) -> Op {
    Op::FinalRead {
        jobs: jobs
            .iter()
            .map(|(j, s)| (j.to_string(), s.to_string()))
            .collect(),
    }
}

/// A final read ok of process 1 at 1000 ns (without its invocation).
pub(crate) fn final_read(jobs: &[(&str, &str)]) -> Event {
    event(1, Kind::Ok, final_read_op(jobs), 1_000)
}

/// A fault of the nemesis.
pub(crate) fn fault_op(name: &str, action: &str, detail: &str) -> Op {
    Op::Fault {
        name: name.into(),
        action: action.into(),
        detail: detail.into(),
    }
}
