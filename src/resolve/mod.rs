// SPDX-License-Identifier: Apache-2.0
//! Turning names into what the kernel needs and numbers into names: kernel function
//! prototypes and types from BTF, tracepoint formats and print formats from tracefs,
//! C constant expressions, kernel symbols, buffers and their lengths, syscall names, and
//! stack symbolization (kernel, ELF, DWARF, perf maps).

pub mod btf;
pub mod buffers;
pub mod cexpr;
pub mod cgroups;
pub mod ctype;
pub mod kallsyms;
pub mod print_fmt;
pub mod symbols;
pub mod syscalls;
pub mod tracefs_format;
