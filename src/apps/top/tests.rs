// SPDX-License-Identifier: Apache-2.0
//! The dashboard's pure parts, without the kernel: a scripted tracer stands in for the
//! real ones (whose own tests load real programs), so the connection table, the sampler's
//! interval figures and the panels can be checked exactly.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::BorrowedFd;

use anyhow::Result;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::conns::Conns;
use super::groups::{Group, Groups};
use super::snapshot::Sampler;
use super::ui::{self, View};
use crate::core::losses::Losses;
use crate::model::histogram::Log2Hist;
use crate::model::tcp::{Family, TcpState};
use crate::tracers::hist::tracer::ProcCount;
use crate::tracers::tcp::event::{ConnEnd, TcpEvent};
use crate::tracers::{LiveFilter, Sample, Tracer};

/// A tracer whose samples are scripted: each call of `sample` returns the next one.
struct Scripted {
    name: &'static str,
    samples: Vec<Sample>,
    attached: bool,
}

impl Tracer for Scripted {
    fn name(&self) -> &'static str {
        self.name
    }
    fn hook(&self) -> String {
        "scripted".into()
    }
    fn attached(&self) -> bool {
        self.attached
    }
    fn attach(&mut self) -> Result<()> {
        self.attached = true;
        Ok(())
    }
    fn detach(&mut self) {
        self.attached = false;
    }
    fn set_filter(&mut self, _: &LiveFilter) -> Result<()> {
        Ok(())
    }
    fn losses(&self) -> Result<Losses> {
        Ok(Losses {
            map_full: 2,
            ..Default::default()
        })
    }
    fn programs(&self) -> Vec<BorrowedFd<'_>> {
        Vec::new()
    }
    fn sample(&mut self) -> Result<Sample> {
        Ok(self.samples.remove(0))
    }
}

fn hist(count: u64, bucket: usize) -> Log2Hist {
    let mut h = Log2Hist {
        count,
        sum_ns: count * 1500,
        ..Default::default()
    };
    h.buckets[bucket] = count;
    h
}

fn syscalls(getppid: u64, read: u64, procs: &[(u32, u64)]) -> Sample {
    Sample::Syscalls {
        hists: vec![(110, hist(getppid, 1)), (0, hist(read, 2))],
        processes: procs
            .iter()
            .map(|&(tgid, count)| ProcCount {
                tgid,
                count,
                comm: format!("p{tgid}"),
            })
            .collect(),
    }
}

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// One transition of the connection 127.0.0.1:sport -> 127.0.0.2:80.
fn transition(sport: u16, old: u8, new: u8, ts: u64) -> TcpEvent {
    TcpEvent {
        ts_ns: ts,
        pid: Some(42),
        host_pid: None,
        comm: Some("curl".into()),
        cgroup_id: None,
        family: Family::V4,
        saddr: addr(1),
        sport,
        daddr: addr(2),
        dport: 80,
        oldstate: TcpState(old),
        newstate: TcpState(new),
        ns_in_old_state: None,
        end: (new == 7).then_some(ConnEnd {
            duration_ns: Some(1_000_000),
            tx_bytes: Some(100),
            rx_bytes: 2000,
        }),
    }
}

fn groups(tracers: Vec<Scripted>) -> Groups {
    Groups::from_groups(
        tracers
            .into_iter()
            .enumerate()
            .map(|(i, t)| Group {
                name: t.name,
                key: char::from_digit(i as u32 + 1, 10).unwrap(),
                tracer: Some(Box::new(t)),
                unavailable: None,
            })
            .collect(),
        LiveFilter::default(),
    )
}

#[test]
fn connection_table_follows_a_connection_from_connect_to_close() {
    let mut c = Conns::default();
    // A connecting socket has no port of its own at SYN_SENT; the entry moves to the real
    // port at its next transition.
    c.add(&transition(0, 7, 2, 1));
    c.add(&transition(5000, 2, 1, 2));
    let open = c.open();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].local, "127.0.0.1:5000");
    assert_eq!(open[0].state, TcpState::ESTABLISHED);
    assert_eq!(open[0].first_seen_ns, 1);
    // A listener is not a connection.
    c.add(&transition(80, 7, 10, 3));
    assert_eq!(c.open().len(), 1);
    c.add(&transition(5000, 1, 4, 4));
    c.add(&transition(5000, 4, 7, 5));
    assert!(c.open().is_empty());
    let interval = c.take_interval();
    assert_eq!(interval.transitions, 5);
    assert_eq!(interval.opened, 1);
    assert_eq!(interval.closed.len(), 1);
    let closed = &c.recently_closed()[0];
    assert_eq!((closed.tx_bytes, closed.rx_bytes), (Some(100), 2000));
    assert_eq!(closed.pid, Some(42));
    // The interval was taken: the next one starts empty, the closed list stays.
    assert_eq!(c.take_interval().transitions, 0);
    assert_eq!(c.recently_closed().len(), 1);
    // A refused connect (SYN_SENT -> CLOSE) is not a finished connection.
    c.add(&transition(6000, 2, 7, 6));
    assert_eq!(c.take_interval().closed.len(), 0);
}

#[test]
fn sampler_turns_cumulative_counters_into_intervals() {
    let mut g = groups(vec![
        Scripted {
            name: "syscalls",
            samples: vec![
                syscalls(100, 10, &[(7, 60), (8, 50)]),
                syscalls(130, 10, &[(7, 90), (8, 50)]),
                // Process 8's slot was freed and the pid reused: it counts from zero.
                syscalls(130, 15, &[(7, 90), (8, 5)]),
            ],
            attached: true,
        },
        Scripted {
            name: "runq",
            samples: vec![
                Sample::RunQueue(Box::new(hist(4, 3))),
                Sample::RunQueue(Box::new(hist(9, 3))),
                Sample::RunQueue(Box::new(hist(9, 3))),
            ],
            attached: true,
        },
    ]);
    let mut s = Sampler::new(&g, false).unwrap();
    let first = s.sample(&mut g).unwrap();
    assert_eq!(first.syscalls[0].name, "getppid");
    assert_eq!(first.syscalls[0].interval.count, 100);
    assert_eq!(first.processes.len(), 2);
    let second = s.sample(&mut g).unwrap();
    // Only what happened in the interval: read did not run, process 8 made no syscall.
    assert_eq!(second.syscalls.len(), 1);
    assert_eq!(second.syscalls[0].interval.count, 30);
    assert_eq!(second.syscalls[0].total, 130);
    assert_eq!(second.processes.len(), 1);
    assert_eq!(
        (second.processes[0].tgid, second.processes[0].count),
        (7, 30)
    );
    let (interval, total) = second.runq.unwrap();
    assert_eq!((interval.count, total.count), (5, 9));
    let third = s.sample(&mut g).unwrap();
    assert_eq!(third.processes.len(), 1);
    assert_eq!((third.processes[0].tgid, third.processes[0].count), (8, 5));
    assert_eq!(third.runq.unwrap().0.count, 0);
    // The JSON record carries the same figures.
    let j = second.to_json();
    assert_eq!(j["syscalls"][0]["count"], 30);
    assert_eq!(j["runq"]["count"], 5);
    assert_eq!(j["probes"][0]["group"], "syscalls");
    assert_eq!(j["probes"][0]["lost"], 2);
}

#[test]
fn panels_render_what_the_snapshot_holds() {
    let mut g = groups(vec![
        Scripted {
            name: "syscalls",
            samples: vec![syscalls(1234, 56, &[(4321, 1290)])],
            attached: true,
        },
        Scripted {
            name: "tcp",
            samples: vec![Sample::Tcp(vec![
                transition(0, 7, 2, 1),
                transition(5000, 2, 1, 2),
            ])],
            attached: false,
        },
    ]);
    let mut s = Sampler::new(&g, false).unwrap();
    let snap = s.sample(&mut g).unwrap();
    let view = View {
        kernel: "6.18-test".into(),
        ..Default::default()
    };
    let mut term = Terminal::new(TestBackend::new(140, 50)).unwrap();
    term.draw(|f| ui::draw(f, Some(&snap), &view)).unwrap();
    let screen: String = term
        .backend()
        .buffer()
        .content()
        .chunks(140)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
        .collect();
    for want in [
        "kernel 6.18-test",
        "getppid",
        "1234",
        "4321",
        "p4321",
        "127.0.0.1:5000",
        "ESTABLISHED",
        "(runq probes unavailable)",
    ] {
        assert!(screen.contains(want), "no {want:?} on screen:\n{screen}");
    }
    // The probes panel: syscalls on, tcp off (scripted detached), with their losses.
    let probe_row = |name: &str| {
        screen
            .lines()
            .find(|l| l.contains(&format!(" {name} ")) && l.contains("scripted"))
            .unwrap_or_else(|| panic!("no probe row {name}:\n{screen}"))
            .to_string()
    };
    assert!(probe_row("syscalls").contains(" on "));
    assert!(probe_row("tcp").contains(" off "));
}

#[test]
fn processes_summed_by_cgroup_with_a_bounded_number_of_rows() {
    use super::snapshot::{by_cgroup, CgroupRow, ProcRow, MAX_CGROUP_ROWS};
    let row = |tgid: u32, cgroup: Option<String>, count: u64| ProcRow {
        tgid,
        comm: "w".into(),
        count,
        total: count,
        cgroup,
    };
    let mut rows = vec![
        row(1, Some("/a".into()), 5),
        row(2, Some("/a".into()), 7),
        row(3, Some("/b".into()), 20),
        row(4, None, 3),
    ];
    assert_eq!(
        by_cgroup(&rows),
        vec![
            CgroupRow {
                cgroup: Some("/b".into()),
                processes: 1,
                count: 20
            },
            CgroupRow {
                cgroup: Some("/a".into()),
                processes: 2,
                count: 12
            },
            CgroupRow {
                cgroup: None,
                processes: 1,
                count: 3
            },
        ]
    );
    // Beyond the bound, the quietest cgroups go into the `other` row: totals still add up.
    for i in 0..2 * MAX_CGROUP_ROWS as u32 {
        rows.push(row(100 + i, Some(format!("/many/{i}")), 1));
    }
    let groups = by_cgroup(&rows);
    assert_eq!(groups.len(), MAX_CGROUP_ROWS + 1);
    assert_eq!(
        groups.iter().map(|g| g.count).sum::<u64>(),
        35 + 2 * MAX_CGROUP_ROWS as u64
    );
    assert_eq!(
        groups.iter().map(|g| g.processes).sum::<usize>(),
        rows.len()
    );
    assert!(groups.last().unwrap().cgroup.is_none());
}
