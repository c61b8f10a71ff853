//! Small statistics and formatting helpers.

use std::time::Duration;

use crate::clients::Kind;

/// The median (mean of the two middle values for an even count); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

/// The `q` quantile (0..=1), nearest rank.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// The order in which `n` clients take their turns in cycle `cycle`: a
/// permutation drawn from a fixed seed, so that no client always follows the
/// same one (rotating A B C D E keeps every client's predecessor fixed, and
/// a request is measurably affected by what ran just before it).
pub fn turn_order<const N: usize>(cycle: u64) -> [usize; N] {
    // splitmix64: enough to shuffle five items, and reproducible.
    let mut state = cycle.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    for i in (1..N).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `1.234 s`, `56.7 ms` or `89 µs`.
pub fn fmt_secs(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{:.1} µs", secs * 1e6)
    }
}

/// Requests the server saw beyond the successes, per success.
pub fn wasted_per_success(seen: usize, successes: u64) -> f64 {
    (seen as f64 - successes as f64) / (successes as f64).max(1.0)
}

/// The cells the storm tables share: client, successes, give-ups, requests the
/// server saw, wasted calls per success, makespan and its ratio (`digits` decimals).
pub fn outcome_cells(
    kind: Kind,
    (successes, give_ups, seen): (u64, u64, usize),
    makespan: Duration,
    ratio: f64,
    digits: usize,
) -> Vec<String> {
    vec![
        kind.name().into(),
        successes.to_string(),
        give_ups.to_string(),
        seen.to_string(),
        format!("{:.digits$}", wasted_per_success(seen, successes)),
        fmt_secs(makespan.as_secs_f64()),
        format!("{ratio:.digits$}"),
    ]
}

/// A markdown table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut out = format!("| {} |\n", self.header.join(" | "));
        out += &format!(
            "|{}\n",
            self.header.iter().enumerate().map(|(i, _)| if i == 0 { "---|" } else { "--:|" }).collect::<String>()
        );
        for row in &self.rows {
            out += &format!("| {} |\n", row.join(" | "));
        }
        out
    }
}
