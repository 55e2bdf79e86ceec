//! Checkers: each reads the history and says whether it is valid, with counts and examples.

mod fencing;
mod total_queue;

pub use fencing::fencing;
pub use total_queue::total_queue;

use serde::Serialize;
use std::collections::BTreeMap;

/// A checker's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    True,
    False,
    /// The history does not allow a verdict (e.g. no final read).
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub valid: Validity,
    pub counts: BTreeMap<String, u64>,
    /// A few offending cases, for the report.
    pub examples: Vec<String>,
}

/// Examples kept per verdict.
pub const MAX_EXAMPLES: usize = 10;

impl Verdict {
    fn new() -> Verdict {
        Verdict {
            valid: Validity::True,
            counts: BTreeMap::new(),
            examples: Vec::new(),
        }
    }

    fn count(&mut self, what: &str, n: u64) {
        *self.counts.entry(what.to_string()).or_default() += n;
    }

    /// Records a violation: the verdict becomes false.
    fn violation(&mut self, what: &str, example: String) {
        self.count(what, 1);
        self.valid = Validity::False;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(example);
        }
    }
}
