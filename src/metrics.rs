//! Prometheus text exposition (format 0.0.4), written by hand: families
//! with `# HELP` and `# TYPE`, escaped label values, cumulative histogram
//! buckets. `GET /metrics` builds one [`Exposition`] per scrape.
//!
//! Invariant: a family's samples follow its header directly and every
//! family name appears once (what `promtool check metrics` demands).

use std::fmt::Write as _;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (name ends in `_total`).
    Counter,
    /// Any value.
    Gauge,
    /// Bucketed observations.
    Histogram,
}

/// The text being built.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Escapes a label value (`\`, `"`, newline).
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn labels(l: &[(&str, &str)]) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Exposition {
    /// A new, empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts family `name`.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let t = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {t}");
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, l: &[(&str, &str)], v: f64) -> &mut Self {
        let _ = writeln!(self.out, "{name}{} {}", labels(l), num(v));
        self
    }

    /// A histogram's samples: `bounds` with per-bucket (not cumulative)
    /// `counts` (one more than bounds: the +Inf bucket), `sum`, `count`.
    pub fn histogram(
        &mut self,
        name: &str,
        l: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
        count: u64,
    ) -> &mut Self {
        let mut acc = 0u64;
        for (i, b) in bounds.iter().enumerate() {
            acc += counts.get(i).copied().unwrap_or(0);
            let le = num(*b);
            let mut ll = l.to_vec();
            ll.push(("le", &le));
            let _ = writeln!(self.out, "{name}_bucket{} {acc}", labels(&ll));
        }
        let mut ll = l.to_vec();
        ll.push(("le", "+Inf"));
        let _ = writeln!(self.out, "{name}_bucket{} {count}", labels(&ll));
        let _ = writeln!(self.out, "{name}_sum{} {}", labels(l), num(sum));
        let _ = writeln!(self.out, "{name}_count{} {count}", labels(l));
        self
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// This process's resident memory (bytes) and CPU time (seconds), from `/proc/self`.
pub fn process_stats() -> Option<(u64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 here.
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Some((pages * page, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let mut e = Exposition::new();
        e.family("x_total", "Things.\nMore", Kind::Counter).sample(
            "x_total",
            &[("name", "a\"b\\c\nd")],
            3.0,
        );
        e.family("lat_seconds", "Latency", Kind::Histogram)
            .histogram(
                "lat_seconds",
                &[("d", "n")],
                &[0.1, 1.0],
                &[2, 1, 1],
                1.5,
                4,
            );
        let t = e.finish();
        assert!(
            t.contains("# HELP x_total Things.\\nMore\n# TYPE x_total counter\n"),
            "{t}"
        );
        assert!(t.contains("x_total{name=\"a\\\"b\\\\c\\nd\"} 3\n"), "{t}");
        assert!(
            t.contains("lat_seconds_bucket{d=\"n\",le=\"0.1\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("lat_seconds_bucket{d=\"n\",le=\"1\"} 3\n"),
            "{t}"
        );
        assert!(
            t.contains("lat_seconds_bucket{d=\"n\",le=\"+Inf\"} 4\n"),
            "{t}"
        );
        assert!(t.contains("lat_seconds_sum{d=\"n\"} 1.5\n"), "{t}");
        let (rss, cpu) = process_stats().unwrap();
        assert!(rss > 0 && cpu >= 0.0);
    }
}
