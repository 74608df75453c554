// SPDX-License-Identifier: Apache-2.0
//! libbpf's own log: shown on stderr with `-v`, otherwise kept (the last lines) so an
//! error can say what libbpf or the verifier reported.

use std::sync::Mutex;

use libbpf_rs::PrintLevel;

static VERBOSE: Mutex<bool> = Mutex::new(false);
static KEPT: Mutex<Vec<String>> = Mutex::new(Vec::new());
const KEEP_LINES: usize = 4000;

fn on_message(level: PrintLevel, msg: String) {
    if *VERBOSE.lock().unwrap() {
        eprint!("libbpf: {msg}");
    }
    if matches!(level, PrintLevel::Debug) {
        return;
    }
    let mut kept = KEPT.lock().unwrap();
    if kept.len() >= KEEP_LINES {
        kept.drain(..KEEP_LINES / 2);
    }
    kept.extend(msg.lines().map(str::to_owned));
}

/// Routes libbpf's messages through this module. Debug messages only with `verbose`.
pub fn init(verbose: bool) {
    *VERBOSE.lock().unwrap() = verbose;
    let level = if verbose {
        PrintLevel::Debug
    } else {
        PrintLevel::Warn
    };
    libbpf_rs::set_print(Some((level, on_message)));
}

/// Takes the lines kept since the last call.
pub fn take() -> Vec<String> {
    std::mem::take(&mut *KEPT.lock().unwrap())
}
