//! The storm chart, written as plain SVG text: two panels over one time
//! axis, successes (with the most the server's window admits) above, the
//! 429s each client collected below.

use std::fmt::Write;

use crate::storm::StormRun;

const WIDTH: f64 = 880.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 290.0;
const TOP: f64 = 66.0;
const PANEL: f64 = 210.0;
const GAP: f64 = 56.0;
const BOTTOM: f64 = 46.0;
const COLORS: [&str; 5] = ["#7f7f7f", "#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

/// Cumulative responses over time, per client.
pub fn storm_chart(runs: &[StormRun], title: &str) -> String {
    let Some(first) = runs.first() else { return String::new() };
    let t_last =
        runs.iter().flat_map(|r| r.timeline.iter().map(|&(t, _)| t)).fold(first.minimum.as_secs_f64(), f64::max);
    let step = tick_step(t_last);
    let t_max = (t_last / step).ceil() * step;
    let height = TOP + 2.0 * PANEL + GAP + BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + t / t_max * plot_w;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#, escape(title));

    let panels =
        [(TOP, "200 OK (cumulative)", true), (TOP + PANEL + GAP, "429 answers: wasted calls (cumulative)", false)];
    for (top, label, ok) in panels {
        let count = |run: &StormRun| run.timeline.iter().filter(|&&(_, s)| (s == 200) == ok).count();
        let y_max = nice_ceiling(runs.iter().map(count).max().unwrap_or(1).max(1) as f64);
        let y = |n: f64| top + PANEL - n / y_max * PANEL;
        for i in 0..=4 {
            let n = y_max * f64::from(i) / 4.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{n}</text>"##,
                y(n),
                LEFT + plot_w,
                LEFT - 6.0,
                y(n) + 4.0
            );
        }
        let mut t = 0.0;
        while t <= t_max + 1e-9 {
            let _ = writeln!(
                svg,
                r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1:.1}" stroke="#e5e5e5"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{t}</text>"##,
                x(t),
                top + PANEL,
                top + PANEL + 16.0
            );
            t += step;
        }
        let _ = writeln!(svg, r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{label}</text>"#, top - 8.0);
        if ok {
            // The most the server admits: `limit` more per window.
            let limit = f64::from(first.limit);
            let w = first.window.as_secs_f64();
            let windows = (first.requests as f64 / limit).ceil() as u32;
            let mut points = String::new();
            for k in 0..windows {
                let before = (f64::from(k) * limit).min(first.requests as f64);
                let after = (before + limit).min(first.requests as f64);
                let t0 = f64::from(k) * w;
                let _ = write!(points, "{:.1},{:.1} {:.1},{:.1} ", x(t0), y(before), x(t0), y(after));
                let _ = write!(points, "{:.1},{:.1} ", x((t0 + w).min(t_max)), y(after));
            }
            let _ = writeln!(
                svg,
                r##"<polyline points="{points}" fill="none" stroke="#cccccc" stroke-width="7" stroke-linejoin="round"/>"##
            );
        }
        for (i, run) in runs.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut points = format!("{:.1},{:.1} ", x(0.0), y(0.0));
            let mut n = 0.0;
            for &(t, status) in &run.timeline {
                if (status == 200) == ok {
                    let _ = write!(points, "{:.1},{:.1} ", x(t), y(n));
                    n += 1.0;
                    let _ = write!(points, "{:.1},{:.1} ", x(t), y(n));
                }
            }
            let _ = writeln!(
                svg,
                r#"<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.8" stroke-linejoin="round"/>"#
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the storm began</text>"#,
        LEFT + plot_w / 2.0,
        height - 10.0
    );

    // Legend, with each client's totals.
    let lx = LEFT + plot_w + 18.0;
    let mut ly = TOP + 8.0;
    let _ = writeln!(
        svg,
        r##"<line x1="{lx}" y1="{ly}" x2="{0}" y2="{ly}" stroke="#cccccc" stroke-width="7"/><text x="{1}" y="{2}">most the server admits</text>"##,
        lx + 24.0,
        lx + 30.0,
        ly + 4.0
    );
    for (i, run) in runs.iter().enumerate() {
        ly += 40.0;
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            svg,
            r##"<line x1="{lx}" y1="{ly}" x2="{0}" y2="{ly}" stroke="{color}" stroke-width="2.5"/><text x="{1}" y="{2}">{3}</text><text x="{1}" y="{4}" fill="#555">{5} ok, {6} × 429, done at {7:.2} s</text>"##,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(run.kind.plain_name()),
            ly + 19.0,
            run.successes,
            run.seen - run.successes as usize,
            run.makespan.as_secs_f64()
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2, 2.5 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.max(1e-9).log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&c| c >= v).unwrap_or(10.0 * magnitude)
}

/// A round tick spacing giving at most about ten ticks.
fn tick_step(t_max: f64) -> f64 {
    let raw = t_max.max(1e-3) / 10.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&c| c >= raw).unwrap_or(magnitude * 10.0)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
