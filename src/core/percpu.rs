// SPDX-License-Identifier: Apache-2.0
//! Reading per-CPU maps: one value per possible CPU, summed in user space.

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

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
