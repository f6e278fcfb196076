//! Webhooks and the notification outbox (SPEC §16): the notification a run's end writes
//! in its own transaction, the deliveries made when its body is rendered, their claims
//! under a lease, and the record of every attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use export_core::{NotificationEvent, RetryPolicy, RunId, Secret, TenantId, WebhookId};
use sqlx::Transaction;

use crate::sql::database::{query, SqlDatabase};
use crate::sql::dialect::{begin_write, Dialect};
use crate::sql::{self, optional_timestamp_column, parsed, timestamp, timestamp_column, Columns};
use crate::{
    AttemptResult, ClaimedDelivery, DeliveryAttempt, DeliveryRecord, DeliveryState, DeliveryTarget,
    NewWebhook, Notification, StoreError, Webhook,
};

/// The `target` of a delivery to NATS; a webhook's is its id, which never reads so.
const NATS: &str = "nats";

const WEBHOOK_COLUMNS: &str = "id, url, events, created_at";

/// Writes the notification of a run's end inside the transaction that ended it. A
/// notification that exists already (the same run and event) is left alone.
pub(crate) async fn insert<DB: SqlDatabase>(
    tx: &mut Transaction<'static, DB>,
    run_id: &RunId,
    event: NotificationEvent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO notifications (id, tenant, run_id, event, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(Notification::id_of(run_id, event))
    .bind(run_id.tenant.as_str())
    .bind(run_id.to_string())
    .bind(event.as_str())
    .bind(timestamp(now))
    .execute(tx)
    .await?;
    Ok(())
}

fn webhook(row: &impl Columns) -> Result<Webhook, StoreError> {
    Ok(Webhook {
        id: parsed(row, "id", WebhookId::parse)?,
        url: row.text("url")?,
        events: parsed(row, "events", parse_events)?,
        created_at: timestamp_column(row, "created_at")?,
    })
}

/// A webhook's events as stored: their names, space-separated.
fn events_text(events: &[NotificationEvent]) -> String {
    let names: Vec<&str> = events.iter().map(|event| event.as_str()).collect();
    names.join(" ")
}

fn parse_events(text: &str) -> Result<Vec<NotificationEvent>, String> {
    text.split_whitespace()
        .map(|name| NotificationEvent::parse(name).ok_or_else(|| format!("unknown event `{name}`")))
        .collect()
}

fn event_column(row: &impl Columns) -> Result<NotificationEvent, StoreError> {
    parsed(row, "event", |text| {
        NotificationEvent::parse(text).ok_or("unknown event")
    })
}

pub(crate) async fn create_webhook<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    new: &NewWebhook,
) -> Result<Webhook, StoreError> {
    let mut events = new.events.clone();
    events.sort();
    events.dedup();
    let row = query(format!(
        "INSERT INTO webhooks (tenant, id, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tenant, id) DO NOTHING RETURNING {WEBHOOK_COLUMNS}"
    ))
    .bind(tenant.as_str())
    .bind(new.id.to_string())
    .bind(&new.url)
    .bind(events_text(&events))
    .bind(new.secret.expose())
    .bind(timestamp(new.created_at))
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| StoreError::conflict("webhook", format!("`{}` exists", new.id)))?;
    let created = webhook(&D::Db::columns(&row));
    created
}

pub(crate) async fn webhooks<D: Dialect>(store: &D, tenant: &TenantId) -> Result<Vec<Webhook>, StoreError> {
    let rows = query(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = $1 ORDER BY created_at, id"
    ))
    .bind(tenant.as_str())
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(|row| webhook(&D::Db::columns(row))).collect()
}

pub(crate) async fn get_webhook<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    id: &WebhookId,
) -> Result<Option<Webhook>, StoreError> {
    if id.tenant != *tenant {
        return Ok(None);
    }
    let row = query(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id.to_string())
    .fetch_optional(store.pool())
    .await?;
    row.map(|row| webhook(&D::Db::columns(&row))).transpose()
}

pub(crate) async fn delete_webhook<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    id: &WebhookId,
) -> Result<bool, StoreError> {
    if id.tenant != *tenant {
        return Ok(false);
    }
    let id = id.to_string();
    let mut tx = begin_write(store).await?;
    query(
        "DELETE FROM notification_attempts WHERE tenant = $1 AND delivery_key IN \
         (SELECT delivery_key FROM notification_deliveries WHERE tenant = $1 AND target = $2)",
    )
    .bind(tenant.as_str())
    .bind(&id)
    .execute(&mut tx)
    .await?;
    query("DELETE FROM notification_deliveries WHERE tenant = $1 AND target = $2")
        .bind(tenant.as_str())
        .bind(&id)
        .execute(&mut tx)
        .await?;
    let deleted = query("DELETE FROM webhooks WHERE tenant = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(&id)
        .execute(&mut tx)
        .await?;
    tx.commit().await.map_err(sql::db)?;
    Ok(D::rows_affected(&deleted) > 0)
}

pub(crate) async fn rotate_secret<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    id: &WebhookId,
    secret: &Secret,
) -> Result<bool, StoreError> {
    if id.tenant != *tenant {
        return Ok(false);
    }
    let done = query("UPDATE webhooks SET secret = $1 WHERE tenant = $2 AND id = $3")
        .bind(secret.expose())
        .bind(tenant.as_str())
        .bind(id.to_string())
        .execute(store.pool())
        .await?;
    Ok(D::rows_affected(&done) > 0)
}

pub(crate) async fn deliveries<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    id: &WebhookId,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let not_found = || StoreError::NotFound {
        kind: "webhook",
        id: id.to_string(),
    };
    if get_webhook(store, tenant, id).await?.is_none() {
        return Err(not_found());
    }
    let mut tx = store.pool().begin().await.map_err(sql::db)?;
    let rows = query(
        "SELECT d.delivery_key, d.state, d.next_attempt_at, d.finished_at, n.id AS notification_id, \
         n.event, n.run_id, n.created_at FROM notification_deliveries AS d \
         JOIN notifications AS n ON n.id = d.notification_id \
         WHERE d.tenant = $1 AND d.target = $2 ORDER BY n.created_at DESC, d.delivery_key DESC LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(id.to_string())
    .bind(i64::from(limit))
    .fetch_all(&mut tx)
    .await?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let row = D::Db::columns(row);
        let attempts = query(
            "SELECT attempt, at, duration_ms, http_status, error FROM notification_attempts \
             WHERE tenant = $1 AND delivery_key = $2 ORDER BY attempt",
        )
        .bind(tenant.as_str())
        .bind(row.integer("delivery_key")?)
        .fetch_all(&mut tx)
        .await?;
        records.push(DeliveryRecord {
            notification_id: row.text("notification_id")?,
            event: event_column(&row)?,
            run_id: parsed(&row, "run_id", RunId::parse)?,
            event_at: timestamp_column(&row, "created_at")?,
            state: state(&row)?,
            attempts: attempts
                .iter()
                .map(|attempt| attempt_row(&D::Db::columns(attempt)))
                .collect::<Result<_, _>>()?,
        });
    }
    tx.commit().await.map_err(sql::db)?;
    Ok(records)
}

fn state(row: &impl Columns) -> Result<DeliveryState, StoreError> {
    let finished_at = optional_timestamp_column(row, "finished_at")?;
    match (row.text("state")?.as_str(), finished_at) {
        ("pending", _) => Ok(DeliveryState::Pending {
            next_attempt_at: timestamp_column(row, "next_attempt_at")?,
        }),
        ("delivered", Some(at)) => Ok(DeliveryState::Delivered { at }),
        ("dead", Some(at)) => Ok(DeliveryState::DeadLettered { at }),
        (other, _) => Err(StoreError::corrupt("delivery state", other)),
    }
}

fn attempt_row(row: &impl Columns) -> Result<DeliveryAttempt, StoreError> {
    let number = row.integer("attempt")?;
    let status = row.optional_integer("http_status")?;
    Ok(DeliveryAttempt {
        attempt: u32::try_from(number).map_err(|err| StoreError::corrupt("attempt", err))?,
        at: timestamp_column(row, "at")?,
        duration_ms: sql::unsigned_column(row, "duration_ms")?,
        http_status: status
            .map(|status| u16::try_from(status).map_err(|err| StoreError::corrupt("http_status", err)))
            .transpose()?,
        error: row.optional_text("error")?,
    })
}

pub(crate) async fn unprepared<D: Dialect>(store: &D, limit: u32) -> Result<Vec<Notification>, StoreError> {
    let rows = query(
        "SELECT id, run_id, event, created_at FROM notifications WHERE body IS NULL \
         ORDER BY created_at, id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let row = D::Db::columns(row);
            Ok(Notification {
                id: row.text("id")?,
                run_id: parsed(&row, "run_id", RunId::parse)?,
                event: event_column(&row)?,
                created_at: timestamp_column(&row, "created_at")?,
            })
        })
        .collect()
}

pub(crate) async fn prepare<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    notification_id: &str,
    body: &[u8],
    nats: bool,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = begin_write(store).await?;
    // The update takes the row's lock on PostgreSQL, so of two processes preparing one
    // notification the second finds the body set and writes nothing.
    let prepared = query(
        "UPDATE notifications SET body = $1 WHERE tenant = $2 AND id = $3 AND body IS NULL RETURNING event",
    )
    .bind(body)
    .bind(tenant.as_str())
    .bind(notification_id)
    .fetch_optional(&mut tx)
    .await?;
    let Some(prepared) = prepared else {
        return Ok(false);
    };
    let event = event_column(&D::Db::columns(&prepared))?;
    let rows = query("SELECT id, events FROM webhooks WHERE tenant = $1 ORDER BY id")
        .bind(tenant.as_str())
        .fetch_all(&mut tx)
        .await?;
    let mut targets = Vec::new();
    for row in &rows {
        let row = D::Db::columns(row);
        if parsed(&row, "events", parse_events)?.contains(&event) {
            targets.push(row.text("id")?);
        }
    }
    if nats {
        targets.push(NATS.to_owned());
    }
    for target in &targets {
        query(
            "INSERT INTO notification_deliveries (tenant, notification_id, target, state, failures, claims, \
             next_attempt_at) VALUES ($1, $2, $3, 'pending', 0, 0, $4)",
        )
        .bind(tenant.as_str())
        .bind(notification_id)
        .bind(target.as_str())
        .bind(timestamp(now))
        .execute(&mut tx)
        .await?;
    }
    tx.commit().await.map_err(sql::db)?;
    Ok(true)
}

/// The claim is one statement. Its subquery picks due deliveries; the update takes them
/// only if they are still due when it writes: on PostgreSQL a concurrent claim of the
/// same row makes this one wait for the row's lock and then re-check the outer
/// condition against the row as that claim left it (under its lease: skipped), and
/// SQLite's one writer runs claims one after the other. So no delivery is claimed twice
/// while a lease holds.
const CLAIM: &str = "UPDATE notification_deliveries \
     SET lease_owner = $1, lease_until = $2, claims = claims + 1 \
     WHERE delivery_key IN ( \
         SELECT delivery_key FROM notification_deliveries \
         WHERE state = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until <= $3) \
         ORDER BY next_attempt_at, delivery_key LIMIT $4 \
     ) AND state = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until <= $3) \
     RETURNING delivery_key";

pub(crate) async fn claim<D: Dialect>(
    store: &D,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
    limit: u32,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let lease_until = crate::sql::runs::lease_end(now, lease);
    let mut tx = begin_write(store).await?;
    let keys = query(CLAIM)
        .bind(owner)
        .bind(timestamp(lease_until))
        .bind(timestamp(now))
        .bind(i64::from(limit))
        .fetch_all(&mut tx)
        .await?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut select = query(
        "SELECT d.delivery_key, d.claims, d.tenant, d.target, d.failures, n.id AS notification_id, n.event, \
         n.created_at, n.body, w.url, w.secret \
         FROM notification_deliveries AS d JOIN notifications AS n ON n.id = d.notification_id \
         LEFT JOIN webhooks AS w ON w.tenant = d.tenant AND w.id = d.target \
         WHERE d.delivery_key IN (",
    );
    for (idx, row) in keys.iter().enumerate() {
        if idx > 0 {
            select.push(", ");
        }
        select.push_bind(D::Db::columns(row).integer("delivery_key")?);
    }
    select.push(") ORDER BY d.next_attempt_at, d.delivery_key");
    let rows = select.fetch_all(&mut tx).await?;
    tx.commit().await.map_err(sql::db)?;
    rows.iter()
        .map(|row| claimed(&D::Db::columns(row), lease_until))
        .collect()
}

fn claimed(row: &impl Columns, lease_until: DateTime<Utc>) -> Result<ClaimedDelivery, StoreError> {
    let tenant = parsed(row, "tenant", TenantId::parse)?;
    let target = row.text("target")?;
    let target = if target == NATS {
        DeliveryTarget::Nats
    } else {
        DeliveryTarget::Webhook {
            id: WebhookId::parse(&target).map_err(|err| StoreError::corrupt("target", err))?,
            url: row.text("url")?,
            secret: Secret::new(row.text("secret")?),
        }
    };
    let failures = row.integer("failures")?;
    Ok(ClaimedDelivery {
        key: row.integer("delivery_key")?,
        claim: row.integer("claims")?,
        tenant,
        notification_id: row.text("notification_id")?,
        event: event_column(row)?,
        event_at: timestamp_column(row, "created_at")?,
        body: row.bytes("body")?,
        target,
        failures: u32::try_from(failures).map_err(|err| StoreError::corrupt("failures", err))?,
        lease_until,
    })
}

pub(crate) async fn record_attempt<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    delivery: &ClaimedDelivery,
    result: &AttemptResult,
    retry: &RetryPolicy,
) -> Result<Option<DeliveryState>, StoreError> {
    let mut tx = begin_write(store).await?;
    let row = query(format!(
        "SELECT failures FROM notification_deliveries \
         WHERE tenant = $1 AND delivery_key = $2 AND claims = $3 AND state = 'pending'{}",
        D::FOR_UPDATE
    ))
    .bind(tenant.as_str())
    .bind(delivery.key)
    .bind(delivery.claim)
    .fetch_optional(&mut tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let failures = D::Db::columns(&row).integer("failures")?;
    query(
        "INSERT INTO notification_attempts (tenant, delivery_key, attempt, at, duration_ms, http_status, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant.as_str())
    .bind(delivery.key)
    .bind(failures + 1)
    .bind(timestamp(result.at))
    .bind(i64::try_from(result.duration.as_millis()).unwrap_or(i64::MAX))
    .bind(result.http_status.map(i64::from))
    .bind(result.error.clone())
    .execute(&mut tx)
    .await?;
    let failures = u32::try_from(failures + 1).unwrap_or(u32::MAX);
    let state = if result.delivered {
        DeliveryState::Delivered { at: result.at }
    } else {
        match retry.next_attempt(failures, delivery.event_at, result.at) {
            Some(next_attempt_at) => DeliveryState::Pending { next_attempt_at },
            None => DeliveryState::DeadLettered { at: result.at },
        }
    };
    let (state_text, next, finished) = match state {
        DeliveryState::Pending { next_attempt_at } => ("pending", Some(next_attempt_at), None),
        DeliveryState::Delivered { at } => ("delivered", None, Some(at)),
        DeliveryState::DeadLettered { at } => ("dead", None, Some(at)),
    };
    query(
        "UPDATE notification_deliveries SET state = $1, failures = $2, \
         next_attempt_at = COALESCE($3, next_attempt_at), finished_at = $4, lease_owner = NULL, lease_until = NULL \
         WHERE tenant = $5 AND delivery_key = $6",
    )
    .bind(state_text)
    .bind(i64::from(failures) - i64::from(result.delivered))
    .bind(next.map(timestamp))
    .bind(finished.map(timestamp))
    .bind(tenant.as_str())
    .bind(delivery.key)
    .execute(&mut tx)
    .await?;
    tx.commit().await.map_err(sql::db)?;
    Ok(Some(state))
}
