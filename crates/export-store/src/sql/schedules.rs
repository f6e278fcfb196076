//! Schedules: when the scheduler first saw a schedule, and the latest fire a run was made
//! for. The run of a fire itself is made by `runs::create`, whose unique index
//! (`runs_schedule_fire`) keeps it to one per fire.

use chrono::{DateTime, Utc};
use export_core::{ProfileId, TenantId};

use crate::sql::database::{query, SqlDatabase};
use crate::sql::dialect::Dialect;
use crate::sql::{optional_timestamp_column, timestamp, timestamp_column};
use crate::{ScheduleState, StoreError};

/// Records `now` as the schedule's first sighting unless a process did before (the
/// primary key keeps the first: a concurrent insert waits for it, then does nothing),
/// and reads the sighting and the profile's latest fire.
pub(crate) async fn observe<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    profile: &ProfileId,
    cron: &str,
    timezone: &str,
    now: DateTime<Utc>,
) -> Result<ScheduleState, StoreError> {
    let profile = profile.to_string();
    query(
        "INSERT INTO schedule_anchors (tenant, profile, cron, timezone, since) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, profile, cron, timezone) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(profile.as_str())
    .bind(cron)
    .bind(timezone)
    .bind(timestamp(now))
    .execute(store.pool())
    .await?;
    let row = query(
        "SELECT a.since AS since, \
             (SELECT MAX(r.trigger_at) FROM runs AS r \
              WHERE r.tenant = a.tenant AND r.profile = a.profile AND r.trigger_at IS NOT NULL) AS last_fire \
         FROM schedule_anchors AS a \
         WHERE a.tenant = $1 AND a.profile = $2 AND a.cron = $3 AND a.timezone = $4",
    )
    .bind(tenant.as_str())
    .bind(profile.as_str())
    .bind(cron)
    .bind(timezone)
    .fetch_one(store.pool())
    .await?;
    let row = D::Db::columns(&row);
    Ok(ScheduleState {
        since: timestamp_column(&row, "since")?,
        last_fire: optional_timestamp_column(&row, "last_fire")?,
    })
}
