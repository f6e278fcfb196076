//! The verdict over the samples: memory and descriptors flat, p99 stable.

use super::*;

/// The tolerances of the verdict.
pub(super) struct Limits {
    pub(super) rss_mib: f64,
    pub(super) rss_pct: f64,
    pub(super) fds: f64,
    pub(super) p99_factor: f64,
    pub(super) p99_floor_ms: f64,
    pub(super) p99_outliers_pct: f64,
}

#[derive(Debug)]
pub(super) struct Check {
    pub(super) name: &'static str,
    pub(super) pass: bool,
    pub(super) detail: String,
}

pub(super) fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

pub(super) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// The least-squares slope of `points` (x, y), in y per x.
pub(super) fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// Whether `points` (seconds, value) over `duration` seconds stay flat after the warm-up:
/// see the module's documentation. `tolerance` is given the second quarter's mean.
pub(super) fn flat(
    name: &'static str,
    unit: &str,
    points: &[(f64, f64)],
    duration: f64,
    tolerance: impl Fn(f64) -> f64,
) -> Check {
    let select = |from: f64, to: f64| -> Vec<(f64, f64)> {
        points
            .iter()
            .copied()
            .filter(|(t, _)| (from..to).contains(t))
            .collect()
    };
    let end = duration + 1.0;
    let second = select(duration / 4.0, duration / 2.0);
    let fourth = select(duration * 0.75, end);
    let half = select(duration / 2.0, end);
    if second.len() < 2 || fourth.len() < 2 {
        return Check {
            name,
            pass: false,
            detail: "too few samples: soak longer or sample more often".into(),
        };
    }
    let values = |points: &[(f64, f64)]| points.iter().map(|p| p.1).collect::<Vec<_>>();
    let base = mean(&values(&second));
    let tolerance = tolerance(base);
    let growth = mean(&values(&fourth)) - base;
    let projected = slope(&half) * (duration / 2.0);
    Check {
        name,
        pass: growth <= tolerance && projected <= tolerance,
        detail: format!(
            "second quarter mean {base:.1} {unit}; last quarter {growth:+.1} {unit}; slope over the last half {projected:+.1} {unit} per half (tolerance {tolerance:.1} {unit})"
        ),
    }
}

/// The flatness and latency checks of the samples (the first is taken at 0 s).
pub(super) fn verdict(samples: &[Sample], duration: f64, window: f64, limits: &Limits) -> Vec<Check> {
    let rss: Vec<(f64, f64)> = samples.iter().map(|s| (s.seconds, s.rss_mib)).collect();
    let fds: Vec<(f64, f64)> = samples.iter().map(|s| (s.seconds, s.fds)).collect();
    let mut checks = vec![
        flat("RSS flat", "MiB", &rss, duration, |base| {
            limits.rss_mib.max(base * limits.rss_pct / 100.0)
        }),
        flat("open fds flat", "fds", &fds, duration, |_| limits.fds),
    ];
    // Windows wholly after the warm-up.
    let windows: Vec<&Sample> = samples
        .iter()
        .skip(1)
        .filter(|s| s.seconds - window >= duration / 4.0 - 1.0)
        .collect();
    let p99s: Vec<f64> = windows.iter().map(|s| s.p99_ms).collect();
    if windows.len() < 4 {
        checks.push(Check {
            name: "p99 stable",
            pass: false,
            detail: "too few windows after the warm-up".into(),
        });
        return checks;
    }
    let typical = median(&p99s);
    let bound = (limits.p99_factor * typical).max(limits.p99_floor_ms);
    let outliers: Vec<String> = windows
        .iter()
        .filter(|s| s.requests == 0 || s.p99_ms > bound)
        .map(|s| format!("{:.0} s: {:.1} ms", s.seconds, s.p99_ms))
        .collect();
    let allowed = (windows.len() as f64 * limits.p99_outliers_pct / 100.0).floor() as usize;
    let quarter = |from: f64, to: f64| -> Vec<f64> {
        windows
            .iter()
            .filter(|s| s.seconds > from && s.seconds <= to)
            .map(|s| s.p99_ms)
            .collect()
    };
    let second = median(&quarter(duration / 4.0, duration / 2.0));
    let fourth = median(&quarter(duration * 0.75, duration + 1.0));
    let trend_bound = (2.0 * second).max(limits.p99_floor_ms);
    checks.push(Check {
        name: "p99 stable",
        pass: outliers.len() <= allowed && fourth <= trend_bound,
        detail: format!(
            "median window p99 {typical:.1} ms; {} of {} windows above {bound:.1} ms (allowed {allowed}){}; median p99 second quarter {second:.1} ms, last quarter {fourth:.1} ms (bound {trend_bound:.1} ms)",
            outliers.len(),
            windows.len(),
            if outliers.is_empty() {
                String::new()
            } else {
                format!(": {}", outliers.join(", "))
            }
        ),
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(duration: u64, rss: impl Fn(f64) -> f64, p99: impl Fn(f64) -> f64) -> Vec<Sample> {
        (0..=duration / 10)
            .map(|i| {
                let t = i as f64 * 10.0;
                Sample {
                    seconds: t,
                    rss_mib: rss(t),
                    fds: 20.0 + (i % 3) as f64,
                    requests: 500,
                    p99_ms: p99(t),
                    ..Sample::default()
                }
            })
            .collect()
    }

    fn limits() -> Limits {
        Limits {
            rss_mib: 4.0,
            rss_pct: 5.0,
            fds: 8.0,
            p99_factor: 3.0,
            p99_floor_ms: 50.0,
            p99_outliers_pct: 5.0,
        }
    }

    fn passed(checks: &[Check]) -> Vec<(&str, bool)> {
        checks.iter().map(|c| (c.name, c.pass)).collect()
    }

    #[test]
    fn a_flat_soak_after_its_warm_up_passes() {
        // Memory grows during the warm-up, then wobbles by ±2 MiB.
        let s = samples(
            1200,
            |t| {
                if t < 300.0 {
                    20.0 + t / 10.0
                } else {
                    50.0 + ((t / 10.0) as i64 % 5) as f64 - 2.0
                }
            },
            |t| 10.0 + ((t / 10.0) as i64 % 4) as f64,
        );
        let checks = verdict(&s, 1200.0, 10.0, &limits());
        assert!(checks.iter().all(|c| c.pass), "{checks:#?}");
    }

    #[test]
    fn memory_that_keeps_growing_fails() {
        // 1 MiB a minute: 10 MiB over the last half.
        let s = samples(1200, |t| 50.0 + t / 60.0, |_| 10.0);
        assert_eq!(
            passed(&verdict(&s, 1200.0, 10.0, &limits())),
            [("RSS flat", false), ("open fds flat", true), ("p99 stable", true)]
        );
    }

    #[test]
    fn latency_that_degrades_fails() {
        let s = samples(1200, |_| 50.0, |t| if t > 900.0 { 200.0 } else { 20.0 });
        assert_eq!(
            passed(&verdict(&s, 1200.0, 10.0, &limits())),
            [("RSS flat", true), ("open fds flat", true), ("p99 stable", false)]
        );
    }

    #[test]
    fn a_lone_slow_window_is_tolerated() {
        let s = samples(1200, |_| 50.0, |t| if t == 700.0 { 400.0 } else { 20.0 });
        assert!(verdict(&s, 1200.0, 10.0, &limits()).iter().all(|c| c.pass));
    }

    #[test]
    fn the_slope_of_a_line_is_its_gradient() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), 2.0);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
