// SPDX-License-Identifier: Apache-2.0
//! `btrace verifier`: every wrong program is rejected by this kernel's verifier with the
//! log that explains it, and every fixed variant loads.

mod common;

use common::*;
use serde_json::Value;

fn case<'a>(recs: &'a [Value], name: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["type"] == "case" && r["case"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

#[test]
fn every_case_rejected_and_every_fix_loads() {
    let out = btrace(&["verifier", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = parse_ndjson(&out.stdout);
    // The fragments that say why, stable from 5.10 to 6.18.
    let expect = [
        ("loop", "infinite loop detected"),
        ("bounds", "invalid access to map value"),
        ("null", "map_value_or_null"),
        ("stack", "combined stack size"),
        ("uninit", "read from stack"),
        ("kptr", "invalid mem access"),
    ];
    for (name, fragment) in expect {
        let c = case(&recs, name);
        assert_eq!(c["rejected"], true, "{name}: {c}");
        assert_eq!(c["fixed_loaded"], true, "{name}: {c}");
        let log = c["log"].as_array().unwrap();
        assert!(!log.is_empty(), "{name}: the verifier's log is captured");
        let keys = c["key_lines"].as_array().unwrap();
        assert!(
            keys.iter().any(|k| k.as_str().unwrap().contains(fragment)),
            "{name}: key lines {keys:?} lack '{fragment}'"
        );
        assert!(
            keys.iter().all(|k| log.contains(k)),
            "key lines come from the log"
        );
        for field in ["intent", "explanation", "fix"] {
            assert!(
                c[field].as_str().is_some_and(|s| s.len() > 20),
                "{name}.{field}"
            );
        }
    }
    let s = summary(&recs);
    assert_eq!(s["cases"], 6);
    assert_eq!(s["rejected"], 6);
    assert_eq!(s["fixed_loaded"], 6);
}

#[test]
fn one_case_in_text() {
    let out = btrace(&["verifier", "null"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("== 3/6 null: missing NULL check"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with(">> ") && l.contains("map_value_or_null")),
        "{text}"
    );
    assert!(text.contains("Fixed:    null_fixed ACCEPTED"), "{text}");
    assert_eq!(text.matches("== ").count(), 1, "only the chosen case");
}

#[test]
fn unknown_case_one_line() {
    let e = one_line_error(&btrace(&["verifier", "nope"]));
    assert!(
        e.contains("unknown verifier case 'nope'")
            && e.contains("loop, bounds, null, stack, uninit, kptr"),
        "{e}"
    );
}
