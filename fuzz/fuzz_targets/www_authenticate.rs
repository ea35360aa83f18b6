//! Fuzzes the `WWW-Authenticate` parser (RFC 9110 section 11.6.1).
//!
//! Beyond "never panics": whatever parses is written back out in canonical form, which must
//! parse again to the same challenges; and the allocation-free scan of the 401 path
//! (`is_invalid_token_value`) must give the parser's answer on every value that parses,
//! and on its canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_oauth::www_authenticate::{self, Challenge, MAX_VALUE_LEN};

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn serialize(challenges: &[Challenge]) -> String {
    let mut out = String::new();
    for (i, c) in challenges.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(c.scheme());
        if let Some(t) = c.token68() {
            out.push(' ');
            out.push_str(t);
        }
        for (j, (name, value)) in c.params().iter().enumerate() {
            out.push_str(if j == 0 { " " } else { ", " });
            out.push_str(name);
            out.push_str("=\"");
            for ch in value.chars() {
                if ch == '"' || ch == '\\' {
                    out.push('\\');
                }
                out.push(ch);
            }
            out.push('"');
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // Never panics, whatever the input.
    let scanned = www_authenticate::is_invalid_token_value(data);
    let Ok(challenges) = www_authenticate::parse(data) else {
        return;
    };
    assert!(data.len() <= MAX_VALUE_LEN);
    let parsed = challenges.iter().any(Challenge::is_invalid_token);
    assert_eq!(scanned, parsed, "scan and parser disagree on {data:?}");
    for c in &challenges {
        assert!(!c.scheme().is_empty() && c.scheme().bytes().all(is_tchar));
        assert!(c.token68().is_none() || c.params().is_empty());
        for (name, _) in c.params() {
            assert!(!name.is_empty() && name.bytes().all(is_tchar));
            assert!(c.param(name).is_some());
        }
    }
    let again = serialize(&challenges);
    if again.len() <= MAX_VALUE_LEN {
        let reparsed = www_authenticate::parse(again.as_bytes())
            .unwrap_or_else(|e| panic!("canonical form does not parse: {e}: {again:?}"));
        assert_eq!(reparsed, challenges, "{again:?}");
        assert_eq!(
            www_authenticate::is_invalid_token_value(again.as_bytes()),
            parsed,
            "scan and parser disagree on {again:?}"
        );
    }
});
