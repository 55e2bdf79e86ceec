//! The history: every operation a client or worker made, as an invocation and its completion.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// What happened to an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The operation was started.
    Invoke,
    /// It took effect.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown: it may or may not have taken effect (timeout, connection lost).
    Info,
}

/// The operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Op {
    /// Add one job, identified by a name unique in the test (its command carries the name).
    /// The ordering workload also records the job's priority and delay.
    Add {
        job: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay_ms: Option<u64>,
    },
    /// Reserve: on ok, the job and the fence granted; `ttr_ms` is the lease asked for.
    Reserve {
        job: Option<String>,
        fence: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttr_ms: Option<u64>,
    },
    Touch {
        job: String,
        fence: u64,
    },
    Archive {
        job: String,
        fence: u64,
    },
    Release {
        job: String,
        fence: u64,
    },
    Bury {
        job: String,
        fence: u64,
    },
    /// Kick buried jobs back to ready (the final phase): on ok, how many were kicked.
    Kick {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    /// The final read: every job in the queue with its state name as the CLI prints it
    /// (`ready`, `reserved`, `running`, `lost`, `delayed`, `buried`, `complete`, ...).
    FinalRead {
        jobs: Vec<(String, String)>,
    },
    /// The state digest of each node after the final phase (node id, digest; None when the
    /// node did not answer).
    Digests {
        nodes: Vec<(u64, Option<String>)>,
    },
    /// A fault of the nemesis (process [`NEMESIS`]): invoke when it starts being applied, ok
    /// once in force; `name` is the nemesis (`kill`, `partition`, ...), `action` is `start` or
    /// `stop`, `detail` says which nodes.
    Fault {
        name: String,
        action: String,
        #[serde(default)]
        detail: String,
    },
}

/// The process number of the nemesis in the history.
pub const NEMESIS: u64 = 0;

impl Op {
    /// The job the operation is about, if any.
    pub fn job(&self) -> Option<&str> {
        match self {
            Op::Add { job, .. }
            | Op::Touch { job, .. }
            | Op::Archive { job, .. }
            | Op::Release { job, .. }
            | Op::Bury { job, .. } => Some(job),
            Op::Reserve { job, .. } => job.as_deref(),
            _ => None,
        }
    }

    /// Whether the operation changes the queue (adds, reservation changes, kicks).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Op::FinalRead { .. } | Op::Digests { .. } | Op::Fault { .. }
        )
    }
}

/// One entry of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The client or worker that made the call.
    pub process: u64,
    pub kind: Kind,
    #[serde(flatten)]
    pub op: Op,
    /// The node the call went to.
    pub node: u64,
    /// Nanoseconds since the start of the test.
    pub time_ns: u64,
    /// Error text of a fail or info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Writes the history as one JSON object per line.
pub fn write_jsonl(events: &[Event], mut w: impl Write) -> std::io::Result<()> {
    for e in events {
        serde_json::to_writer(&mut w, e)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("history line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("reading the history: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a history written by [`write_jsonl`].
pub fn read_jsonl(r: impl BufRead) -> Result<Vec<Event>, ReadError> {
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| ReadError::Line {
            line: i + 1,
            reason: e.to_string(),
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::add_op;

    #[test]
    fn history_round_trips_through_jsonl() {
        let events = vec![
            Event {
                node: 2,
                ..crate::checker::testkit::event(1, Kind::Invoke, add_op("a"), 10)
            },
            Event {
                process: 1,
                kind: Kind::Info,
                op: add_op("a"),
                node: 2,
                time_ns: 20,
                error: Some("timeout".into()),
            },
            Event {
                process: 3,
                kind: Kind::Ok,
                op: Op::Reserve {
                    job: Some("a".into()),
                    fence: Some(7),
                    ttr_ms: Some(1_000),
                },
                node: 1,
                time_ns: 30,
                error: None,
            },
        ];
        let mut buf = Vec::new();
        write_jsonl(&events, &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.lines().next().unwrap().contains("\"f\":\"add\""),
            "{text}"
        );
        assert_eq!(read_jsonl(&buf[..]).unwrap(), events);
        let bad = read_jsonl(&b"{\"nope\":1}\n"[..]).unwrap_err();
        assert!(bad.to_string().starts_with("history line 1:"), "{bad}");
    }
}
