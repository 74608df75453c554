// SPDX-License-Identifier: Apache-2.0
//! btrace: eBPF tracing for Linux. This file is the command line and nothing else: it is
//! the only module that knows the commands. `--json`, `-o`, `-v` and `--btf` are global
//! (accepted before or after the subcommand) and mean the same in every command.
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "testing")]
use btrace::apps::floor;
use btrace::apps::{doctor, serve, top, verifier};
use btrace::core::bpf_log;
use btrace::core::output::{self, OutputArgs};
use btrace::tracers::{
    biolatency, exec, hist, kprobe, offcpu, opens, profile, runq, tcp, tracepoint, uprobe,
};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "btrace",
    // "0.1.0 (commit abc1234, x86_64-unknown-linux-gnu, static)": made by build.rs
    version = env!("BTRACE_VERSION_LINE"),
    about = "eBPF tracing: syscall latency, kernel functions, tracepoints, TCP, CPU and off-CPU profiles"
)]
struct Cli {
    #[command(flatten)]
    sink: OutputArgs,
    /// Show libbpf's log on stderr
    #[arg(short = 'v', long, global = true)]
    verbose: bool,
    /// BTF of the running kernel, for kernels without /sys/kernel/btf/vmlinux (also
    /// BTRACE_BTF); btfhub has files for many distribution kernels
    #[arg(long, global = true, value_name = "FILE")]
    btf: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Per-syscall latency histograms (log2 microsecond buckets), computed in the kernel
    Hist(hist::command::HistArgs),
    /// Every execve/execveat: program, arguments, parent, result (failed ones too)
    Exec(exec::command::ExecArgs),
    /// Every open/openat/openat2/creat: path, flags, mode, fd or error
    Open(opens::command::OpenArgs),
    /// Block I/O latency histograms, issue to completion, per operation (and disk)
    Biolatency(biolatency::command::BiolatencyArgs),
    /// Run-queue latency histograms: how long runnable tasks waited for a CPU
    Runqlat(runq::command::RunqlatArgs),
    /// Every call of a kernel function (fentry or kprobe), arguments typed from BTF
    Kprobe(kprobe::command::KprobeArgs),
    /// Every call of a user-space function (TARGET:FUNC), arguments typed from DWARF
    Uprobe(uprobe::command::UprobeArgs),
    /// Every hit of a USDT probe (TARGET:PROVIDER:NAME), or --list a file's probes
    Usdt(uprobe::usdt::UsdtArgs),
    /// Every hit of a tracepoint (CATEGORY:NAME), fields decoded from its format
    Tracepoint(tracepoint::command::TracepointArgs),
    /// CPU profile: timed samples of every CPU, counted by kernel and user stack
    Profile(profile::command::ProfileArgs),
    /// Time spent blocked (off CPU), by kernel and user stack
    Offcpu(offcpu::command::OffcpuArgs),
    /// What this kernel allows (probed for real) and which commands will work here
    Doctor(doctor::DoctorArgs),
    /// Load deliberately wrong programs: the verifier's log, why, and the fixed variant
    Verifier(verifier::VerifierArgs),
    /// Reference programs for `make bench` (the overhead floors; `testing` builds only)
    #[cfg(feature = "testing")]
    #[command(hide = true)]
    Floor(floor::FloorArgs),
    /// TCP connection lifecycle: state transitions, or one line per connection (--life)
    Tcp(tcp::command::TcpArgs),
    /// Live dashboard: syscalls, top processes, run-queue latency, probe costs; keys
    /// switch probe groups off and on
    Top(top::TopArgs),
    /// Prometheus/OpenMetrics exporter: syscall latency, TCP and run-queue figures kept in
    /// the kernel, served on GET /metrics (or written to a textfile)
    Serve(serve::ServeArgs),
    /// Man pages or a shell's completions, made from the flags --help shows (`make dist`)
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// What `btrace generate` writes.
#[derive(clap::Args, Debug)]
struct GenerateArgs {
    #[arg(value_enum)]
    what: Generated,
    /// Directory for the man pages (btrace.1 and one btrace-COMMAND.1 per command);
    /// completions go to standard output
    #[arg(value_name = "DIR", required_if_eq("what", "man"))]
    dir: Option<std::path::PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Generated {
    Man,
    CompleteBash,
    CompleteZsh,
    CompleteFish,
}

/// Writes what `btrace generate` was asked for, from [`command_line`]: the same
/// definitions, help texts and hidden arguments as the parser itself.
fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use clap_complete::Shell;
    let cli = command_line();
    let shell = match args.what {
        Generated::Man => {
            let dir = args.dir.expect("clap requires DIR for man");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            return clap_mangen::generate_to(cli, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()));
        }
        Generated::CompleteBash => Shell::Bash,
        Generated::CompleteZsh => Shell::Zsh,
        Generated::CompleteFish => Shell::Fish,
    };
    // clap_complete panics when its writer fails: the script is made in memory, and a
    // closed pipe or a full disk is then an error like any other output's.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut without_hidden(cli), "btrace", &mut script);
    std::io::Write::write_all(&mut std::io::stdout().lock(), &script)
        .context("writing the completions")
}

/// The command line without its hidden commands, which clap_complete would offer.
fn without_hidden(cli: clap::Command) -> clap::Command {
    clap::Command::new("btrace")
        .version(env!("BTRACE_VERSION_LINE"))
        .args(cli.get_arguments().cloned())
        .subcommands(cli.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// The global flags (`Cli`'s) that these commands do not take: hidden from their
/// `--help`, and refused in one line if given (by the command, which says where its
/// results go).
const NOT_TAKEN: &[(&str, &[&str])] = &[("serve", &["json", "output"])];

/// The command line, with [`NOT_TAKEN`] hidden: a subcommand that declares an argument
/// of its own is not given the global one of the same id, and this copy is the global
/// one hidden (so it still parses, and the command can refuse it).
fn command_line() -> clap::Command {
    let mut cli = Cli::command();
    for (name, ids) in NOT_TAKEN {
        let hidden: Vec<clap::Arg> = cli
            .get_arguments()
            .filter(|a| ids.contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        cli = cli.mut_subcommand(name, |sub| sub.args(hidden));
    }
    cli
}

fn main() {
    let cli = command_line()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| exit_on_usage(e));
    bpf_log::init(cli.verbose);
    if let Err(e) = btrace::core::system::set_custom_btf(cli.btf) {
        eprintln!("btrace: {e:#}");
        std::process::exit(1);
    }
    let sink = &cli.sink;
    let result = match cli.command {
        Command::Hist(a) => hist::command::run(a, sink),
        Command::Tracepoint(a) => tracepoint::command::run(a, sink),
        Command::Kprobe(a) => kprobe::command::run(a, sink),
        Command::Uprobe(a) => uprobe::command::run(a, sink),
        Command::Usdt(a) => uprobe::usdt::run(a, sink),
        Command::Exec(a) => exec::command::run(a, sink),
        Command::Open(a) => opens::command::run(a, sink),
        Command::Biolatency(a) => biolatency::command::run(a, sink),
        Command::Runqlat(a) => runq::command::run(a, sink),
        Command::Profile(a) => profile::command::run(a, sink),
        Command::Offcpu(a) => offcpu::command::run(a, sink),
        Command::Doctor(a) => doctor::run(a, sink).map(|()| 0),
        Command::Verifier(a) => verifier::run(a, sink).map(|()| 0),
        #[cfg(feature = "testing")]
        Command::Floor(a) => floor::run(a, sink),
        Command::Tcp(a) => tcp::command::run(a, sink),
        Command::Top(a) => top::run(a, sink),
        Command::Serve(a) => serve::run(a, sink),
        Command::Generate(a) => generate(a).map(|()| 0),
    };
    match result {
        // A -c command that ended the run passes its exit status on.
        Ok(code) => std::process::exit(code),
        Err(e) if output::is_broken_pipe(&e) => std::process::exit(0),
        Err(e) => {
            // A failed run leaves no empty output file it created behind.
            output::discard_unwritten();
            // Refused for its kernel memory: that line alone, whatever wrapped it.
            match btrace::core::kmem::too_big(&e) {
                Some(t) => eprintln!("btrace: {t}"),
                None => eprintln!("btrace: {e:#}"),
            }
            std::process::exit(1);
        }
    }
}

/// Help and version go out as clap prints them; a usage error is one line, like every
/// other error, with the hint to `--help` folded into it.
fn exit_on_usage(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("bad usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "the following required arguments were not provided:" lists them on the indented
    // lines below: they belong to the one line.
    let listed: Vec<&str> = text
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    let first = if first.ends_with(':') && !listed.is_empty() {
        format!("{first} {}", listed.join(", "))
    } else {
        first.to_string()
    };
    // clap's "tip: a similar ... exists" lines are the useful part of a typo.
    let tips: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tip: "))
        .collect();
    if tips.is_empty() {
        eprintln!("btrace: {first} (see btrace --help)");
    } else {
        eprintln!("btrace: {first}; {}", tips.join("; "));
    }
    std::process::exit(2);
}
