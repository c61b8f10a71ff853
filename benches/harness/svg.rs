//! Line charts written as plain SVG text: panels stacked over one time axis, each with its
//! title, grid and legend. The harness draws its storm chart with it (`storm_chart.rs`), and
//! the `metrics_prometheus` test draws the dashboard picture of `docs/dashboard.svg` (it
//! includes this file through `#[path]`).

use std::fmt::Write;

const WIDTH: f64 = 880.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 290.0;
const TOP: f64 = 66.0;
const GAP: f64 = 56.0;
const BOTTOM: f64 = 46.0;
/// Line colours, in order.
pub const COLORS: [&str; 5] = ["#7f7f7f", "#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

/// A chart: panels stacked over one time axis.
pub struct Figure {
    pub title: String,
    pub x_label: String,
    /// The last x the axis must reach; points beyond the rounded axis end are drawn at it.
    pub x_end: f64,
    pub panel_height: f64,
    pub panels: Vec<Panel>,
}

/// One panel: its lines, and a legend beside it.
pub struct Panel {
    pub title: String,
    /// The top of the y axis, rounded up; lines above it leave the panel.
    pub y_max: f64,
    pub lines: Vec<Line>,
    pub legend: Vec<Key>,
}

/// A polyline through points in data units (x, y).
pub struct Line {
    pub points: Vec<(f64, f64)>,
    pub color: &'static str,
    pub width: f64,
}

/// A legend entry: a stroke, a name and an optional second line.
pub struct Key {
    pub color: &'static str,
    pub width: f64,
    pub name: String,
    pub detail: Option<String>,
}

impl Figure {
    pub fn render(&self) -> String {
        let step = tick_step(self.x_end);
        let t_max = (self.x_end / step).ceil() * step;
        let n = self.panels.len() as f64;
        let height = TOP + n * self.panel_height + (n - 1.0).max(0.0) * GAP + BOTTOM;
        let plot_w = WIDTH - LEFT - RIGHT;
        let x = |t: f64| LEFT + t.min(t_max) / t_max * plot_w;

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        for (i, panel) in self.panels.iter().enumerate() {
            let top = TOP + i as f64 * (self.panel_height + GAP);
            let y = |v: f64| top + self.panel_height - v / panel.y_max * self.panel_height;
            for i in 0..=4 {
                let v = panel.y_max * f64::from(i) / 4.0;
                let _ = writeln!(
                    svg,
                    r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{v}</text>"##,
                    y(v),
                    LEFT + plot_w,
                    LEFT - 6.0,
                    y(v) + 4.0
                );
            }
            let mut t: f64 = 0.0;
            while t <= t_max + 1e-9 {
                // Sums of steps drift (0.6000000000000001): the label is rounded, not the position.
                let label = (t * 1e9).round() / 1e9;
                let _ = writeln!(
                    svg,
                    r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1:.1}" stroke="#e5e5e5"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{label}</text>"##,
                    x(t),
                    top + self.panel_height,
                    top + self.panel_height + 16.0
                );
                t += step;
            }
            let _ = writeln!(
                svg,
                r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text>"#,
                top - 8.0,
                escape(&panel.title)
            );
            for line in &panel.lines {
                let mut points = String::new();
                for &(t, v) in &line.points {
                    let _ = write!(points, "{:.1},{:.1} ", x(t), y(v));
                }
                let _ = writeln!(
                    svg,
                    r#"<polyline points="{points}" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round"/>"#,
                    line.color, line.width
                );
            }
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            height - 10.0,
            escape(&self.x_label)
        );
        let lx = LEFT + plot_w + 18.0;
        for (i, panel) in self.panels.iter().enumerate() {
            let mut ly = TOP + i as f64 * (self.panel_height + GAP) + 8.0;
            for (k, key) in panel.legend.iter().enumerate() {
                if k > 0 {
                    ly += if key.detail.is_some() { 40.0 } else { 20.0 };
                }
                let _ = write!(
                    svg,
                    r#"<line x1="{lx}" y1="{ly}" x2="{0}" y2="{ly}" stroke="{1}" stroke-width="{2}"/><text x="{3}" y="{4}">{5}</text>"#,
                    lx + 24.0,
                    key.color,
                    key.width,
                    lx + 30.0,
                    ly + 4.0,
                    escape(&key.name)
                );
                if let Some(detail) = &key.detail {
                    let _ = write!(
                        svg,
                        r##"<text x="{}" y="{}" fill="#555">{}</text>"##,
                        lx + 30.0,
                        ly + 19.0,
                        escape(detail)
                    );
                }
                svg.push('\n');
            }
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// 1, 2, 2.5 or 5 times a power of ten, at least `v`.
pub fn nice_ceiling(v: f64) -> f64 {
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
