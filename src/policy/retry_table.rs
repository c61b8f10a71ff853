//! The table of what is retried, rendered from the policy data itself, so that
//! the README and the crate docs (which both carry `docs/what-is-retried.md`)
//! cannot drift from what the middleware does. After changing a table in
//! `policy.rs`: `UPDATE_DOCS=1 cargo test --lib retry_table`, then paste the
//! file into README.md's "What is retried".

use std::fmt::Write;

use super::*;
use crate::parse::parse_error_body;

/// One condition set, short: `429 `insufficient_quota``, `“prompt is too long”`.
fn condition(row: &Row<'_>) -> String {
    let mut parts = Vec::new();
    parts.extend(row.status.map(|s| s.to_string()));
    parts.extend(row.error_type.map(|t| format!("`{t}`")));
    parts.extend(row.code.map(|c| format!("`{c}`")));
    parts.extend(row.message.map(|m| format!("\"{m}\"")));
    if let Some(wait) = row.min_wait {
        parts.push(format!("asking to wait ≥ {} h", wait.as_secs() / 3600));
    }
    parts.join(" ")
}

/// Rows grouped by kind, in table order: `QuotaExceeded: a, b; Billing: c`.
fn by_kind(rows: &[&Row<'_>]) -> Vec<String> {
    let mut groups: Vec<(ErrorKind, Vec<String>)> = Vec::new();
    for row in rows {
        match groups.iter_mut().find(|(kind, _)| *kind == row.kind) {
            Some((_, conditions)) => conditions.push(condition(row)),
            None => groups.push((row.kind, vec![condition(row)])),
        }
    }
    groups.into_iter().map(|(kind, conditions)| format!("{kind:?}: {}", conditions.join(", "))).collect()
}

/// Whether a row says more than its status alone does (a status row that only
/// restates `ErrorKind::from_status` is covered by "every other 4xx").
fn noteworthy(row: &Row<'_>) -> bool {
    let plain_status = row.status.and_then(|s| StatusCode::from_u16(s).ok()).map(ErrorKind::from_status);
    row.error_type.is_some()
        || row.code.is_some()
        || row.message.is_some()
        || row.min_wait.is_some()
        || plain_status != Some(row.kind)
}

/// Statuses retried with no body to go by, for `provider`.
fn retried_statuses(provider: Provider) -> Vec<u16> {
    (400..=599)
        .filter(|&status| {
            let parsed = parse_error_body(b"", status);
            let Ok(code) = StatusCode::from_u16(status) else { return false };
            classify(provider, &Facts::new(code, &parsed, None), &[]).retry
        })
        .collect()
}

/// `408, 409, 429, 5xx`: each 4xx, and the 5xx as a class when all of them are in.
fn statuses(list: &[u16]) -> String {
    let all_5xx = (500..=599).all(|s| list.contains(&s));
    let mut shown: Vec<String> = list.iter().filter(|&&s| s < 500 || !all_5xx).map(u16::to_string).collect();
    if all_5xx {
        shown.push("5xx".to_owned());
    }
    shown.join(", ")
}

/// The two cells of a provider's row: retried, and returned at once.
fn cells(provider: Provider) -> (String, String) {
    let policy = policy(provider);
    let own: Vec<&Row<'_>> = policy.signals.iter().chain(policy.statuses).filter(|r| noteworthy(r)).collect();
    let retried = retried_statuses(provider);
    let mut yes = vec![statuses(&retried)];
    yes.extend(by_kind(&own.iter().copied().filter(|r| r.retry).collect::<Vec<_>>()));
    let mut no = Vec::new();
    no.extend(by_kind(&own.iter().copied().filter(|r| !r.retry).collect::<Vec<_>>()));
    no.push("every other 4xx".to_owned());
    if (500..=599).any(|s| !retried.contains(&s)) {
        no.push("every other 5xx".to_owned());
    }
    (yes.join("; "), no.join("; "))
}

/// The markdown of `docs/what-is-retried.md`.
pub(super) fn render() -> String {
    let mut rows: Vec<(Vec<String>, (String, String))> = Vec::new();
    for &provider in Provider::ALL {
        let cells = cells(provider);
        match rows.iter_mut().find(|(_, c)| *c == cells) {
            Some((names, _)) => names.push(provider.to_string()),
            None => rows.push((vec![provider.to_string()], cells)),
        }
    }
    let mut out = String::from("| Provider | Retried | Returned at once |\n|---|---|---|\n");
    for (names, (yes, no)) in rows {
        let _ = writeln!(out, "| {} | {yes} | {no} |", names.join(", "));
    }
    let common: Vec<&Row<'_>> = COMMON_SIGNALS.iter().collect();
    assert!(common.iter().all(|r| !r.retry), "the shared signals are all terminal");
    let _ = writeln!(
        out,
        "| every provider (after its own error codes, before its statuses) | | {} |",
        by_kind(&common).join("; ")
    );
    out.push_str(
        "\nA number is a status, `code` the provider's error type or code (Gemini quota ids and Azure \
         inner codes included), \"text\" a part of the message; conditions in one entry must all hold. \
         Kinds are `ErrorKind` variants. 498 is the status Groq sends when its Flex tier has no capacity \
         left (`capacity_exceeded`): an overload, retried like a 503.\n",
    );
    out
}

#[test]
fn the_documented_table_is_the_policy() {
    let table = render();
    let root = env!("CARGO_MANIFEST_DIR");
    let path = format!("{root}/docs/what-is-retried.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &table).expect("write docs/what-is-retried.md");
    }
    let file = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        file == table,
        "docs/what-is-retried.md is not the policy: run `UPDATE_DOCS=1 cargo test --lib retry_table` \
         and paste it into README.md. Expected:\n{table}"
    );
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    assert!(readme.contains(&table), "README.md's \"What is retried\" is not docs/what-is-retried.md:\n{table}");
}
