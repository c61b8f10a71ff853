//! This package is the README followed to the letter, so it must not drift from it: its
//! dependencies are what the README's `cargo add` lines give, `src/main.rs` is the Usage
//! example and `tests/bot.rs` the mock-kit tests, character for character.

use std::collections::{BTreeMap, BTreeSet};

/// Per dependency table (`dependencies`, `dev-dependencies`) and crate: its features.
/// `default-features = false` counts as the feature `!default`.
type Deps = BTreeMap<(&'static str, String), BTreeSet<String>>;

const NORMAL: &str = "dependencies";
const DEV: &str = "dev-dependencies";

fn read(path: &str) -> String {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text under the README's `## {title}` heading, up to the next `## ` heading.
fn section<'a>(readme: &'a str, title: &str) -> &'a str {
    let heading = format!("\n## {title}\n");
    let start = readme.find(&heading).unwrap_or_else(|| panic!("no section \"{title}\" in README.md")) + heading.len();
    let len = readme[start..].find("\n## ").unwrap_or(readme.len() - start);
    &readme[start..start + len]
}

/// The fenced code blocks of `text` whose info string starts with `lang`, each without its fences.
fn code_blocks(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    // Inside a fence: `Some(wanted)`, with the block collected so far when it is wanted.
    let mut fence: Option<Option<String>> = None;
    for line in text.lines() {
        match (fence.take(), line.strip_prefix("```")) {
            (None, Some(info)) => fence = Some(info.starts_with(lang).then(String::new)),
            (None, None) => {}
            (Some(block), Some(_)) => blocks.extend(block),
            (Some(mut block), None) => {
                if let Some(block) = &mut block {
                    block.push_str(line);
                    block.push('\n');
                }
                fence = Some(block);
            }
        }
    }
    blocks
}

/// What the `cargo add` commands in `script` (a shell block) put in Cargo.toml. Any flag
/// other than `--dev` and `-F`/`--features` is refused: this test must know what it means.
fn parse_cargo_add(script: &str) -> Deps {
    let mut deps = Deps::new();
    for command in script.replace("\\\n", " ").lines() {
        let command = command.split(" #").next().unwrap_or_default();
        let Some(args) = command.trim().strip_prefix("cargo add ") else { continue };
        let (mut table, mut crates, mut features) = (NORMAL, Vec::new(), Vec::new());
        let mut args = args.split_whitespace();
        while let Some(arg) = args.next() {
            match arg {
                "--dev" => table = DEV,
                "-F" | "--features" => {
                    let list = args.next().unwrap_or_else(|| panic!("{arg} without features in `{command}`"));
                    features.extend(list.split(',').filter(|f| !f.is_empty()).map(str::to_owned));
                }
                flag if flag.starts_with('-') => panic!("`{flag}` in `{command}`: teach this test what it does"),
                name => crates.push(name.split('@').next().unwrap_or_default().to_owned()),
            }
        }
        for name in &crates {
            deps.entry((table, name.clone())).or_default();
        }
        for feature in features {
            let (name, feature) = match feature.split_once('/') {
                Some((name, feature)) => (name.to_owned(), feature.to_owned()),
                None if crates.len() == 1 => (crates[0].clone(), feature),
                None => panic!("`{feature}` in `{command}`: which crate's feature?"),
            };
            let entry = deps.get_mut(&(table, name.clone()));
            entry.unwrap_or_else(|| panic!("feature of {name}, not added by `{command}`")).insert(feature);
        }
    }
    deps
}

/// The `[dependencies]` and `[dev-dependencies]` of a manifest written one dependency a line.
fn parse_manifest(manifest: &str) -> Deps {
    let mut deps = Deps::new();
    let mut table = None;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            table = [NORMAL, DEV].into_iter().find(|t| line == format!("[{t}]"));
            continue;
        }
        let (Some(table), Some((name, spec))) = (table, line.split_once(" = ")) else { continue };
        let mut features: BTreeSet<String> = match spec.split_once("features = [") {
            Some((_, list)) => list
                .split(']')
                .next()
                .unwrap_or_default()
                .split(',')
                .map(|f| f.trim().trim_matches('"').to_owned())
                .filter(|f| !f.is_empty())
                .collect(),
            None => BTreeSet::new(),
        };
        if spec.contains("default-features = false") {
            features.insert("!default".into());
        }
        deps.insert((table, name.to_owned()), features);
    }
    deps
}

#[test]
fn the_manifest_has_exactly_what_the_readme_cargo_add_lines_give() {
    let readme = read("../../README.md");
    let script = code_blocks(section(&readme, "Set-up"), "sh").concat();
    let from_readme = parse_cargo_add(&script);
    assert!(!from_readme.is_empty(), "no `cargo add` line in the README's Set-up");
    assert_eq!(parse_manifest(&read("Cargo.toml")), from_readme, "tests/newcomer/Cargo.toml against README.md");
}

#[test]
fn the_sources_are_the_readme_examples() {
    let readme = read("../../README.md");
    let usage = code_blocks(section(&readme, "Usage"), "rust");
    assert_eq!(usage.first().map(String::as_str), Some(read("src/main.rs").as_str()), "README Usage vs src/main.rs");
    let testing = code_blocks(section(&readme, "Testing with the mock kit"), "rust");
    assert_eq!(testing, [read("tests/bot.rs")], "README mock-kit tests vs tests/bot.rs");
}

#[test]
fn cargo_add_lines_are_read_as_cargo_reads_them() {
    let deps = |entries: &[(&'static str, &str, &[&str])]| -> Deps {
        entries.iter().map(|(t, n, f)| ((*t, n.to_string()), f.iter().map(|f| f.to_string()).collect())).collect()
    };
    let cases: &[(&str, Deps)] = &[
        ("cargo add a b", deps(&[(NORMAL, "a", &[]), (NORMAL, "b", &[])])),
        ("cargo add a@1.2 -F x,y  # comment -F z", deps(&[(NORMAL, "a", &["x", "y"])])),
        ("cargo add a b \\\n    --features a/x,b/y,b/z", deps(&[(NORMAL, "a", &["x"]), (NORMAL, "b", &["y", "z"])])),
        ("cargo add --dev a -F m\ncargo add a", deps(&[(DEV, "a", &["m"]), (NORMAL, "a", &[])])),
        ("cargo run --example demo", Deps::new()),
    ];
    for (script, expected) in cases {
        assert_eq!(&parse_cargo_add(script), expected, "{script}");
    }
    let refused = ["cargo add a --no-default-features", "cargo add a b -F x", "cargo add a -F b/x"];
    for script in refused {
        assert!(std::panic::catch_unwind(|| parse_cargo_add(script)).is_err(), "{script} was not refused");
    }
}

#[test]
fn manifests_are_read_with_their_features() {
    let manifest = "[package]\nname = \"p\"\n\n[dependencies]\na = \"1\"\nb = { version = \"1\", features = [\"x\", \"y\"] }\nc = { version = \"1\", default-features = false }\n\n[dev-dependencies]\nb = { path = \"..\", features = [\"m\"] }\n\n[[test]]\nname = \"t\"\n";
    let found = parse_manifest(manifest);
    let expected: Deps = [
        ((NORMAL, "a".to_owned()), BTreeSet::new()),
        ((NORMAL, "b".to_owned()), ["x".to_owned(), "y".to_owned()].into()),
        ((NORMAL, "c".to_owned()), ["!default".to_owned()].into()),
        ((DEV, "b".to_owned()), ["m".to_owned()].into()),
    ]
    .into();
    assert_eq!(found, expected);
}
