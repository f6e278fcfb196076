//! Latency summaries and process CPU and memory, read from `/proc`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// A latency histogram in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a histogram of microseconds, in milliseconds.
pub fn summary(histogram: &Histogram<u64>) -> Value {
    let ms = |micros: u64| (micros as f64 / 1000.0 * 1000.0).round() / 1000.0;
    json!({
        "count": histogram.len(),
        "p50Ms": ms(histogram.value_at_quantile(0.50)),
        "p90Ms": ms(histogram.value_at_quantile(0.90)),
        "p99Ms": ms(histogram.value_at_quantile(0.99)),
        "p999Ms": ms(histogram.value_at_quantile(0.999)),
        "maxMs": ms(histogram.max()),
        "meanMs": (histogram.mean() / 1000.0 * 1000.0).round() / 1000.0,
    })
}

/// One line: `p50 1.234 ms, p90 …, p99 …, max …`.
pub fn summary_line(histogram: &Histogram<u64>) -> String {
    let ms = |micros: u64| micros as f64 / 1000.0;
    format!(
        "n {}, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        histogram.len(),
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.90)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.value_at_quantile(0.999)),
        ms(histogram.max()),
    )
}

/// Microseconds since the Unix epoch, from the wall clock (comparable with the
/// timestamps the server writes, on the same machine).
pub fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as i64)
        .unwrap_or_default()
}

/// A process's CPU time and memory at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    /// User plus system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM), KiB.
    pub peak_rss_kib: u64,
    pub threads: u64,
}

impl ProcSample {
    /// Reads `/proc/<pid>` (`self` for this process).
    pub fn read(pid: &str) -> anyhow::Result<Self> {
        let at = Instant::now();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow!("/proc/{pid}/stat: unexpected format"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
        let ticks = |index: usize| -> anyhow::Result<f64> {
            fields
                .get(index - 3)
                .and_then(|field| field.parse::<f64>().ok())
                .ok_or_else(|| anyhow!("/proc/{pid}/stat: field {index} missing"))
        };
        let cpu_seconds = (ticks(14)? + ticks(15)?) / CLOCK_TICKS;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or_default()
        };
        Ok(Self {
            at,
            cpu_seconds,
            rss_kib: field("VmRSS:"),
            peak_rss_kib: field("VmHWM:"),
            threads: field("Threads:"),
        })
    }

    /// Average CPU use between `earlier` and this sample, in cores (1.0 = one core busy).
    pub fn cores_since(&self, earlier: &ProcSample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        (self.cpu_seconds - earlier.cpu_seconds) / wall
    }
}

/// The number of open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: &str) -> anyhow::Result<usize> {
    let entries =
        std::fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("reading /proc/{pid}/fd"))?;
    Ok(entries.count())
}

/// The machine's CPU time (all cores, busy and idle) from `/proc/stat`, in ticks, to
/// tell how busy the whole machine was during a measurement (other processes included).
#[derive(Debug, Clone, Copy)]
pub struct MachineSample {
    pub busy: u64,
    pub total: u64,
}

impl MachineSample {
    pub fn read() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let line = stat
            .lines()
            .next()
            .ok_or_else(|| anyhow!("/proc/stat is empty"))?;
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|value| value.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = values.get(3).copied().unwrap_or_default() + values.get(4).copied().unwrap_or_default();
        let total: u64 = values.iter().take(8).sum();
        Ok(Self {
            busy: total.saturating_sub(idle),
            total,
        })
    }

    /// Average busy cores between `earlier` and this sample, given `cores` cores.
    pub fn busy_cores_since(&self, earlier: &MachineSample, cores: usize) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64 * cores as f64
    }
}

/// A process sample as JSON: CPU cores used since `earlier`, RSS and peak RSS in MiB.
pub fn process_json(now: &ProcSample, earlier: &ProcSample) -> Value {
    let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
    json!({
        "cpuCores": (now.cores_since(earlier) * 100.0).round() / 100.0,
        "cpuSeconds": ((now.cpu_seconds - earlier.cpu_seconds) * 100.0).round() / 100.0,
        "rssMiB": mib(now.rss_kib),
        "peakRssMiB": mib(now.peak_rss_kib),
        "threads": now.threads,
    })
}
