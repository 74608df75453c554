// SPDX-License-Identifier: Apache-2.0
//! Drawing the dashboard: one frame from the last `Snapshot` and the view state.

use crate::model::bytes::escape_text;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table};
use ratatui::Frame;

use crate::model::histogram::Log2Hist;
use crate::model::units::fmt_ns;
use crate::tracers::LiveFilter;

use super::snapshot::{ProbeFigures, Snapshot};

/// A line being typed at the bottom (the `p`, `f` and `g` prompts).
pub struct Prompt {
    pub what: PromptKind,
    pub text: String,
}

impl Prompt {
    /// The prompt for one of the dashboard's filters, its text the filter's current value
    /// (empty when it is off).
    pub fn new(what: PromptKind, filter: &LiveFilter) -> Prompt {
        let current = match what {
            PromptKind::Pid => filter.pid.map(|p| p.to_string()),
            PromptKind::Port => filter.port.map(|p| p.to_string()),
            PromptKind::Cgroup => filter.cgroup.clone(),
        };
        Prompt {
            what,
            text: current.unwrap_or_default(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Pid,
    Port,
    Cgroup,
}

/// What the person chose to look at, kept between refreshes.
#[derive(Default)]
pub struct View {
    /// The syscall whose histogram is shown (by name, so it survives re-sorting).
    pub selected: Option<String>,
    pub help: bool,
    /// The process table summed by cgroup (`c`).
    pub by_cgroup: bool,
    pub prompt: Option<Prompt>,
    /// A one-line message (e.g. a bad pid), shown until the next key.
    pub message: Option<String>,
    pub kernel: String,
}

const HELP: &[(&str, &str)] = &[
    (
        "1 / 2 / 3",
        "switch the syscalls / tcp / runq probes off or on (detach / attach)",
    ),
    (
        "up/down, j/k",
        "select the syscall whose histogram is shown",
    ),
    ("p", "set or clear the pid filter (empty clears)"),
    ("c", "the process table by process or summed by cgroup"),
    ("f", "set or clear the TCP port filter (empty clears)"),
    (
        "g",
        "set or clear the cgroup filter: a cgroup v2 path or id, its descendants included (empty clears)",
    ),
    ("?", "this help"),
    ("q, Esc, Ctrl-C", "quit"),
];

pub fn draw(f: &mut Frame, snap: Option<&Snapshot>, view: &View) {
    let [header, lists, hists, tcp, probes, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(11),
        Constraint::Length(12),
        Constraint::Length(7),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(header_line(snap, view)), header);
    let [sys, procs] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(lists);
    let [sel_hist, runq] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(hists);
    match snap {
        Some(s) => {
            draw_syscalls(f, sys, s, view);
            if view.by_cgroup {
                draw_cgroups(f, procs, s);
            } else {
                draw_processes(f, procs, s);
            }
            draw_selected_hist(f, sel_hist, s, view);
            draw_runq(f, runq, s);
            draw_tcp(f, tcp, s);
            draw_probes(f, probes, s);
        }
        None => {
            for (area, title) in [
                (sys, " Syscalls "),
                (procs, " Top processes "),
                (sel_hist, " Latency "),
                (runq, " Run-queue latency "),
                (tcp, " TCP "),
                (probes, " Probes "),
            ] {
                f.render_widget(
                    Paragraph::new("collecting the first interval...")
                        .block(Block::bordered().title(title)),
                    area,
                );
            }
        }
    }
    f.render_widget(Paragraph::new(footer_line(view)), footer);
    if view.help {
        draw_help(f);
    }
}

fn header_line(snap: Option<&Snapshot>, view: &View) -> Line<'static> {
    let mut spans = vec![Span::styled("btrace top", Style::new().bold())];
    spans.push(Span::raw(format!("  kernel {}", view.kernel)));
    if let Some(s) = snap {
        spans.push(Span::raw(format!(
            "  up {:.0} s  interval {:.1} s",
            s.time_s, s.interval_s
        )));
        let pid = s
            .pid_filter
            .map(|p| p.to_string())
            .unwrap_or_else(|| "off".into());
        spans.push(Span::raw(format!("  pid filter: {pid}")));
        let port = s
            .port_filter
            .map(|p| p.to_string())
            .unwrap_or_else(|| "off".into());
        spans.push(Span::raw(format!("  port filter: {port}")));
        let cgroup = s.cgroup_filter.as_deref().unwrap_or("off");
        spans.push(Span::raw(format!("  cgroup filter: {cgroup}")));
    }
    Line::from(spans)
}

fn footer_line(view: &View) -> Line<'static> {
    if let Some(p) = &view.prompt {
        let label = match p.what {
            PromptKind::Pid => "pid filter (empty clears, Esc cancels): ",
            PromptKind::Port => "TCP port filter (empty clears, Esc cancels): ",
            PromptKind::Cgroup => "cgroup filter, path or id (empty clears, Esc cancels): ",
        };
        return Line::from(vec![
            Span::styled(label, Style::new().bold()),
            Span::raw(format!("{}_", p.text)),
        ]);
    }
    if let Some(m) = &view.message {
        return Line::from(Span::styled(m.clone(), Style::new().reversed()));
    }
    Line::from(" 1/2/3 toggle group  up/down select  p pid filter  f port filter  g cgroup filter  c by cgroup  ? help  q quit")
}

fn rate(n: u64, secs: f64) -> String {
    format!("{:.0}", n as f64 / secs.max(1e-9))
}

fn us(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The name of the selected syscall, or the busiest one.
fn selected<'a>(s: &'a Snapshot, view: &'a View) -> Option<&'a str> {
    view.selected
        .as_deref()
        .or_else(|| s.syscalls.first().map(|r| r.name.as_str()))
}

fn draw_syscalls(f: &mut Frame, area: Rect, s: &Snapshot, view: &View) {
    let sel = selected(s, view);
    let rows = s.syscalls.iter().map(|r| {
        let row = Row::new(vec![
            r.name.clone(),
            r.interval.count.to_string(),
            rate(r.interval.count, s.interval_s),
            r.interval.avg_ns().map(fmt_ns).unwrap_or_default(),
            us(r.interval.percentile_us(50.0)),
            us(r.interval.percentile_us(99.0)),
        ]);
        if Some(r.name.as_str()) == sel {
            row.style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            row
        }
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(18),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new(vec![
            "SYSCALL", "COUNT", "RATE/s", "AVG", "P50 us", "P99 us",
        ])
        .style(Style::new().bold()),
    )
    .block(Block::bordered().title(" Syscalls, busiest this interval "));
    f.render_widget(table, area);
}

fn draw_processes(f: &mut Frame, area: Rect, s: &Snapshot) {
    let rows = s.processes.iter().map(|p| {
        Row::new(vec![
            p.tgid.to_string(),
            escape_text(&p.comm).into_owned(),
            p.count.to_string(),
            rate(p.count, s.interval_s),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Length(9),
            Constraint::Length(9),
        ],
    )
    .header(Row::new(vec!["PID", "COMM", "SYSCALLS", "RATE/s"]).style(Style::new().bold()))
    .block(Block::bordered().title(" Top processes by syscalls "));
    f.render_widget(table, area);
}

fn draw_cgroups(f: &mut Frame, area: Rect, s: &Snapshot) {
    let groups = super::snapshot::by_cgroup(&s.processes);
    let rows = groups.iter().map(|g| {
        Row::new(vec![
            g.cgroup
                .as_deref()
                .map_or_else(|| "(other)".into(), |c| escape_text(c).into_owned()),
            g.processes.to_string(),
            g.count.to_string(),
            rate(g.count, s.interval_s),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(16),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(9),
        ],
    )
    .header(Row::new(vec!["CGROUP", "PROCS", "SYSCALLS", "RATE/s"]).style(Style::new().bold()))
    .block(Block::bordered().title(" Top cgroups by syscalls "));
    f.render_widget(table, area);
}

fn hist_lines(h: &Log2Hist, width: u16) -> Vec<Line<'static>> {
    // Leave room for the "[lo, hi) count |" labels the rows carry.
    let bar = width.saturating_sub(30).max(4) as usize;
    h.render(bar).into_iter().map(Line::from).collect()
}

fn draw_selected_hist(f: &mut Frame, area: Rect, s: &Snapshot, view: &View) {
    let name = selected(s, view);
    let row = name.and_then(|n| s.syscalls.iter().find(|r| r.name == n));
    let title = match name {
        Some(n) => format!(" {n} latency (us) "),
        None => " Syscall latency (us) ".into(),
    };
    let lines = match row {
        Some(r) => hist_lines(&r.interval, area.width),
        None => vec![Line::from("(no calls this interval)")],
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

fn draw_runq(f: &mut Frame, area: Rect, s: &Snapshot) {
    let (title, lines) = match &s.runq {
        Some((i, _)) => (
            format!(
                " Run-queue latency (us): {} waits, avg {} ",
                i.count,
                i.avg_ns().map(fmt_ns).unwrap_or_else(|| "-".into())
            ),
            hist_lines(i, area.width),
        ),
        None => (
            " Run-queue latency ".into(),
            vec![Line::from("(runq probes unavailable)")],
        ),
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

fn owner(pid: Option<u32>, comm: &Option<String>) -> (String, String) {
    (
        pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        comm.as_deref()
            .map_or_else(|| "-".into(), |c| escape_text(c).into_owned()),
    )
}

fn draw_tcp(f: &mut Frame, area: Rect, s: &Snapshot) {
    let Some(t) = &s.tcp else {
        f.render_widget(
            Paragraph::new("(tcp probes unavailable)").block(Block::bordered().title(" TCP ")),
            area,
        );
        return;
    };
    // Side by side only where both tables fit whole: a cut address would show a wrong
    // port (5000 as "500"); narrower terminals stack them.
    let halves = [Constraint::Percentage(50), Constraint::Percentage(50)];
    let [open_area, closed_area] = if area.width >= 180 {
        Layout::horizontal(halves).areas(area)
    } else {
        Layout::vertical(halves).areas(area)
    };
    let open = t.open.iter().map(|c| {
        let (pid, comm) = owner(c.pid, &c.comm);
        let age = t.now_ns.saturating_sub(c.first_seen_ns) as f64;
        Row::new(vec![
            pid,
            comm,
            c.local.clone(),
            c.remote.clone(),
            c.state.name().to_string(),
            fmt_ns(age),
        ])
    });
    let widths = [
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(21),
        Constraint::Length(21),
        Constraint::Length(11),
        Constraint::Length(9),
    ];
    f.render_widget(
        Table::new(open, widths)
            .header(
                Row::new(vec!["PID", "COMM", "LOCAL", "REMOTE", "STATE", "AGE"])
                    .style(Style::new().bold()),
            )
            .block(Block::bordered().title(format!(
                " TCP open: {} (seen since start; {} transitions this interval) ",
                t.open.len(),
                t.interval.transitions
            ))),
        open_area,
    );
    let closed = t.recently_closed.iter().map(|c| {
        let (_, comm) = owner(c.pid, &c.comm);
        Row::new(vec![
            comm,
            c.local.clone(),
            c.remote.clone(),
            c.duration_ns
                .map(|d| fmt_ns(d as f64))
                .unwrap_or_else(|| "-".into()),
            format!(
                "{}/{}",
                c.tx_bytes.map_or_else(|| "-".into(), |n| n.to_string()),
                c.rx_bytes
            ),
        ])
    });
    let widths = [
        Constraint::Length(10),
        Constraint::Length(21),
        Constraint::Length(21),
        Constraint::Length(9),
        Constraint::Length(13),
    ];
    f.render_widget(
        Table::new(closed, widths)
            .header(
                Row::new(vec!["COMM", "LOCAL", "REMOTE", "DURATION", "TX/RX BYTES"])
                    .style(Style::new().bold()),
            )
            .block(Block::bordered().title(" TCP recently closed (newest first) ")),
        closed_area,
    );
}

fn draw_probes(f: &mut Frame, area: Rect, s: &Snapshot) {
    let rows = s.probes.iter().map(|p| {
        let state = if p.unavailable.is_some() {
            "n/a"
        } else if p.attached {
            "on"
        } else {
            "off"
        };
        let fig = p.run.map(|r| ProbeFigures::of(&r, s.interval_s, s.ncpus));
        let dash = || "-".to_string();
        Row::new(vec![
            p.key.to_string(),
            p.group.to_string(),
            state.to_string(),
            // An unavailable group says why where its hook would be.
            p.unavailable.clone().unwrap_or_else(|| p.hook.clone()),
            format!("{}/{}", p.links, p.programs),
            fig.map(|f| format!("{:.0}", f.events_per_s))
                .unwrap_or_else(dash),
            fig.and_then(|f| f.avg_ns)
                .map(|n| format!("{n:.0}"))
                .unwrap_or_else(dash),
            fig.map(|f| format!("{:.3}", f.cpu_pct))
                .unwrap_or_else(dash),
            p.lost.to_string(),
        ])
    });
    let table =
        Table::new(
            rows,
            [
                Constraint::Length(3),
                Constraint::Length(9),
                Constraint::Length(5),
                Constraint::Length(20),
                Constraint::Length(7),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Length(6),
            ],
        )
        .header(
            Row::new(vec![
                "KEY", "GROUP", "STATE", "HOOK", "LINKS", "EVENTS/s", "ns/RUN", "CPU %", "LOST",
            ])
            .style(Style::new().bold()),
        )
        .block(Block::bordered().title(
            " Probes (kernel BPF run-time stats; CPU % of all CPUs; LINKS attached/programs) ",
        ));
    f.render_widget(table, area);
}

fn draw_help(f: &mut Frame) {
    let area = f.area();
    let w = 78.min(area.width);
    let h = (HELP.len() as u16 + 2).min(area.height);
    let rect = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<16}"), Style::new().bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Keys (any key closes) ")),
        rect,
    );
}

/// The selection moves through the syscalls of the current snapshot.
pub fn move_selection(view: &mut View, snap: Option<&Snapshot>, down: bool) {
    let Some(s) = snap else { return };
    if s.syscalls.is_empty() {
        return;
    }
    let cur = selected(s, view).and_then(|n| s.syscalls.iter().position(|r| r.name == n));
    let next = match (cur, down) {
        (None, _) => 0,
        (Some(i), true) => (i + 1).min(s.syscalls.len() - 1),
        (Some(i), false) => i.saturating_sub(1),
    };
    view.selected = Some(s.syscalls[next].name.clone());
}
