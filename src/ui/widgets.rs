//! Small pieces every page uses: timestamps, numbers, status badges, the sparkline. Pure
//! functions of their arguments (the time "now" included), so pages render the same bytes for
//! the same state and golden files can pin them.

use crate::alert::supervisor::RunState;
use crate::notification::format_number;
use maud::{html, Markup, PreEscaped};
use std::fmt::Write;
use std::time::Duration;
use time::macros::format_description;
use time::OffsetDateTime;

/// `2026-11-20 10:00:00 UTC`: the absolute time shown on hover.
pub fn absolute(ms: i64) -> String {
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_else(|| "?".into())
}

/// "just now", "42 s ago", "3 min ago", "in 2 h": coarse on purpose, the exact time is on hover.
pub fn relative(now_ms: i64, at_ms: i64) -> String {
    let delta = (now_ms - at_ms) / 1000;
    let span = delta.unsigned_abs();
    if span < 5 {
        return "just now".into();
    }
    let amount = if span < 60 {
        format!("{span} s")
    } else if span < 3600 {
        format!("{} min", span / 60)
    } else if span < 48 * 3600 {
        format!("{} h", span / 3600)
    } else {
        format!("{} d", span / 86_400)
    };
    if delta > 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// A `<time>` element: relative text, absolute time on hover, machine-readable `datetime`.
pub fn time_el(now_ms: i64, at_ms: i64) -> Markup {
    html! {
        time datetime=(crate::destination::rfc3339_ms(at_ms)) title=(absolute(at_ms)) {
            (relative(now_ms, at_ms))
        }
    }
}

/// A duration as a person writes it in the config: `5m`, `1h 30m`, `250ms`.
pub fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A span in milliseconds, rounded for reading: `180 ms`, `2.4 s`, `3 min 5 s`.
pub fn span_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        let s = ms / 1000;
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// A metric value as the webhooks write it (integral plain, else four decimals).
pub fn number(v: f64) -> String {
    format_number(v)
}

/// The status of an alert or a delivery: a word with a shape, so it reads without colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    Firing,
    Ok,
    Silenced,
    Disabled,
    Failed,
    Pending,
    Delivered,
    Dead,
    Suppressed,
    Active,
    Expired,
    Resolved,
}

impl Badge {
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        // (class, glyph, word): the glyph and the border style (see console.css) tell the
        // states apart in greyscale; the word tells them apart for everyone.
        match self {
            Badge::Firing => ("firing", "▲", "Firing"),
            Badge::Ok => ("ok", "●", "OK"),
            Badge::Silenced => ("silenced", "◐", "Silenced"),
            Badge::Disabled => ("disabled", "○", "Disabled"),
            Badge::Failed => ("failed", "✕", "Failed"),
            Badge::Pending => ("pending", "◷", "Pending"),
            Badge::Delivered => ("ok", "✓", "Delivered"),
            Badge::Dead => ("failed", "✕", "Dead"),
            Badge::Suppressed => ("silenced", "◐", "Suppressed"),
            Badge::Active => ("silenced", "◐", "Active"),
            Badge::Expired => ("disabled", "○", "Expired"),
            Badge::Resolved => ("ok", "▽", "Resolved"),
        }
    }

    pub fn render(self) -> Markup {
        let (class, glyph, word) = self.parts();
        html! {
            span class={ "badge " (class) } { span.glyph aria-hidden="true" { (glyph) } " " (word) }
        }
    }
}

/// The badge of an alert's run state and firing state.
pub fn alert_badge(run: RunState, firing: bool) -> Badge {
    match (run, firing) {
        (RunState::Failed, _) => Badge::Failed,
        (RunState::Disabled, _) => Badge::Disabled,
        (RunState::Running, true) => Badge::Firing,
        (RunState::Running, false) => Badge::Ok,
    }
}

/// Sizes of a sparkline.
#[derive(Debug, Clone, Copy)]
pub struct SparkSize {
    pub width: u32,
    pub height: u32,
}

/// The small sparkline of the alerts list.
pub const SMALL: SparkSize = SparkSize {
    width: 120,
    height: 28,
};
/// The large sparkline of an alert's page.
pub const LARGE: SparkSize = SparkSize {
    width: 600,
    height: 120,
};

/// An inline-SVG sparkline of `series` (oldest first; `None` where the window had no data yet)
/// with `threshold` drawn as a dashed line. The vertical scale starts at zero (or the lowest
/// value, if negative) and ends a little above the highest of the series and the threshold, so
/// the line's distance from the threshold reads at a glance. `label` is the accessible name.
///
/// Coordinates are whole pixels and a flat stretch is drawn as its two ends: the alerts page
/// carries a sparkline per trigger, so with 1,000 alerts every byte and every number formatted
/// here counts (see the console benchmark).
pub fn sparkline(
    series: &[Option<f64>],
    threshold: f64,
    firing: bool,
    size: SparkSize,
    label: &str,
) -> Markup {
    let (w, h) = (size.width as f64, size.height as f64);
    let pad = 2.0;
    let values = series.iter().flatten().copied().filter(|v| v.is_finite());
    let (mut lo, mut hi) = (threshold.min(0.0), threshold);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi - lo <= 0.0 {
        hi = lo + 1.0;
    }
    hi += (hi - lo) * 0.15;
    let y = |v: f64| (pad + (h - 2.0 * pad) * (1.0 - (v - lo) / (hi - lo))).round() as i64;
    let step = if series.len() > 1 {
        (w - 2.0 * pad) / (series.len() - 1) as f64
    } else {
        0.0
    };
    let x = |i: usize| (pad + step * i as f64).round() as i64;
    let ys: Vec<Option<i64>> = series
        .iter()
        .map(|v| v.filter(|v| v.is_finite()).map(y))
        .collect();
    // One polyline per run of defined points; inside a run, a point on the same height as both
    // neighbours adds nothing to the drawing and is left out.
    let mut runs: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut last = None;
    for (i, py) in ys.iter().enumerate() {
        match *py {
            Some(py) => {
                let prev = i.checked_sub(1).and_then(|j| ys[j]);
                let next = ys.get(i + 1).copied().flatten();
                if prev == Some(py) && next == Some(py) {
                    continue;
                }
                if !current.is_empty() {
                    current.push(' ');
                }
                let _ = write!(current, "{},{py}", x(i));
                last = Some((x(i), py));
            }
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    let ty = y(threshold);
    let state = if firing { "spark firing" } else { "spark" };
    html! {
        svg class=(state) data-sparkline viewBox={ "0 0 " (size.width) " " (size.height) }
            width=(size.width) height=(size.height) role="img" {
            title { (label) }
            line class="threshold" x1="0" x2=(size.width) y1=(ty) y2=(ty)
                stroke="currentColor" stroke-dasharray="4 3" {}
            @for points in &runs {
                polyline class="series" points=(points) fill="none" stroke="currentColor"
                    stroke-width="1.5" {}
            }
            @if let Some((lx, ly)) = last {
                circle class="last" cx=(lx) cy=(ly) r="2.5" fill="currentColor" {}
            } @else {
                text class="empty" x=(size.width / 2) y=(size.height / 2 + 4)
                    text-anchor="middle" fill="currentColor" { "no data in window" }
            }
        }
    }
}

/// Text cut to `max` characters, with a note of what was cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut chars = text.char_indices();
    match chars.nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… ({} more bytes)", &text[..cut], text.len() - cut),
    }
}

/// A non-breaking thin separator between facts on a line.
pub fn sep() -> Markup {
    PreEscaped(" <span class=\"sep\" aria-hidden=\"true\">·</span> ".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_168_800_123;

    #[test]
    fn relative_times_are_coarse_and_point_both_ways() {
        assert_eq!(relative(NOW, NOW - 2_000), "just now");
        assert_eq!(relative(NOW, NOW - 42_000), "42 s ago");
        assert_eq!(relative(NOW, NOW - 185_000), "3 min ago");
        assert_eq!(relative(NOW, NOW - 7_300_000), "2 h ago");
        assert_eq!(relative(NOW, NOW - 5 * 86_400_000), "5 d ago");
        assert_eq!(relative(NOW, NOW + 3_600_000), "in 1 h");
    }

    #[test]
    fn the_absolute_time_is_on_hover() {
        let t = time_el(NOW, NOW - 60_000).into_string();
        assert_eq!(
            t,
            "<time datetime=\"2026-11-20T09:59:00.123Z\" title=\"2026-11-20 09:59:00 UTC\">1 min ago</time>"
        );
    }

    #[test]
    fn spans_read_in_the_right_unit() {
        assert_eq!(span_ms(180), "180 ms");
        assert_eq!(span_ms(2_400), "2.4 s");
        assert_eq!(span_ms(185_000), "3 min 5 s");
        assert_eq!(span_ms(-5), "0 ms");
    }

    #[test]
    fn the_sparkline_draws_the_series_and_the_threshold() {
        let series = vec![None, Some(0.0), Some(5.0), Some(10.0)];
        let svg = sparkline(&series, 5.0, true, SMALL, "errors").into_string();
        assert!(svg.contains("data-sparkline"), "{svg}");
        assert!(svg.contains("class=\"spark firing\""), "{svg}");
        assert!(svg.contains("<title>errors</title>"), "the accessible name");
        // Scale 0..11.5 over 24 px: the threshold 5 at y = 2 + 24 × (1 − 5/11.5) ≈ 16.
        assert!(svg.contains("y1=\"16\""), "{svg}");
        // Three defined points in one run, the first slot (no data) left out.
        assert_eq!(points_of(&svg), "41,26 79,16 118,5");
        assert!(svg.contains("<circle"), "the current value is marked");
    }

    fn points_of(svg: &str) -> &str {
        let start = svg.find("points=\"").expect("a polyline") + 8;
        &svg[start..start + svg[start..].find('"').unwrap()]
    }

    #[test]
    fn a_flat_stretch_is_drawn_as_its_ends() {
        let mut series = vec![Some(0.0); 59];
        series.push(Some(4.0));
        let svg = sparkline(&series, 10.0, false, SMALL, "x").into_string();
        // The start of the flat run, its last point, the jump.
        assert_eq!(points_of(&svg), "2,26 116,26 118,18");
    }

    #[test]
    fn an_empty_window_says_so() {
        let svg = sparkline(&[None; 60], 10.0, false, SMALL, "x").into_string();
        assert!(svg.contains("no data in window"), "{svg}");
        assert!(!svg.contains("<polyline"), "{svg}");
        let svg = sparkline(&[], 10.0, false, SMALL, "x").into_string();
        assert!(svg.contains("no data in window"), "{svg}");
    }

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        assert_eq!(excerpt("héllo", 10), "héllo");
        assert_eq!(excerpt("héllo", 2), "hé… (3 more bytes)");
    }

    #[test]
    fn badges_carry_a_word_and_a_glyph() {
        let b = Badge::Firing.render().into_string();
        assert!(
            b.contains("Firing") && b.contains("▲") && b.contains("badge firing"),
            "{b}"
        );
        assert_eq!(alert_badge(RunState::Failed, true), Badge::Failed);
        assert_eq!(alert_badge(RunState::Running, true), Badge::Firing);
    }
}
