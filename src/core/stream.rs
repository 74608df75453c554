// SPDX-License-Identifier: Apache-2.0
//! Ring-buffer consumption shared by every event-streaming command: libbpf polls the
//! buffer through epoll; each poll copies the records waiting (at most [`BATCH`]) into
//! one reused, 8-aligned arena, and the command takes them from there after the poll, so
//! it prints them with no borrow of its output held inside libbpf's callback and with no
//! allocation per record. Records can be taken as raw bytes ([`EventStream::drain`]) or
//! decoded into the stream's event type ([`EventStream::poll`]).
//! The stream owns a duplicate of the map's descriptor, so it borrows nothing: a tracer
//! can keep it beside its skeleton for as long as it runs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::raw::{c_int, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use libbpf_rs::MapCore;

use crate::core::losses::Losses;

type Decode<T> = Box<dyn Fn(&[u8]) -> Option<T>>;

/// Records taken from the ring buffer per poll: enough that a batch amortizes a poll's
/// syscalls, few enough that the run loop sees its deadline and signals often.
pub const BATCH: usize = 4096;

/// `--buffer-size`, on every event-streaming command.
#[derive(Args, Debug, Clone, Default)]
pub struct RingArgs {
    /// Size of the ring buffer between the kernel and btrace, in bytes (K, M, G suffixes:
    /// powers of 1024), rounded up to a power of two of pages; a bigger one absorbs
    /// longer bursts before events are lost [default: 4M; exec 8M, tcp 1M]
    #[arg(long, value_name = "BYTES", value_parser = buffer_size)]
    pub buffer_size: Option<u32>,
}

/// The ring buffer's size when `--buffer-size` is not given (chosen with the
/// tracepoint throughput bench: 4 MiB holds some 50 ms of events at a million a second,
/// which absorbs the consumer's scheduling gaps on a loaded machine).
pub const RINGBUF_DEFAULT: u32 = 4 << 20;
/// The largest ring buffer accepted: the kernel's limit is a little under 4 GiB; 1 GiB
/// is already more memory than a tracer should pin.
pub const RINGBUF_MAX: u64 = 1 << 30;

impl RingArgs {
    /// The ring buffer's size in bytes: a power of two, at least a page.
    pub fn bytes(&self) -> u32 {
        self.bytes_or(RINGBUF_DEFAULT)
    }

    /// The same, for a command whose own default differs.
    pub fn bytes_or(&self, default: u32) -> u32 {
        self.buffer_size.unwrap_or(default)
    }
}

/// Refuses a ring buffer of `ring_bytes` that cannot hold one record of `record` bytes
/// (the command's largest, from its skeleton's types) with the kernel's 8-byte header:
/// every event would be lost (`--buffer-size 4K` with exec's 10 KB records).
pub fn check_ring_fits(ring_bytes: u32, record: usize) -> anyhow::Result<()> {
    let need = (record as u64 + 8).next_multiple_of(8);
    if u64::from(ring_bytes) >= need {
        return Ok(());
    }
    let page = crate::core::system::page_size() as u64;
    let min = need.max(page).next_power_of_two();
    anyhow::bail!(
        "--buffer-size {}: one event of this command takes up to {need} bytes (with its 8-byte header), which does not fit, so every event would be lost; give --buffer-size {} or more",
        size_text(ring_bytes.into()),
        size_text(min)
    )
}

/// A ring buffer size as --buffer-size takes it: `4K`, `8M`, or bytes.
fn size_text(b: u64) -> String {
    if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{}M", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{}K", b >> 10)
    } else {
        b.to_string()
    }
}

/// How often at most a kernel side that batches its wakeups (ringbuf.h) wakes the
/// consumer for a record that did not fill the ring to [`wake_bytes`]: a lone event is
/// shown at once, and a flood costs at most a thousand wakeups a second.
pub const WAKE_GAP_NS: u64 = 1_000_000;

/// The unread bytes at which a kernel side that batches its wakeups (ringbuf.h,
/// `rb_wake_bytes`) wakes the consumer of a ring buffer of `ring_bytes`: a sixteenth of
/// it, so a woken consumer still has nearly the whole ring to catch up in. Below that,
/// records wait for the consumer's next poll, at most [`WAIT_AT_MOST`].
pub fn wake_bytes(ring_bytes: u32) -> u64 {
    (ring_bytes / 16).max(1) as u64
}

/// `--buffer-size`: bytes with an optional K/M/G suffix, rounded up to a power of two of
/// pages.
pub fn buffer_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let mult: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => {
            return Err(format!(
                "'{s}' is not a size in bytes (e.g. 4M, 512K, 65536)"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size in bytes (e.g. 4M, 512K, 65536)"))?;
    let bytes = n.saturating_mul(mult);
    if bytes == 0 {
        return Err("the buffer size must be more than 0".into());
    }
    let page = crate::core::system::page_size() as u64;
    let rounded = bytes
        .max(page)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX);
    if rounded > RINGBUF_MAX {
        return Err(format!("'{s}' is too big: at most 1G"));
    }
    Ok(rounded as u32)
}

/// The longest wait on the ring buffer: a kernel side that batches its wakeups
/// (ringbuf.h) leaves a lone record unannounced, and this bounds how late it is shown.
pub const WAIT_AT_MOST: Duration = Duration::from_millis(50);

/// Where libbpf's callback copies the records of one poll: each starts on an 8-byte
/// boundary of `arena` (so the task header can be read in place), its word offset and
/// byte length in `spans`.
struct Sink {
    arena: Vec<u64>,
    spans: Vec<(usize, usize)>,
}

impl Sink {
    fn clear(&mut self) {
        self.arena.clear();
        self.spans.clear();
    }

    fn record(&self, i: usize) -> &[u8] {
        let (at, len) = self.spans[i];
        let words = &self.arena[at..at + len.div_ceil(8)];
        // SAFETY: `words` is an initialized slice of at least `len` bytes (len.div_ceil(8)
        // words); u8 has no alignment or validity requirement.
        unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, len) }
    }

    fn len(&self) -> usize {
        self.spans.len()
    }
}

pub struct EventStream<T> {
    rb: NonNull<libbpf_sys::ring_buffer>,
    sink: Box<Sink>,
    decode: Decode<T>,
    /// The descriptor libbpf mapped and polls; closed after the ring buffer is freed.
    _map_fd: OwnedFd,
}

/// libbpf's per-record callback: copy the record into the arena.
unsafe extern "C" fn on_record(
    ctx: *mut c_void,
    data: *mut c_void,
    size: libbpf_sys::size_t,
) -> c_int {
    // SAFETY: ctx is the Sink registered in EventStream::new, alive and not otherwise
    // borrowed while consume() (which holds &mut EventStream) runs the callbacks; data
    // points at `size` readable bytes of the record for the duration of the call.
    let (sink, record) = unsafe {
        (
            &mut *(ctx as *mut Sink),
            std::slice::from_raw_parts(data as *const u8, size as usize),
        )
    };
    let at = sink.arena.len();
    sink.arena.resize(at + record.len().div_ceil(8), 0);
    // SAFETY: the arena was just grown by at least record.len() bytes from word `at`;
    // the record is libbpf's memory, not the arena's, so the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            record.as_ptr(),
            sink.arena.as_mut_ptr().add(at) as *mut u8,
            record.len(),
        )
    };
    sink.spans.push((at, record.len()));
    0
}

impl EventStream<()> {
    /// Consumes the ring buffer `map` as raw records only ([`drain`](Self::drain)).
    pub fn raw(map: &dyn MapCore) -> Result<Self> {
        EventStream::new(map, |_| Some(()))
    }
}

impl<T> EventStream<T> {
    /// Consumes the ring buffer `map`; `decode` turns one record into an event (None
    /// skips it, e.g. a record too short for its struct).
    pub fn new(map: &dyn MapCore, decode: impl Fn(&[u8]) -> Option<T> + 'static) -> Result<Self> {
        let fd = map
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the ring buffer's descriptor")?;
        let mut sink = Box::new(Sink {
            arena: Vec::new(),
            spans: Vec::new(),
        });
        let ctx = &mut *sink as *mut Sink as *mut c_void;
        // SAFETY: fd is a ring buffer map descriptor kept open as long as the ring buffer
        // (dropped after it); ctx stays valid as long as `sink`'s box, which the stream owns.
        let rb = unsafe {
            libbpf_sys::ring_buffer__new(fd.as_raw_fd(), Some(on_record), ctx, std::ptr::null())
        };
        let Some(rb) = NonNull::new(rb) else {
            bail!(
                "setting up the ring buffer: {}",
                std::io::Error::last_os_error()
            );
        };
        Ok(EventStream {
            rb,
            sink,
            decode: Box::new(decode),
            _map_fd: fd,
        })
    }

    /// Returns the events waiting, at most [`BATCH`], or waits up to `timeout` for some
    /// when there are none. Bounded so that a producer faster than the consumer (a probe
    /// on a function every syscall calls, printing included) never keeps the caller away
    /// from its deadline and signals, nor queues without bound in memory: libbpf's own
    /// poll consumes for as long as records keep coming. An interrupted wait (a signal)
    /// is not an error: the caller's loop checks why it woke.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<T>> {
        let mut events = Vec::new();
        self.wait_and_consume(timeout)?;
        self.decode_into(&mut events);
        Ok(events)
    }

    /// As [`poll`](Self::poll), with each record handed to `f` as the kernel wrote it, in
    /// place; how many records there were.
    pub fn drain(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<usize> {
        self.wait_and_consume(timeout)?;
        for i in 0..self.sink.len() {
            f(self.sink.record(i))?;
        }
        Ok(self.sink.len())
    }

    /// The events already waiting, without waiting, up to about `max` (whole batches):
    /// for owners that call it on a timer and do not otherwise block.
    pub fn take_ready(&mut self, max: usize) -> Result<Vec<T>> {
        let mut events = Vec::new();
        let mut taken = 0;
        while taken < max {
            self.sink.clear();
            let n = self.consume()?;
            self.decode_into(&mut events);
            taken += n;
            if n < BATCH {
                break;
            }
        }
        Ok(events)
    }

    /// Waits up to `timeout` for a batch (as [`poll`](Self::poll)) and hands each of its
    /// events to `f`, which says whether it showed it; how many records the batch had
    /// and how many events were shown.
    pub fn take_events(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(T) -> Result<bool>,
    ) -> Result<(usize, u64)> {
        self.wait_and_consume(timeout)?;
        let mut shown = 0;
        for i in 0..self.sink.len() {
            if let Some(ev) = (self.decode)(self.sink.record(i)) {
                shown += u64::from(f(ev)?);
            }
        }
        Ok((self.sink.len(), shown))
    }

    /// As [`take_events`](Self::take_events), with each record as the kernel wrote it,
    /// in place (see [`drain`](Self::drain)).
    pub fn take_records(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&[u8]) -> Result<bool>,
    ) -> Result<(usize, u64)> {
        let mut shown = 0;
        let n = self.drain(timeout, |rec| {
            shown += u64::from(f(rec)?);
            Ok(())
        })?;
        Ok((n, shown))
    }

    fn decode_into(&self, events: &mut Vec<T>) {
        events.extend((0..self.sink.len()).filter_map(|i| (self.decode)(self.sink.record(i))));
    }

    /// Empties the arena and fills it with the records waiting or, when there are none,
    /// with those that come within `timeout`.
    fn wait_and_consume(&mut self, timeout: Duration) -> Result<()> {
        self.sink.clear();
        if self.consume()? == 0 && !timeout.is_zero() {
            let ms = timeout.min(WAIT_AT_MOST).as_millis().min(i32::MAX as u128) as c_int;
            let mut ready = [libc::epoll_event { events: 0, u64: 0 }];
            // SAFETY: rb is the live ring buffer made in new(); its epoll descriptor lives
            // as long as it; `ready` has room for the one event asked for.
            let rc = unsafe {
                libc::epoll_wait(
                    libbpf_sys::ring_buffer__epoll_fd(self.rb.as_ptr()),
                    ready.as_mut_ptr(),
                    1,
                    ms,
                )
            };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(e).context("waiting on the ring buffer");
                }
            }
            // Woken or not: records submitted without a wakeup (ringbuf.h) are taken
            // when the wait ends.
            self.consume()?;
        }
        Ok(())
    }

    /// Appends up to [`BATCH`] records to the arena; how many.
    fn consume(&mut self) -> Result<usize> {
        // SAFETY: rb is the live ring buffer made in new(); the callbacks it runs use the
        // sink, which nothing else borrows during this call (&mut self).
        let rc = unsafe { libbpf_sys::ring_buffer__consume_n(self.rb.as_ptr(), BATCH as _) };
        if rc < 0 {
            return Err(std::io::Error::from_raw_os_error(-rc)).context("reading the ring buffer");
        }
        Ok(rc as usize)
    }
}

impl<T> Drop for EventStream<T> {
    fn drop(&mut self) {
        // SAFETY: made by ring_buffer__new, freed once; the fd closes afterwards.
        unsafe { libbpf_sys::ring_buffer__free(self.rb.as_ptr()) };
    }
}

/// Watches a tracer's loss counters and, in text mode, says on stderr when events were
/// lost since the last check (JSON reports them in the summary).
#[derive(Default)]
pub struct LossWatch {
    reported: Losses,
}

impl LossWatch {
    pub fn check(&mut self, losses_map: &dyn MapCore, json: bool) -> Result<Losses> {
        let now = Losses::read(losses_map)?;
        if !json && now.ringbuf > self.reported.ringbuf {
            eprintln!(
                "btrace: lost {} events: ring buffer full (user space fell behind)",
                now.ringbuf - self.reported.ringbuf
            );
        }
        if !json && now.map_full > self.reported.map_full {
            eprintln!(
                "btrace: lost {} records: a bounded store was full",
                now.map_full - self.reported.map_full
            );
        }
        self.reported = now;
        Ok(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_sizes_round_up_to_a_power_of_two_of_pages() {
        let page = crate::core::system::page_size() as u32;
        assert_eq!(buffer_size("1"), Ok(page));
        assert_eq!(buffer_size("4096"), Ok(4096.max(page)));
        assert_eq!(buffer_size("5K"), Ok((8 << 10).max(page)));
        assert_eq!(buffer_size("4M"), Ok(4 << 20));
        assert_eq!(buffer_size("3MiB"), Ok(4 << 20));
        assert_eq!(buffer_size("1g"), Ok(1 << 30));
        assert!(buffer_size("0").is_err());
        assert!(buffer_size("1025M").is_err());
        assert!(buffer_size("99999999999999999999").is_err());
        assert!(buffer_size("M").is_err());
        assert!(buffer_size("-4K").is_err());
        assert_eq!(wake_bytes(4 << 20), 256 << 10);
    }
}
