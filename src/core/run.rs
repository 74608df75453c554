// SPDX-License-Identifier: Apache-2.0
//! The two run drivers of the tracing commands: [`stream`] for event streams (a line or
//! record per event), [`aggregate`] for figures kept in the kernel and printed at the end
//! and per interval. A run goes from the system checks ([`Checked`]) and the target's
//! start (a [`Session`]) through the loop, the intervals, Ctrl-C/SIGTERM and the closing
//! record to the exit status; a command gives only its own parts: how it prints an event
//! or a report, and the fields of its closing record.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use libbpf_rs::MapCore;
use serde_json::Value;

use crate::core::event_out::HeadArgs;
use crate::core::losses::Losses;
use crate::core::output::{Output, OutputArgs};
use crate::core::scope::ScopeArgs;
use crate::core::session::{self, Closing, End, IntervalArgs, Session, Step, TraceArgs};
use crate::core::stream::{EventStream, LossWatch, RingArgs};
use crate::core::target;

/// The flags of every event-streaming command: the target, the scope, how event heads
/// are shown, the ring buffer's size.
#[derive(Args, Debug, Clone, Default)]
pub struct EventArgs {
    #[command(flatten)]
    pub trace: TraceArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub heads: HeadArgs,
    #[command(flatten)]
    pub ring: RingArgs,
}

/// The flags of every aggregating command: the target, `-i`, the scope.
#[derive(Args, Debug, Clone, Default)]
pub struct AggregateArgs {
    #[command(flatten)]
    pub trace: TraceArgs,
    #[command(flatten)]
    pub interval: IntervalArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
}

/// Proof that the system checks passed (privileges, BTF, limits: [`preflight`]): the
/// only way to a [`Session`], so no target is started before them.
///
/// [`preflight`]: crate::core::system::preflight
pub struct Checked(());

impl Checked {
    pub fn system() -> Result<Checked> {
        crate::core::system::preflight()?;
        Ok(Checked(()))
    }

    /// The run's start: `-o` opened, the target validated and a `-c` command forked
    /// (held at its gate until everything is attached); `interval` for the commands that
    /// print per interval.
    pub fn start(
        self,
        trace: &TraceArgs,
        sink: &OutputArgs,
        interval: Option<f64>,
    ) -> Result<Session> {
        Session::start(trace, sink, interval, None)
    }

    /// As [`start`](Self::start), with the `-c` command's streams given (the dashboard
    /// gives it /dev/null while it draws on the terminal).
    pub fn start_with_stdio(
        self,
        trace: &TraceArgs,
        sink: &OutputArgs,
        interval: Option<f64>,
        stdio: target::Stdio,
    ) -> Result<Session> {
        Session::start(trace, sink, interval, Some(stdio))
    }
}

/// An event stream, as [`stream`] drives it.
pub struct Events<'a> {
    /// What the `Tracing` line names (e.g. "execs", "tcp_connect via fentry").
    pub tracing: &'a str,
    /// What the closing line names.
    pub what: &'a str,
    /// The hook it attached with, in the closing record.
    pub hook: &'a str,
    /// The column header of text output.
    pub header: &'a str,
    /// What a shown event counts as in the closing record ("events", "transitions").
    pub counted: &'a str,
    /// The tracer's loss counters, watched while it runs.
    pub losses: &'a dyn MapCore,
    /// Its programs, whose runs the kernel skipped count as lost.
    pub programs: &'a libbpf_rs::Object,
}

impl<'a> Events<'a> {
    /// A stream of "events" whose `Tracing` line names `what` too (other values by
    /// struct update: `Events { counted: "transitions", ..Events::new(...) }`).
    pub fn new(
        what: &'a str,
        hook: &'a str,
        header: &'a str,
        losses: &'a dyn MapCore,
        programs: &'a libbpf_rs::Object,
    ) -> Self {
        Events {
            tracing: what,
            what,
            hook,
            header,
            counted: "events",
            losses,
            programs,
        }
    }
}

/// Streams `events` until the run ends: each event goes to `emit`, which prints it and
/// says whether it counted as shown. What follows the events is the command's, then
/// [`Streamed::close`].
pub fn stream<'a, T>(
    session: Session,
    desc: Events<'a>,
    events: &mut EventStream<T>,
    mut emit: impl FnMut(&mut Output, T) -> Result<bool>,
) -> Result<Streamed<'a>> {
    drive_stream(session, desc, |out, wait| {
        events.take_events(wait, |ev| emit(out, ev))
    })
}

/// [`stream`] with each record handed to `emit` as the kernel wrote it (see
/// [`EventStream::drain`]), for decoders that read it in place.
pub fn stream_records<'a, T>(
    session: Session,
    desc: Events<'a>,
    events: &mut EventStream<T>,
    mut emit: impl FnMut(&mut Output, &[u8]) -> Result<bool>,
) -> Result<Streamed<'a>> {
    drive_stream(session, desc, |out, wait| {
        events.take_records(wait, |rec| emit(out, rec))
    })
}

fn drive_stream<'a>(
    mut session: Session,
    desc: Events<'a>,
    take_batch: impl FnMut(&mut Output, Duration) -> Result<(usize, u64)>,
) -> Result<Streamed<'a>> {
    let mut out = session.output();
    if !out.json {
        out.line(desc.header)?;
        out.flush()?;
    }
    session.attached(desc.tracing)?;
    let (end, shown, losses) = stream_loop(
        &mut session,
        &mut out,
        desc.losses,
        desc.programs,
        take_batch,
    )?;
    Ok(Streamed {
        ended: Ended {
            session,
            out,
            end,
            what: desc.what,
            hook: desc.hook,
        },
        counted: (desc.counted, shown),
        losses,
    })
}

/// An event stream that has ended: what the command writes after the events, then its
/// closing record.
pub struct Streamed<'a> {
    ended: Ended<'a>,
    counted: (&'a str, u64),
    losses: Losses,
}

impl Streamed<'_> {
    pub fn out(&mut self) -> &mut Output {
        self.ended.out()
    }

    /// The closing record, with the command's own fields (`specific`, a JSON object);
    /// btrace's exit code.
    pub fn close(self, specific: Value) -> Result<i32> {
        self.ended.close(Ending {
            losses: self.losses,
            specific,
            counted: Some(self.counted),
        })
    }
}

/// How often the loss counters are read while events stream (a few map reads each time).
const LOSS_CHECK_EVERY: Duration = Duration::from_millis(250);
/// After the target exited: how long a quiet ring buffer is waited for, and at most.
const LINGER: Duration = Duration::from_millis(30);
const LINGER_MAX: Duration = Duration::from_millis(500);

/// The loop of every event stream: `take_batch` waits up to the time given for a batch,
/// prints it, and says how many records it had and how many events it showed; output is
/// flushed after each batch; losses are watched while running and read once more at the
/// end, with the runs the kernel skipped of `programs`' programs.
/// Returns how the run ended, the number of events shown, and the final loss counters.
pub(crate) fn stream_loop(
    session: &mut Session,
    out: &mut Output,
    losses_map: &dyn MapCore,
    programs: &libbpf_rs::Object,
    mut take_batch: impl FnMut(&mut Output, Duration) -> Result<(usize, u64)>,
) -> Result<(End, u64, Losses)> {
    let mut watch = LossWatch::default();
    let mut shown = 0u64;
    let mut last_check = Instant::now();
    let mut take = |out: &mut Output, wait: Duration| -> Result<usize> {
        let (n, s) = take_batch(out, wait)?;
        shown += s;
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

/// Which interval a report closes, with `-i`: its number (from 0) and its bounds, in
/// seconds since tracing began and on CLOCK_MONOTONIC (the clock of event timestamps).
pub struct Period {
    pub number: u64,
    pub start_s: f64,
    pub end_s: f64,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The parts of an aggregating command that [`aggregate`] calls while it runs. A closure
/// `FnMut(&mut Output, Option<&Period>) -> Result<()>` is one: it prints the report.
pub trait Report {
    /// Between reports, for at most `wait`: figures kept in the kernel need nothing done,
    /// so the default only waits (and wakes at once on Ctrl-C).
    fn poll(&mut self, wait: Duration) -> Result<()> {
        session::sleep_unless_stopped(wait);
        Ok(())
    }

    /// What accumulated since the last report: at every interval (`period` given with
    /// `-i`) and once at the end.
    fn print(&mut self, out: &mut Output, period: Option<&Period>) -> Result<()>;
}

impl<F: FnMut(&mut Output, Option<&Period>) -> Result<()>> Report for F {
    fn print(&mut self, out: &mut Output, period: Option<&Period>) -> Result<()> {
        self(out, period)
    }
}

/// A [`Report`] that prints nothing per interval nor at the end (the command reports
/// after the run: the stack profiles), only works between: `Polling(|wait| ...)`.
pub struct Polling<F>(pub F);

impl<F: FnMut(Duration) -> Result<()>> Report for Polling<F> {
    fn poll(&mut self, wait: Duration) -> Result<()> {
        (self.0)(wait)
    }

    fn print(&mut self, _: &mut Output, _: Option<&Period>) -> Result<()> {
        Ok(())
    }
}

/// An aggregation, as [`aggregate`] drives it.
pub struct Aggregation<'a> {
    /// What the `Tracing` line names.
    pub tracing: &'a str,
    /// What the closing line names.
    pub what: &'a str,
    /// The hook it attached with, in the closing record.
    pub hook: &'a str,
}

impl<'a> Aggregation<'a> {
    /// An aggregation whose `Tracing` line names `what` too.
    pub fn new(what: &'a str, hook: &'a str) -> Self {
        Aggregation {
            tracing: what,
            what,
            hook,
        }
    }
}

/// Runs an aggregation until the run ends: `report` prints at every interval and once at
/// the end. What follows the last report is the command's, then [`Ended::close`].
pub fn aggregate<'a>(
    mut session: Session,
    desc: Aggregation<'a>,
    mut report: impl Report,
) -> Result<Ended<'a>> {
    let mut out = session.output();
    session.attached(desc.tracing)?;
    let start = session.started();
    let start_ns = crate::core::system::monotonic_ns();
    let mut period = session.interval().map(|_| Period {
        number: 0,
        start_s: 0.0,
        end_s: 0.0,
        start_ns,
        end_ns: start_ns,
    });
    // Closes the current interval at now, prints it, and opens the next one.
    let mut print = |out: &mut Output, report: &mut dyn Report| -> Result<()> {
        if let Some(p) = period.as_mut() {
            p.end_s = start.elapsed().as_secs_f64();
            p.end_ns = crate::core::system::monotonic_ns();
        }
        report.print(out, period.as_ref())?;
        out.flush()?;
        if let Some(p) = period.as_mut() {
            p.number += 1;
            p.start_s = p.end_s;
            p.start_ns = p.end_ns;
        }
        Ok(())
    };
    let end = session.run(|step| match step {
        Step::Poll(wait) => report.poll(wait),
        Step::Interval => print(&mut out, &mut report),
    })?;
    // The last (partial) interval, or the whole run.
    print(&mut out, &mut report)?;
    Ok(Ended {
        session,
        out,
        end,
        what: desc.what,
        hook: desc.hook,
    })
}

/// What a command's closing record carries of its own.
pub struct Ending<'a> {
    pub losses: Losses,
    /// The command's own JSON fields (an object), first in the record.
    pub specific: Value,
    /// How many of what were shown or counted, e.g. ("samples", 1200); None for
    /// histograms.
    pub counted: Option<(&'a str, u64)>,
}

impl Ending<'_> {
    /// The ending of a report that counts nothing shown (histograms).
    pub fn new(losses: Losses, specific: Value) -> Self {
        Ending {
            losses,
            specific,
            counted: None,
        }
    }
}

/// A run whose loop has ended: what the command writes after its results, then its
/// closing record.
pub struct Ended<'a> {
    session: Session,
    out: Output,
    end: End,
    what: &'a str,
    hook: &'a str,
}

impl Ended<'_> {
    /// Where the command writes what follows its results.
    pub fn out(&mut self) -> &mut Output {
        &mut self.out
    }

    /// From here on, text goes to stderr: folded stacks are data for other tools, the
    /// notes and the closing line must not mix with them.
    pub fn notes_to_stderr(&mut self) -> Result<()> {
        self.out.flush()?;
        self.out = Output::stderr();
        Ok(())
    }

    /// The closing record (see [`Session::finish`]); btrace's exit code.
    pub fn close(mut self, ending: Ending<'_>) -> Result<i32> {
        self.session.finish(
            &mut self.out,
            self.end,
            Closing {
                what: self.what,
                hook: self.hook,
                counted: ending.counted,
                losses: ending.losses,
                specific: ending.specific,
            },
        )
    }
}
