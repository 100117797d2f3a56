//! The SVG rendering. Both axes that need a log scale are drawn as a
//! linear axis over `log10` of the value with labels mapped back, which
//! keeps one chart type for every case and the tick labels in our units.

use super::{fmt_rate, fmt_us, RunReport, PCT_MAX_NINES};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Writes the report's plots as one SVG (1000×800): the HDR percentile plot
/// of `latency` on top, throughput and per-interval p99 over time below.
/// Empty data gives panels that say "no samples" rather than an error.
pub fn write_svg(r: &RunReport, path: &Path) -> Result<(), String> {
    render(r, path).map_err(|e| format!("{}: {e}", path.display()))
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Res = Result<(), String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

const DELIVERED: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const PUBLISHED: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const P99: RGBColor = RGBColor(0xd6, 0x27, 0x28);

fn render(r: &RunReport, path: &Path) -> Res {
    let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(400);
    hdr_panel(r, &top)?;
    timeline_panel(r, &bottom)?;
    root.present().map_err(err)
}

/// Writes "no samples" in the middle of `area`.
fn no_samples(area: &Area) -> Res {
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from(("sans-serif", 24).into_font())
        .color(&RGBColor(0x80, 0x80, 0x80))
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
    area.draw(&Text::new(
        "no samples",
        (w as i32 / 2, h as i32 / 2),
        style,
    ))
    .map_err(err)
}

/// "fanout latency by percentile — ws://…", leaving out what is unknown.
fn title(r: &RunReport, what: &str) -> String {
    let mut t = if r.scenario.is_empty() {
        what.to_string()
    } else {
        format!("{} {what}", r.scenario)
    };
    if !r.target.is_empty() {
        t.push_str(" — ");
        t.push_str(&r.target);
    }
    t
}

/// Percentile `p` (0..=100) on the HDR axis: `log10(1/(1-p/100))`.
fn pct_x(p: f64) -> f64 {
    let q = (p / 100.0).clamp(0.0, 1.0 - 10f64.powf(-PCT_MAX_NINES));
    -(1.0 - q).log10()
}

/// The label for HDR-axis position `x`: "99.9%" at whole decades.
fn x_label(x: f64) -> String {
    if (x - x.round()).abs() > 1e-6 || x < -1e-6 {
        return String::new();
    }
    let n = x.round() as usize;
    match n {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        _ => format!("99.{}%", "9".repeat(n - 2)),
    }
}

fn hdr_panel(r: &RunReport, area: &Area) -> Res {
    let title = title(r, "latency by percentile");
    let pts: Vec<(f64, f64)> = r
        .latency
        .percentiles
        .iter()
        .filter(|(p, v)| p.is_finite() && v.is_finite())
        .map(|&(p, v)| (pct_x(p), v.max(0.0)))
        .collect();
    if pts.is_empty() {
        let inner = area.titled(&title, ("sans-serif", 20)).map_err(err)?;
        return no_samples(&inner);
    }
    let hi = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    let lo_pos = pts
        .iter()
        .map(|p| p.1)
        .filter(|&v| v > 0.0)
        .fold(f64::INFINITY, f64::min);
    // Log y when the curve spans more than two decades.
    let log_y = lo_pos.is_finite() && hi / lo_pos > 100.0;
    let (y_of, y_range): (Box<dyn Fn(f64) -> f64>, std::ops::Range<f64>) = if log_y {
        let floor = lo_pos;
        (
            Box::new(move |v: f64| v.max(floor).log10()),
            (floor.log10().floor())..(hi.log10().ceil()),
        )
    } else {
        let top = if hi > 0.0 { hi * 1.05 } else { 1.0 };
        (Box::new(|v: f64| v), 0.0..top)
    };
    let y_desc = if log_y { "latency (log)" } else { "latency" };
    let mut chart = ChartBuilder::on(area)
        .caption(&title, ("sans-serif", 20))
        .margin(12)
        .margin_right(36)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..PCT_MAX_NINES, y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(PCT_MAX_NINES as usize + 1)
        .x_label_formatter(&|x| x_label(*x))
        .y_labels(if log_y { 12 } else { 8 })
        .y_label_formatter(&|y| fmt_us(if log_y { 10f64.powf(*y) } else { *y }))
        .x_desc("percentile")
        .y_desc(y_desc)
        .light_line_style(BLACK.mix(0.05))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            pts.iter().map(|&(x, v)| (x, y_of(v))),
            DELIVERED.stroke_width(2),
        ))
        .map_err(err)?;
    Ok(())
}

fn timeline_panel(r: &RunReport, area: &Area) -> Res {
    let title = title(r, "throughput over time");
    let tl: Vec<_> = r
        .timeline
        .iter()
        .filter(|s| {
            s.t_s.is_finite() && s.delivered_per_s.is_finite() && s.published_per_s.is_finite()
        })
        .collect();
    if tl.is_empty() {
        let inner = area.titled(&title, ("sans-serif", 20)).map_err(err)?;
        return no_samples(&inner);
    }
    let t0 = tl
        .iter()
        .map(|s| s.t_s)
        .fold(f64::INFINITY, f64::min)
        .min(0.0);
    let mut t1 = tl.iter().map(|s| s.t_s).fold(f64::NEG_INFINITY, f64::max);
    if t1 <= t0 {
        t1 = t0 + 1.0;
    }
    let rate_hi = tl
        .iter()
        .map(|s| s.delivered_per_s.max(s.published_per_s))
        .fold(0.0, f64::max);
    let rate_hi = if rate_hi > 0.0 { rate_hi * 1.1 } else { 1.0 };
    let p99: Vec<(f64, f64)> = tl
        .iter()
        .filter(|s| s.p99_us.is_finite() && s.p99_us > 0.0)
        .map(|s| (s.t_s, s.p99_us))
        .collect();
    let p99_hi = p99.iter().map(|p| p.1).fold(0.0, f64::max);
    let p99_hi = if p99_hi > 0.0 { p99_hi * 1.1 } else { 1.0 };

    let mut chart = ChartBuilder::on(area)
        .caption(&title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .right_y_label_area_size(80)
        .build_cartesian_2d(t0..t1, 0.0..rate_hi)
        .map_err(err)?
        .set_secondary_coord(t0..t1, 0.0..p99_hi);
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("messages/s")
        .y_label_formatter(&|y| fmt_rate(*y))
        .light_line_style(BLACK.mix(0.05))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            tl.iter().map(|s| (s.t_s, s.delivered_per_s)),
            DELIVERED.stroke_width(2),
        ))
        .map_err(err)?
        .label("delivered/s")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], DELIVERED.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            tl.iter().map(|s| (s.t_s, s.published_per_s)),
            PUBLISHED.stroke_width(2),
        ))
        .map_err(err)?
        .label("published/s")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], PUBLISHED.stroke_width(2)));
    if !p99.is_empty() {
        chart
            .configure_secondary_axes()
            .y_desc("p99 per interval")
            .y_label_formatter(&|y| fmt_us(*y))
            .draw()
            .map_err(err)?;
        chart
            .draw_secondary_series(LineSeries::new(p99, P99.stroke_width(1)))
            .map_err(err)?
            .label("p99 (right axis)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], P99.stroke_width(1)));
    }
    if tl.len() < 3 {
        // Too few points for a line to show: mark them.
        let marks = tl.iter().flat_map(|s| {
            [
                (s.delivered_per_s, DELIVERED),
                (s.published_per_s, PUBLISHED),
            ]
            .map(|(y, color)| Circle::new((s.t_s, y), 4, color.filled()))
        });
        chart.draw_series(marks).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{sample_report, temp_path};
    use crate::report::LatencySummary;
    use hdrhistogram::Histogram;

    #[test]
    fn hdr_axis_labels() {
        assert_eq!(x_label(0.0), "0%");
        assert_eq!(x_label(1.0), "90%");
        assert_eq!(x_label(2.0), "99%");
        assert_eq!(x_label(3.0), "99.9%");
        assert_eq!(x_label(6.0), "99.9999%");
        assert_eq!(x_label(2.5), "");
        assert!((pct_x(99.0) - 2.0).abs() < 1e-9);
        assert!((pct_x(100.0) - 6.0).abs() < 1e-6);
    }

    #[test]
    fn svg_for_empty_and_full_reports() {
        for (name, r) in [
            ("empty.svg", RunReport::default()),
            ("full.svg", sample_report()),
        ] {
            let path = temp_path(name);
            write_svg(&r, &path).expect("write svg");
            let text = std::fs::read_to_string(&path).expect("read svg");
            let _ = std::fs::remove_file(&path);
            assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(80)]);
            if name == "empty.svg" {
                assert!(text.contains("no samples"));
            } else {
                assert!(text.contains("99.9%") && text.contains("delivered/s"));
            }
        }
        // A narrow (linear-y) distribution and a single-sample timeline.
        let mut r = sample_report();
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        h.record_n(10_000, 3).expect("record");
        r.latency = LatencySummary::from_histogram(&h);
        r.timeline.truncate(1);
        let path = temp_path("narrow.svg");
        write_svg(&r, &path).expect("write svg");
        let _ = std::fs::remove_file(&path);
        assert!(write_svg(&r, Path::new("/nonexistent-dir/x/plot.svg")).is_err());
    }
}
