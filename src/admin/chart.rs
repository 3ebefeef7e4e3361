//! Small bar charts drawn on the server as inline SVG: no script, no library. Colours come
//! from CSS classes (so dark mode applies), and every bar carries a `<title>` with its numbers
//! in words, for hover and for screen readers.

use std::fmt::Write as _;

use super::views::esc;

/// One coloured part of a bar.
pub struct Part {
    /// CSS class: `ok`, `warn`, `bad`, `muted`.
    pub class: &'static str,
    pub value: u64,
}

/// One bar: its parts stacked bottom-up, a tooltip, and an axis label (may be empty).
pub struct Bar {
    pub parts: Vec<Part>,
    pub title: String,
    pub tick: String,
}

/// SVG markup made here from escaped text; safe to place as is.
pub struct Svg(pub String);

impl std::fmt::Display for Svg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl askama::filters::HtmlSafe for Svg {}

/// A round number at or above `max`, for the top grid line (1, 2, 5 x 10^n).
fn nice_ceiling(max: u64) -> u64 {
    if max <= 1 {
        return 1;
    }
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if step.saturating_mul(m) >= max {
                return step * m;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// A stacked bar chart `width` x `height` (viewBox units) with a labelled y axis.
pub fn bars(bars: &[Bar], width: u32, height: u32, label: &str) -> Svg {
    let (left, bottom, top) = (34.0, 18.0, 12.0);
    let plot_w = width as f64 - left - 4.0;
    let plot_h = height as f64 - bottom - top;
    let max = bars
        .iter()
        .map(|b| b.parts.iter().map(|p| p.value).sum::<u64>())
        .max()
        .unwrap_or(0);
    let ceiling = nice_ceiling(max);
    let mut svg = String::with_capacity(4096);
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        esc(label)
    );
    for (frac, text) in [
        (0.0, "0".to_string()),
        (0.5, short(ceiling / 2)),
        (1.0, short(ceiling)),
    ] {
        if frac == 0.5 && !ceiling.is_multiple_of(2) {
            continue;
        }
        let y = top + plot_h * (1.0 - frac);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text x="{}" y="{:.1}" text-anchor="end">{text}</text>"#,
            width as f64 - 4.0,
            left - 5.0,
            y + 3.5
        );
    }
    let n = bars.len().max(1) as f64;
    let slot = plot_w / n;
    let bar_w = (slot * 0.72).max(1.0);
    for (i, bar) in bars.iter().enumerate() {
        let x = left + slot * i as f64;
        let _ = write!(
            svg,
            r#"<g class="bar"><title>{}</title><rect class="slot" x="{x:.1}" y="{top}" width="{slot:.1}" height="{plot_h:.1}"/>"#,
            esc(&bar.title)
        );
        let mut y = top + plot_h;
        for part in &bar.parts {
            if part.value == 0 {
                continue;
            }
            let h = (plot_h * part.value as f64 / ceiling as f64).max(1.0);
            y -= h;
            let _ = write!(
                svg,
                r#"<rect class="{}" x="{:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" rx="1"/>"#,
                part.class,
                x + (slot - bar_w) / 2.0
            );
        }
        svg.push_str("</g>");
        if !bar.tick.is_empty() {
            // The last label ends at the chart's edge rather than running past it.
            let (tx, anchor) = if i + 1 == bars.len() {
                (x + slot, "end")
            } else {
                (x + slot / 2.0, "middle")
            };
            let _ = write!(
                svg,
                r#"<text x="{tx:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
                height as f64 - 4.0,
                esc(&bar.tick)
            );
        }
    }
    svg.push_str("</svg>");
    Svg(svg)
}

/// A tiny chart of (succeeded, failed) per slot, for a table row.
pub fn sparkline(points: &[(u64, u64)], label: &str) -> Svg {
    let (w, h) = (120.0, 22.0);
    let max = points.iter().map(|(a, b)| a + b).max().unwrap_or(0).max(1);
    let slot = w / points.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg class="chart spark" viewBox="0 0 {w} {h}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(label),
        esc(label)
    );
    for (i, (ok, bad)) in points.iter().enumerate() {
        let x = slot * i as f64 + 0.5;
        let bw = (slot - 1.0).max(0.5);
        let mut y = h;
        for (value, class) in [(*ok, "ok"), (*bad, "bad")] {
            if value == 0 {
                continue;
            }
            let bh = (h * value as f64 / max as f64).max(1.0);
            y -= bh;
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}"/>"#
            );
        }
        if ok + bad == 0 {
            let _ = write!(
                svg,
                r#"<rect class="muted" x="{x:.1}" y="{}" width="{bw:.1}" height="1"/>"#,
                h - 1.0
            );
        }
    }
    svg.push_str("</svg>");
    Svg(svg)
}

/// 1234 -> "1.2k", for axis labels.
fn short(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{}k", n / 1_000),
        _ => format!("{}M", n / 1_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(4_900), 5_000);
        assert_eq!(nice_ceiling(5_001), 10_000);
    }

    #[test]
    fn bars_are_drawn_with_titles_and_escaped_labels() {
        let svg = bars(
            &[
                Bar {
                    parts: vec![
                        Part {
                            class: "ok",
                            value: 8,
                        },
                        Part {
                            class: "bad",
                            value: 2,
                        },
                    ],
                    title: "10:00 <x>".into(),
                    tick: "10:00".into(),
                },
                Bar {
                    parts: vec![],
                    title: "11:00".into(),
                    tick: String::new(),
                },
            ],
            600,
            140,
            "Deliveries",
        )
        .0;
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"ok\"").count(), 1);
        assert_eq!(svg.matches("class=\"bad\"").count(), 1);
        assert!(svg.contains("<title>10:00 &lt;x&gt;</title>"));
        assert!(!svg.contains("style="), "CSP allows no inline style");
        let spark = sparkline(&[(1, 0), (0, 0), (3, 1)], "24 h").0;
        assert_eq!(spark.matches("class=\"muted\"").count(), 1);
    }
}
