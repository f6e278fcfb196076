//! Plain-text tables and the human views of profiles and runs (`--json` prints the wire
//! bodies instead). Signed URLs are never shown here: they are credentials.

use export_api_types::{DistributionResponse, ProfileResponse, ProfileRevisionResponse, RunStatusResponse};

/// Left-aligned columns separated by two spaces, without trailing blanks.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (idx, cell) in row.iter().enumerate() {
            if idx > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths
                .get(idx)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `sha256:0123456789abcdef…` shortened to its first 12 hex digits.
pub(crate) fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// The profile's name from its id (`export-profile::<tenant>::<name>`).
fn short_profile(id: &str) -> &str {
    id.rsplit("::").next().unwrap_or(id)
}

pub(crate) fn profiles(items: &[ProfileResponse]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                short_digest(&p.revision),
                p.targets.join(","),
                p.formats.join(","),
                p.mirror
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |mirror| mirror.mode.clone()),
                p.schedule.as_ref().map_or_else(
                    || "-".to_owned(),
                    |schedule| format!("{} {}", schedule.cron, schedule.timezone),
                ),
                p.schedule
                    .as_ref()
                    .and_then(|schedule| schedule.next_fire_at.clone())
                    .unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "REVISION",
            "TARGETS",
            "FORMATS",
            "MIRROR",
            "SCHEDULE",
            "NEXT FIRE",
        ],
        &rows,
    )
}

/// One profile, a field per line.
pub(crate) fn profile(p: &ProfileResponse) -> String {
    let mut rows = vec![
        vec!["ID".to_owned(), p.id.clone()],
        vec!["REVISION".to_owned(), p.revision.clone()],
        vec!["SOURCE".to_owned(), p.source.clone()],
    ];
    if let Some(version) = p.version {
        rows.push(vec!["VERSION".to_owned(), version.to_string()]);
    }
    if let Some(archived_at) = &p.archived_at {
        rows.push(vec!["ARCHIVED".to_owned(), archived_at.clone()]);
    }
    rows.extend([
        vec!["TARGETS".to_owned(), p.targets.join(",")],
        vec!["FORMATS".to_owned(), p.formats.join(",")],
        vec!["DISTRIBUTIONS".to_owned(), p.distributions.join(",")],
        vec![
            "RETENTION".to_owned(),
            format!(
                "{} days (at most {})",
                p.retention.default_days, p.retention.max_days
            ),
        ],
    ]);
    table(&["FIELD", "VALUE"], &rows)
}

pub(crate) fn revisions(items: &[ProfileRevisionResponse]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            vec![
                r.version
                    .map_or_else(|| "-".to_owned(), |version| version.to_string()),
                r.revision.clone(),
                r.created_at.clone().unwrap_or_else(|| "-".to_owned()),
                r.created_by.clone().unwrap_or_else(|| "configuration".to_owned()),
            ]
        })
        .collect();
    table(&["VERSION", "REVISION", "CREATED", "BY"], &rows)
}

fn progress(run: &RunStatusResponse) -> String {
    format!(
        "{}% {}/{}",
        run.progress.percent, run.progress.items_completed, run.progress.items_total
    )
}

pub(crate) fn runs(items: &[RunStatusResponse]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|run| {
            vec![
                run.run_id.clone(),
                run.status.clone(),
                short_profile(&run.profile_id).to_owned(),
                run.created_at.clone(),
                progress(run),
                trigger(run),
            ]
        })
        .collect();
    table(
        &["RUN", "STATUS", "PROFILE", "CREATED", "PROGRESS", "TRIGGER"],
        &rows,
    )
}

/// `api`, or `schedule@<fire time>`.
fn trigger(run: &RunStatusResponse) -> String {
    match &run.trigger.at {
        Some(at) => format!("{}@{at}", run.trigger.kind),
        None => run.trigger.kind.clone(),
    }
}

/// One run: its fields, then outputs, warnings and errors.
pub(crate) fn run(run: &RunStatusResponse) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("run", run.run_id.clone()),
        ("status", run.status.clone()),
        ("profile", run.profile_id.clone()),
        ("priority", run.priority.clone()),
        ("created", run.created_at.clone()),
        ("trigger", trigger(run)),
    ];
    let optional = [
        ("project", &run.project),
        ("started", &run.started_at),
        ("completed", &run.completed_at),
        ("expires", &run.expires_at),
    ];
    fields.extend(
        optional
            .iter()
            .filter_map(|(name, value)| Some((*name, (*value).clone()?))),
    );
    fields.push(("progress", progress(run)));
    if let Some(position) = run.queue_position {
        fields.push(("queue position", position.to_string()));
    }
    let mut out = String::new();
    for (name, value) in fields {
        out.push_str(&format!("{:<15}{value}\n", format!("{name}:")));
    }
    if !run.outputs.is_empty() {
        let rows: Vec<Vec<String>> = run
            .outputs
            .iter()
            .map(|o| {
                vec![
                    o.kind.clone(),
                    o.id.clone(),
                    o.format.clone(),
                    o.bytes.to_string(),
                    short_digest(&o.sha256),
                ]
            })
            .collect();
        out.push_str("outputs:\n");
        for line in table(&["TYPE", "ID", "FORMAT", "BYTES", "SHA256"], &rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    for warning in &run.warnings {
        let target = warning
            .target
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "warning: {}{target}: {}\n",
            warning.code, warning.message
        ));
    }
    for error in &run.errors {
        out.push_str(&format!("error: {}: {}\n", error.code, error.message));
    }
    out
}

/// A distribution: its fields, then its artifacts.
pub(crate) fn distribution(distribution: &DistributionResponse) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("distribution", distribution.id.clone()),
        ("run", distribution.run_id.clone()),
        ("type", distribution.kind.clone()),
        ("status", distribution.status.clone()),
    ];
    let optional = [
        ("ref", &distribution.reference),
        ("checksum", &distribution.checksum),
        ("links expire", &distribution.expires_at),
    ];
    fields.extend(
        optional
            .iter()
            .filter_map(|(name, value)| Some((*name, (*value).clone()?))),
    );
    if let Some(dsse) = &distribution.dsse {
        fields.push(("dsse", dsse.sha256.clone()));
    }
    let mut out = String::new();
    for (name, value) in fields {
        out.push_str(&format!("{:<15}{value}\n", format!("{name}:")));
    }
    if !distribution.artifacts.is_empty() {
        let rows: Vec<Vec<String>> = distribution
            .artifacts
            .iter()
            .map(|a| {
                vec![
                    a.kind.clone(),
                    a.id.clone(),
                    a.format.clone(),
                    short_digest(&a.sha256),
                ]
            })
            .collect();
        out.push_str("artifacts:\n");
        for line in table(&["TYPE", "ID", "FORMAT", "SHA256"], &rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "x".to_owned()],
            vec!["bbbb".to_owned(), "v".to_owned(), String::new()],
        ];
        assert_eq!(
            table(&["ID", "VALUE", "Z"], &rows),
            "ID    VALUE       Z\na     long value  x\nbbbb  v\n"
        );
    }

    #[test]
    fn digests_are_shortened() {
        assert_eq!(short_digest("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_profile("export-profile::t::daily-vex"), "daily-vex");
    }
}
