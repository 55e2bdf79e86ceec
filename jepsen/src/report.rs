//! The report of a run, written next to its history: `latency.svg` (each operation's latency
//! over time, log scale, coloured by outcome), `throughput.svg` (ok operations per second) —
//! both with the nemesis' fault windows shaded and named — and `index.html`: the test's
//! options, the checkers' verdicts with counts and examples, the plots, and links to the run's
//! files. Everything is self-contained: hand-written SVG, HTML without scripts.

use crate::checker::{
    client_ops, fault_windows, overall, FaultWindow, Validity, Verdict, AVAILABILITY, ORDERING_SOFT,
};
use crate::history::{Event, Kind};
use std::collections::BTreeMap;
use std::path::Path;

/// The run's standard files, always linked from `index.html`.
pub const STANDARD_FILES: [&str; 3] = ["history.jsonl", "results.json", "test.json"];

/// At most this many points in the latency plot; beyond, ok operations are sampled evenly
/// (fails and infos are always drawn).
const MAX_POINTS: usize = 20_000;

/// Writes `latency.svg`, `throughput.svg` and `index.html` into `dir` (created if needed).
/// `test` is the test's options (shown as a table), `logs` further files of the run to link
/// (node logs), relative to `dir`.
pub fn write(
    dir: &Path,
    history: &[Event],
    results: &BTreeMap<String, Verdict>,
    test: &serde_json::Value,
    logs: &[String],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("latency.svg"), latency_svg(history))?;
    std::fs::write(dir.join("throughput.svg"), throughput_svg(history))?;
    std::fs::write(dir.join("index.html"), index_html(test, results, logs))?;
    Ok(())
}

/// Escapes text for HTML and SVG (element content and quoted attributes).
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

// ---- plots ----

const W: f64 = 960.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

const OK_COLOUR: &str = "#2a9d3f";
const FAIL_COLOUR: &str = "#d62728";
const INFO_COLOUR: &str = "#f28e1c";
const FAULT_COLOURS: [&str; 6] = [
    "#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];

enum YScale {
    Linear {
        max: f64,
    },
    /// Decades 10^lo .. 10^hi.
    Log {
        lo: i32,
        hi: i32,
    },
}

struct Axes {
    x_max: f64,
    y: YScale,
}

impl Axes {
    fn px(&self, t_s: f64) -> f64 {
        LEFT + (t_s / self.x_max).clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    }

    fn py(&self, v: f64) -> f64 {
        let f = match self.y {
            YScale::Linear { max } => v / max,
            YScale::Log { lo, hi } => {
                let l = v.max(1e-12).log10();
                (l - f64::from(lo)) / f64::from((hi - lo).max(1))
            }
        };
        let f = if f.is_finite() { f } else { 0.0 };
        H - BOTTOM - f.clamp(0.0, 1.0) * (H - TOP - BOTTOM)
    }
}

/// A step of 1, 2 or 5 × 10^k giving about `target` ticks over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    let raw = range / target;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let m = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn tick_label(x: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{x:.0}")
    } else {
        let decimals = (-step.log10()).ceil().clamp(0.0, 6.0) as usize;
        format!("{x:.decimals$}")
    }
}

fn decade_label(e: i32) -> String {
    if e >= 0 {
        format!("{:.0}", 10f64.powi(e))
    } else {
        format!("{:.*}", (-e) as usize, 10f64.powi(e))
    }
}

fn svg_open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect class=\"background\" x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        W / 2.0,
        escape(title)
    )
}

/// Axes with ticks, grid lines and labels.
fn draw_axes(a: &Axes, y_label: &str) -> String {
    let mut s = String::new();
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    // x ticks: seconds
    let step = nice_step(a.x_max, 10.0);
    let mut i = 0u32;
    loop {
        let t = f64::from(i) * step;
        if t > a.x_max * (1.0 + 1e-9) || i > 1000 {
            break;
        }
        let x = a.px(t);
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{y0}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            y0 + 5.0,
            y0 + 18.0,
            tick_label(t, step)
        ));
        i += 1;
    }
    // y ticks
    let mut ticks: Vec<(f64, String)> = Vec::new();
    match a.y {
        YScale::Linear { max } => {
            let step = nice_step(max, 6.0);
            let mut i = 0u32;
            loop {
                let v = f64::from(i) * step;
                if v > max * (1.0 + 1e-9) || i > 1000 {
                    break;
                }
                ticks.push((v, tick_label(v, step)));
                i += 1;
            }
        }
        YScale::Log { lo, hi } => {
            for e in lo..=hi {
                ticks.push((10f64.powi(e), decade_label(e)));
            }
        }
    }
    for (v, label) in ticks {
        let y = a.py(v);
        s.push_str(&format!(
            "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#dddddd\"/>\n\
             <line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{x0}\" y2=\"{y:.1}\" stroke=\"black\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            x0 - 5.0,
            x0 - 8.0,
            y + 4.0,
            escape(&label)
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"black\"/>\n\
         <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"black\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time (s)</text>\n\
         <text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        (x0 + x1) / 2.0,
        H - 10.0,
        (y0 + y1) / 2.0,
        escape(y_label)
    ));
    s
}

/// Translucent rectangles over the fault windows, each named at its top.
fn draw_faults(a: &Axes, windows: &[FaultWindow]) -> String {
    let mut s = String::new();
    // one colour per fault name, in order of first appearance
    let mut names: Vec<&str> = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let n = match names.iter().position(|n| *n == w.name) {
            Some(n) => n,
            None => {
                names.push(&w.name);
                names.len() - 1
            }
        };
        let start = w.start_ns as f64 / 1e9;
        let stop = w.stop_ns.map_or(a.x_max, |t| t as f64 / 1e9);
        let (x0, x1) = (a.px(start), a.px(stop));
        let colour = FAULT_COLOURS[n % FAULT_COLOURS.len()];
        let label = if w.detail.is_empty() {
            w.name.clone()
        } else {
            format!("{}: {}", w.name, w.detail)
        };
        s.push_str(&format!(
            "<rect class=\"fault\" x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{}\" fill=\"{colour}\" fill-opacity=\"0.15\"><title>{}</title></rect>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\">{}</text>\n",
            (x1 - x0).max(1.0),
            H - TOP - BOTTOM,
            escape(&label),
            x0 + 2.0,
            TOP + 11.0 + 11.0 * (i % 3) as f64,
            escape(&w.name)
        ));
    }
    s
}

fn history_end_s(history: &[Event]) -> f64 {
    let end = history.iter().map(|e| e.time_ns).max().unwrap_or(0) as f64 / 1e9;
    end.max(1.0)
}

/// Latency of every completed client operation (ms, log scale) over its invocation time (s).
pub fn latency_svg(history: &[Event]) -> String {
    // (invoke s, latency ms, outcome)
    let points: Vec<(f64, f64, Kind)> = client_ops(history)
        .into_iter()
        .filter_map(|p| {
            p.latency_ns()
                .map(|l| (p.invoke_ns as f64 / 1e9, l as f64 / 1e6, p.kind))
        })
        .collect();
    let oks = points.iter().filter(|p| p.2 == Kind::Ok).count();
    let stride = oks.div_ceil(MAX_POINTS).max(1);
    let (lo, hi) = log_decades(&points);
    let a = Axes {
        x_max: history_end_s(history),
        y: YScale::Log { lo, hi },
    };
    let mut title = "Latency of operations".to_string();
    if stride > 1 {
        title.push_str(&format!(" (1 in {stride} ok operations drawn)"));
    }
    let mut s = svg_open(&title);
    s.push_str(&draw_faults(&a, &fault_windows(history)));
    s.push_str(&draw_axes(&a, "latency (ms, log scale)"));
    s.push_str(&draw_points(&a, &points, stride));
    s.push_str(&outcome_legend());
    s.push_str("</svg>\n");
    s
}

/// The decades (powers of ten, ms) the latencies span; -1..3 when there are none.
fn log_decades(points: &[(f64, f64, Kind)]) -> (i32, i32) {
    if points.is_empty() {
        return (-1, 3);
    }
    let min = points
        .iter()
        .map(|p| p.1.max(0.001))
        .fold(f64::INFINITY, f64::min);
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let lo = min.log10().floor() as i32;
    let hi = (max.max(0.001).log10().ceil() as i32).max(lo + 1);
    (lo, hi)
}

/// The latency points, a group per outcome (ok, then info, then fail on top); only every
/// `stride`-th ok point is drawn.
fn draw_points(a: &Axes, points: &[(f64, f64, Kind)], stride: usize) -> String {
    let mut s = String::new();
    let mut n_ok = 0usize;
    for (kind, colour) in [
        (Kind::Ok, OK_COLOUR),
        (Kind::Info, INFO_COLOUR),
        (Kind::Fail, FAIL_COLOUR),
    ] {
        s.push_str(&format!(
            "<g class=\"{}\" fill=\"{colour}\" fill-opacity=\"0.6\">\n",
            outcome_name(kind)
        ));
        for &(t, l, k) in points {
            if k != kind {
                continue;
            }
            if k == Kind::Ok {
                n_ok += 1;
                if !n_ok.is_multiple_of(stride) {
                    continue;
                }
            }
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"/>\n",
                a.px(t),
                a.py(l.max(0.001))
            ));
        }
        s.push_str("</g>\n");
    }
    s
}

/// The legend of the outcomes' colours, top right.
fn outcome_legend() -> String {
    let mut s = String::new();
    for (i, (name, colour)) in [
        ("ok", OK_COLOUR),
        ("fail", FAIL_COLOUR),
        ("info", INFO_COLOUR),
    ]
    .iter()
    .enumerate()
    {
        let x = W - RIGHT - 170.0 + 55.0 * i as f64;
        s.push_str(&format!(
            "<circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{name}</text>\n",
            TOP - 12.0,
            x + 8.0,
            TOP - 8.0
        ));
    }
    s
}

fn outcome_name(k: Kind) -> &'static str {
    match k {
        Kind::Invoke => "invoke",
        Kind::Ok => "ok",
        Kind::Fail => "fail",
        Kind::Info => "info",
    }
}

/// Ok client operations per second, by completion time.
pub fn throughput_svg(history: &[Event]) -> String {
    let x_max = history_end_s(history);
    let buckets = (x_max.ceil() as usize).max(1);
    let mut counts = vec![0u64; buckets];
    for p in client_ops(history) {
        if p.kind != Kind::Ok {
            continue;
        }
        if let Some(c) = p.complete_ns {
            let i = ((c / 1_000_000_000) as usize).min(buckets - 1);
            if let Some(n) = counts.get_mut(i) {
                *n += 1;
            }
        }
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = nice_step(top, 6.0);
    let a = Axes {
        x_max,
        y: YScale::Linear {
            max: (top / step).ceil() * step,
        },
    };
    let mut s = svg_open("Ok operations per second");
    s.push_str(&draw_faults(&a, &fault_windows(history)));
    s.push_str(&draw_axes(&a, "ok operations / s"));
    let pts: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let t = (i as f64 + 0.5).min(x_max);
            format!("{:.1},{:.1}", a.px(t), a.py(*n as f64))
        })
        .collect();
    s.push_str(&format!(
        "<polyline class=\"throughput\" fill=\"none\" stroke=\"{OK_COLOUR}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
        pts.join(" ")
    ));
    s.push_str("</svg>\n");
    s
}

// ---- index.html ----

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px}\
table{border-collapse:collapse;margin-bottom:1.5em}\
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f4f4f4}\
.true{background:#c8f0c8}.false{background:#f6c6c6}.unknown{background:#fbe7a9}\
pre{margin:0;white-space:pre-wrap;max-width:800px}\
ul.examples{margin:0;padding-left:1.2em}\
img{max-width:100%;border:1px solid #eee}";

fn validity_name(v: Validity) -> &'static str {
    match v {
        Validity::True => "true",
        Validity::False => "false",
        Validity::Unknown => "unknown",
    }
}

fn option_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => escape(s),
        other => {
            let text = other.to_string();
            if text.len() > 120 {
                let pretty = serde_json::to_string_pretty(other).unwrap_or_else(|_| text.clone());
                format!(
                    "<details><summary>{} …</summary><pre>{}</pre></details>",
                    escape(&text.chars().take(60).collect::<String>()),
                    escape(&pretty)
                )
            } else {
                format!("<code>{}</code>", escape(&text))
            }
        }
    }
}

/// The run's page: options, verdicts, plots and files.
pub fn index_html(
    test: &serde_json::Value,
    results: &BTreeMap<String, Verdict>,
    logs: &[String],
) -> String {
    let name = test
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("raftq jepsen test");
    let title = format!("raftq jepsen: {name}");
    let valid = overall(results);
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n\
         <p>Overall verdict: <span class=\"{v}\"><b>{v}</b></span> \
         (soft checks are reported but do not decide it; a run with no successful write is unknown)</p>\n",
        t = escape(&title),
        v = validity_name(valid)
    );
    s.push_str(&test_table(test));
    s.push_str(&checker_table(results));
    s.push_str(
        "<h2>Latency</h2>\n<img src=\"latency.svg\" alt=\"latency of operations over time\">\n\
         <h2>Throughput</h2>\n<img src=\"throughput.svg\" alt=\"ok operations per second over time\">\n",
    );
    s.push_str(&file_list(logs));
    s.push_str("</body>\n</html>\n");
    s
}

/// The "Test" section: the test's options, a row each.
fn test_table(test: &serde_json::Value) -> String {
    let mut s = "<h2>Test</h2>\n<table>\n".to_string();
    match test.as_object() {
        Some(map) => {
            for (k, v) in map {
                s.push_str(&format!(
                    "<tr><th>{}</th><td>{}</td></tr>\n",
                    escape(k),
                    option_value(v)
                ));
            }
        }
        None => s.push_str(&format!(
            "<tr><th>options</th><td>{}</td></tr>\n",
            option_value(test)
        )),
    }
    s.push_str("</table>\n");
    s
}

/// The "Checkers" section: deciding checkers first, then the ones that only report.
fn checker_table(results: &BTreeMap<String, Verdict>) -> String {
    let mut s = "<h2>Checkers</h2>\n<table>\n<tr><th>checker</th><th>valid</th><th>counts</th><th>examples</th></tr>\n".to_string();
    let reporting = |n: &str| n == AVAILABILITY || n == ORDERING_SOFT;
    let ordered = results
        .iter()
        .filter(|(n, _)| !reporting(n))
        .chain(results.iter().filter(|(n, _)| reporting(n)));
    for (name, v) in ordered {
        let valid = validity_name(v.valid);
        let counts: Vec<String> = v
            .counts
            .iter()
            .map(|(k, n)| format!("{}: {n}", escape(k)))
            .collect();
        s.push_str(&format!(
            "<tr><th>{}</th><td class=\"{valid}\">{valid}</td><td>{}</td><td>{}</td></tr>\n",
            escape(name),
            counts.join("<br>"),
            examples_cell(v),
        ));
    }
    s.push_str("</table>\n");
    s
}

/// A verdict's examples as a list, and its details (if any) folded away.
fn examples_cell(v: &Verdict) -> String {
    let mut examples = String::new();
    if !v.examples.is_empty() {
        examples.push_str("<ul class=\"examples\">");
        for e in &v.examples {
            examples.push_str(&format!("<li>{}</li>", escape(e)));
        }
        examples.push_str("</ul>");
    }
    if let Some(d) = &v.details {
        let pretty = serde_json::to_string_pretty(d).unwrap_or_default();
        examples.push_str(&format!(
            "<details><summary>details</summary><pre>{}</pre></details>",
            escape(&pretty)
        ));
    }
    examples
}

/// The "Files" section: the standard files, then `logs` (each once).
fn file_list(logs: &[String]) -> String {
    let mut s = "<h2>Files</h2>\n<ul>\n".to_string();
    let mut files: Vec<&str> = STANDARD_FILES.to_vec();
    for l in logs {
        if !files.contains(&l.as_str()) {
            files.push(l);
        }
    }
    for f in files {
        let f = escape(f);
        s.push_str(&format!("<li><a href=\"{f}\">{f}</a></li>\n"));
    }
    s.push_str("</ul>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::check_all;
    use crate::checker::testkit::{add_op, call_ms, event_ms, fault_op, final_read_op};
    use crate::history::NEMESIS;

    fn history() -> Vec<Event> {
        let mut h = Vec::new();
        for i in 0..30u64 {
            let outcome = match i % 10 {
                3 => Kind::Fail,
                7 => Kind::Info,
                _ => Kind::Ok,
            };
            let op = add_op(&format!("j{i}"));
            h.extend(call_ms(1, op, outcome, i * 100, i * 100 + 1 + i * 3));
        }
        let fault = |action: &str| fault_op("partition", action, "<n1> | n2,n3");
        h.push(event_ms(NEMESIS, Kind::Invoke, fault("start"), 1000));
        h.push(event_ms(NEMESIS, Kind::Ok, fault("start"), 1010));
        h.push(event_ms(NEMESIS, Kind::Invoke, fault("stop"), 2000));
        h.push(event_ms(NEMESIS, Kind::Ok, fault("stop"), 2010));
        h.push(event_ms(2, Kind::Invoke, final_read_op(&[]), 3100));
        let read = final_read_op(&[("j0", "complete")]);
        h.push(event_ms(2, Kind::Ok, read, 3200));
        h
    }

    #[test]
    fn writes_plots_and_page() {
        let h = history();
        let results = check_all(&h, true);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let test = serde_json::json!({
            "name": "queue <partition>",
            "nodes": 3,
            "schedule": (0..40).map(|i| serde_json::json!({"at_ms": i * 1000})).collect::<Vec<_>>(),
        });
        write(
            &out,
            &h,
            &results,
            &test,
            &["node-1.log".into(), "history.jsonl".into()],
        )
        .unwrap();

        let lat = std::fs::read_to_string(out.join("latency.svg")).unwrap();
        assert!(lat.starts_with("<svg xmlns="), "{lat}");
        assert!(lat.contains("<rect class=\"fault\""), "{lat}");
        assert!(lat.contains(">partition</text>"), "{lat}");
        assert!(lat.contains("&lt;n1&gt; | n2,n3"), "{lat}");
        assert!(lat.contains("time (s)") && lat.contains("latency (ms, log scale)"));
        assert_eq!(lat.matches("<circle cx").count(), 31 + 3, "points + legend");
        assert!(lat.contains(FAIL_COLOUR) && lat.contains(INFO_COLOUR));
        assert!(lat.trim_end().ends_with("</svg>"));

        let tp = std::fs::read_to_string(out.join("throughput.svg")).unwrap();
        assert!(tp.contains("<rect class=\"fault\""), "{tp}");
        assert!(tp.contains("<polyline class=\"throughput\""), "{tp}");
        assert!(tp.contains("ok operations / s"));

        let html = std::fs::read_to_string(out.join("index.html")).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>raftq jepsen: queue &lt;partition&gt;</title>"));
        assert!(!html.contains("<script"));
        assert!(html.contains("<img src=\"latency.svg\""));
        assert!(html.contains("<img src=\"throughput.svg\""));
        for f in ["history.jsonl", "results.json", "test.json", "node-1.log"] {
            assert_eq!(html.matches(&format!("<a href=\"{f}\">")).count(), 1, "{f}");
        }
        assert!(html.contains("<th>total-queue</th><td class=\"false\">false</td>"));
        assert!(html.contains("<th>availability</th><td class=\"true\">true</td>"));
        assert!(html.contains("lost: "), "{html}");
        assert!(html.contains("<th>nodes</th><td><code>3</code></td>"));
        assert!(html.contains("<details><summary>"), "long options fold");
        // the deciding checkers come before the reporting ones
        let avail = html.find("<th>availability</th>").unwrap();
        let total = html.find("<th>total-queue</th>").unwrap();
        assert!(total < avail);
    }

    #[test]
    fn empty_history_still_renders() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[],
            &BTreeMap::new(),
            &serde_json::Value::Null,
            &[],
        )
        .unwrap();
        for f in ["latency.svg", "throughput.svg", "index.html"] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        let lat = latency_svg(&[]);
        assert!(!lat.contains("NaN") && !lat.contains("inf\""), "{lat}");
        let tp = throughput_svg(&[]);
        assert!(!tp.contains("NaN") && !tp.contains("inf,"), "{tp}");
    }

    #[test]
    fn helpers() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(nice_step(10.0, 10.0), 1.0);
        assert_eq!(nice_step(37.0, 10.0), 5.0);
        assert_eq!(nice_step(0.3, 6.0), 0.05);
        assert_eq!(tick_label(0.15, 0.05), "0.15");
        assert_eq!(decade_label(-2), "0.01");
        assert_eq!(decade_label(3), "1000");
    }
}
