//! Real Go advisories (`fixtures/corpus/osv-go`): a sample of pins inside and just outside
//! their ranges, and an independent oracle of which advisories cover a version.

use std::cmp::Ordering;

use serde_json::Value;

/// One affected interval: from `lower` (`"0"`: no lower bound) to `upper` (inclusive or not).
#[derive(Debug, Clone)]
struct Interval {
    lower: String,
    upper: Option<(String, bool)>,
}

#[derive(Debug, Clone)]
pub(crate) struct GoAdvisory {
    /// The advisory's id and aliases: Trivy must report one of them.
    pub(crate) ids: Vec<String>,
    packages: Vec<(String, Vec<Interval>)>,
}

/// A version of a module to pin, and the advisory it was derived from.
#[derive(Debug, Clone)]
pub(crate) struct Pin {
    pub(crate) module: String,
    pub(crate) version: String,
    pub(crate) advisory: usize,
    pub(crate) vulnerable: bool,
}

pub(crate) fn parse(document: &Value) -> GoAdvisory {
    let mut ids = vec![document["id"].as_str().unwrap().to_owned()];
    ids.extend(
        document["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_owned()),
    );
    let mut packages = Vec::new();
    for affected in document["affected"].as_array().into_iter().flatten() {
        let module = affected["package"]["name"].as_str().unwrap().to_owned();
        let mut intervals: Vec<Interval> = Vec::new();
        for range in affected["ranges"].as_array().into_iter().flatten() {
            assert_eq!(range["type"], "SEMVER", "the Go corpus has SEMVER ranges only");
            for event in range["events"].as_array().into_iter().flatten() {
                if let Some(introduced) = event["introduced"].as_str() {
                    intervals.push(Interval {
                        lower: introduced.to_owned(),
                        upper: None,
                    });
                } else if let Some(fixed) = event["fixed"].as_str() {
                    intervals.last_mut().unwrap().upper = Some((fixed.to_owned(), false));
                } else if let Some(last) = event["last_affected"].as_str() {
                    intervals.last_mut().unwrap().upper = Some((last.to_owned(), true));
                }
            }
        }
        packages.push((module, intervals));
    }
    GoAdvisory { ids, packages }
}

impl GoAdvisory {
    /// Whether this advisory marks `module` at `version` vulnerable.
    pub(crate) fn covers(&self, module: &str, version: &str) -> bool {
        self.packages
            .iter()
            .filter(|(name, _)| name == module)
            .any(|(_, intervals)| {
                intervals.iter().any(|interval| {
                    let above = interval.lower == "0" || compare(version, &interval.lower) != Ordering::Less;
                    let below = match &interval.upper {
                        None => true,
                        Some((upper, inclusive)) => match compare(version, upper) {
                            Ordering::Less => true,
                            Ordering::Equal => *inclusive,
                            Ordering::Greater => false,
                        },
                    };
                    above && below
                })
            })
    }

    /// For each interval of a module (not the standard library), a version inside it (its
    /// lower bound, or just under its upper bound) and one just outside (the fixed version),
    /// when they are plain `X.Y.Z` versions that the module path allows.
    pub(crate) fn pins(&self, advisory: usize) -> Vec<Pin> {
        let mut pins = Vec::new();
        for (module, intervals) in &self.packages {
            if module == "stdlib" || module == "toolchain" {
                continue;
            }
            for interval in intervals {
                let inside = match (&interval.lower, &interval.upper) {
                    (lower, _) if lower != "0" => Some(lower.clone()),
                    (_, Some((upper, true))) => Some(upper.clone()),
                    (_, Some((upper, false))) => one_below(upper),
                    _ => None,
                };
                let outside = match &interval.upper {
                    Some((upper, false)) => Some(upper.clone()),
                    _ => None,
                };
                let candidates = [(inside, true), (outside, false)];
                for (version, vulnerable) in candidates {
                    let Some(version) = version.filter(|v| plain(v) && major_fits(module, v)) else {
                        continue;
                    };
                    // The outside pin must be outside every interval of this advisory.
                    if self.covers(module, &version) != vulnerable {
                        continue;
                    }
                    pins.push(Pin {
                        module: module.clone(),
                        version,
                        advisory,
                        vulnerable,
                    });
                }
            }
        }
        pins
    }
}

fn numbers(version: &str) -> Option<[u64; 3]> {
    let mut parts = version.split('.').map(|part| part.parse::<u64>().ok());
    let parsed = [parts.next()??, parts.next()??, parts.next()??];
    parts.next().is_none().then_some(parsed)
}

fn plain(version: &str) -> bool {
    numbers(version).is_some()
}

fn one_below(version: &str) -> Option<String> {
    let [major, minor, patch] = numbers(version)?;
    Some(match (major, minor, patch) {
        (_, _, 1..) => format!("{major}.{minor}.{}", patch - 1),
        (_, 1.., 0) => format!("{major}.{}.0", minor - 1),
        (1.., 0, 0) => format!("{}.0.0", major - 1),
        _ => return None,
    })
}

/// Go's rule: a module path ending in `/vN` (or gopkg.in's `.vN`) holds major version N,
/// any other path majors 0 and 1.
fn major_fits(module: &str, version: &str) -> bool {
    let major = numbers(version).unwrap()[0];
    let suffix = module.rsplit(['/', '.']).next().unwrap_or_default();
    match suffix.strip_prefix('v').and_then(|n| n.parse::<u64>().ok()) {
        Some(n) if n >= 2 || module.starts_with("gopkg.in/") => major == n,
        _ => major <= 1,
    }
}

/// Semantic version order (SemVer 2.0 §11), for the corpus's versions.
fn compare(a: &str, b: &str) -> Ordering {
    let split = |v: &str| {
        let v = v.split('+').next().unwrap();
        let (core, pre) = v
            .split_once('-')
            .map_or((v, None), |(core, pre)| (core, Some(pre.to_owned())));
        let core: Vec<u64> = core.split('.').map(|n| n.parse().unwrap_or(0)).collect();
        (core, pre)
    };
    let ((core_a, pre_a), (core_b, pre_b)) = (split(a), split(b));
    core_a.cmp(&core_b).then_with(|| match (pre_a, pre_b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            let (mut a, mut b) = (a.split('.'), b.split('.'));
            loop {
                match (a.next(), b.next()) {
                    (None, None) => return Ordering::Equal,
                    (None, Some(_)) => return Ordering::Less,
                    (Some(_), None) => return Ordering::Greater,
                    (Some(x), Some(y)) => {
                        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => x.cmp(y),
                        };
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                }
            }
        }
    })
}
