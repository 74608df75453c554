#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
const volatile int targ_tgid = 0;
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
struct ev { int pid; long long x; };
struct ev _ev = {};
SEC("tp_btf/sys_enter") int hello(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
