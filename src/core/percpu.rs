// SPDX-License-Identifier: Apache-2.0
//! Reading per-CPU maps: one value per possible CPU, summed in user space.

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use crate::core::skel::plain_prefix;

/// Every CPU's copy of the value at `key` (empty when the key is absent).
pub fn values<T: plain::Plain + Copy>(map: &dyn MapCore, key: u32) -> Result<Vec<T>> {
    let raw = map
        .lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)
        .with_context(|| format!("reading per-CPU map {}", map.name().to_string_lossy()))?;
    Ok(raw
        .unwrap_or_default()
        .iter()
        .filter_map(|bytes| plain::from_bytes::<T>(bytes).ok().copied())
        .collect())
}

/// Every key's per-CPU values of a per-CPU array (keys 0..max_entries), in one
/// BPF_MAP_LOOKUP_BATCH call where the kernel supports it, else key by key. One call
/// instead of hundreds keeps btrace out of its own syscall statistics and refreshes cheap.
pub fn all_values<T: plain::Plain + Copy>(map: &dyn MapCore) -> Result<Vec<Vec<T>>> {
    let n_keys = map.max_entries();
    match batch_values(map, n_keys) {
        Some(v) => Ok(v),
        None => (0..n_keys).map(|k| values(map, k)).collect(),
    }
}

fn batch_values<T: plain::Plain + Copy>(map: &dyn MapCore, n_keys: u32) -> Option<Vec<Vec<T>>> {
    use std::os::fd::AsRawFd;
    let cpus = libbpf_rs::num_possible_cpus().ok()?;
    // Per-CPU values are laid out at 8-byte aligned strides.
    let stride = (map.value_size() as usize).div_ceil(8) * 8;
    let mut keys = vec![0u32; n_keys as usize];
    let mut vals = vec![0u8; n_keys as usize * cpus * stride];
    let mut out_batch = 0u32;
    let mut count = n_keys;
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    // SAFETY: buffers are sized for `count` keys and values of this map.
    let ret = unsafe {
        libbpf_sys::bpf_map_lookup_batch(
            map.as_fd().as_raw_fd(),
            std::ptr::null_mut(),
            (&mut out_batch as *mut u32).cast(),
            keys.as_mut_ptr().cast(),
            vals.as_mut_ptr().cast(),
            &mut count,
            &opts,
        )
    };
    // ENOENT means "that was the last batch"; count is valid then too.
    if (ret != 0 && ret != -libc::ENOENT) || count != n_keys {
        return None;
    }
    let mut out = vec![Vec::new(); n_keys as usize];
    for (i, &k) in keys.iter().enumerate() {
        let per_key = &vals[i * cpus * stride..(i + 1) * cpus * stride];
        out[k as usize] = per_key
            .chunks_exact(stride)
            .filter_map(|b| {
                plain::from_bytes::<T>(&b[..std::mem::size_of::<T>()])
                    .ok()
                    .copied()
            })
            .collect();
    }
    Some(out)
}

/// Every entry of a per-CPU hash: (key, every CPU's copy of its value), read with
/// BPF_MAP_LOOKUP_BATCH a few hundred entries per call where the kernel supports it
/// (5.6+), else key by key. Entries added or deleted meanwhile may or may not be in it.
pub fn hash_entries<K: plain::Plain + Copy, T: plain::Plain + Copy>(
    map: &dyn MapCore,
) -> Result<Vec<(K, Vec<T>)>> {
    if let Some(v) = batch_hash::<K, T>(map) {
        return Ok(v);
    }
    let mut out = Vec::new();
    for k in map.keys() {
        if k.len() < std::mem::size_of::<K>() {
            continue;
        }
        let key: K = plain_prefix(&k);
        let Some(vals) = map
            .lookup_percpu(&k, MapFlags::ANY)
            .with_context(|| format!("reading per-CPU map {}", map.name().to_string_lossy()))?
        else {
            continue;
        };
        out.push((key, vals.iter().map(|v| plain_prefix(v)).collect()));
    }
    Ok(out)
}

/// Entries per BPF_MAP_LOOKUP_BATCH call of [`hash_entries`] (bounds the buffer on
/// machines with many CPUs; a hash bucket never holds that many entries).
const HASH_BATCH: u32 = 256;

fn batch_hash<K: plain::Plain + Copy, T: plain::Plain + Copy>(
    map: &dyn MapCore,
) -> Option<Vec<(K, Vec<T>)>> {
    use std::os::fd::AsRawFd;
    let cpus = libbpf_rs::num_possible_cpus().ok()?;
    let key_size = map.key_size() as usize;
    if key_size < std::mem::size_of::<K>() || std::mem::size_of::<T>() > map.value_size() as usize {
        return None;
    }
    let stride = (map.value_size() as usize).div_ceil(8) * 8;
    let mut keys = vec![0u8; HASH_BATCH as usize * key_size];
    let mut vals = vec![0u8; HASH_BATCH as usize * cpus * stride];
    // The position token (a bucket index for hashes), as big as a key to be safe.
    let mut token_in = vec![0u8; key_size.max(8)];
    let mut token_out = vec![0u8; key_size.max(8)];
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let mut count = HASH_BATCH;
        let in_batch = if first {
            std::ptr::null_mut()
        } else {
            token_in.as_mut_ptr().cast()
        };
        // SAFETY: `keys` and `vals` hold HASH_BATCH keys and per-CPU values of this map;
        // the tokens hold at least a key (the kernel writes a u32 for hashes).
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                map.as_fd().as_raw_fd(),
                in_batch,
                token_out.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                vals.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        // ENOENT: this was the last batch (count entries in it, maybe 0).
        if ret != 0 && ret != -libc::ENOENT {
            return None;
        }
        for i in 0..(count as usize).min(HASH_BATCH as usize) {
            // Copied out: the buffers' bytes are not aligned for K and T.
            let key: K = plain_prefix(&keys[i * key_size..][..key_size]);
            let per_key = &vals[i * cpus * stride..(i + 1) * cpus * stride];
            let v = per_key.chunks_exact(stride).map(plain_prefix).collect();
            out.push((key, v));
        }
        if ret != 0 {
            return Some(out);
        }
        token_in.copy_from_slice(&token_out);
        first = false;
    }
}
