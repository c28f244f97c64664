//! The comparison: columns (the native run, one per remote target) → one table, rendered as
//! text, CSV and an SVG bar chart of the ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::output::{Outcome, Output, Row, Stat, Unit};

/// What became of one column's program run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    /// The program ran to the end.
    Ran(Output),
    /// Not run, and why (every cell says so: "n/a (no GPU)").
    NotRun(String),
    /// It failed; what it printed before failing is kept.
    Failed { why: String, partial: Option<Output> },
}

/// One column of the comparison: the native run, or remora over one server URL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    /// `native`, the transport (`tcp`, `shm`), or the URL where two targets share a transport.
    pub(crate) label: String,
    /// One line about where it ran (library, server, backend, device).
    pub(crate) about: String,
    pub(crate) state: State,
    /// Rows remora measured itself for this column (transport floors, server ping): shown after
    /// the program's rows.
    pub(crate) extra: Vec<Row>,
    /// The transport's floor for the per-row "floor" cell: 64 B round trip p50 (µs) for latency
    /// rows, stream p50 (GB/s) for throughput rows.
    pub(crate) floor_us: Option<f64>,
    pub(crate) floor_gbps: Option<f64>,
}

impl Column {
    fn rows(&self) -> &[Row] {
        match &self.state {
            State::Ran(o) | State::Failed { partial: Some(o), .. } => &o.rows,
            State::NotRun(_) | State::Failed { partial: None, .. } => &[],
        }
    }

    fn floor(&self, unit: Unit) -> Option<f64> {
        match unit {
            Unit::Micros => self.floor_us,
            Unit::GigabytesPerSec => self.floor_gbps,
        }
    }

    /// The cell of the program row `name`.
    fn program_cell(&self, name: &str) -> Cell {
        let text = |s: &str| Cell::Text(s.to_string());
        let found = self.rows().iter().find(|r| r.name == name);
        match (&self.state, found) {
            (State::NotRun(why), _) => Cell::Text(why.clone()),
            (_, Some(Row { outcome: Outcome::Measured(s), .. })) => Cell::Value(*s),
            (_, Some(Row { outcome: Outcome::Skipped(why), .. })) => Cell::Skipped(why.clone()),
            (State::Failed { .. }, None) => text("failed"),
            (State::Ran(_), None) => text("missing"),
        }
    }

    fn extra_cell(&self, name: &str) -> Cell {
        match self.extra.iter().find(|r| r.name == name) {
            Some(Row { outcome: Outcome::Measured(s), .. }) => Cell::Value(*s),
            Some(Row { outcome: Outcome::Skipped(why), .. }) => Cell::Skipped(why.clone()),
            None => Cell::NotApplicable,
        }
    }
}

/// One cell: a measurement, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Value(Stat),
    /// The program skipped the row, with its reason.
    Skipped(String),
    /// The row has no meaning for the column (a transport floor in the native column).
    NotApplicable,
    /// Not measured: "n/a (no GPU)", "failed", "missing".
    Text(String),
}

impl Cell {
    fn value(&self) -> Option<&Stat> {
        match self {
            Cell::Value(s) => Some(s),
            _ => None,
        }
    }

    /// What the text table shows instead of a number.
    fn word(&self) -> String {
        match self {
            Cell::Value(s) => num(s.p50),
            Cell::Skipped(_) => "skipped".into(),
            Cell::NotApplicable => "-".into(),
            Cell::Text(t) => t.clone(),
        }
    }

    /// What the CSV's note says about this cell, if anything.
    fn note(&self) -> Option<String> {
        match self {
            Cell::Value(_) | Cell::NotApplicable => None,
            Cell::Skipped(why) => Some(format!("skipped ({why})")),
            Cell::Text(t) => Some(t.clone()),
        }
    }
}

/// A remote column's cell, with its ratio to native and its transport's floor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RemoteCell {
    pub(crate) cell: Cell,
    /// Remote time ÷ native time at p50 (for GB/s: native GB/s ÷ remote GB/s): 1.0 is native
    /// speed, 2.0 twice as slow.
    pub(crate) ratio: Option<f64>,
    pub(crate) floor: Option<f64>,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableRow {
    pub(crate) name: String,
    pub(crate) unit: Unit,
    pub(crate) native: Cell,
    pub(crate) remote: Vec<RemoteCell>,
}

/// Everything the renderers show.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    /// Labels of the remote columns.
    pub(crate) remotes: Vec<String>,
    pub(crate) rows: Vec<TableRow>,
    /// `label: about` lines, native first.
    pub(crate) about: Vec<String>,
    /// Why cells hold words instead of numbers.
    pub(crate) notes: Vec<String>,
}

/// `remote` relative to `native` at p50, as a time ratio.
pub(crate) fn ratio(unit: Unit, native: &Stat, remote: &Stat) -> Option<f64> {
    let (num, den) = match unit {
        Unit::Micros => (remote.p50, native.p50),
        Unit::GigabytesPerSec => (native.p50, remote.p50),
    };
    (num > 0.0 && den > 0.0).then(|| num / den)
}

/// Build the table: the program's rows in the order the programs printed them, then the rows
/// remora measured itself.
pub(crate) fn build(native: &Column, remotes: &[Column]) -> Table {
    let columns: Vec<&Column> = std::iter::once(native).chain(remotes).collect();
    let mut order: Vec<(String, Unit, bool)> = Vec::new();
    for extra in [false, true] {
        for c in &columns {
            let rows = if extra { &c.extra[..] } else { c.rows() };
            for r in rows {
                if !order.iter().any(|(n, _, _)| *n == r.name) {
                    order.push((r.name.clone(), r.unit, extra));
                }
            }
        }
    }
    let rows = order
        .iter()
        .map(|(name, unit, extra)| {
            let cell = |c: &Column| if *extra { c.extra_cell(name) } else { c.program_cell(name) };
            let native_cell = cell(native);
            let remote = remotes
                .iter()
                .map(|c| {
                    let rc = cell(c);
                    let ratio = match (native_cell.value(), rc.value()) {
                        (Some(n), Some(r)) => ratio(*unit, n, r),
                        _ => None,
                    };
                    RemoteCell { ratio, floor: if *extra { None } else { c.floor(*unit) }, cell: rc }
                })
                .collect();
            TableRow { name: name.clone(), unit: *unit, native: native_cell, remote }
        })
        .collect();

    let mut notes = Vec::new();
    // Skipped rows, grouped by reason.
    let mut skipped: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for c in &columns {
        for r in c.rows().iter().chain(&c.extra) {
            if let Outcome::Skipped(why) = &r.outcome {
                let (labels, names) = skipped.entry(why.clone()).or_default();
                if !labels.contains(&c.label) {
                    labels.push(c.label.clone());
                }
                if !names.contains(&r.name) {
                    names.push(r.name.clone());
                }
            }
        }
    }
    for c in &columns {
        match &c.state {
            State::NotRun(why) => notes.push(format!("{}: {why}", c.label)),
            State::Failed { why, .. } => notes.push(format!("{}: FAILED: {why}", c.label)),
            State::Ran(_) => {}
        }
    }
    for (why, (labels, names)) in skipped {
        notes.push(format!("skipped on {}: {} ({why})", labels.join(", "), names.join(", ")));
    }
    Table {
        remotes: remotes.iter().map(|c| c.label.clone()).collect(),
        rows,
        about: columns.iter().map(|c| format!("{}: {}", c.label, c.about)).collect(),
        notes,
    }
}

/// A number with about four significant digits.
pub(crate) fn num(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 100.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn ratio_text(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{}x", num(r)))
}

/// The table as aligned text.
pub(crate) fn render_text(t: &Table) -> String {
    let mut header = vec!["operation".to_string(), "unit".into(), "native p50".into(), "native p99".into()];
    for l in &t.remotes {
        header.extend([format!("{l} p50"), format!("{l} p99"), format!("{l} x native"), format!("{l} floor")]);
    }
    let p50 = |c: &Cell| c.word();
    let p99 = |c: &Cell| c.value().map_or_else(String::new, |s| num(s.p99));
    let mut lines: Vec<Vec<String>> = vec![header];
    for r in &t.rows {
        let mut line = vec![r.name.clone(), r.unit.to_string(), p50(&r.native), p99(&r.native)];
        for rc in &r.remote {
            line.extend([p50(&rc.cell), p99(&rc.cell), ratio_text(rc.ratio), rc.floor.map_or_else(|| "-".into(), num)]);
        }
        lines.push(line);
    }
    let cols = lines[0].len();
    let widths: Vec<usize> =
        (0..cols).map(|i| lines.iter().map(|l| l.get(i).map_or(0, |s| s.chars().count())).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for t_about in &t.about {
        let _ = writeln!(out, "{t_about}");
    }
    out.push('\n');
    for (n, line) in lines.iter().enumerate() {
        let mut s = String::new();
        for (i, cell) in line.iter().enumerate() {
            let w = widths[i];
            if i > 0 {
                s.push_str("  ");
            }
            if i < 2 {
                let _ = write!(s, "{cell:<w$}");
            } else {
                let _ = write!(s, "{cell:>w$}");
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
        if n == 0 {
            let total = widths.iter().sum::<usize>() + 2 * (cols - 1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    out.push('\n');
    let range = |label: &str, c: &Cell| {
        c.value().and_then(|s| s.spread).map(|(lo, hi, _)| format!("{label} {}–{}", num(lo), num(hi)))
    };
    let mut spread_lines = Vec::new();
    let mut runs = 0;
    for r in &t.rows {
        let parts: Vec<String> = std::iter::once(range("native", &r.native))
            .chain(t.remotes.iter().zip(&r.remote).map(|(l, rc)| range(l, &rc.cell)))
            .flatten()
            .collect();
        runs = runs.max(
            std::iter::once(&r.native)
                .chain(r.remote.iter().map(|rc| &rc.cell))
                .filter_map(|c| c.value().and_then(|s| s.spread).map(|(_, _, n)| n))
                .max()
                .unwrap_or(0),
        );
        if !parts.is_empty() {
            spread_lines.push(format!("  {}: {}", r.name, parts.join(", ")));
        }
    }
    if !spread_lines.is_empty() {
        let _ = writeln!(out, "p50 over {runs} runs: the median is shown above; lowest–highest of the runs' p50s:");
        for l in spread_lines {
            let _ = writeln!(out, "{l}");
        }
        out.push('\n');
    }
    out.push_str(LEGEND);
    for n in &t.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

const LEGEND: &str = "p50/p99: median and 99th percentile (GB/s rows: bytes / time of one copy at those times).\n\
x native: remote time / native time at p50 (GB/s rows: native GB/s / remote GB/s); 1.00x is native speed.\n\
floor: the transport alone, no CUDA: 64 B round trip p50 (us rows) or 256 MiB stream p50 (GB/s rows).\n";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A label as part of a CSV column name: `[A-Za-z0-9_]` only.
fn csv_label(l: &str) -> String {
    l.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// The table as CSV: the same rows; per column count, p50, p99, worst, and with `--runs` the
/// lowest and highest p50 of the runs (plus, for remote columns, the ratio to native and the
/// floor). Cells without a number are empty; `note` says why.
pub(crate) fn render_csv(t: &Table) -> String {
    let mut header: Vec<String> = [
        "operation",
        "unit",
        "native_n",
        "native_p50",
        "native_p99",
        "native_worst",
        "native_p50_min",
        "native_p50_max",
    ]
    .map(String::from)
    .to_vec();
    for l in &t.remotes {
        let l = csv_label(l);
        for f in ["n", "p50", "p99", "worst", "p50_min", "p50_max", "x_native", "floor"] {
            header.push(format!("{l}_{f}"));
        }
    }
    header.push("note".into());
    let mut out = header.join(",");
    out.push('\n');
    let stat_fields = |c: &Cell| -> [String; 6] {
        match c {
            Cell::Value(s) => {
                let (lo, hi) = s.spread.map_or_else(Default::default, |(lo, hi, _)| (lo.to_string(), hi.to_string()));
                [s.count.to_string(), s.p50.to_string(), s.p99.to_string(), s.worst.to_string(), lo, hi]
            }
            _ => Default::default(),
        }
    };
    for r in &t.rows {
        let mut f: Vec<String> = vec![r.name.clone(), r.unit.to_string()];
        f.extend(stat_fields(&r.native));
        let mut note = Vec::new();
        if let Some(why) = r.native.note() {
            note.push(format!("native: {why}"));
        }
        for (l, rc) in t.remotes.iter().zip(&r.remote) {
            f.extend(stat_fields(&rc.cell));
            f.push(rc.ratio.map(|v| v.to_string()).unwrap_or_default());
            f.push(rc.floor.map(|v| v.to_string()).unwrap_or_default());
            if let Some(why) = rc.cell.note() {
                note.push(format!("{l}: {why}"));
            }
        }
        f.push(note.join("; "));
        out.push_str(&f.iter().map(|s| csv_field(s)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const COLORS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

/// An SVG bar chart of the ratios: one group per operation that has one, one bar per remote
/// column (`class="bar"`, with `data-op`, `data-run`, `data-ratio`), on a log scale around 1×.
pub(crate) fn render_svg(t: &Table) -> String {
    const LEFT: f64 = 250.0;
    const PLOT: f64 = 560.0;
    const BAR: f64 = 14.0;
    const GAP: f64 = 10.0;
    const TOP: f64 = 70.0;
    let width = LEFT + PLOT + 90.0;
    let groups: Vec<(&TableRow, Vec<(usize, f64)>)> = t
        .rows
        .iter()
        .map(|r| (r, r.remote.iter().enumerate().filter_map(|(i, rc)| rc.ratio.map(|v| (i, v))).collect::<Vec<_>>()))
        .filter(|(_, bars)| !bars.is_empty())
        .collect();
    let ratios: Vec<f64> = groups.iter().flat_map(|(_, b)| b.iter().map(|&(_, v)| v)).collect();
    let lo = ratios.iter().copied().fold(1.0f64, f64::min);
    let hi = ratios.iter().copied().fold(1.0f64, f64::max);
    let lo_exp = lo.log10().floor();
    let mut hi_exp = hi.log10().ceil();
    if hi_exp <= lo_exp {
        hi_exp = lo_exp + 1.0;
    }
    let x = |v: f64| LEFT + (v.log10() - lo_exp) / (hi_exp - lo_exp) * PLOT;
    let group_h = t.remotes.len().max(1) as f64 * BAR + GAP;
    let plot_h = (groups.len().max(1) as f64) * group_h;
    let height = TOP + plot_h + 60.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">remora bench: remote / native time at p50 (log scale; 1x = native speed)</text>"#
    );
    // Legend.
    for (i, l) in t.remotes.iter().enumerate() {
        let lx = LEFT + i as f64 * 140.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="34" width="12" height="12" fill="{}"/><text x="{}" y="45">{}</text>"#,
            COLORS[i % COLORS.len()],
            lx + 16.0,
            xml(l)
        );
    }
    if groups.is_empty() {
        let why = t.notes.first().map_or("no row was measured both natively and remotely", String::as_str);
        let _ = writeln!(s, r#"<text x="10" y="{}">No ratios to plot: {}</text>"#, TOP + 20.0, xml(why));
        s.push_str("</svg>\n");
        return s;
    }
    // Grid: every power of ten, and 2 and 5 times it when the scale spans at most two decades.
    let mut e = lo_exp;
    while e <= hi_exp {
        let base = 10f64.powf(e);
        let steps: &[f64] = if hi_exp - lo_exp <= 2.0 { &[1.0, 2.0, 5.0] } else { &[1.0] };
        for &m in steps {
            let v = base * m;
            if v > 10f64.powf(hi_exp) * 1.0001 {
                continue;
            }
            let gx = x(v);
            let (stroke, w) = if (v - 1.0).abs() < 1e-9 { ("#000", 1.5) } else { ("#ccc", 1.0) };
            let _ = writeln!(
                s,
                r#"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="{w}"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{}x</text>"#,
                TOP + plot_h,
                TOP + plot_h + 16.0,
                num(v)
            );
        }
        e += 1.0;
    }
    let x1 = x(1.0);
    for (g, (row, bars)) in groups.iter().enumerate() {
        let gy = TOP + g as f64 * group_h;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{} ({})</text>"#,
            LEFT - 8.0,
            gy + (group_h - GAP) / 2.0 + 4.0,
            xml(&row.name),
            row.unit
        );
        for &(i, v) in bars {
            let by = gy + i as f64 * BAR;
            let xv = x(v);
            let (bx, bw) = (x1.min(xv), (xv - x1).abs().max(1.0));
            let label = &t.remotes[i];
            let _ = writeln!(
                s,
                r#"<rect class="bar" data-op="{}" data-run="{}" data-ratio="{v}" x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="{:.1}" fill="{}"><title>{} over {}: {}x native</title></rect>"#,
                xml(&row.name),
                xml(label),
                BAR - 2.0,
                COLORS[i % COLORS.len()],
                xml(&row.name),
                xml(label),
                num(v)
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="10">{}x</text>"#,
                x1.max(xv) + 4.0,
                by + BAR - 4.0,
                num(v)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::output::parse;

    fn stat(p50: f64) -> Stat {
        Stat::new(10, p50, p50 * 2.0, p50 * 3.0)
    }

    fn measured(name: &str, unit: Unit, p50: f64) -> Row {
        Row { name: name.into(), unit, outcome: Outcome::Measured(stat(p50)) }
    }

    fn column(label: &str, state: State) -> Column {
        Column {
            label: label.into(),
            about: format!("{label} somewhere"),
            state,
            extra: Vec::new(),
            floor_us: None,
            floor_gbps: None,
        }
    }

    fn remote(label: &str, text: &str, floor_us: f64, floor_gbps: f64) -> Column {
        Column {
            extra: vec![measured("floor_rtt_64B", Unit::Micros, floor_us)],
            floor_us: Some(floor_us),
            floor_gbps: Some(floor_gbps),
            ..column(label, State::Ran(parse(text).unwrap()))
        }
    }

    const NATIVE: &str = "bench remora_bench 1
result stream_query_idle us 100 2 3 4
result launch_async us 100 3 4 5
result copy_h2d_pinned_16MiB GB/s 10 50 40 30
result vector_add_16Mi_round us 5 1000 1100 1200
done
";
    const REMOTE: &str = "bench remora_bench 1
result stream_query_idle us 100 20 30 40
skip launch_async us emulated backend: no kernels
result copy_h2d_pinned_16MiB GB/s 10 5 4 3
skip vector_add_16Mi_round us emulated backend: no kernels
done
";

    fn table() -> Table {
        let native = column("native", State::Ran(parse(NATIVE).unwrap()));
        build(&native, &[remote("tcp", REMOTE, 20.0, 2.5), remote("shm", NATIVE, 0.2, 9.0)])
    }

    #[test]
    fn ratios_are_time_ratios_and_floors_follow_the_unit() {
        let t = table();
        assert_eq!(t.remotes, ["tcp", "shm"]);
        let names: Vec<&str> = t.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["stream_query_idle", "launch_async", "copy_h2d_pinned_16MiB", "vector_add_16Mi_round", "floor_rtt_64B"]
        );
        let q = &t.rows[0];
        assert_eq!(q.remote[0].ratio, Some(10.0));
        assert_eq!(q.remote[0].floor, Some(20.0));
        assert_eq!(q.remote[1].ratio, Some(1.0));
        let copy = &t.rows[2];
        assert_eq!(copy.remote[0].ratio, Some(10.0), "50 GB/s native, 5 remote: ten times the time");
        assert_eq!(copy.remote[0].floor, Some(2.5));
        assert_eq!(t.rows[1].remote[0].cell, Cell::Skipped("emulated backend: no kernels".into()));
        assert_eq!(t.rows[1].remote[0].ratio, None);
        // The floor row: no native value, no ratio, no floor of its own.
        let f = &t.rows[4];
        assert_eq!(f.native, Cell::NotApplicable);
        assert_eq!((f.remote[0].ratio, f.remote[0].floor), (None, None));
        assert_eq!(f.remote[1].cell.value().map(|s| s.p50), Some(0.2));
        assert!(t
            .notes
            .iter()
            .any(|n| n == "skipped on tcp: launch_async, vector_add_16Mi_round (emulated backend: no kernels)"));
    }

    #[test]
    fn no_gpu_says_so_in_every_native_cell_and_gives_no_ratio() {
        let native = column("native", State::NotRun("n/a (no GPU)".into()));
        let t = build(&native, &[remote("tcp", REMOTE, 20.0, 2.5)]);
        assert!(t
            .rows
            .iter()
            .filter(|r| r.name != "floor_rtt_64B")
            .all(|r| r.native == Cell::Text("n/a (no GPU)".into())));
        assert!(t.rows.iter().all(|r| r.remote[0].ratio.is_none()));
        let text = render_text(&t);
        assert!(text.contains("n/a (no GPU)"), "{text}");
        assert!(text.contains("note: native: n/a (no GPU)"), "{text}");
        let svg = render_svg(&t);
        assert_eq!(svg.matches(r#"class="bar""#).count(), 0);
        assert!(svg.contains("No ratios to plot: native: n/a (no GPU)"), "{svg}");
    }

    #[test]
    fn a_failed_column_keeps_what_it_measured() {
        let native = column("native", State::Ran(parse(NATIVE).unwrap()));
        let partial = parse("bench remora_bench 1\nresult stream_query_idle us 100 4 5 6\nerror boom\n").unwrap();
        let failed = column("tcp", State::Failed { why: "exit status 1: boom".into(), partial: Some(partial) });
        let t = build(&native, &[failed]);
        assert_eq!(t.rows[0].remote[0].ratio, Some(2.0));
        assert_eq!(t.rows[1].remote[0].cell, Cell::Text("failed".into()));
        assert!(t.notes.contains(&"tcp: FAILED: exit status 1: boom".to_string()));
    }

    #[test]
    fn text_table_aligns_columns() {
        let text = render_text(&table());
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("operation")).unwrap();
        assert!(lines[header].contains("tcp x native") && lines[header].contains("shm floor"));
        assert!(lines[header + 1].chars().all(|c| c == '-'));
        let q = lines[header + 2];
        assert!(q.starts_with("stream_query_idle"), "{q}");
        assert!(q.contains("10.00x") && q.contains("1.00x"), "{q}");
        // Right-aligned numbers end in the same column as their header.
        let end = |l: &str, pat: &str| l.find(pat).map(|i| i + pat.len());
        assert_eq!(end(lines[header], "native p50"), end(q, " 2.00"));
        assert!(text.contains("x native: remote time / native time at p50"));
        assert!(text.lines().next().unwrap().starts_with("native: native somewhere"));
    }

    #[test]
    fn csv_has_the_same_rows_with_numbers_or_a_note() {
        let csv = render_csv(&table());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + 5);
        let header: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(header[..6], ["operation", "unit", "native_n", "native_p50", "native_p99", "native_worst"]);
        assert!(header.contains(&"tcp_x_native") && header.contains(&"shm_floor"));
        assert_eq!(*header.last().unwrap(), "note");
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let row =
            |op: &str| lines.iter().find(|l| l.starts_with(&format!("{op},"))).unwrap().split(',').collect::<Vec<_>>();
        let q = row("stream_query_idle");
        assert_eq!(q.len(), header.len());
        assert_eq!((q[col("native_p50")], q[col("tcp_p50")], q[col("tcp_x_native")]), ("2", "20", "10"));
        assert_eq!(q[col("tcp_floor")], "20");
        let l = row("launch_async");
        assert_eq!(l[col("tcp_p50")], "");
        assert_eq!(l[col("note")], "tcp: skipped (emulated backend: no kernels)");
        assert_eq!(row("floor_rtt_64B")[col("note")], "", "no note where a cell does not apply");
        assert_eq!(row("copy_h2d_pinned_16MiB")[col("unit")], "GB/s");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_label("tcp://127.0.0.1:7070"), "tcp___127_0_0_1_7070");
    }

    /// Every `class="bar"` rect of the SVG, as (op, run, ratio, x, width).
    fn bars(svg: &str) -> Vec<(String, String, f64, f64, f64)> {
        let attr = |el: &str, name: &str| -> String {
            let start = el.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            el[start..].split('"').next().unwrap().to_string()
        };
        svg.match_indices("<rect class=\"bar\"")
            .map(|(i, _)| {
                let el = &svg[i..i + svg[i..].find('>').unwrap()];
                (
                    attr(el, "data-op"),
                    attr(el, "data-run"),
                    attr(el, "data-ratio").parse().unwrap(),
                    attr(el, "x").parse().unwrap(),
                    attr(el, "width").parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn svg_has_one_bar_per_ratio() {
        let t = table();
        let svg = render_svg(&t);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        let want: Vec<(String, String, f64)> = t
            .rows
            .iter()
            .flat_map(|r| {
                t.remotes.iter().zip(&r.remote).filter_map(|(l, rc)| rc.ratio.map(|v| (r.name.clone(), l.clone(), v)))
            })
            .collect();
        assert_eq!(want.len(), 6, "{want:?}");
        let got = bars(&svg);
        assert_eq!(got.iter().map(|(o, r, v, _, _)| (o.clone(), r.clone(), *v)).collect::<Vec<_>>(), want);
        // Bars start at the 1x line: 1x has the minimum width, equal ratios give equal bars.
        let by = |op: &str, run: &str| got.iter().find(|b| b.0 == op && b.1 == run).unwrap().clone();
        let ten = by("stream_query_idle", "tcp");
        let one = by("stream_query_idle", "shm");
        assert!(ten.4 > 100.0, "{ten:?}");
        assert_eq!(one.4, 1.0);
        assert_eq!(ten.3, one.3, "bars start at the 1x line");
        assert_eq!(by("copy_h2d_pinned_16MiB", "tcp").4, ten.4);
        assert!(svg.contains(">tcp</text>") && svg.contains(">shm</text>"), "legend");
    }

    #[test]
    fn svg_escapes_labels() {
        let native = column("native", State::Ran(parse(NATIVE).unwrap()));
        let t = build(&native, &[remote("a<&>\"b", NATIVE, 1.0, 1.0)]);
        let svg = render_svg(&t);
        assert!(svg.contains("a&lt;&amp;&gt;&quot;b"));
        assert!(!svg.contains("a<&>"));
        assert_eq!(bars(&svg).len(), 4);
    }

    #[test]
    fn numbers_keep_about_four_digits() {
        assert_eq!(num(0.1234), "0.123");
        assert_eq!(num(3.456), "3.46");
        assert_eq!(num(123.456), "123.5");
        assert_eq!(num(54012.3), "54012");
    }

    #[test]
    fn runs_show_their_range() {
        let mut native = column("native", State::Ran(parse(NATIVE).unwrap()));
        if let State::Ran(o) = &mut native.state {
            if let Outcome::Measured(s) = &mut o.rows[3].outcome {
                s.spread = Some((900.0, 1500.0, 3));
            }
        }
        let t = build(&native, &[remote("tcp", REMOTE, 20.0, 2.5)]);
        let text = render_text(&t);
        assert!(text.contains("p50 over 3 runs"), "{text}");
        assert!(text.contains("  vector_add_16Mi_round: native 900.0–1500"), "{text}");
        let csv = render_csv(&t);
        let lines: Vec<&str> = csv.lines().collect();
        let head: Vec<&str> = lines[0].split(',').collect();
        let at = |c: &str| head.iter().position(|h| *h == c).unwrap();
        let row = lines.iter().find(|l| l.starts_with("vector_add_16Mi_round,")).unwrap();
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!((f[at("native_p50_min")], f[at("native_p50_max")]), ("900", "1500"));
        let one = lines.iter().find(|l| l.starts_with("stream_query_idle,")).unwrap();
        let f: Vec<&str> = one.split(',').collect();
        assert_eq!((f[at("native_p50_min")], f[at("tcp_p50_max")]), ("", ""));
        assert!(!render_text(&table()).contains("runs"));
    }
}
