// SPDX-License-Identifier: Apache-2.0
//! Which pointer arguments are buffers with their length beside them (`write(fd, buf,
//! count)`): such a buffer is read for exactly `count` bytes (at most the string size),
//! never as a NUL-terminated string, so nothing the program did not write is shown.
//!
//! A table of known pairs, then a rule: a `char *` followed by an integer argument named
//! like a length. A `const char *` is an input buffer, read at entry; any other is an
//! output buffer, not filled yet at entry (shown as its pointer; `kprobe --ret` reads it
//! at return).

/// Which way the bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The function reads the buffer: its bytes are there at entry.
    In,
    /// The function fills the buffer: its bytes are there only after it returns.
    Out,
}

/// The shape of one argument or field, as far as pairing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `char *` (`constant`: `const char *`).
    CharPtr {
        constant: bool,
    },
    /// Any other pointer.
    Ptr,
    /// An integer.
    Int,
    Other,
}

/// A buffer argument and the argument holding its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    pub buf: usize,
    pub len: usize,
    pub dir: Direction,
}

use Direction::{In, Out};

/// Known pairs, by syscall (tracepoints `sys_enter_NAME`) or kernel function name:
/// (name, buffer, length, direction). Mostly `void *` buffers, which the rule does not
/// take, and names the rule does not know.
const KNOWN: &[(&str, &str, &str, Direction)] = &[
    ("write", "buf", "count", In),
    ("pwrite64", "buf", "count", In),
    ("read", "buf", "count", Out),
    ("pread64", "buf", "count", Out),
    ("sendto", "buff", "len", In),
    ("recvfrom", "ubuf", "size", Out),
    ("getrandom", "ubuf", "len", Out),
    ("getcwd", "buf", "size", Out),
    ("readlink", "buf", "bufsiz", Out),
    ("readlinkat", "buf", "bufsiz", Out),
    ("setxattr", "value", "size", In),
    ("lsetxattr", "value", "size", In),
    ("fsetxattr", "value", "size", In),
    ("getxattr", "value", "size", Out),
    ("lgetxattr", "value", "size", Out),
    ("fgetxattr", "value", "size", Out),
    ("mq_timedsend", "u_msg_ptr", "msg_len", In),
    ("mq_timedreceive", "u_msg_ptr", "msg_len", Out),
    ("add_key", "_payload", "plen", In),
    ("vfs_write", "buf", "count", In),
    ("vfs_read", "buf", "count", Out),
    ("kernel_write", "buf", "count", In),
    ("kernel_read", "buf", "count", Out),
    ("__kernel_write", "buf", "count", In),
    ("__sys_sendto", "buff", "len", In),
    ("__sys_recvfrom", "ubuf", "size", Out),
];

/// Names of length arguments, for the rule.
const LENGTH_NAMES: &[&str] = &[
    "count", "len", "length", "size", "nbytes", "nbyte", "bufsiz", "bufsize", "buflen", "buf_len",
    "buf_size", "cnt", "msg_len", "datalen",
];

/// The buffers among `params` (name and shape, in order) of `owner` (a syscall or
/// kernel function name).
pub fn pairs(owner: &str, params: &[(&str, Shape)]) -> Vec<Pair> {
    let index = |name: &str| params.iter().position(|(n, _)| *n == name);
    let mut out: Vec<Pair> = KNOWN
        .iter()
        .filter(|(o, ..)| *o == owner)
        .filter_map(|&(_, buf, len, dir)| {
            let (buf, len) = (index(buf)?, index(len)?);
            let pointer = matches!(params[buf].1, Shape::CharPtr { .. } | Shape::Ptr);
            (pointer && params[len].1 == Shape::Int).then_some(Pair { buf, len, dir })
        })
        .collect();
    for (i, (_, shape)) in params.iter().enumerate() {
        let Shape::CharPtr { constant } = *shape else {
            continue;
        };
        if out.iter().any(|p| p.buf == i) {
            continue;
        }
        // The next integer named like a length, before any other pointer.
        let len = params[i + 1..]
            .iter()
            .take_while(|(_, s)| !matches!(s, Shape::CharPtr { .. } | Shape::Ptr))
            .position(|(n, s)| *s == Shape::Int && LENGTH_NAMES.contains(n))
            .map(|p| i + 1 + p);
        if let Some(len) = len {
            if !out.iter().any(|p| p.len == len) {
                out.push(Pair {
                    buf: i,
                    len,
                    dir: if constant { In } else { Out },
                });
            }
        }
    }
    out.sort_by_key(|p| p.buf);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CP: Shape = Shape::CharPtr { constant: true };
    const MP: Shape = Shape::CharPtr { constant: false };

    #[test]
    fn syscalls() {
        let write = [("fd", Shape::Int), ("buf", CP), ("count", Shape::Int)];
        assert_eq!(
            pairs("write", &write),
            [Pair {
                buf: 1,
                len: 2,
                dir: In
            }]
        );
        let read = [("fd", Shape::Int), ("buf", MP), ("count", Shape::Int)];
        assert_eq!(pairs("read", &read)[0].dir, Out);
        // void * buffers only through the table.
        let sendto = [
            ("fd", Shape::Int),
            ("buff", Shape::Ptr),
            ("len", Shape::Int),
            ("flags", Shape::Int),
        ];
        assert_eq!(
            pairs("sendto", &sendto),
            [Pair {
                buf: 1,
                len: 2,
                dir: In
            }]
        );
        assert_eq!(pairs("unknown_fn", &sendto), []);
    }

    #[test]
    fn the_rule() {
        // A const char * with a length later on: an input buffer.
        let p = [
            ("dst", MP),
            ("src", CP),
            ("flags", Shape::Int),
            ("nbytes", Shape::Int),
        ];
        assert_eq!(
            pairs("f", &p),
            [Pair {
                buf: 1,
                len: 3,
                dir: In
            }]
        );
        // A char * with no length: a string (no pair); a length after another pointer
        // belongs to that one.
        let q = [("name", CP), ("value", CP), ("size", Shape::Int)];
        assert_eq!(
            pairs("g", &q),
            [Pair {
                buf: 1,
                len: 2,
                dir: In
            }]
        );
        let r = [("path", CP), ("mode", Shape::Int)];
        assert_eq!(pairs("h", &r), []);
        let xattr = [("name", CP), ("value", Shape::Ptr), ("size", Shape::Int)];
        assert_eq!(pairs("h", &xattr), []);
        assert_eq!(pairs("setxattr", &xattr)[0].buf, 1);
    }
}
