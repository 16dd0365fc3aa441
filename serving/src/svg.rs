//! Charts drawn on the server as SVG: stacked bars on the left axis, lines on the
//! left or right axis, labelled totals above the plot. No JavaScript and no fonts to
//! load; every mark carries a `<title>` tooltip, and every total its exact value in a
//! `data-value` attribute (what the browser test reads).

use std::collections::BTreeMap;
use std::fmt::Write;

/// How a number reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Usd,
    Count,
    /// A ratio in [0, 1], shown as a percentage.
    Ratio,
}

impl Unit {
    /// Exact enough for a label: dollars with cents, counts with separators.
    pub fn full(self, v: f64) -> String {
        match self {
            Unit::Usd => {
                let s = grouped(v.abs(), 2);
                if v < 0.0 {
                    format!("-${s}")
                } else {
                    format!("${s}")
                }
            }
            Unit::Count => {
                let s = grouped(v.abs(), if v.fract() == 0.0 { 0 } else { 1 });
                if v < 0.0 { format!("-{s}") } else { s }
            }
            Unit::Ratio => format!("{:.1}%", v * 100.0),
        }
    }

    /// Short, for an axis tick.
    fn short(self, v: f64) -> String {
        let (scaled, suffix) = match v.abs() {
            a if a >= 1e9 => (v / 1e9, "B"),
            a if a >= 1e6 => (v / 1e6, "M"),
            a if a >= 1e3 => (v / 1e3, "k"),
            _ => (v, ""),
        };
        let n = if scaled.fract() == 0.0 {
            format!("{scaled:.0}")
        } else {
            format!("{scaled:.1}")
        };
        match self {
            Unit::Usd => format!("${n}{suffix}"),
            Unit::Count => format!("{n}{suffix}"),
            Unit::Ratio => format!("{:.0}%", v * 100.0),
        }
    }
}

/// `v` with `decimals` places and thousands separators.
fn grouped(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// Text for HTML and SVG, in content and in attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One value per category.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Left,
    Right,
}

/// A labelled total shown above the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Total {
    /// The column it sums (its `data-metric`).
    pub metric: &'static str,
    pub label: &'static str,
    pub value: f64,
    pub unit: Unit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The query it draws (`q1`..`q5`, `tickets`): the SVG's `data-query`.
    pub query: &'static str,
    pub title: String,
    pub categories: Vec<String>,
    /// Stacked, on the left axis.
    pub bars: Vec<Series>,
    pub left_unit: Unit,
    pub lines: Vec<(Series, Axis)>,
    pub right_unit: Unit,
    pub totals: Vec<Total>,
    /// Marks above the bars of a category (q1: the day's cost anomalies).
    pub markers: Vec<Marker>,
}

/// A mark above a category's bars, with what it stands for as its tooltip.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub category: String,
    /// Its `data-key` (q1: `usage_date/service`).
    pub key: String,
    pub label: String,
}

const W: f64 = 960.0;
const H: f64 = 340.0;
const X0: f64 = 72.0;
const X1: f64 = W - 72.0;
const Y0: f64 = 78.0;
const Y1: f64 = H - 42.0;
/// The bar colours, then the line colours (Tableau 10).
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
const LINE_COLOURS: [&str; 3] = ["#222222", "#d62728", "#6a3d9a"];

/// A "nice" axis maximum and step for values up to `max` (1, 2 or 5 times a power
/// of ten, five steps or so).
fn nice_axis(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.25);
    }
    let raw = max / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow);
    ((max / step).ceil() * step, step)
}

impl Chart {
    fn left_max(&self) -> f64 {
        let n = self.categories.len();
        let stacked = (0..n)
            .map(|i| self.bars.iter().map(|s| s.values[i].max(0.0)).sum::<f64>())
            .fold(0.0, f64::max);
        self.lines
            .iter()
            .filter(|(_, a)| *a == Axis::Left)
            .flat_map(|(s, _)| s.values.iter().copied())
            .fold(stacked, f64::max)
    }

    fn right_max(&self) -> f64 {
        self.lines
            .iter()
            .filter(|(_, a)| *a == Axis::Right)
            .flat_map(|(s, _)| s.values.iter().copied())
            .fold(0.0, f64::max)
    }

    /// The chart as one `<svg>` element.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart" data-query="{q}" data-categories="{n}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-labelledby="{q}-title" xmlns="http://www.w3.org/2000/svg">"#,
            q = self.query,
            n = self.categories.len(),
        );
        let _ = write!(
            s,
            r#"<text id="{}-title" class="title" x="{X0}" y="22">{}</text>"#,
            self.query,
            escape(&self.title)
        );
        let mut x = X0;
        for t in &self.totals {
            let label = format!("{} {}", t.label, t.unit.full(t.value));
            let _ = write!(
                s,
                r#"<text class="total" x="{x}" y="46" data-metric="{}" data-value="{}">{}</text>"#,
                t.metric,
                t.value,
                escape(&label)
            );
            x += 7.5 * label.chars().count() as f64 + 28.0;
        }
        self.legend(&mut s);
        let n = self.categories.len();
        if n == 0 {
            let _ = write!(
                s,
                r#"<text class="empty" x="{}" y="{}" text-anchor="middle">no data for this selection</text></svg>"#,
                (X0 + X1) / 2.0,
                (Y0 + Y1) / 2.0
            );
            return s;
        }
        let (lmax, lstep) = nice_axis(self.left_max());
        let (rmax, rstep) = nice_axis(self.right_max());
        let ly = |v: f64| Y1 - (v / lmax) * (Y1 - Y0);
        let ry = |v: f64| Y1 - (v / rmax) * (Y1 - Y0);
        // Grid and the left axis.
        let mut v = 0.0;
        while v <= lmax + lstep / 2.0 {
            let y = ly(v);
            let _ = write!(
                s,
                r##"<line class="grid" x1="{X0}" x2="{X1}" y1="{y:.1}" y2="{y:.1}" stroke="#e6e6e6"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                X0 - 6.0,
                y + 4.0,
                escape(&self.left_unit.short(v))
            );
            v += lstep;
        }
        if self.lines.iter().any(|(_, a)| *a == Axis::Right) {
            let mut v = 0.0;
            while v <= rmax + rstep / 2.0 {
                let _ = write!(
                    s,
                    r#"<text class="tick" x="{}" y="{:.1}">{}</text>"#,
                    X1 + 6.0,
                    ry(v) + 4.0,
                    escape(&self.right_unit.short(v))
                );
                v += rstep;
            }
        }
        let band = (X1 - X0) / n as f64;
        let cx = |i: usize| X0 + band * (i as f64 + 0.5);
        // Category labels, thinned so that they do not overlap.
        let every = (n as f64 / ((X1 - X0) / 84.0)).ceil().max(1.0) as usize;
        for (i, c) in self.categories.iter().enumerate() {
            if i % every == 0 {
                let _ = write!(
                    s,
                    r#"<text class="tick" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                    cx(i),
                    Y1 + 18.0,
                    escape(c)
                );
            }
        }
        // Stacked bars.
        let bw = (band * 0.8).max(1.0);
        for i in 0..n {
            let mut base = 0.0;
            for (k, series) in self.bars.iter().enumerate() {
                let v = series.values[i].max(0.0);
                if v == 0.0 {
                    continue;
                }
                let (top, bottom) = (ly(base + v), ly(base));
                let _ = write!(
                    s,
                    r#"<rect class="bar" x="{:.1}" y="{top:.1}" width="{bw:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
                    cx(i) - bw / 2.0,
                    (bottom - top).max(0.5),
                    PALETTE[k % PALETTE.len()],
                    escape(&format!(
                        "{} {}: {}",
                        self.categories[i],
                        series.name,
                        self.left_unit.full(series.values[i])
                    ))
                );
                base += v;
            }
        }
        // Markers above the stacks, several on one category one above the other.
        let mut stacked: BTreeMap<usize, usize> = BTreeMap::new();
        for m in &self.markers {
            let Some(i) = self.categories.iter().position(|c| *c == m.category) else {
                continue;
            };
            let height: f64 = self.bars.iter().map(|b| b.values[i].max(0.0)).sum();
            let k = stacked.entry(i).or_default();
            let y = (ly(height) - 4.0 - 12.0 * *k as f64).max(Y0 - 20.0);
            *k += 1;
            let _ = write!(
                s,
                r##"<path class="anomaly" data-key="{}" d="M {:.1} {y:.1} l -5 -9 h 10 z" fill="#d62728"><title>{}</title></path>"##,
                escape(&m.key),
                cx(i),
                escape(&m.label)
            );
        }
        // Lines, with a point per category.
        for (k, (series, axis)) in self.lines.iter().enumerate() {
            let (y, unit) = match axis {
                Axis::Left => (&ly as &dyn Fn(f64) -> f64, self.left_unit),
                Axis::Right => (&ry as &dyn Fn(f64) -> f64, self.right_unit),
            };
            let colour = LINE_COLOURS[k % LINE_COLOURS.len()];
            let points: Vec<String> = series
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{:.1},{:.1}", cx(i), y(*v)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline class="line" points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                points.join(" ")
            );
            for (i, v) in series.values.iter().enumerate() {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"><title>{}</title></circle>"#,
                    cx(i),
                    y(*v),
                    escape(&format!(
                        "{} {}: {}",
                        self.categories[i],
                        series.name,
                        unit.full(*v)
                    ))
                );
            }
        }
        let _ = write!(
            s,
            r##"<line x1="{X0}" x2="{X1}" y1="{Y1}" y2="{Y1}" stroke="#888"/></svg>"##
        );
        s
    }

    fn legend(&self, s: &mut String) {
        let entries: Vec<(String, &str, bool)> = self
            .bars
            .iter()
            .enumerate()
            .map(|(k, b)| (b.name.clone(), PALETTE[k % PALETTE.len()], true))
            .chain(self.lines.iter().enumerate().map(|(k, (l, a))| {
                let side = if *a == Axis::Right { " (right)" } else { "" };
                (
                    format!("{}{side}", l.name),
                    LINE_COLOURS[k % LINE_COLOURS.len()],
                    false,
                )
            }))
            .collect();
        if entries.len() < 2 {
            return;
        }
        let mut x = X0;
        for (name, colour, is_bar) in entries {
            if is_bar {
                let _ = write!(
                    s,
                    r#"<rect x="{x}" y="58" width="10" height="10" fill="{colour}"/>"#
                );
            } else {
                let _ = write!(
                    s,
                    r#"<line x1="{x}" x2="{}" y1="63" y2="63" stroke="{colour}" stroke-width="2"/>"#,
                    x + 10.0
                );
            }
            let _ = write!(
                s,
                r#"<text class="legend" x="{}" y="67">{}</text>"#,
                x + 14.0,
                escape(&name)
            );
            x += 14.0 + 6.5 * name.chars().count() as f64 + 16.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(categories: &[&str], bars: Vec<Series>, lines: Vec<(Series, Axis)>) -> Chart {
        Chart {
            query: "q1",
            title: "<cost> & co".into(),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            bars,
            left_unit: Unit::Usd,
            lines,
            right_unit: Unit::Count,
            totals: vec![Total {
                metric: "cost_usd",
                label: "cost",
                value: 1234.5,
                unit: Unit::Usd,
            }],
            markers: Vec::new(),
        }
    }

    fn series(name: &str, values: &[f64]) -> Series {
        Series {
            name: name.into(),
            values: values.to_vec(),
        }
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(Unit::Usd.full(1234567.891), "$1,234,567.89");
        assert_eq!(Unit::Usd.full(-5.0), "-$5.00");
        assert_eq!(Unit::Count.full(1234567.0), "1,234,567");
        assert_eq!(Unit::Count.full(999.0), "999");
        assert_eq!(Unit::Ratio.full(0.1234), "12.3%");
        assert_eq!(Unit::Usd.short(2500.0), "$2.5k");
        assert_eq!(Unit::Count.short(3_000_000.0), "3M");
        assert_eq!(nice_axis(87.0), (100.0, 20.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.25));
        assert_eq!(nice_axis(7.0), (8.0, 2.0));
    }

    #[test]
    fn bars_stack_and_every_text_is_escaped() {
        let c = chart(
            &["2025-07-01", "2025-07-02"],
            vec![series("<b>", &[1.0, 2.0]), series("storage", &[3.0, 0.0])],
            vec![(series("requests", &[10.0, 20.0]), Axis::Right)],
        );
        let svg = c.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"data-query="q1""#));
        assert!(svg.contains("&lt;cost&gt; &amp; co"));
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        // Three non-zero bar segments, one line with two points.
        assert_eq!(svg.matches(r#"class="bar""#).count(), 3);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains(r#"data-metric="cost_usd" data-value="1234.5">cost $1,234.50<"#));
        // The stacked column 1 (1 + 3 = 4) is the tallest: it reaches the axis top
        // of 4 at Y0.
        assert!(svg.contains(&format!(r#"y="{Y0:.1}""#)), "{svg}");
    }

    #[test]
    fn markers_stand_above_their_categorys_stack() {
        let mut c = chart(&["d1", "d2"], vec![series("compute", &[1.0, 2.0])], vec![]);
        c.markers = ["d2", "d2", "d9"]
            .iter()
            .enumerate()
            .map(|(i, d)| Marker {
                category: (*d).to_owned(),
                key: format!("{d}/s{i}"),
                label: format!("<anomaly {i}>"),
            })
            .collect();
        let svg = c.render();
        // Two on d2 (one above the other), none for a category not drawn.
        assert_eq!(svg.matches(r#"class="anomaly""#).count(), 2);
        assert!(svg.contains(r#"data-key="d2/s0""#) && svg.contains(r#"data-key="d2/s1""#));
        assert!(svg.contains("&lt;anomaly 0&gt;") && !svg.contains("d9/s2"));
    }

    #[test]
    fn no_data_says_so() {
        let svg = chart(&[], vec![], vec![]).render();
        assert!(svg.contains("no data for this selection"));
        assert!(!svg.contains("<rect class=\"bar\""));
    }
}
