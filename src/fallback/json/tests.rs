use proptest::prelude::*;

use super::*;

/// The model `body` names (a whole scan), or why it names none.
fn model(body: &[u8]) -> Result<String, Miss> {
    let span = model_span(body, Scan::Whole)?;
    Ok(decode_string(&body[span]).expect("a found span is a valid string").into_owned())
}

#[test]
fn the_top_level_model_is_found_and_nothing_else() {
    use Miss::*;
    let cases: &[(&str, Result<&str, Miss>)] = &[
        (r#"{"model":"gpt-4o"}"#, Ok("gpt-4o")),
        (" \n{ \"messages\" : [ ] ,\r\n\t\"model\" :\t\"gpt-4o\" }\n", Ok("gpt-4o")),
        (
            r#"{"max_tokens":1024,"messages":[{"role":"user","content":"hi"}],"model":"claude-opus-4","stream":true}"#,
            Ok("claude-opus-4"),
        ),
        // Nested objects and arrays carry decoys.
        (r#"{"metadata":{"model":"decoy"},"model":"real"}"#, Ok("real")),
        (r#"{"tools":[{"input_schema":{"properties":{"model":{"type":"string"}}}}],"model":"real"}"#, Ok("real")),
        (r#"{"a":[[[{"model":"decoy"}]]],"model":"real","b":{"c":[{"model":"decoy"}]}}"#, Ok("real")),
        // So do strings, keys and values alike.
        (r#"{"content":"{\"model\":\"decoy\"}","model":"real"}"#, Ok("real")),
        (r#"{"say \"model\"":"decoy","model":"real"}"#, Ok("real")),
        (r#"{"x":"model","model":"real"}"#, Ok("real")),
        (r#"{"x":"\\","model":"real"}"#, Ok("real")),
        // Escapes in the key and the value are decoded.
        (r#"{"mod\u0065l":"real"}"#, Ok("real")),
        (r#"{"model":"org\/name-\u00e9"}"#, Ok("org/name-é")),
        (r#"{"model":""}"#, Ok("")),
        // Every kind of value is skipped.
        (r#"{"n":-0.5e+10,"i":0,"e":1E-2,"t":true,"f":false,"z":null,"model":"real"}"#, Ok("real")),
        // Not the model.
        (r#"{"models":"x","Model":"y","model ":"z"}"#, Err(Absent)),
        (r#"{"messages":[]}"#, Err(Absent)),
        ("{}", Err(Absent)),
        (" { } ", Err(Absent)),
        (r#"{"model":null}"#, Err(NotAString)),
        (r#"{"model":["a"]}"#, Err(NotAString)),
        (r#"{"model":{"name":"a"}}"#, Err(NotAString)),
        (r#"{"model":"a","model":"b"}"#, Err(Twice)),
        (r#"{"model":"a","mod\u0065l":"b"}"#, Err(Twice)),
        // Malformed: never a model.
        ("", Err(Malformed)),
        ("   ", Err(Malformed)),
        (r#"[{"model":"x"}]"#, Err(Malformed)),
        (r#""model""#, Err(Malformed)),
        (r#"{"model":"x""#, Err(Malformed)),
        (r#"{"model":"x"}}"#, Err(Malformed)),
        (r#"{"model":"x"} {}"#, Err(Malformed)),
        (r#"{"model":"x",}"#, Err(Malformed)),
        (r#"{"model" "x"}"#, Err(Malformed)),
        (r#"{model:"x"}"#, Err(Malformed)),
        (r#"{'model':'x'}"#, Err(Malformed)),
        ("{\"model\":\"a\nb\"}", Err(Malformed)),
        // A long run is skipped by `memchr`, and checked all the same.
        ("{\"model\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\tb\"}", Err(Malformed)),
        (r#"{"x":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\\","model":"real"}"#, Ok("real")),
        (r#"{"model":"\q"}"#, Err(Malformed)),
        (r#"{"model":"\u12"}"#, Err(Malformed)),
        (r#"{"model":"\u12g4"}"#, Err(Malformed)),
        (r#"{"n":01,"model":"x"}"#, Err(Malformed)),
        (r#"{"n":1.,"model":"x"}"#, Err(Malformed)),
        (r#"{"n":-,"model":"x"}"#, Err(Malformed)),
        (r#"{"n":1e,"model":"x"}"#, Err(Malformed)),
        (r#"{"n":+1,"model":"x"}"#, Err(Malformed)),
        (r#"{"n":tru,"model":"x"}"#, Err(Malformed)),
        (r#"{"n":nulls,"model":"x"}"#, Err(Malformed)),
        (r#"{"a":[1,],"model":"x"}"#, Err(Malformed)),
        (r#"{"a":[1 2],"model":"x"}"#, Err(Malformed)),
        (r#"{"a":{"b"},"model":"x"}"#, Err(Malformed)),
        ("\u{feff}{\"model\":\"x\"}", Err(Malformed)),
    ];
    for &(body, want) in cases {
        assert_eq!(model(body.as_bytes()).as_deref().map_err(|miss| *miss), want, "{body}");
    }
}

#[test]
fn bytes_that_are_not_utf8_or_nest_too_deep_name_no_model() {
    assert_eq!(model(b"{\"model\":\"\xff\"}"), Err(Miss::Malformed));
    assert_eq!(model(b"{\"x\":\"\xc3\",\"model\":\"a\"}"), Err(Miss::Malformed));
    let deep = format!(r#"{{"a":{}{},"model":"x"}}"#, "[".repeat(200), "]".repeat(200));
    assert_eq!(model(deep.as_bytes()), Err(Miss::TooDeep));
    let fine = format!(r#"{{"a":{}{},"model":"x"}}"#, "[".repeat(100), "]".repeat(100));
    assert_eq!(model(fine.as_bytes()).as_deref(), Ok("x"));
    // Deep enough to overflow a recursive parser without the limit, on any thread.
    let hostile = "[".repeat(1_000_000);
    assert_eq!(model(format!(r#"{{"a":{hostile}"#).as_bytes()), Err(Miss::TooDeep));
}

#[test]
fn a_prefix_scan_stops_at_the_model_or_its_limit() {
    let body = br#"{"messages":[{"role":"user","content":"0123456789"}],"model":"m","model":"again"}"#;
    let model_at = body.windows(7).position(|w| w == b"\"model\"").unwrap();
    // The whole scan refuses the duplicate; the prefix scan reads the first.
    assert_eq!(model_span(body, Scan::Whole), Err(Miss::Twice));
    let span = model_span(body, Scan::Prefix(body.len())).unwrap();
    assert_eq!(&body[span], b"\"m\"");
    assert!(model_span(body, Scan::Prefix(model_at + 12)).is_ok(), "a limit just past the value finds it");
    for limit in [0, 1, 12, model_at, model_at + 10] {
        assert_eq!(model_span(body, Scan::Prefix(limit)), Err(Miss::BeyondPrefix), "limit {limit}");
    }
    assert_eq!(model_span(br#"{"model":"a\u00"#, Scan::Prefix(14)), Err(Miss::BeyondPrefix));
    // Within the prefix, malformed is malformed.
    assert_eq!(model_span(br#"{"model" "m"} and more"#, Scan::Prefix(12)), Err(Miss::Malformed));
}

#[test]
fn a_plain_name_is_borrowed_and_an_escaped_one_decoded() {
    assert!(matches!(decode_string(br#""gpt-4o""#), Some(Cow::Borrowed("gpt-4o"))));
    assert_eq!(decode_string(br#""a\"b\\c\u00e9\ud83d\ude00""#).as_deref(), Some("a\"b\\cé😀"));
    assert_eq!(decode_string(br#""\ud800""#), None, "a lone surrogate decodes to no string");
    assert_eq!(decode_string(b"\"\xff\""), None);
    assert_eq!(decode_string(b"gpt"), None);
    assert_eq!(decode_string(b"\""), None);
}

#[test]
fn splicing_changes_the_value_and_no_other_byte() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{ "model" : "claude-opus-4" ,"max_tokens":1024}"#,
            "claude-sonnet-4",
            r#"{ "model" : "claude-sonnet-4" ,"max_tokens":1024}"#,
        ),
        // Key order, spacing and the caller's escapes stay as they were.
        (
            "{\n  \"system\": \"caf\\u00e9 \\ud83d\\ude00\",\n  \"model\": \"a\",\n  \"z\": [1.50, 2e3]\n}\n",
            "b",
            "{\n  \"system\": \"caf\\u00e9 \\ud83d\\ude00\",\n  \"model\": \"b\",\n  \"z\": [1.50, 2e3]\n}\n",
        ),
        (r#"{"model":"org\/a"}"#, "org/b", r#"{"model":"org/b"}"#),
        // The new name is escaped as JSON needs.
        (r#"{"model":"a"}"#, "we\"ird\\name\n", r#"{"model":"we\"ird\\name\n"}"#),
        (r#"{"model":"a"}"#, "modèle", r#"{"model":"modèle"}"#),
    ];
    for &(body, to, want) in cases {
        let span = model_span(body.as_bytes(), Scan::Whole).unwrap();
        let spliced = splice(body.as_bytes(), span, to).unwrap();
        assert_eq!(String::from_utf8(spliced).unwrap(), want, "{body}");
        assert_eq!(model(want.as_bytes()).as_deref(), Ok(to));
    }
    assert_eq!(splice(b"{}", 1..9, "x"), None, "a span past the body splices nothing");
}

/// A JSON value, nested a few levels, its strings often naming `model`.
fn value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let text = prop_oneof![Just("model".to_owned()), Just("\"model\":\"x\"".to_owned()), any::<String>()];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text.clone(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A body: other members around a `"model"` member, each written compact or
/// pretty, with arbitrary JSON whitespace between the tokens we write.
fn body() -> impl Strategy<Value = (Vec<u8>, String)> {
    let space =
        || prop::collection::vec(prop::sample::select(vec![" ", "\t", "\n", "\r\n"]), 0..3).prop_map(|s| s.concat());
    let others = prop::collection::vec(
        ("[a-z]{1,8}".prop_filter("not the model", |k| k != "model"), value(), any::<bool>()),
        0..5,
    );
    (others, any::<String>(), any::<prop::sample::Index>(), space(), space(), space()).prop_map(
        |(others, model, at, s1, s2, s3)| {
            let mut members: Vec<String> = others
                .iter()
                .map(|(key, value, pretty)| {
                    let value =
                        if *pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
                    format!("{}{s1}:{s2}{}", serde_json::to_string(key).unwrap(), value.unwrap())
                })
                .collect();
            members.dedup_by(|a, b| a.split(':').next() == b.split(':').next());
            let member = format!("\"model\"{s2}:{s1}{}", serde_json::to_string(&model).unwrap());
            members.insert(at.index(members.len() + 1), member);
            (format!("{s3}{{{s1}{}{s2}}}{s3}", members.join(&format!("{s2},{s1}"))).into_bytes(), model)
        },
    )
}

proptest! {
    #[test]
    fn splicing_keeps_every_byte_outside_the_value((body, model) in body(), to in any::<String>()) {
        let span = model_span(&body, Scan::Whole).unwrap();
        prop_assert_eq!(decode_string(&body[span.clone()]), Some(Cow::Borrowed(model.as_str())));
        let spliced = splice(&body, span.clone(), &to).unwrap();
        let tail = body.len() - span.end;
        prop_assert_eq!(&spliced[..span.start], &body[..span.start]);
        prop_assert_eq!(&spliced[spliced.len() - tail..], &body[span.end..]);
        let value = &spliced[span.start..spliced.len() - tail];
        prop_assert_eq!(decode_string(value), Some(Cow::Borrowed(to.as_str())));
        // And the result is the same document but for the model.
        let mut before: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let after: serde_json::Value = serde_json::from_slice(&spliced).unwrap();
        before["model"] = serde_json::Value::String(to);
        prop_assert_eq!(before, after);
    }

    /// A body broken by one edit: the scan finds a model only when serde_json
    /// reads the body as an object, and never panics.
    #[test]
    fn the_scan_agrees_with_serde_json_on_what_is_json((body, _) in body(), at in any::<prop::sample::Index>(), byte in any::<u8>(), edit in 0..3u8) {
        let mut body = body;
        let i = at.index(body.len());
        match edit {
            0 => body[i] = byte,
            1 => { body.remove(i); }
            _ => body.insert(i, byte),
        }
        // serde_json refuses lone surrogates our scan lets through (it only
        // splices around them); an edit can make one from `\u00XX`.
        prop_assume!(!body.windows(3).any(|w| w.eq_ignore_ascii_case(b"\\ud")));
        let scanned = model_span(&body, Scan::Whole);
        let parsed = serde_json::from_slice::<serde_json::Value>(&body);
        // serde_json also refuses numbers past f64's range (`1E400`), which JSON allows.
        prop_assume!(!parsed.as_ref().is_err_and(|e| e.to_string().contains("number out of range")));
        let is_object = matches!(parsed, Ok(serde_json::Value::Object(_)));
        prop_assert_eq!(is_object, !matches!(scanned, Err(Miss::Malformed)), "{:?}", String::from_utf8_lossy(&body));
        for limit in [0, i, body.len()] {
            let _ = model_span(&body, Scan::Prefix(limit));
        }
    }
}
