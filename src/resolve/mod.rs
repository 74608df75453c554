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

/// Where a file system of type `fs` (`tracefs`, `cgroup2`) is mounted, from
/// /proc/self/mounts: the first such mount.
pub fn mount_point(fs: &str) -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let (_, dir, fs_type) = (w.next(), w.next()?, w.next()?);
        (fs_type == fs).then(|| dir.into())
    })
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

/// The text of a file that other users may have planted (a process's perf map under its
/// own /tmp): read only when it is a regular file, at most `max` bytes. Opened without
/// following a final symbolic link (a link to /dev/zero or a root-only file) and without
/// waiting (O_NONBLOCK: a FIFO there would block the open for ever), then checked on the
/// open descriptor. None when it is missing, not a regular file or unreadable.
pub fn read_planted_file(path: &std::path::Path, max: u64) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    f.take(max).read_to_string(&mut text).ok()?;
    Some(text)
}

/// For unit tests: a directory of their own under the system's temporary one,
/// `btrace-NAME-PID`, made if missing; the test removes it.
#[cfg(test)]
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("btrace-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_files_are_read_only_when_regular() {
        let dir = super::scratch_dir("planted");
        let file = dir.join("perf-1.map");
        std::fs::write(&file, "1000 10 jit\n").unwrap();
        assert_eq!(read_planted_file(&file, 1 << 20).unwrap(), "1000 10 jit\n");
        assert_eq!(read_planted_file(&file, 4).unwrap(), "1000");
        // A FIFO with no writer: None at once (a plain open waits for ever).
        let fifo = dir.join("perf-2.map");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo reads nothing else.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_planted_file(&fifo, 1 << 20).is_none());
        // A link (to a device that never ends) is not followed.
        let link = dir.join("perf-3.map");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_planted_file(&link, 1 << 20).is_none());
        assert!(read_planted_file(&dir.join("missing"), 1 << 20).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
