//! Environments: content-addressed compressed blobs, shared by the jobs that use them and
//! reference counted (the count changes in `write_job`; a blob goes when its count is zero
//! at the end of a command).

use super::Ctx;
use crate::store::{Space, StoreError};

pub(super) fn env_refs_key(hash: &[u8; 32]) -> Vec<u8> {
    let mut k = hash.to_vec();
    k.extend_from_slice(b"#refs");
    k
}

/// Applies `overrides` (`KEY=VALUE`) to `base`: a key that exists is replaced in place, a new
/// one appended.
///
/// Linear in the entries (a map from key to its first slot): both lists can have a hundred
/// thousand entries within the byte bounds, and every replica runs this in apply.
pub(super) fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    fn key(e: &str) -> &str {
        e.split_once('=').map_or(e, |(k, _)| k)
    }
    let mut out: Vec<String> = base.to_vec();
    let mut slot: std::collections::HashMap<String, usize> =
        std::collections::HashMap::with_capacity(out.len() + overrides.len());
    for (i, e) in out.iter().enumerate() {
        slot.entry(key(e).to_string()).or_insert(i);
    }
    for o in overrides {
        match slot.get(key(o)) {
            Some(&i) => out[i] = o.clone(),
            None => {
                slot.insert(key(o).to_string(), out.len());
                out.push(o.clone());
            }
        }
    }
    out
}

/// (content hash, compressed blob) of an environment.
pub(super) fn env_blob(env: &[String]) -> ([u8; 32], Vec<u8>) {
    let raw = env.join("\0");
    let hash = *blake3::hash(raw.as_bytes()).as_bytes();
    (hash, lz4_flex::compress_prepend_size(raw.as_bytes()))
}

/// Decompresses an environment blob into `KEY=VALUE` entries.
pub fn decode_env(blob: &[u8]) -> Result<Vec<String>, StoreError> {
    let raw = lz4_flex::decompress_size_prepended(blob)
        .map_err(|e| StoreError::Corrupt(format!("env blob: {e}")))?;
    let s = String::from_utf8(raw).map_err(|_| StoreError::Corrupt("env blob not UTF-8".into()))?;
    if s.is_empty() {
        return Ok(Vec::new());
    }
    Ok(s.split('\0').map(str::to_owned).collect())
}

impl Ctx<'_> {
    /// Stores an environment blob (if new) and returns its hash; the reference count is kept
    /// by `write_job`.
    pub(super) fn store_env(&mut self, env: Option<([u8; 32], Vec<u8>)>) -> Option<[u8; 32]> {
        let (hash, blob) = env?;
        // Only written when absent: identical content has an identical blob.
        if !matches!(self.tx.get(Space::Env, &hash), Ok(Some(_))) {
            self.tx.put(Space::Env, hash.to_vec(), blob);
        }
        Some(hash)
    }

    /// Drops the blobs of environments whose reference count reached zero during the command
    /// and stayed there (a later job of the same command may have taken them up again).
    pub(super) fn drop_unreferenced_envs(&mut self) -> Result<(), StoreError> {
        for h in std::mem::take(&mut self.env_unreferenced) {
            if self.counter(Space::Env, &env_refs_key(&h))? == 0 {
                self.tx.delete(Space::Env, h.to_vec());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::merge_env;

    #[test]
    fn overrides_replace_in_place_and_new_keys_append() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let base = v(&["A=1", "B=2", "A=dup", "FLAG"]);
        let merged = merge_env(&base, &v(&["B=3", "C=4", "A=5", "C=6", "FLAG=on"]));
        assert_eq!(merged, v(&["A=5", "B=3", "A=dup", "FLAG=on", "C=6"]));
    }
}
