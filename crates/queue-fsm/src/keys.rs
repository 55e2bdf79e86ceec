//! Byte layouts of index keys. Names may not contain NUL (validation refuses it), so NUL ends a
//! name inside a composite key and prefix scans by name are exact. Integers are big-endian so
//! that byte order is numeric order.

use crate::ids::{JobKey, RequestId};
use crate::job::StateName;
use crate::store::StoreError;

pub(crate) fn job(key: &JobKey) -> Vec<u8> {
    key.0.to_vec()
}

pub(crate) fn decode_job_key(b: &[u8]) -> Result<JobKey, StoreError> {
    let arr: [u8; 16] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("job key of {} bytes", b.len())))?;
    Ok(JobKey(arr))
}

/// The trailing 16 bytes of an index key: the job key.
pub(crate) fn trailing_job_key(b: &[u8]) -> Result<JobKey, StoreError> {
    if b.len() < 16 {
        return Err(StoreError::Corrupt(
            "index key shorter than a job key".into(),
        ));
    }
    decode_job_key(&b[b.len() - 16..])
}

pub(crate) fn name_prefix(name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 1);
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    v
}

/// Splits a `name NUL rest` key.
pub(crate) fn split_name(b: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    let nul = b
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| StoreError::Corrupt("index key without a name terminator".into()))?;
    let name = std::str::from_utf8(&b[..nul])
        .map_err(|_| StoreError::Corrupt("index key name is not UTF-8".into()))?;
    Ok((name, &b[nul + 1..]))
}

pub(crate) fn ready(group: &str, priority: u8, seq: u64, key: &JobKey) -> Vec<u8> {
    let mut v = name_prefix(group);
    v.push(255 - priority);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&key.0);
    v
}

/// (priority rank, seq) part of a ready key after the group prefix, for comparing across groups.
pub(crate) fn ready_order(after_group: &[u8]) -> &[u8] {
    &after_group[..after_group.len().min(9)]
}

pub(crate) fn timer(deadline_ms: u64, key: &JobKey) -> Vec<u8> {
    let mut v = deadline_ms.to_be_bytes().to_vec();
    v.extend_from_slice(&key.0);
    v
}

pub(crate) fn decode_timer(b: &[u8]) -> Result<(u64, JobKey), StoreError> {
    if b.len() != 24 {
        return Err(StoreError::Corrupt("timer key of wrong length".into()));
    }
    let mut d = [0u8; 8];
    d.copy_from_slice(&b[..8]);
    Ok((u64::from_be_bytes(d), trailing_job_key(b)?))
}

pub(crate) fn named_job(name: &str, key: &JobKey) -> Vec<u8> {
    let mut v = name_prefix(name);
    v.extend_from_slice(&key.0);
    v
}

/// (name, serial): a job's serial number, given in add order, keeps these index keys
/// ascending, which RocksDB inserts far faster than random job keys.
pub(crate) fn named_serial(name: &str, serial: u64) -> Vec<u8> {
    let mut v = name_prefix(name);
    v.extend_from_slice(&serial.to_be_bytes());
    v
}

pub(crate) fn by_state(state: StateName, serial: u64) -> Vec<u8> {
    let mut v = vec![state.code()];
    v.extend_from_slice(&serial.to_be_bytes());
    v
}

pub(crate) fn counts(rep: &str, state: StateName) -> Vec<u8> {
    let mut v = name_prefix(rep);
    v.push(state.code());
    v
}

/// A dependency target: a dep group or a job key.
pub(crate) fn target_group(group: &str) -> Vec<u8> {
    let mut v = vec![b'g'];
    v.extend_from_slice(&name_prefix(group));
    v
}

pub(crate) fn target_job(key: &JobKey) -> Vec<u8> {
    let mut v = vec![b'k'];
    v.extend_from_slice(&key.0);
    v
}

pub(crate) fn dependant(target: &[u8], dependant: &JobKey) -> Vec<u8> {
    let mut v = target.to_vec();
    v.extend_from_slice(&dependant.0);
    v
}

pub(crate) fn request(id: &RequestId) -> Vec<u8> {
    id.0.to_be_bytes().to_vec()
}

pub(crate) fn request_expiry(expires_ms: u64, id: &RequestId) -> Vec<u8> {
    let mut v = expires_ms.to_be_bytes().to_vec();
    v.extend_from_slice(&id.0.to_be_bytes());
    v
}

pub(crate) fn decode_request_expiry(b: &[u8]) -> Result<(u64, RequestId), StoreError> {
    if b.len() != 24 {
        return Err(StoreError::Corrupt(
            "request expiry key of wrong length".into(),
        ));
    }
    let mut d = [0u8; 8];
    d.copy_from_slice(&b[..8]);
    let mut i = [0u8; 16];
    i.copy_from_slice(&b[8..]);
    Ok((u64::from_be_bytes(d), RequestId(u128::from_be_bytes(i))))
}

pub(crate) fn u64_value(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub(crate) fn decode_u64(b: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("counter of wrong length".into()))?;
    Ok(u64::from_be_bytes(arr))
}

pub(crate) const META_STATE: &[u8] = b"fsm/state";
