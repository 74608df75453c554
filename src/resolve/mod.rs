// SPDX-License-Identifier: Apache-2.0
//! Turning names into what the kernel needs and numbers into names: kernel function
//! prototypes and types from BTF, tracepoint formats and print formats from tracefs,
//! C constant expressions, kernel symbols, buffers and their lengths, syscall names, stack
//! symbolization (kernel, ELF, DWARF, perf maps); user-space targets (ELF symbols, DWARF
//! prototypes, USDT notes).

pub mod btf;
pub mod buffers;
pub mod cexpr;
pub mod cgroups;
pub mod ctype;
pub mod dwarf;
pub mod elf;
pub mod insn;
pub mod kallsyms;
pub mod print_fmt;
pub mod symbols;
pub mod syscalls;
pub mod tracefs_format;
pub mod usdt;
