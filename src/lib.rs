//! btrace as a library: the tracers and the shared pieces, used by the `btrace` binary,
//! by the dashboard, and by integration tests that drive a tracer in-process.

pub mod attach;
pub mod bpf_log;
pub mod btf_args;
pub mod cidr;
pub mod doctor;
pub mod events;
pub mod features;
pub mod floor;
pub mod hist;
pub mod histogram;
pub mod kprobe;
pub mod output;
pub mod percpu;
pub mod sched;
pub mod session;
pub mod stream_out;
pub mod syscall_names;
pub mod system;
pub mod task_filter;
pub mod tcp;
pub mod tcp_event;
pub mod tcp_filter;
pub mod top;
pub mod tracefs_format;
pub mod tracepoint;
pub mod verifier;
