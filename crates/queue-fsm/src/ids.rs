//! Newtype identifiers. Each id that crosses an API is its own type so that a fence can never be
//! passed where a sequence number is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The identity of a job: a stable 128-bit hash of what makes a job unique (its command, plus
/// its cwd when `cwd_matters`, plus its mounts). Shown as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobKey(pub [u8; 16]);

impl JobKey {
    /// Computes the key of a job from its essence. `cwd` only counts when `cwd_matters`;
    /// `mounts` (an opaque, canonical string) only when non-empty.
    pub fn of(cmd: &str, cwd: &str, cwd_matters: bool, mounts: &str) -> JobKey {
        let mut h = blake3::Hasher::new();
        // Length-prefix each part so that ("ab", "c") and ("a", "bc") differ.
        for part in [cmd, if cwd_matters { cwd } else { "" }, mounts] {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        JobKey(out)
    }

    /// The key of the job a dependency names by its essence (wr's `cmd_deps`: a command, a
    /// cwd, mounts): a given cwd is part of the essence, as if the job had `cwd_matters`; an
    /// empty one is not. Equal to [`crate::JobSpec::key`] of that job.
    pub fn of_essence(cmd: &str, cwd: &str, mounts: &str) -> JobKey {
        JobKey::of(cmd, cwd, !cwd.is_empty(), mounts)
    }

    /// Parses the 32-hex-digit form.
    pub fn parse(s: &str) -> Option<JobKey> {
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hi = (chunk[0] as char).to_digit(16)?;
            let lo = (chunk[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(JobKey(out))
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobKey({self})")
    }
}

/// Identifies a runner process (chosen by the runner, typically a UUID).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct RunnerId(pub u128);

/// Proves a reservation: every reservation gets a new, never reused token from a counter in the
/// state machine. Commands on a reservation must present the job's current fence.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct FenceToken(pub u64);

/// A client-chosen id that makes a mutating request idempotent.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct RequestId(pub u128);

impl fmt::Display for FenceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_cwd_only_when_it_matters() {
        let a = JobKey::of("echo hi", "/a", false, "");
        let b = JobKey::of("echo hi", "/b", false, "");
        assert_eq!(a, b);
        let c = JobKey::of("echo hi", "/a", true, "");
        let d = JobKey::of("echo hi", "/b", true, "");
        assert_ne!(c, d);
        assert_ne!(a, c);
        assert_ne!(
            JobKey::of("ab", "c", true, ""),
            JobKey::of("a", "bc", true, "")
        );
        assert_ne!(a, JobKey::of("echo hi", "/a", false, "m"));
    }

    #[test]
    fn key_hex_round_trip() {
        let k = JobKey::of("x", "", false, "");
        let s = k.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(JobKey::parse(&s), Some(k));
        assert_eq!(JobKey::parse("zz"), None);
        assert_eq!(JobKey::parse(&"g".repeat(32)), None);
    }

    #[test]
    fn essence_key_is_the_key_of_the_job_it_names() {
        let mut spec = crate::JobSpec::new("sort x");
        spec.cwd = "/data".into();
        spec.cwd_matters = true;
        spec.mounts = "m1".into();
        assert_eq!(JobKey::of_essence("sort x", "/data", "m1"), spec.key());
        // Without a cwd the essence names the job that runs anywhere.
        let mut anywhere = crate::JobSpec::new("sort x");
        anywhere.cwd = "/somewhere".into();
        assert_eq!(JobKey::of_essence("sort x", "", ""), anywhere.key());
        assert_ne!(JobKey::of_essence("sort x", "/data", ""), anywhere.key());
    }
}
