//! Ring-buffer consumption shared by every event-streaming command: libbpf polls the
//! buffers through epoll; decoded events are queued and handed back after each poll, so
//! the command prints them with no borrow of its output held inside libbpf's callback.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, RingBuffer, RingBufferBuilder};

use crate::output::Output;
use crate::percpu::Losses;
use crate::session::{End, Session, Step};

pub struct EventStream<'a, T> {
    rb: RingBuffer<'a>,
    queue: Rc<RefCell<Vec<T>>>,
}

impl<'a, T: 'a> EventStream<'a, T> {
    /// Consumes the ring buffer `map`; `decode` turns one record into an event (None
    /// skips it, e.g. a record too short for its struct).
    pub fn new(map: &'a dyn MapCore, decode: impl Fn(&[u8]) -> Option<T> + 'a) -> Result<Self> {
        let queue = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&queue);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(map, move |data: &[u8]| {
                if let Some(ev) = decode(data) {
                    sink.borrow_mut().push(ev);
                }
                0
            })
            .context("setting up the ring buffer")?;
        let rb = builder.build().context("setting up the ring buffer")?;
        Ok(EventStream { rb, queue })
    }

    /// Waits up to `timeout` for events and returns all that arrived. An interrupted
    /// wait (a signal) is not an error: the caller's loop checks why it woke.
    pub fn poll(&self, timeout: Duration) -> Result<Vec<T>> {
        let rc = self.rb.poll_raw(timeout);
        if rc < 0 && rc != -libc::EINTR {
            return Err(std::io::Error::from_raw_os_error(-rc)).context("polling the ring buffer");
        }
        Ok(std::mem::take(&mut *self.queue.borrow_mut()))
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
                "btrace: dropped {} records: a bounded map was full",
                now.map_full - self.reported.map_full
            );
        }
        self.reported = now;
        Ok(now)
    }
}

/// How often the loss counters are read while events stream (a few map reads each time).
const LOSS_CHECK_EVERY: Duration = Duration::from_millis(250);

/// The run loop of every event-streaming command: each event goes to `emit`, which
/// prints it and says whether it counted as shown; output is flushed after each batch;
/// losses are watched while running and read once more at the end.
/// Returns how the run ended, the number of events shown, and the final loss counters.
pub fn pump<T>(
    session: &mut Session,
    stream: &EventStream<'_, T>,
    out: &mut Output,
    losses_map: &dyn MapCore,
    mut emit: impl FnMut(&mut Output, T) -> Result<bool>,
) -> Result<(End, u64, Losses)> {
    let mut watch = LossWatch::default();
    let mut shown = 0u64;
    let mut last_check = Instant::now();
    let end = session.run(|step| {
        if let Step::Poll(wait) = step {
            for ev in stream.poll(wait)? {
                if emit(out, ev)? {
                    shown += 1;
                }
            }
            out.flush()?;
            if last_check.elapsed() >= LOSS_CHECK_EVERY {
                watch.check(losses_map, out.json)?;
                last_check = Instant::now();
            }
        }
        Ok(())
    })?;
    let losses = watch.check(losses_map, out.json)?;
    Ok((end, shown, losses))
}
