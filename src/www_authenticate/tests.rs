//! Tests of the parser, the scan, and their agreement.

use super::*;
use http::HeaderValue;

fn one(value: &str) -> Challenge {
    let mut all = parse(value.as_bytes()).unwrap();
    assert_eq!(all.len(), 1, "{value}: {all:?}");
    all.remove(0)
}

fn params(c: &Challenge) -> Vec<(&str, &str)> {
    c.params()
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

#[test]
fn rfc6750_examples() {
    // RFC 6750 section 3.
    let c = one(r#"Bearer realm="example""#);
    assert!(c.is_scheme("Bearer"));
    assert_eq!(c.realm(), Some("example"));
    let c = one(
        r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
    );
    assert_eq!(c.error(), Some("invalid_token"));
    assert_eq!(c.error_description(), Some("The access token expired"));
    assert_eq!(params(&c).len(), 3);
    // RFC 6750 section 3.1, insufficient_scope with a scope.
    let c = one(r#"Bearer error="insufficient_scope", scope="a b""#);
    assert_eq!(c.error(), Some("insufficient_scope"));
    assert_eq!(c.scope(), Some("a b"));
    // No parameters at all.
    let c = one("Bearer");
    assert!(c.params().is_empty());
    assert_eq!(c.token68(), None);
}

#[test]
fn rfc9110_example_with_two_challenges_and_escapes() {
    // RFC 9110 section 11.6.1.
    let all =
        parse(br#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#)
            .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].scheme(), "Newauth");
    assert_eq!(
        params(&all[0]),
        [
            ("realm", "apps"),
            ("type", "1"),
            ("title", "Login to \"apps\"")
        ]
    );
    assert_eq!(all[1].scheme(), "Basic");
    assert_eq!(all[1].realm(), Some("simple"));
}

#[test]
fn token68_challenges() {
    let c = one("Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXeg==");
    assert_eq!(c.token68(), Some("YIIBhwYGKwYBBQUCoIIBezCCAXeg=="));
    assert!(c.params().is_empty());
    let all = parse(b"Negotiate abc/+_.~-=, Bearer realm=x").unwrap();
    assert_eq!(all[0].token68(), Some("abc/+_.~-="));
    assert_eq!(all[1].realm(), Some("x"));
    // A single-token challenge with no padding is token68 too.
    assert_eq!(one("Foo bar").token68(), Some("bar"));
}

#[test]
fn whitespace_case_and_empty_elements() {
    let all = parse(b" , Bearer  realm = \"a\" ,, error=invalid_token ,\tBasic ,").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].realm(), Some("a"));
    assert_eq!(all[0].param("ERROR"), Some("invalid_token"));
    assert!(all[1].is_scheme("basic"));
    assert_eq!(parse(b"").unwrap(), vec![]);
    assert_eq!(parse(b" ,, ").unwrap(), vec![]);
    let all = parse(b"Bearer, Basic realm=x, DPoP algs=\"ES256\"").unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].params().is_empty());
    assert_eq!(all[2].param("algs"), Some("ES256"));
}

#[test]
fn malformed_values_are_errors_not_panics() {
    for bad in [
        &b"Bearer realm=\"unterminated"[..],
        b"Bearer realm=\"bad escape\\",
        b"Bearer realm=\"ctl\x01\"",
        b"Bearer realm=a b",
        b"Bearer\"x\"",
        b"=x",
        b"Bearer a=b c",
        b"\"quoted\"",
        b"Bearer ,realm=x =y",
        b"Bearer realm=\"x\"junk",
    ] {
        let err = parse(bad).unwrap_err();
        assert!(err.position() <= bad.len(), "{err}");
        assert!(!err.to_string().is_empty());
    }
    let long = vec![b'a'; MAX_VALUE_LEN + 1];
    assert_eq!(
        parse(&long).unwrap_err().reason(),
        "value over the length limit"
    );
}

#[test]
fn a_parameter_named_twice_is_kept_and_the_first_wins() {
    let c = one("Bearer realm=a, REALM=b");
    assert_eq!(params(&c), [("realm", "a"), ("REALM", "b")]);
    assert_eq!(c.realm(), Some("a"));
    let c = one(r#"Bearer error="invalid_token", error="x""#);
    assert_eq!(c.error(), Some("invalid_token"));
    let c = one(r#"Bearer error="x", error="invalid_token""#);
    assert_eq!(c.error(), Some("x"));
}

/// What [`is_invalid_token`] answers, from the full parser.
fn parsed_says_invalid_token(value: &[u8]) -> Option<bool> {
    parse(value)
        .ok()
        .map(|all| all.iter().any(Challenge::is_invalid_token))
}

#[test]
fn scan_and_parser_agree_on_a_repeated_error() {
    for (value, expected) in [
        (&br#"Bearer error="invalid_token", error="x""#[..], true),
        (br#"Bearer error="x", error="invalid_token""#, false),
        (br#"Bearer ERROR="invalid_token", error="x""#, true),
        (br#"Bearer error=x, Error=invalid_token"#, false),
        (br#"Bearer error=x, DPoP error=invalid_token"#, true),
    ] {
        let text = String::from_utf8_lossy(value);
        assert_eq!(parsed_says_invalid_token(value), Some(expected), "{text}");
        assert_eq!(is_invalid_token_value(value), expected, "{text}");
        let mut headers = HeaderMap::new();
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_bytes(value).unwrap());
        assert_eq!(is_invalid_token(&headers), expected, "{text}");
    }
}

#[test]
fn scan_finds_invalid_token_in_bearer_and_dpop_challenges() {
    for yes in [
        r#"Bearer error="invalid_token""#,
        r#"Bearer realm="api", error="invalid_token", error_description="token revoked""#,
        r#"bearer error=invalid_token"#,
        r#"Bearer realm="a, b", error = "invalid_token""#,
        r#"Basic realm="x", Bearer realm="api", error="invalid_token""#,
        r#"DPoP algs="ES256", error="invalid_token""#,
        r#"Bearer error="invalid\_token""#,
        "Bearer realm=\"caf\u{e9}\", error=\"invalid_token\"",
    ] {
        assert!(is_invalid_token_value(yes.as_bytes()), "{yes}");
        assert_eq!(
            parsed_says_invalid_token(yes.as_bytes()),
            Some(true),
            "{yes}"
        );
    }
    // Lenient where the parser is not: what cannot be read is skipped.
    for yes in [
        "Bearer realm=\"ctl\x01\", error=\"invalid_token\"",
        r#"Bearer error="invalid_token", error_description="unterminated"#,
        r#"Bearer realm=x y, error=invalid_token"#,
    ] {
        assert!(is_invalid_token_value(yes.as_bytes()), "{yes}");
        assert_eq!(parsed_says_invalid_token(yes.as_bytes()), None, "{yes}");
    }
    assert!(is_invalid_token_value(
        b"Bearer realm=\"\xff\", error=invalid_token"
    ));
}

#[test]
fn scan_says_no_to_anything_else() {
    for no in [
        "",
        "Bearer",
        r#"Bearer realm="api""#,
        r#"Bearer error="insufficient_scope""#,
        r#"Basic error="invalid_token""#,
        r#"Bearer realm="x", Basic error="invalid_token""#,
        r#"Bearer realm="error=\"invalid_token\"""#,
        r#"Bearer error="invalid_token"#,
        r#"Bearer error="invalid_token"x"#,
        r#"Bearer error=invalid_token junk"#,
        r#"Bearer error=invalid_tokens"#,
        r#"Bearer error="Invalid_Token""#,
        r#"Negotiate abc=, error=invalid_token"#,
        "error=invalid_token",
        "Bearer ,,,, ===, \"",
        "\u{0}\u{7f}",
    ] {
        assert!(!is_invalid_token_value(no.as_bytes()), "{no}");
        assert_ne!(parsed_says_invalid_token(no.as_bytes()), Some(true), "{no}");
    }
    assert!(!is_invalid_token_value(&[0xff, 0xfe, b'=']));
}

/// Values made of challenges with random schemes, parameters, separators and
/// whitespace, some of them then damaged by one random edit.
fn generated_value(rng: &mut fastrand::Rng) -> String {
    fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a str]) -> &'a str {
        from[rng.usize(..from.len())]
    }
    const SCHEMES: &[&str] = &["Bearer", "bearer", "DPoP", "Basic", "Negotiate", "x"];
    const NAMES: &[&str] = &["error", "ERROR", "realm", "error_description", "e"];
    const VALUES: &[&str] = &[
        "invalid_token",
        "\"invalid_token\"",
        "\"invalid\\_token\"",
        "x",
        "\"a, b=c\"",
        "\"\"",
        "\"\\\"\"",
        "\"caf\u{e9}\"",
        "invalid_token2",
    ];
    const SEPARATORS: &[&str] = &[", ", ",", " , ", ",, ", "\t,"];
    const EQUALS: &[&str] = &["=", " =", "= ", " = "];
    const DAMAGE: &[&str] = &[
        "\"",
        "\\",
        ",",
        "=",
        " ",
        "\u{1}",
        "x",
        "error=invalid_token",
        "abc==",
    ];
    let mut value = String::new();
    for i in 0..rng.usize(1..4) {
        if i > 0 {
            value.push_str(pick(rng, SEPARATORS));
        }
        value.push_str(pick(rng, SCHEMES));
        match rng.u8(..10) {
            0 => {}
            1 => value.push_str(" abc=="),
            _ => {
                value.push_str(pick(rng, &[" ", "  ", "\t"]));
                for j in 0..rng.usize(1..4) {
                    if j > 0 {
                        value.push_str(pick(rng, SEPARATORS));
                    }
                    value.push_str(pick(rng, NAMES));
                    value.push_str(pick(rng, EQUALS));
                    value.push_str(pick(rng, VALUES));
                }
            }
        }
    }
    if rng.bool() {
        let at = loop {
            let at = rng.usize(..=value.len());
            if value.is_char_boundary(at) {
                break at;
            }
        };
        if rng.bool() {
            value.insert_str(at, pick(rng, DAMAGE));
        } else if at < value.len() {
            value.remove(at);
        }
    }
    value
}

#[test]
fn scan_agrees_with_the_parser_wherever_it_parses() {
    let mut rng = fastrand::Rng::with_seed(11);
    let (mut parsed, mut said) = (0, 0);
    for _ in 0..20_000 {
        let value = generated_value(&mut rng);
        if let Some(expected) = parsed_says_invalid_token(value.as_bytes()) {
            parsed += 1;
            said += usize::from(expected);
            assert_eq!(
                is_invalid_token_value(value.as_bytes()),
                expected,
                "{value:?}"
            );
        }
    }
    // The generator reaches both answers often enough to mean something.
    assert!(
        parsed > 4_000 && said > 800,
        "{parsed} parsed, {said} invalid_token"
    );
}

#[test]
fn obs_text_in_quoted_strings_is_kept_lossily() {
    let c = one("Bearer error_description=\"caf\u{e9}\"");
    assert_eq!(c.error_description(), Some("caf\u{e9}"));
    let c = parse(b"Bearer error_description=\"\xff\"").unwrap();
    assert_eq!(c[0].error_description(), Some("\u{fffd}"));
}

#[test]
fn headers_with_several_lines() {
    let mut headers = HeaderMap::new();
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"x\""),
    );
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"unterminated"),
    );
    assert!(!is_invalid_token(&headers));
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"bearer error="invalid_token""#),
    );
    assert_eq!(challenges(&headers).len(), 2);
    assert!(is_invalid_token(&headers));

    let mut headers = HeaderMap::new();
    headers.insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer error="insufficient_scope""#),
    );
    assert!(!is_invalid_token(&headers));
    assert!(!is_invalid_token(&HeaderMap::new()));
}

#[test]
fn limits() {
    let many = "a, ".repeat(MAX_VALUE_LEN / 3);
    assert_eq!(parse(many.as_bytes()).unwrap().len(), MAX_VALUE_LEN / 3);
    let params = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!("p{i}=1")).collect();
        format!("Bearer {}", list.join(", "))
    };
    let ok = parse(params(MAX_PARAMS).as_bytes()).unwrap();
    assert_eq!(ok[0].params().len(), MAX_PARAMS);
    let err = parse(params(MAX_PARAMS + 1).as_bytes()).unwrap_err();
    assert_eq!(err.reason(), "too many parameters in one challenge");
}
