//! What `remora_bench` prints (format in `benches/cuda/remora_bench.cu`), parsed.

use std::fmt;

/// The format version this parser reads (`bench remora_bench 1`).
const FORMAT: &str = "1";

/// The unit of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Microseconds per operation: lower is better.
    Micros,
    /// Gigabytes (1e9 bytes) per second: higher is better.
    GigabytesPerSec,
}

impl Unit {
    fn parse(s: &str) -> Option<Unit> {
        match s {
            "us" => Some(Unit::Micros),
            "GB/s" => Some(Unit::GigabytesPerSec),
            _ => None,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Micros => "us",
            Unit::GigabytesPerSec => "GB/s",
        })
    }
}

/// One measurement: how many timed iterations, and the value at the median, the 99th percentile
/// and the worst iteration (for GB/s: at the median, 99th-percentile and slowest *times*).
/// Merged over several runs ([`merge`]): the median run's p50 and p99, the worst of all, and
/// the lowest and highest p50 in `spread`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stat {
    pub(crate) count: u64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) worst: f64,
    /// Over several runs: (lowest p50, highest p50, runs). `None` for one run.
    pub(crate) spread: Option<(f64, f64, usize)>,
}

impl Stat {
    /// One run's measurement.
    pub(crate) fn new(count: u64, p50: f64, p99: f64, worst: f64) -> Stat {
        Stat { count, p50, p99, worst, spread: None }
    }
}

/// A row's result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Measured.
    Measured(Stat),
    /// Not measured, and why.
    Skipped(String),
}

/// One row: a named operation, its unit and its result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) unit: Unit,
    pub(crate) outcome: Outcome,
}

/// A whole run of the program.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Output {
    /// `info` lines, in order (device name, versions, mode).
    pub(crate) info: Vec<(String, String)>,
    pub(crate) rows: Vec<Row>,
    /// The program printed `done`: every row is there.
    pub(crate) complete: bool,
    /// The program's `error` line, if it stopped on a failed CUDA call.
    pub(crate) error: Option<String>,
}

impl Output {
    /// The value of an `info` line.
    pub(crate) fn info(&self, key: &str) -> Option<&str> {
        self.info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The row called `name`.
    pub(crate) fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }
}

/// A line that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) line: usize,
    pub(crate) why: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "remora_bench output line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for ParseError {}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Line {
    Header,
    Info(String, String),
    Row(Row),
    Error(String),
    Done,
}

/// Parse one line (without its newline).
pub(crate) fn parse_line(line: &str) -> Result<Line, String> {
    let mut it = line.split_whitespace();
    let kind = it.next().ok_or("empty line")?;
    let rest: Vec<&str> = it.collect();
    match kind {
        "bench" => match rest.as_slice() {
            ["remora_bench", v] if *v == FORMAT => Ok(Line::Header),
            ["remora_bench", v] => Err(format!("format version {v}, this remora reads {FORMAT}")),
            _ => Err(format!("not a remora_bench header: {line:?}")),
        },
        "info" => match rest.split_first() {
            Some((key, value)) => Ok(Line::Info((*key).to_string(), value.join(" "))),
            None => Err("info without a key".into()),
        },
        "result" => {
            let [name, unit, count, p50, p99, worst] = rest.as_slice() else {
                return Err(format!("expected `result NAME UNIT COUNT P50 P99 WORST`, got {line:?}"));
            };
            let unit = Unit::parse(unit).ok_or_else(|| format!("unknown unit {unit:?}"))?;
            let count: u64 = count.parse().map_err(|_| format!("count {count:?} is not a whole number"))?;
            if count == 0 {
                return Err(format!("{name}: no iterations"));
            }
            let num = |s: &str| -> Result<f64, String> {
                match s.parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                    _ => Err(format!("{name}: {s:?} is not a finite non-negative number")),
                }
            };
            let stat = Stat::new(count, num(p50)?, num(p99)?, num(worst)?);
            Ok(Line::Row(Row { name: (*name).to_string(), unit, outcome: Outcome::Measured(stat) }))
        }
        "skip" => {
            let [name, unit, reason @ ..] = rest.as_slice() else {
                return Err(format!("expected `skip NAME UNIT REASON`, got {line:?}"));
            };
            let unit = Unit::parse(unit).ok_or_else(|| format!("unknown unit {unit:?}"))?;
            let reason = if reason.is_empty() { "no reason given".to_string() } else { reason.join(" ") };
            Ok(Line::Row(Row { name: (*name).to_string(), unit, outcome: Outcome::Skipped(reason) }))
        }
        "error" => Ok(Line::Error(rest.join(" "))),
        "done" => Ok(Line::Done),
        _ => Err(format!("unknown line {line:?}")),
    }
}

/// The median of `v` (the mean of the two middle values for an even count); `None` when empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// One row measured in several runs: measured in every run → the median p50 and p99, the
/// worst iteration of all runs, and the p50s' range; skipped or missing in some run → skipped,
/// saying in how many runs it was measured.
fn merge_row(name: &str, unit: Unit, outcomes: &[Option<&Outcome>]) -> Row {
    let stats: Vec<Stat> = outcomes
        .iter()
        .filter_map(|o| match o {
            Some(Outcome::Measured(s)) => Some(*s),
            _ => None,
        })
        .collect();
    let outcome = if stats.len() == outcomes.len() && !stats.is_empty() {
        let p50s: Vec<f64> = stats.iter().map(|s| s.p50).collect();
        let lo = p50s.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = p50s.iter().copied().fold(0.0, f64::max);
        // The slowest iteration: the longest time, or for GB/s the lowest rate.
        let worst = match unit {
            Unit::Micros => stats.iter().map(|s| s.worst).fold(0.0, f64::max),
            Unit::GigabytesPerSec => stats.iter().map(|s| s.worst).fold(f64::INFINITY, f64::min),
        };
        Outcome::Measured(Stat {
            count: stats.iter().map(|s| s.count).sum(),
            p50: median(p50s).unwrap_or(0.0),
            p99: median(stats.iter().map(|s| s.p99).collect()).unwrap_or(0.0),
            worst,
            spread: (outcomes.len() > 1).then_some((lo, hi, outcomes.len())),
        })
    } else {
        let skipped = outcomes.iter().find_map(|o| match o {
            Some(Outcome::Skipped(why)) => Some(why.clone()),
            _ => None,
        });
        match skipped {
            Some(why) if stats.is_empty() => Outcome::Skipped(why),
            _ => Outcome::Skipped(format!("measured in {} of {} runs", stats.len(), outcomes.len())),
        }
    };
    Row { name: name.to_string(), unit, outcome }
}

/// Rows of several runs merged by name ([`merge_row`]), in the order they first appear.
pub(crate) fn merge_rows(runs: &[&[Row]]) -> Vec<Row> {
    let mut order: Vec<(&str, Unit)> = Vec::new();
    for r in runs.iter().flat_map(|rows| rows.iter()) {
        if !order.iter().any(|(n, _)| *n == r.name) {
            order.push((&r.name, r.unit));
        }
    }
    order
        .into_iter()
        .map(|(name, unit)| {
            let outcomes: Vec<Option<&Outcome>> =
                runs.iter().map(|rows| rows.iter().find(|r| r.name == name).map(|r| &r.outcome)).collect();
            merge_row(name, unit, &outcomes)
        })
        .collect()
}

/// Several runs of the program as one: the first run's `info`, rows merged ([`merge_rows`]),
/// complete only if every run was, the first error.
pub(crate) fn merge(runs: &[Output]) -> Output {
    let rows: Vec<&[Row]> = runs.iter().map(|o| &o.rows[..]).collect();
    Output {
        info: runs.first().map(|o| o.info.clone()).unwrap_or_default(),
        rows: merge_rows(&rows),
        complete: !runs.is_empty() && runs.iter().all(|o| o.complete),
        error: runs.iter().find_map(|o| o.error.clone()),
    }
}

/// Parse a whole run's stdout. The first line must be the header; a run cut short (no `done`)
/// parses, with `complete` false, so what was measured before a failure is still shown.
pub(crate) fn parse(text: &str) -> Result<Output, ParseError> {
    let mut out = Output::default();
    let mut header = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let parsed = parse_line(raw);
        if !header && !matches!(parsed, Ok(Line::Header)) {
            let why = match parsed {
                Err(e) if raw.starts_with("bench ") => e,
                _ => format!("expected the `bench remora_bench {FORMAT}` header, got {raw:?}"),
            };
            return Err(ParseError { line: n, why });
        }
        let line = parsed.map_err(|why| ParseError { line: n, why })?;
        if out.complete {
            return Err(ParseError { line: n, why: "output after `done`".into() });
        }
        match line {
            Line::Header if header => return Err(ParseError { line: n, why: "a second header".into() }),
            Line::Header => header = true,
            Line::Info(k, v) => out.info.push((k, v)),
            Line::Row(r) => {
                if out.row(&r.name).is_some() {
                    return Err(ParseError { line: n, why: format!("row {} twice", r.name) });
                }
                out.rows.push(r);
            }
            Line::Error(e) => out.error = Some(e),
            Line::Done => out.complete = true,
        }
    }
    if !header {
        return Err(ParseError { line: 0, why: "no output (expected a `bench remora_bench` header)".into() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "bench remora_bench 1
info mode quick
info device NVIDIA H200
result stream_query_idle us 200 3.865 4.546 25.819
skip launch_async us emulated backend: no kernels
result copy_h2d_pinned_16MiB GB/s 5 0.1205 0.0155 0.0155
done
";

    #[test]
    fn parses_a_complete_run() {
        let o = parse(SAMPLE).unwrap();
        assert!(o.complete);
        assert_eq!(o.error, None);
        assert_eq!(o.info("device"), Some("NVIDIA H200"));
        assert_eq!(o.info("mode"), Some("quick"));
        assert_eq!(o.rows.len(), 3);
        assert_eq!(
            o.row("stream_query_idle").unwrap(),
            &Row {
                name: "stream_query_idle".into(),
                unit: Unit::Micros,
                outcome: Outcome::Measured(Stat::new(200, 3.865, 4.546, 25.819))
            }
        );
        assert_eq!(o.row("launch_async").unwrap().outcome, Outcome::Skipped("emulated backend: no kernels".into()));
        assert_eq!(o.row("copy_h2d_pinned_16MiB").unwrap().unit, Unit::GigabytesPerSec);
    }

    #[test]
    fn a_run_cut_short_keeps_its_rows_and_error() {
        let text = "bench remora_bench 1\nresult a us 10 1 2 3\nerror cudaMemcpy(...) (line 9): cudaErrorX text\n";
        let o = parse(text).unwrap();
        assert!(!o.complete);
        assert_eq!(o.rows.len(), 1);
        assert_eq!(o.error.as_deref(), Some("cudaMemcpy(...) (line 9): cudaErrorX text"));
    }

    #[test]
    fn rejects_what_breaks_the_format() {
        for (text, line, needle) in [
            ("", 0, "no output"),
            ("result a us 1 1 1 1\n", 1, "header"),
            ("bench remora_bench 2\n", 1, "format version 2"),
            ("bench remora_bench 1\nresult a us 1 1 1\n", 2, "expected `result"),
            ("bench remora_bench 1\nresult a ms 1 1 1 1\n", 2, "unknown unit"),
            ("bench remora_bench 1\nresult a us 0 1 1 1\n", 2, "no iterations"),
            ("bench remora_bench 1\nresult a us 1 -1 1 1\n", 2, "non-negative"),
            ("bench remora_bench 1\nresult a us 1 nan 1 1\n", 2, "finite"),
            ("bench remora_bench 1\nresult a us x 1 1 1\n", 2, "whole number"),
            ("bench remora_bench 1\nresult a us 1 1 1 1\nresult a us 1 1 1 1\n", 3, "twice"),
            ("bench remora_bench 1\nskip a\n", 2, "expected `skip"),
            ("bench remora_bench 1\nhello\n", 2, "unknown line"),
            ("bench remora_bench 1\ndone\nresult a us 1 1 1 1\n", 3, "after `done`"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.why.contains(needle), "{text:?}: {e} does not say {needle:?}");
        }
    }

    #[test]
    fn skip_without_reason_says_so() {
        assert_eq!(
            parse_line("skip x GB/s").unwrap(),
            Line::Row(Row {
                name: "x".into(),
                unit: Unit::GigabytesPerSec,
                outcome: Outcome::Skipped("no reason given".into())
            })
        );
    }

    fn run(rows: &[(&str, Unit, Option<f64>)]) -> Vec<Row> {
        rows.iter()
            .map(|&(name, unit, v)| Row {
                name: name.into(),
                unit,
                outcome: match v {
                    Some(p50) => Outcome::Measured(Stat::new(10, p50, p50 * 2.0, p50 * 3.0)),
                    None => Outcome::Skipped("no kernels".into()),
                },
            })
            .collect()
    }

    #[test]
    fn runs_merge_to_the_median_with_their_range() {
        let (us, gbs) = (Unit::Micros, Unit::GigabytesPerSec);
        let a = run(&[("lat", us, Some(3.0)), ("bw", gbs, Some(10.0)), ("k", us, None), ("odd", us, Some(1.0))]);
        let b = run(&[("lat", us, Some(1.0)), ("bw", gbs, Some(30.0)), ("k", us, None), ("odd", us, None)]);
        let c = run(&[("lat", us, Some(2.0)), ("bw", gbs, Some(20.0)), ("k", us, None)]);
        let m = merge_rows(&[&a, &b, &c]);
        assert_eq!(m.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["lat", "bw", "k", "odd"]);
        let Outcome::Measured(lat) = m[0].outcome else { panic!("{:?}", m[0]) };
        assert_eq!((lat.count, lat.p50, lat.p99, lat.worst), (30, 2.0, 4.0, 9.0));
        assert_eq!(lat.spread, Some((1.0, 3.0, 3)));
        // GB/s: the slowest iteration is the lowest rate.
        let Outcome::Measured(bw) = m[1].outcome else { panic!("{:?}", m[1]) };
        assert_eq!((bw.p50, bw.worst, bw.spread), (20.0, 30.0, Some((10.0, 30.0, 3))));
        assert_eq!(m[2].outcome, Outcome::Skipped("no kernels".into()));
        assert_eq!(m[3].outcome, Outcome::Skipped("measured in 1 of 3 runs".into()));
        // An even count: the mean of the two middle runs.
        let d = run(&[("lat", us, Some(4.0))]);
        let Outcome::Measured(even) = merge_rows(&[&a, &b, &c, &d])[0].outcome else { panic!() };
        assert_eq!((even.p50, even.spread), (2.5, Some((1.0, 4.0, 4))));
        // One run is that run, without a range.
        assert_eq!(merge_rows(&[&a]), a);
        let whole = merge(&[parse(SAMPLE).unwrap(), parse(SAMPLE).unwrap()]);
        assert!(whole.complete);
        assert_eq!(whole.info("device"), Some("NVIDIA H200"));
        let Some(Row { outcome: Outcome::Measured(s), .. }) = whole.row("stream_query_idle") else { panic!() };
        assert_eq!((s.count, s.p50, s.spread), (400, 3.865, Some((3.865, 3.865, 2))));
    }
}
