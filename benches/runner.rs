//! Overhead of the async runner per call versus spawning `true` directly with
//! `std::process::Command`. Run with `cargo bench -p oneld --bench runner`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oneld::pve::runner::{RunOptions, Runner};

const CALLS: usize = 300;
const WARMUP: usize = 20;

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let n = v.len().max(1);
    let mean = v.iter().sum::<Duration>() / n as u32;
    let pick = |q: f64| {
        let i = ((n as f64 - 1.0) * q).round() as usize;
        v.get(i).copied().unwrap_or_default()
    };
    (mean, pick(0.50), pick(0.99))
}

fn direct(calls: usize) -> Vec<Duration> {
    (0..calls)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new("true")
                .stdin(Stdio::null())
                .output()
                .expect("spawn true");
            assert!(out.status.success());
            t.elapsed()
        })
        .collect()
}

async fn via_runner(runner: &Runner, calls: usize) -> Vec<Duration> {
    let argv = vec!["true".to_string()];
    let mut v = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let out = runner
            .run(&argv, RunOptions::default())
            .await
            .expect("runner true");
        assert!(out.success());
        v.push(t.elapsed());
    }
    v
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let runner = Runner::default();

    direct(WARMUP);
    rt.block_on(via_runner(&runner, WARMUP));

    let d = stats(direct(CALLS));
    let r = stats(rt.block_on(via_runner(&runner, CALLS)));

    println!("runner overhead: {CALLS} calls of `true` each (after {WARMUP} warm-up calls)");
    println!(
        "{:<26} {:>10} {:>10} {:>10}",
        "", "mean µs", "p50 µs", "p99 µs"
    );
    println!(
        "{:<26} {:>10} {:>10} {:>10}",
        "std::process::Command",
        us(d.0),
        us(d.1),
        us(d.2)
    );
    println!(
        "{:<26} {:>10} {:>10} {:>10}",
        "pve::runner::Runner",
        us(r.0),
        us(r.1),
        us(r.2)
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "{:<26} {:>10.2} {:>10.2} {:>10.2}",
        "ratio runner/direct",
        ratio(r.0, d.0),
        ratio(r.1, d.1),
        ratio(r.2, d.2)
    );
    println!("mean overhead per call: {} µs", us(r.0.saturating_sub(d.0)));
}
