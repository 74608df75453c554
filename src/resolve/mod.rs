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
pub mod kallsyms;
pub mod print_fmt;
pub mod symbols;
pub mod syscalls;
pub mod tracefs_format;
pub mod usdt;

/// What kind of file `t` is, for messages: "a directory", "a FIFO (named pipe)", ...
pub fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Why an input file cannot be read as one: `Some("PATH is a FIFO (named pipe), not a
/// regular file")` when `path` exists (links followed) and is not a regular file, None
/// otherwise (a missing file is the caller's own error). Decided on metadata alone,
/// before anything opens it: opening a FIFO waits for a writer, for ever, and reading a
/// device is no input at all.
pub fn not_regular_file(path: &std::path::Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    (!m.is_file()).then(|| {
        format!(
            "{} is {}, not a regular file",
            path.display(),
            file_kind(&m.file_type())
        )
    })
}
