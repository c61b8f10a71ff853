//! The storm chart: two panels over one time axis, successes (with the most the server's
//! window admits) above, the 429s each client collected below.

use crate::storm::StormRun;
use crate::svg::{COLORS, Figure, Key, Line, Panel, nice_ceiling};

const PANEL: f64 = 210.0;
/// The band of what the server admits.
const ADMITS: &str = "#cccccc";

/// Cumulative responses over time, per client.
pub fn storm_chart(runs: &[StormRun], title: &str) -> String {
    let Some(first) = runs.first() else { return String::new() };
    let x_end =
        runs.iter().flat_map(|r| r.timeline.iter().map(|&(t, _)| t)).fold(first.minimum.as_secs_f64(), f64::max);
    let panels =
        [(true, "200 OK (cumulative)"), (false, "429 answers: wasted calls (cumulative)")].map(|(ok, title)| {
            let count = |run: &StormRun| run.timeline.iter().filter(|&&(_, s)| (s == 200) == ok).count();
            let mut lines = Vec::new();
            if ok {
                lines.push(Line { points: admitted(first), color: ADMITS, width: 7.0 });
            }
            for (i, run) in runs.iter().enumerate() {
                let mut points = vec![(0.0, 0.0)];
                let mut n = 0.0;
                for &(t, status) in &run.timeline {
                    if (status == 200) == ok {
                        points.push((t, n));
                        n += 1.0;
                        points.push((t, n));
                    }
                }
                lines.push(Line { points, color: COLORS[i % COLORS.len()], width: 1.8 });
            }
            let legend = if ok { legend(runs) } else { Vec::new() };
            let y_max = nice_ceiling(runs.iter().map(count).max().unwrap_or(1).max(1) as f64);
            Panel { title: title.to_owned(), y_max, lines, legend }
        });
    let figure = Figure {
        title: title.to_owned(),
        x_label: "seconds since the storm began".to_owned(),
        x_end,
        panel_height: PANEL,
        panels: panels.into(),
    };
    figure.render()
}

/// The most the server admits: `limit` more per window.
fn admitted(run: &StormRun) -> Vec<(f64, f64)> {
    let limit = f64::from(run.limit);
    let w = run.window.as_secs_f64();
    let requests = run.requests as f64;
    let windows = (requests / limit).ceil() as u32;
    let mut points = Vec::new();
    for k in 0..windows {
        let before = (f64::from(k) * limit).min(requests);
        let after = (before + limit).min(requests);
        let t0 = f64::from(k) * w;
        points.extend([(t0, before), (t0, after), (t0 + w, after)]);
    }
    points
}

/// The band, then each client with its totals.
fn legend(runs: &[StormRun]) -> Vec<Key> {
    let band = Key { color: ADMITS, width: 7.0, name: "most the server admits".to_owned(), detail: None };
    let clients = runs.iter().enumerate().map(|(i, run)| Key {
        color: COLORS[i % COLORS.len()],
        width: 2.5,
        name: run.kind.plain_name().to_owned(),
        detail: Some(format!(
            "{} ok, {} × 429, done at {:.2} s",
            run.successes,
            run.seen - run.successes as usize,
            run.makespan.as_secs_f64()
        )),
    });
    std::iter::once(band).chain(clients).collect()
}
