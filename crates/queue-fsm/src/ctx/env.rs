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
pub(super) fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for o in overrides {
        let k = o.split_once('=').map_or(o.as_str(), |(k, _)| k);
        match out
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) == k)
        {
            Some(slot) => *slot = o.clone(),
            None => out.push(o.clone()),
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
