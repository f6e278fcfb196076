//! A mirror bundle's own files (SPEC §15): `mirror.json`, which says what the bundle is
//! and what it continues from, and a delta's `tombstones.ndjson`, the items its interval
//! removed. Both are manifest items, so the manifest's signature covers them.

use std::collections::BTreeSet;

use export_core::{
    ErrorCode, MirrorDocument, MirrorMode, OutputKind, PlannedMirror, MIRROR_PATH, TOMBSTONES_PATH,
};
use export_store::{Run, RunOutput};
use futures::StreamExt;

use crate::export::{internal, publish_fixed, ExportContext, ExportError, FixedOutput};

const MIRROR: FixedOutput = FixedOutput {
    kind: OutputKind::Mirror,
    id: "mirror",
    format: "json",
    path: MIRROR_PATH,
    media_type: "application/json",
};
const TOMBSTONES: FixedOutput = FixedOutput {
    kind: OutputKind::Tombstones,
    id: "tombstones",
    format: "ndjson",
    path: TOMBSTONES_PATH,
    media_type: "application/x-ndjson",
};

/// Writes and records `mirror.json` and, for a delta, `tombstones.ndjson`.
pub(crate) async fn write_mirror_files(
    ctx: &ExportContext,
    run: &Run,
    mirror: &PlannedMirror,
) -> Result<Vec<RunOutput>, ExportError> {
    let base = match (mirror.mode, &mirror.base) {
        (MirrorMode::Full, _) => None,
        (MirrorMode::Delta, Some(base)) => Some(base.clone()),
        (MirrorMode::Delta, None) => {
            return Err(ExportError::failed(
                ErrorCode::BaseMissing,
                "the delta's base was not resolved when the run was created",
            ))
        }
    };
    let mut outputs = Vec::with_capacity(2);
    if let Some(base) = &base {
        let (lines, count) = tombstone_lines(ctx, run, base.watermark).await?;
        outputs.push(publish_fixed(ctx, run, &TOMBSTONES, lines, Some(count)).await?);
    }
    // The snapshot's time, not now, so that a rerun writes the same bytes.
    let snapshot_time = run.snapshot_at.unwrap_or(run.created_at);
    let document = MirrorDocument::new(
        run.id.tenant.clone(),
        run.plan.profile_id.clone(),
        run.watermark,
        snapshot_time,
        mirror.valid_days,
        base,
    );
    outputs.push(publish_fixed(ctx, run, &MIRROR, document.to_bytes(), None).await?);
    Ok(outputs)
}

/// The canonical lines of the items the run's targets lost between the base's watermark
/// and the run's, sorted bytewise, each once (targets of one kind may overlap), and their
/// number.
async fn tombstone_lines(
    ctx: &ExportContext,
    run: &Run,
    base_watermark: i64,
) -> Result<(Vec<u8>, u64), ExportError> {
    let mut lines = BTreeSet::new();
    for target in &run.plan.targets {
        let mut removals = ctx
            .store
            .stream_removals(&run.id.tenant, base_watermark, run.watermark, target);
        while let Some(tombstone) = removals.next().await {
            lines.insert(tombstone.map_err(internal)?.to_line());
        }
    }
    let count = lines.len() as u64;
    Ok((lines.into_iter().flatten().collect(), count))
}
