//! Request metrics in the Prometheus text format, named as the Kubernetes API server names
//! them (`apiserver_request_total`, `apiserver_request_duration_seconds`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 1.0, 2.0, 5.0, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// (verb, resource, code) → requests.
    requests: BTreeMap<(String, String, u16), u64>,
    /// (verb, resource) → latency. Watches are left out: their duration is their lifetime.
    latency: BTreeMap<(String, String), Histogram>,
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *state.requests.entry((verb.into(), resource.into(), code)).or_default() += 1;
        if verb == "WATCH" {
            return;
        }
        let histogram = state.latency.entry((verb.into(), resource.into())).or_default();
        let seconds = elapsed.as_secs_f64();
        for (count, bound) in histogram.counts.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// The exposition text for `/metrics`.
    pub fn render(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, resource, and HTTP response code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, resource, code), count) in &state.requests {
            let _ = writeln!(
                out,
                "apiserver_request_total{{code=\"{code}\",resource=\"{resource}\",verb=\"{verb}\"}} {count}"
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, resource), histogram) in &state.latency {
            let labels = format!("resource=\"{resource}\",verb=\"{verb}\"");
            for (count, bound) in histogram.counts.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_sum{{{labels}}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_count{{{labels}}} {}",
                histogram.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_histograms_render() {
        let metrics = Metrics::default();
        metrics.observe("GET", "pods", 200, Duration::from_millis(3));
        metrics.observe("GET", "pods", 200, Duration::from_millis(300));
        metrics.observe("WATCH", "pods", 200, Duration::from_secs(100));
        let text = metrics.render();
        assert!(
            text.contains(r#"apiserver_request_total{code="200",resource="pods",verb="GET"} 2"#)
        );
        assert!(
            text.contains(r#"apiserver_request_total{code="200",resource="pods",verb="WATCH"} 1"#)
        );
        assert!(text.contains(
            r#"apiserver_request_duration_seconds_bucket{resource="pods",verb="GET",le="0.005"} 1"#
        ));
        assert!(text
            .contains(r#"apiserver_request_duration_seconds_count{resource="pods",verb="GET"} 2"#));
        assert!(!text.contains(r#"verb="WATCH",le"#));
    }
}
