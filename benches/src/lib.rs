//! remora's criterion benches live in `benches/`: `cargo bench -p remora-benches`.
