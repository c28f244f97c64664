//! `remora bench --quick --transport all` end to end: it builds benches/cuda/remora_bench.cu with
//! nvcc, starts its own server (backend `REMORA_TEST_BACKEND`, emulated by default), runs the
//! program over tcp and shm, measures the transport floors, and writes CSV and SVG.
//! Needs nvcc (NVIDIA's pip wheels will do: scripts/nvidia-wheels); without one it prints why
//! and is skipped. Needs the `remora` binary and the cdylib (`cargo build --workspace`).

use std::path::PathBuf;
use std::process::Command;

use remora_server::backend::BackendKind;
use remora_tests::test_backend;

/// The `remora` binary: `REMORA_BIN`, else beside this test's folder (target/debug/remora), else
/// beside this test (the GPU bundle).
fn remora_bin() -> PathBuf {
    if let Ok(p) = std::env::var("REMORA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let found =
        [dir.parent().map(|d| d.join("remora")), Some(dir.join("remora"))].into_iter().flatten().find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("no remora binary near {}: run `cargo build --workspace` first", exe.display()))
}

/// The CSV as (header, rows by operation).
fn read_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    // Only the last column (note) may be quoted; the numeric columns before it never are.
    let rows = lines.map(|l| l.splitn(header.len(), ',').map(String::from).collect()).collect();
    (header, rows)
}

#[test]
fn bench_quick_over_tcp_and_shm() {
    let dir = std::env::temp_dir().join(format!("remora-e2e-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (csv, svg) = (dir.join("bench.csv"), dir.join("bench.svg"));
    let backend = match test_backend() {
        BackendKind::Auto => "auto",
        BackendKind::Cuda => "cuda",
        BackendKind::Emulated => "emulated",
    };
    let out = Command::new(remora_bin())
        .args(["bench", "--quick", "--runs", "2", "--transport", "all", "--backend", backend, "--csv"])
        .arg(&csv)
        .arg("--plot")
        .arg(&svg)
        // This machine may be busy: a slow worker is not a dead one.
        .env("REMORA_TIMEOUT", "120")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("no nvcc:") {
        eprintln!("SKIPPED bench_quick_over_tcp_and_shm: {}", stderr.trim());
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    assert!(out.status.success(), "remora bench failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stderr.contains("remora bench: building remora_bench with"), "{stderr}");
    assert!(stdout.contains("tcp x native") && stdout.contains("shm floor"), "{stdout}");

    let (header, rows) = read_csv(&std::fs::read_to_string(&csv).unwrap());
    let col =
        |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}: {header:?}"));
    let row = |op: &str| rows.iter().find(|r| r[0] == op).unwrap_or_else(|| panic!("no row {op}"));
    let positive = |op: &str, c: &str| {
        let v = &row(op)[col(c)];
        assert!(v.parse::<f64>().is_ok_and(|v| v > 0.0), "{op} {c} = {v:?}, expected a positive number");
    };
    // Two runs per column: each row is the median of the two, with their range.
    assert!(stdout.contains("p50 over 2 runs"), "{stdout}");
    for t in ["tcp", "shm"] {
        for op in ["stream_query_idle", "server_ping"] {
            let v = |c: &str| row(op)[col(&format!("{t}_{c}"))].parse::<f64>().unwrap();
            assert!(v("p50_min") <= v("p50") && v("p50") <= v("p50_max"), "{op} over {t}");
        }
        for op in ["floor_rtt_64B", "floor_stream_256MiB", "server_ping"] {
            positive(op, &format!("{t}_p50"));
            positive(op, &format!("{t}_p99"));
        }
        for dir in ["h2d", "d2h"] {
            for mem in ["pageable", "pinned"] {
                for size in ["4KiB", "1MiB", "16MiB"] {
                    let op = format!("copy_{dir}_{mem}_{size}");
                    positive(&op, &format!("{t}_p50"));
                    assert_eq!(row(&op)[col("unit")], "GB/s");
                    // Each copy row carries its transport's stream floor.
                    assert_eq!(
                        row(&op)[col(&format!("{t}_floor"))],
                        row("floor_stream_256MiB")[col(&format!("{t}_p50"))]
                    );
                }
            }
        }
        for op in ["stream_query_idle", "memcpy_h2d_4B_pageable", "memcpy_d2h_4B_pinned", "malloc_free_1MiB"] {
            positive(op, &format!("{t}_p50"));
            assert_eq!(row(op)[col(&format!("{t}_floor"))], row("floor_rtt_64B")[col(&format!("{t}_p50"))]);
        }
    }
    let note = |op: &str| row(op)[col("note")].clone();
    if backend == "emulated" {
        // Kernel rows are skipped with the reason, never given numbers.
        for op in ["launch_async", "launch_sync", "launch_burst_100", "vector_add_16Mi_round"] {
            assert_eq!(row(op)[col("tcp_p50")], "", "{op}");
            assert!(note(op).contains("tcp: skipped (emulated backend"), "{op}: {}", note(op));
        }
    }
    // Native: measured where this machine has a GPU, else "n/a (no GPU)" and no ratio.
    let native = &row("stream_query_idle")[col("native_p50")];
    if native.is_empty() {
        assert!(note("stream_query_idle").contains("native: n/a"), "{}", note("stream_query_idle"));
        assert!(stdout.contains("n/a (no GPU)") || stdout.contains("n/a ("), "{stdout}");
        assert!(rows.iter().all(|r| r[col("tcp_x_native")].is_empty() && r[col("shm_x_native")].is_empty()));
    } else {
        positive("stream_query_idle", "native_p50");
        positive("stream_query_idle", "tcp_x_native");
    }
    // The chart has one bar per ratio in the CSV.
    let ratios = rows
        .iter()
        .map(|r| [col("tcp_x_native"), col("shm_x_native")].iter().filter(|&&c| !r[c].is_empty()).count())
        .sum::<usize>();
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg "), "{chart}");
    assert_eq!(chart.matches(r#"<rect class="bar""#).count(), ratios, "{chart}");
    let _ = std::fs::remove_dir_all(&dir);
}
