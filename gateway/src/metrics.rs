//! Counters, gauges and histograms, rendered in the Prometheus text format.
//!
//! Deliberately small: lock-free atomics for the hot path, one mutex-guarded
//! map for labelled counters (reasons are few and rare). Every error the
//! gateway logs is also counted here, so `/metrics` tells how often.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Add one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Set the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters keyed by one label value (e.g. a dead-letter reason).
#[derive(Debug, Default)]
pub struct LabelledCounter(Mutex<BTreeMap<String, u64>>);

impl LabelledCounter {
    /// Add `n` under `label`.
    pub fn add(&self, label: &str, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(label.to_string()).or_default() += n;
        }
    }

    /// The count under `label`.
    pub fn get(&self, label: &str) -> u64 {
        self.0
            .lock()
            .map(|m| m.get(label).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The sum over all labels.
    pub fn total(&self) -> u64 {
        self.0.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }
}

/// Upper bounds (seconds) of latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// A fixed-bucket histogram of durations.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// A histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Approximate quantile `q` (0-1) from the buckets: the upper bound of
    /// the bucket holding it (`+Inf` beyond the last).
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let target = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            seen += n.load(Ordering::Relaxed);
            if seen >= target {
                return *b;
            }
        }
        f64::INFINITY
    }
}

/// Builds the Prometheus text exposition.
#[derive(Default)]
pub struct Exposition(String);

impl Exposition {
    /// A counter line with HELP and TYPE.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        let _ = writeln!(
            self.0,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
        self
    }

    /// A gauge line with HELP and TYPE.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        let _ = writeln!(
            self.0,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
        self
    }

    /// One counter per label value.
    pub fn labelled(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        c: &LabelledCounter,
    ) -> &mut Self {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} counter");
        for (k, v) in c.snapshot() {
            let _ = writeln!(self.0, "{name}{{{label}=\"{}\"}} {v}", k.replace('"', "'"));
        }
        self
    }

    /// A histogram with cumulative buckets, sum and count.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in h.bounds.iter().zip(&h.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = h.count();
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            self.0,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
        self
    }

    /// The text.
    pub fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let c = Counter::default();
        c.add(3);
        let l = LabelledCounter::default();
        l.add("malformed", 2);
        l.add("oversize", 1);
        let h = Histogram::new(&LATENCY_BUCKETS);
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(40));
        let mut e = Exposition::default();
        e.counter("x_total", "things", c.get())
            .labelled("dl_total", "dead letters", "reason", &l)
            .histogram("lat_seconds", "latency", &h);
        let text = e.finish();
        assert!(text.contains("x_total 3\n"));
        assert!(text.contains("dl_total{reason=\"malformed\"} 2\n"));
        assert!(text.contains("lat_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("lat_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(text.contains("lat_seconds_count 2\n"));
        assert_eq!(l.total(), 3);
        assert_eq!(h.quantile(0.5), 0.005);
        assert_eq!(h.quantile(0.99), 0.05);
    }
}
