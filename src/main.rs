//! btrace: eBPF tracing for Linux. This file is the command line and nothing else.

use btrace::{bpf_log, doctor, floor, hist, kprobe, output, tcp, top, tracepoint, verifier};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "btrace",
    version,
    about = "eBPF tracing: syscall latency, kernel functions, tracepoints, TCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Per-syscall latency histograms (log2 microsecond buckets), computed in the kernel
    Hist(hist::HistArgs),
    /// Every call of a kernel function (fentry or kprobe), arguments typed from BTF
    Kprobe(kprobe::KprobeArgs),
    /// Every hit of a tracepoint (CATEGORY:NAME), fields decoded from its format
    Tracepoint(tracepoint::TracepointArgs),
    /// What this kernel allows (probed for real) and which commands will work here
    Doctor(doctor::DoctorArgs),
    /// Load deliberately wrong programs: the verifier's log, why, and the fixed variant
    Verifier(verifier::VerifierArgs),
    /// Reference programs for `make bench` (the overhead floors)
    #[command(hide = true)]
    Floor(floor::FloorArgs),
    /// TCP connection lifecycle: state transitions, or one line per connection (--life)
    Tcp(tcp::TcpArgs),
    /// Live dashboard: syscalls, top processes, run-queue latency, probe costs; keys
    /// switch probe groups off and on
    Top(top::TopArgs),
}

impl Command {
    fn verbose(&self) -> bool {
        match self {
            Command::Hist(a) => a.common.verbose,
            Command::Tracepoint(a) => a.common.verbose,
            Command::Kprobe(a) => a.common.verbose,
            Command::Doctor(a) => a.verbose,
            Command::Verifier(a) => a.verbose,
            Command::Floor(a) => a.common.verbose,
            Command::Tcp(a) => a.common.verbose,
            Command::Top(a) => a.common.verbose,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    bpf_log::init(cli.command.verbose());
    let result = match cli.command {
        Command::Hist(a) => hist::run(a),
        Command::Tracepoint(a) => tracepoint::run(a),
        Command::Kprobe(a) => kprobe::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Verifier(a) => verifier::run(a),
        Command::Floor(a) => floor::run(a),
        Command::Tcp(a) => tcp::run(a),
        Command::Top(a) => top::run(a),
    };
    if let Err(e) = result {
        if output::is_broken_pipe(&e) {
            std::process::exit(0);
        }
        eprintln!("btrace: {e:#}");
        std::process::exit(1);
    }
}
