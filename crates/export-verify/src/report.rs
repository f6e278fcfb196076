//! The verdict: one `Check` per thing checked, the exit codes of SPEC §6, and the text and
//! JSON renderings.

use serde::Serialize;

use crate::view::FileProblem;

/// Everything checked out.
pub const EXIT_VERIFIED: u8 = 0;
/// A usage or other operational error prevented checking.
pub const EXIT_ERROR: u8 = 1;
/// A checksum mismatch or a missing file.
pub const EXIT_CHECKSUM: u8 = 2;
/// A signature is invalid, missing, or not by the trusted key.
pub const EXIT_SIGNATURE: u8 = 3;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Checked and passed.
    Ok,
    /// Passed, with something worth a look (e.g. a data file that is not a provenance subject).
    Warn,
    /// Could not be checked, for a reason that is not itself a failure (e.g. an encrypted
    /// bundle without `--identity`, or no provenance).
    Skip,
    /// Failed; `code` says how.
    Fail,
}

impl CheckStatus {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Skip => "skip",
            Self::Fail => "FAIL",
        }
    }
}

/// One line of the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `key`, `bundle`, `checksums`, `manifest`, `rerun-hash`, `signature`, `provenance` or
    /// `provenance-subjects`.
    pub name: String,
    /// False only when the check failed.
    pub ok: bool,
    pub status: CheckStatus,
    /// The exit code this check calls for: `0` unless it failed.
    pub code: u8,
    /// What was checked, or everything that was wrong, on one line.
    pub detail: String,
}

/// Every check, and the exit code they add up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub checks: Vec<Check>,
    pub exit_code: u8,
}

impl Verdict {
    pub fn verified(&self) -> bool {
        self.exit_code == EXIT_VERIFIED
    }
}

/// The human-readable verdict: one line per check, then the result.
pub fn render_text(verdict: &Verdict) -> String {
    let width = verdict
        .checks
        .iter()
        .map(|check| check.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for check in &verdict.checks {
        out.push_str(&format!(
            "{:<6}{:<width$}  {}\n",
            check.status.label(),
            check.name,
            check.detail
        ));
    }
    let result = match verdict.exit_code {
        EXIT_VERIFIED => "verified".to_owned(),
        code => format!("NOT verified (exit {code}: {})", describe_code(code)),
    };
    out.push_str(&result);
    out.push('\n');
    out
}

fn describe_code(code: u8) -> &'static str {
    match code {
        EXIT_CHECKSUM => "checksum mismatch or missing file",
        EXIT_SIGNATURE => "signature invalid or key not trusted",
        _ => "could not verify",
    }
}

/// How severe an exit code is: an operational error outranks a signature failure, which
/// outranks a checksum failure.
fn severity(code: u8) -> u8 {
    match code {
        EXIT_VERIFIED => 0,
        EXIT_CHECKSUM => 1,
        EXIT_SIGNATURE => 2,
        _ => 3,
    }
}

pub(crate) fn most_severe(a: u8, b: u8) -> u8 {
    if severity(b) > severity(a) {
        b
    } else {
        a
    }
}

#[derive(Default)]
pub(crate) struct Report {
    checks: Vec<Check>,
}

impl Report {
    pub(crate) fn push(&mut self, name: &str, status: CheckStatus, code: u8, detail: impl Into<String>) {
        let detail: String = detail.into();
        self.checks.push(Check {
            name: name.to_owned(),
            ok: status != CheckStatus::Fail,
            status,
            code: if status == CheckStatus::Fail { code } else { 0 },
            detail: detail.replace(['\n', '\r'], " "),
        });
    }

    pub(crate) fn ok(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, CheckStatus::Ok, 0, detail);
    }

    pub(crate) fn skip(&mut self, name: &str, detail: impl Into<String>) {
        self.push(name, CheckStatus::Skip, 0, detail);
    }

    pub(crate) fn fail(&mut self, name: &str, code: u8, detail: impl Into<String>) {
        self.push(name, CheckStatus::Fail, code, detail);
    }

    /// A check made of many findings: failed when there are problems, warned when there are
    /// only warnings.
    pub(crate) fn findings(&mut self, name: &str, findings: Findings, summary: String) {
        let mut detail = summary;
        if !findings.problems.is_empty() {
            detail = list(&findings.problems);
        }
        if !findings.warnings.is_empty() {
            detail.push_str(&format!("; warning: {}", list(&findings.warnings)));
        }
        if !findings.problems.is_empty() {
            self.fail(name, findings.code, detail);
        } else if !findings.warnings.is_empty() {
            self.push(name, CheckStatus::Warn, 0, detail);
        } else {
            self.ok(name, detail);
        }
    }

    pub(crate) fn finish(self) -> Verdict {
        let exit_code = self
            .checks
            .iter()
            .filter(|check| !check.ok)
            .fold(EXIT_VERIFIED, |code, check| most_severe(code, check.code));
        Verdict {
            checks: self.checks,
            exit_code,
        }
    }
}

/// The problems and warnings one check found.
#[derive(Default)]
pub(crate) struct Findings {
    problems: Vec<String>,
    warnings: Vec<String>,
    code: u8,
}

impl Findings {
    pub(crate) fn problem(&mut self, code: u8, text: impl Into<String>) {
        self.problems.push(text.into());
        self.code = most_severe(self.code, code);
    }

    pub(crate) fn file_problem(&mut self, path: &str, problem: &FileProblem) {
        match problem {
            FileProblem::Missing => self.problem(EXIT_CHECKSUM, format!("{path} is missing")),
            FileProblem::Unsafe(reason) => {
                self.problem(EXIT_CHECKSUM, format!("refusing path `{path}`: {reason}"))
            }
            FileProblem::Unreadable(err) => self.problem(EXIT_ERROR, format!("cannot read {path}: {err}")),
        }
    }

    pub(crate) fn warning(&mut self, text: impl Into<String>) {
        self.warnings.push(text.into());
    }

    pub(crate) fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// At most eight items joined by `; `, then how many more there are.
fn list(items: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut out = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if items.len() > SHOWN {
        out.push_str(&format!("; and {} more", items.len() - SHOWN));
    }
    out
}

pub(crate) fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_prefers_errors_then_signatures_then_checksums() {
        assert_eq!(most_severe(EXIT_CHECKSUM, EXIT_SIGNATURE), EXIT_SIGNATURE);
        assert_eq!(most_severe(EXIT_SIGNATURE, EXIT_CHECKSUM), EXIT_SIGNATURE);
        assert_eq!(most_severe(EXIT_SIGNATURE, EXIT_ERROR), EXIT_ERROR);
        assert_eq!(most_severe(EXIT_VERIFIED, EXIT_CHECKSUM), EXIT_CHECKSUM);
    }
}
