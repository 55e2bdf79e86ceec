//! convergence: after the final phase every node's state digest is the same. Uses the last
//! successful `digests` read: all nodes answered with equal digests → valid; two digests differ
//! → `diverged` (whatever the others said); a node that did not answer, or no digests read at
//! all → unknown.

use super::{Validity, Verdict};
use crate::history::{Event, Kind, Op};
use std::collections::BTreeMap;

pub fn convergence(history: &[Event]) -> Verdict {
    let mut v = Verdict::new();
    let last = history.iter().rev().find_map(|e| match (&e.op, e.kind) {
        (Op::Digests { nodes }, Kind::Ok) => Some(nodes),
        _ => None,
    });
    let Some(nodes) = last else {
        v.valid = Validity::Unknown;
        v.examples.push("no successful digests read".into());
        return v;
    };
    v.count("nodes", nodes.len() as u64);
    // digest → the nodes that have it
    let mut by_digest: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut missing = Vec::new();
    for (node, digest) in nodes {
        match digest {
            Some(d) => by_digest.entry(d.as_str()).or_default().push(*node),
            None => missing.push(*node),
        }
    }
    v.count("answered", (nodes.len() - missing.len()) as u64);
    v.count("distinct_digests", by_digest.len() as u64);
    if by_digest.len() > 1 {
        let groups: Vec<String> = by_digest
            .iter()
            .map(|(d, n)| format!("{n:?}: {d}"))
            .collect();
        v.violation("diverged", format!("nodes disagree: {}", groups.join("; ")));
    } else if nodes.is_empty() {
        v.valid = Validity::Unknown;
        v.examples.push("the digests read names no node".into());
    }
    if !missing.is_empty() && v.valid == Validity::True {
        v.valid = Validity::Unknown;
    }
    if !missing.is_empty() {
        v.examples.push(format!("no digest from nodes {missing:?}"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::event;

    fn digests(nodes: &[(u64, Option<&str>)]) -> Vec<Event> {
        let nodes = nodes
            .iter()
            .map(|(n, d)| (*n, d.map(String::from)))
            .collect();
        vec![event(1, Kind::Ok, Op::Digests { nodes }, 0)]
    }

    #[test]
    fn equal_digests_are_valid() {
        let v = convergence(&digests(&[(1, Some("x")), (2, Some("x")), (3, Some("x"))]));
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!((v.counts["answered"], v.counts["distinct_digests"]), (3, 1));
    }

    #[test]
    fn planted_bugs_are_caught() {
        let v = convergence(&digests(&[(1, Some("x")), (2, Some("y")), (3, Some("x"))]));
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.counts["diverged"], 1);
        assert!(v.examples[0].contains("[2]: y"), "{:?}", v.examples);
        // a difference is certain even when a node is missing
        let v = convergence(&digests(&[(1, Some("x")), (2, Some("y")), (3, None)]));
        assert_eq!(v.valid, Validity::False);
    }

    #[test]
    fn missing_answers_are_unknown() {
        let v = convergence(&digests(&[(1, Some("x")), (2, None), (3, Some("x"))]));
        assert_eq!(v.valid, Validity::Unknown);
        assert!(v.examples[0].contains("[2]"), "{:?}", v.examples);
        assert_eq!(convergence(&[]).valid, Validity::Unknown);
        assert_eq!(convergence(&digests(&[])).valid, Validity::Unknown);
    }
}
