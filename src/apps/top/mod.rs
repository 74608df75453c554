// SPDX-License-Identifier: Apache-2.0
//! `btrace top`: a live dashboard of several tracers at once, with probe groups switched
//! off and on at run time. In a terminal it draws panels (ratatui on crossterm); without
//! one (`--json`, or stdout not a TTY) it prints one JSON snapshot per interval.

mod conns;
mod groups;
mod snapshot;
#[cfg(test)]
mod tests;
mod ui;

use std::io::{IsTerminal, Stdout};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::crossterm::{cursor, execute};
use ratatui::Terminal;
use serde_json::json;

use crate::core::output::{Output, OutputArgs};
use crate::core::run::Checked;
use crate::core::runstats;
use crate::core::session::{self, End, IntervalArgs, Session, Step, TraceArgs};
use crate::core::target;
use crate::tracers::LiveFilter;

use groups::Groups;
use snapshot::{Sampler, Snapshot};
use ui::{Prompt, PromptKind, View};

#[derive(Args, Debug, Clone)]
pub struct TopArgs {
    /// -p sets the initial pid filter (and ends the dashboard when that process exits)
    #[command(flatten)]
    pub common: TraceArgs,
    /// The refresh interval (default 1 s)
    #[command(flatten)]
    pub interval: IntervalArgs,
    /// Start with this TCP port filter (either end of a connection); `f` changes it
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
}

const DEFAULT_INTERVAL_S: f64 = 1.0;

pub fn run(args: TopArgs, sink: &OutputArgs) -> Result<i32> {
    let checked = Checked::system()?;
    let mut sink = sink.clone();
    // Without a terminal to draw on (or with -o), the dashboard writes JSON snapshots.
    sink.json |= sink.output.is_some() || !std::io::stdout().is_terminal();
    let interval = args.interval.interval.unwrap_or(DEFAULT_INTERVAL_S);
    let mut session = if sink.json {
        checked.start(&args.common, &sink, Some(interval))?
    } else {
        // The dashboard owns the terminal: keys are its own, and the screen is drawn by
        // it alone, so a -c command gets /dev/null for its standard streams.
        checked.start_with_stdio(&args.common, &sink, Some(interval), target::Stdio::Null)?
    };
    let mut groups = Groups::load(LiveFilter {
        pid: session.tgid(),
        port: args.port,
        cgroup: None,
    })?;
    // Without run-time statistics the probes panel shows no run figures ("-").
    let stats = runstats::RunStats::enable().ok();
    let mut sampler = Sampler::new(&groups, stats.is_some())?;
    // Say what is off and why before the Tracing line, which names only what runs.
    for g in &groups.groups {
        if let Some(why) = &g.unavailable {
            eprintln!("btrace: top: the {} group is off: {why}", g.name);
        }
    }
    let on: Vec<&str> = groups
        .groups
        .iter()
        .filter(|g| g.tracer.is_some())
        .map(|g| g.name)
        .collect();
    session.attached(&on.join(", "))?;
    if sink.json {
        let out = session.output();
        run_json(&mut session, &mut groups, &mut sampler, out)?;
    } else {
        run_tui(&mut session, &mut groups, &mut sampler)?;
    }
    Ok(session.exit_code())
}

fn run_json(
    session: &mut Session,
    groups: &mut Groups,
    sampler: &mut Sampler,
    mut out: Output,
) -> Result<()> {
    let end = session.run(|step| {
        match step {
            Step::Poll(wait) => {
                std::thread::sleep(wait);
                sampler.drain(groups)?;
            }
            Step::Interval => {
                out.record(&sampler.sample(groups)?.to_json())?;
                out.flush()?;
            }
        }
        Ok(())
    })?;
    // The partial last interval, so the totals cover the whole run.
    out.record(&sampler.sample(groups)?.to_json())?;
    out.record(&summary(session, groups, end)?)?;
    out.flush()?;
    Ok(())
}

/// The closing record: per group, the hook it attached with and what it lost.
fn summary(session: &Session, groups: &Groups, end: End) -> Result<serde_json::Value> {
    let mut hooks = serde_json::Map::new();
    let mut lost = serde_json::Map::new();
    for g in &groups.groups {
        hooks.insert(g.name.into(), g.hook().into());
        lost.insert(g.name.into(), g.losses()?.to_json());
    }
    Ok(session.summary(end, json!({"hooks": hooks, "lost": lost})))
}

/// True while the terminal is in raw mode on the alternate screen.
static ON_SCREEN: AtomicBool = AtomicBool::new(false);

/// Gives the terminal back (cooked mode, main screen, cursor shown), once: leaving the
/// alternate screen twice would move the cursor back over what was printed since.
fn leave_screen() {
    if ON_SCREEN.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

/// The terminal in raw mode on the alternate screen, restored when dropped (also on an
/// error) and by a panic hook, which runs before the message is printed and before the
/// release profile's abort.
struct Screen {
    term: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn new() -> Result<Screen> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                leave_screen();
                previous(info);
            }));
        });
        ON_SCREEN.store(true, Ordering::SeqCst);
        let setup = terminal::enable_raw_mode()
            .and_then(|_| execute!(std::io::stdout(), EnterAlternateScreen))
            .and_then(|_| Terminal::new(CrosstermBackend::new(std::io::stdout())));
        match setup {
            Ok(term) => Ok(Screen { term }),
            Err(e) => {
                leave_screen();
                Err(e).context("setting up the terminal")
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        leave_screen();
    }
}

fn run_tui(session: &mut Session, groups: &mut Groups, sampler: &mut Sampler) -> Result<()> {
    let mut screen = Screen::new()?;
    let mut view = View {
        kernel: crate::core::system::kernel_release(),
        ..Default::default()
    };
    let mut snap: Option<Snapshot> = None;
    // Test hook (`testing` builds only): makes the dashboard panic after its first
    // refresh, so a test can check that the terminal is restored even then.
    #[cfg(feature = "testing")]
    let panic_for_test = std::env::var_os("BTRACE_TOP_TEST_PANIC").is_some();
    screen.term.draw(|f| ui::draw(f, None, &view))?;
    session.run(|step| {
        match step {
            Step::Poll(wait) => {
                match terminal_input(wait)? {
                    Input::Idle => {
                        sampler.drain(groups)?;
                        return Ok(());
                    }
                    Input::Gone => {
                        // Nobody to draw for (the terminal was closed): end quietly.
                        session::request_stop();
                        return Ok(());
                    }
                    Input::Ready => {}
                }
                while event::poll(Duration::ZERO)? {
                    if let Event::Key(k) = event::read()? {
                        on_key(k, &mut view, groups, sampler, &mut snap);
                    }
                }
            }
            Step::Interval => {
                snap = Some(sampler.sample(groups)?);
                #[cfg(feature = "testing")]
                if panic_for_test {
                    panic!("BTRACE_TOP_TEST_PANIC is set");
                }
            }
        }
        screen.term.draw(|f| ui::draw(f, snap.as_ref(), &view))?;
        Ok(())
    })?;
    Ok(())
}

enum Input {
    Idle,
    Ready,
    Gone,
}

/// Waits for keyboard input. A terminal that went away (hung up, or readable with
/// nothing to read: end of file) is reported rather than handed to crossterm, whose
/// reader would spin on the endless end-of-file.
fn terminal_input(wait: Duration) -> Result<Input> {
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let ms = wait.as_millis().min(i32::MAX as u128) as i32;
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(0) | Err(Errno::EINTR) => Ok(Input::Idle),
        Ok(_) => {
            let ev = fds[0].revents().unwrap_or(PollFlags::empty());
            if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
                || bytes_waiting(&stdin) == Some(0)
            {
                Ok(Input::Gone)
            } else {
                Ok(Input::Ready)
            }
        }
        Err(e) => Err(e).context("waiting for keyboard input"),
    }
}

/// Bytes a readable terminal holds; 0 when "readable" means end of file (or an error:
/// EIO once the terminal is gone).
fn bytes_waiting(stdin: &std::io::Stdin) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`.
    let rc = unsafe { libc::ioctl(stdin.as_raw_fd(), libc::FIONREAD, &mut n) };
    Some(if rc < 0 { 0 } else { n })
}

fn on_key(
    k: KeyEvent,
    view: &mut View,
    groups: &mut Groups,
    sampler: &mut Sampler,
    snap: &mut Option<Snapshot>,
) {
    if k.kind != KeyEventKind::Press {
        return;
    }
    view.message = None;
    if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
        session::request_stop();
        return;
    }
    if let Some(prompt) = view.prompt.as_mut() {
        match k.code {
            KeyCode::Char(c) if c.is_ascii_digit() && prompt.text.len() < 10 => prompt.text.push(c),
            KeyCode::Char(c)
                if prompt.what == PromptKind::Cgroup
                    && !c.is_control()
                    && prompt.text.len() < 4096 =>
            {
                prompt.text.push(c)
            }
            KeyCode::Backspace => {
                prompt.text.pop();
            }
            KeyCode::Esc => view.prompt = None,
            KeyCode::Enter => {
                let p = view.prompt.take().expect("prompt is open");
                apply_prompt(p, view, groups);
            }
            _ => {}
        }
    } else if view.help {
        view.help = false;
    } else {
        match k.code {
            KeyCode::Char('q') | KeyCode::Esc => session::request_stop(),
            KeyCode::Char('?') => view.help = true,
            KeyCode::Char('p') => view.prompt = Some(Prompt::new(PromptKind::Pid, groups.filter())),
            KeyCode::Char('f') => {
                view.prompt = Some(Prompt::new(PromptKind::Port, groups.filter()))
            }
            KeyCode::Char('c') => view.by_cgroup = !view.by_cgroup,
            KeyCode::Char('g') => {
                view.prompt = Some(Prompt::new(PromptKind::Cgroup, groups.filter()))
            }
            KeyCode::Up | KeyCode::Char('k') => ui::move_selection(view, snap.as_ref(), false),
            KeyCode::Down | KeyCode::Char('j') => ui::move_selection(view, snap.as_ref(), true),
            KeyCode::Char(c) => {
                if let Some(g) = groups.by_key(c) {
                    let (name, was_on) = (g.name, g.attached());
                    match groups.toggle(c) {
                        Err(e) => view.message = Some(format!("{name}: {e:#}")),
                        Ok(()) if !was_on && name == "tcp" => sampler.tcp_reattached(),
                        Ok(()) => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(s) = snap.as_mut() {
        s.refresh_groups(groups);
    }
}

fn apply_prompt(p: Prompt, view: &mut View, groups: &mut Groups) {
    let mut filter = groups.filter().clone();
    match (p.what, p.text.as_str()) {
        (PromptKind::Pid, "") => filter.pid = None,
        (PromptKind::Port, "") => filter.port = None,
        (PromptKind::Cgroup, "") => filter.cgroup = None,
        (PromptKind::Cgroup, t) => match crate::core::scope::LiveCgroup::resolve(t) {
            Ok((c, _)) => filter.cgroup = Some(c.path.display().to_string()),
            Err(e) => {
                view.message = Some(format!("{e:#}"));
                return;
            }
        },
        (PromptKind::Pid, t) => match t.parse::<u32>() {
            Ok(pid) if pid > 0 => filter.pid = Some(pid),
            _ => {
                view.message = Some(format!("not a pid: {t}"));
                return;
            }
        },
        (PromptKind::Port, t) => match t.parse::<u16>() {
            Ok(port) if port > 0 => filter.port = Some(port),
            _ => {
                view.message = Some(format!("not a port (1-65535): {t}"));
                return;
            }
        },
    }
    let result = groups.set_filter(filter);
    if let Err(e) = result {
        view.message = Some(format!("{e:#}"));
    }
}
