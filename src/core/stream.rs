// SPDX-License-Identifier: Apache-2.0
//! Ring-buffer consumption shared by every event-streaming command: libbpf polls the
//! buffer through epoll; decoded events are queued and handed back after each poll, so
//! the command prints them with no borrow of its output held inside libbpf's callback.
//! The stream owns a duplicate of the map's descriptor, so it borrows nothing: a tracer
//! can keep it beside its skeleton for as long as it runs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::raw::{c_int, c_void};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::MapCore;

use crate::core::losses::Losses;
use crate::core::output::Output;
use crate::core::session::{End, Session, Step};

type Decode<T> = Box<dyn Fn(&[u8]) -> Option<T>>;

/// Records taken from the ring buffer per poll: enough that a batch amortizes a poll's
/// syscalls, few enough that the run loop sees its deadline and signals often.
pub const BATCH: usize = 4096;

/// Where libbpf's callback puts decoded events (its address is the callback's context).
struct Sink<T> {
    decode: Decode<T>,
    queue: Vec<T>,
}

pub struct EventStream<T> {
    rb: NonNull<libbpf_sys::ring_buffer>,
    sink: Box<Sink<T>>,
    /// The descriptor libbpf mapped and polls; closed after the ring buffer is freed.
    _map_fd: OwnedFd,
}

/// libbpf's per-record callback: decode and queue.
unsafe extern "C" fn on_record<T>(
    ctx: *mut c_void,
    data: *mut c_void,
    size: libbpf_sys::size_t,
) -> c_int {
    // SAFETY: ctx is the Sink<T> registered in EventStream::new, alive and not otherwise
    // borrowed while poll() (which holds &mut EventStream) runs the callbacks; data points
    // at `size` readable bytes of the record for the duration of the call.
    let (sink, record) = unsafe {
        (
            &mut *(ctx as *mut Sink<T>),
            std::slice::from_raw_parts(data as *const u8, size as usize),
        )
    };
    if let Some(ev) = (sink.decode)(record) {
        sink.queue.push(ev);
    }
    0
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
            decode: Box::new(decode) as Decode<T>,
            queue: Vec::new(),
        });
        let ctx = &mut *sink as *mut Sink<T> as *mut c_void;
        // SAFETY: fd is a ring buffer map descriptor kept open as long as the ring buffer
        // (dropped after it); ctx stays valid as long as `sink`'s box, which the stream owns.
        let rb = unsafe {
            libbpf_sys::ring_buffer__new(
                fd.as_raw_fd(),
                Some(on_record::<T>),
                ctx,
                std::ptr::null(),
            )
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
        if self.consume()? == 0 && !timeout.is_zero() {
            let ms = timeout.as_millis().min(i32::MAX as u128) as c_int;
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
            } else if rc > 0 {
                self.consume()?;
            }
        }
        Ok(std::mem::take(&mut self.sink.queue))
    }

    /// The events already waiting, without waiting, up to about `max` (whole batches):
    /// for owners that call it on a timer and do not otherwise block.
    pub fn take_ready(&mut self, max: usize) -> Result<Vec<T>> {
        let mut taken = 0;
        while taken < max {
            let n = self.consume()?;
            taken += n;
            if n < BATCH {
                break;
            }
        }
        Ok(std::mem::take(&mut self.sink.queue))
    }

    /// Takes up to [`BATCH`] records into the queue; how many.
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

/// How often the loss counters are read while events stream (a few map reads each time).
const LOSS_CHECK_EVERY: Duration = Duration::from_millis(250);
/// After the target exited: how long a quiet ring buffer is waited for, and at most.
const LINGER: Duration = Duration::from_millis(30);
const LINGER_MAX: Duration = Duration::from_millis(500);

/// The run loop of every event-streaming command: each event goes to `emit`, which
/// prints it and says whether it counted as shown; output is flushed after each batch;
/// losses are watched while running and read once more at the end, with the runs the
/// kernel skipped of `programs`' programs.
/// Returns how the run ended, the number of events shown, and the final loss counters.
pub fn pump<T>(
    session: &mut Session,
    stream: &mut EventStream<T>,
    out: &mut Output,
    losses_map: &dyn MapCore,
    programs: &libbpf_rs::Object,
    mut emit: impl FnMut(&mut Output, T) -> Result<bool>,
) -> Result<(End, u64, Losses)> {
    let mut watch = LossWatch::default();
    let mut shown = 0u64;
    let mut last_check = Instant::now();
    let mut take = |out: &mut Output, wait: Duration| -> Result<usize> {
        let events = stream.poll(wait)?;
        let n = events.len();
        for ev in events {
            if emit(out, ev)? {
                shown += 1;
            }
        }
        out.flush()?;
        Ok(n)
    };
    let end = session.run(|step| {
        if let Step::Poll(wait) = step {
            take(out, wait)?;
            if last_check.elapsed() >= LOSS_CHECK_EVERY {
                watch.check(losses_map, out.json)?;
                last_check = Instant::now();
            }
        }
        Ok(())
    })?;
    // What the target set in motion may still be on its way: a connection closed by a
    // process that has just exited finishes in softirq. Take events until a short wait
    // brings none.
    if end == End::TargetExited {
        let until = Instant::now() + LINGER_MAX;
        while take(out, LINGER)? > 0 && Instant::now() < until {}
    }
    let losses = watch.check(losses_map, out.json)?.with_missed(programs)?;
    Ok((end, shown, losses))
}
