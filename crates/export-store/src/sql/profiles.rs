//! Profiles of the API (SPEC §16): a row of `profiles` per tenant and name, pointing at
//! its newest row of `profile_revisions`, which are written once and never changed.

use chrono::{DateTime, Utc};
use export_core::{canonical_json, Profile, ProfileDefinition, ProfileId, ProfileName, TenantId};
use futures::future::BoxFuture;

use crate::sql::database::{query, Executes, SqlDatabase};
use crate::sql::dialect::{begin_write, Dialect};
use crate::sql::{self, timestamp, Columns};
use crate::{ProfileRevision, StoreError, StoredProfile};

/// A profile's row joined with its newest revision.
const CURRENT: &str = "SELECT p.tenant, p.name, p.version, p.created_at, p.updated_at, p.archived_at, \
     r.revision, r.definition \
     FROM profiles AS p JOIN profile_revisions AS r \
     ON r.tenant = p.tenant AND r.name = p.name AND r.version = p.version";

pub(crate) async fn create<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    name: &ProfileName,
    definition: &ProfileDefinition,
    by: &str,
    at: DateTime<Utc>,
) -> Result<StoredProfile, StoreError> {
    let mut tx = begin_write(store).await?;
    let inserted = query(
        "INSERT INTO profiles (tenant, name, version, created_at, updated_at) VALUES ($1, $2, 1, $3, $3) \
         ON CONFLICT (tenant, name) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(name.as_str())
    .bind(timestamp(at))
    .execute(&mut tx)
    .await?;
    if D::rows_affected(&inserted) == 0 {
        return Err(StoreError::conflict(
            "profile",
            format!("the tenant already has a profile `{name}`"),
        ));
    }
    insert_revision(&mut tx, tenant, name, 1, definition, by, at).await?;
    let stored = current(&mut tx, tenant, name).await?;
    tx.commit().await.map_err(sql::db)?;
    stored.ok_or_else(|| not_found(tenant, name))
}

pub(crate) async fn update<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    name: &ProfileName,
    definition: &ProfileDefinition,
    by: &str,
    at: DateTime<Utc>,
) -> Result<StoredProfile, StoreError> {
    let mut tx = begin_write(store).await?;
    // The profile's row is locked first, on its own: two updates then number their
    // revisions one after the other, and the read below, made once the lock is held,
    // sees the other's revision. (PostgreSQL re-checks a locked row that changed against
    // its new version, which a join with the old revision no longer matches.)
    query(format!(
        "SELECT version FROM profiles WHERE tenant = $1 AND name = $2{}",
        D::FOR_UPDATE
    ))
    .bind(tenant.as_str())
    .bind(name.as_str())
    .fetch_optional(&mut tx)
    .await?
    .ok_or_else(|| not_found(tenant, name))?;
    let stored = current(&mut tx, tenant, name)
        .await?
        .ok_or_else(|| not_found(tenant, name))?;
    if stored.archived_at.is_some() {
        return Err(StoreError::conflict(
            "profile",
            format!("profile `{name}` is archived"),
        ));
    }
    let revision = Profile::new(stored.profile.id.clone(), definition.clone()).revision;
    if revision == stored.profile.revision {
        return Ok(stored);
    }
    let version = stored.version + 1;
    insert_revision(&mut tx, tenant, name, version, definition, by, at).await?;
    query("UPDATE profiles SET version = $3, updated_at = $4 WHERE tenant = $1 AND name = $2")
        .bind(tenant.as_str())
        .bind(name.as_str())
        .bind(i64::from(version))
        .bind(timestamp(at))
        .execute(&mut tx)
        .await?;
    let stored = current(&mut tx, tenant, name).await?;
    tx.commit().await.map_err(sql::db)?;
    stored.ok_or_else(|| not_found(tenant, name))
}

pub(crate) async fn archive<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    name: &ProfileName,
    at: DateTime<Utc>,
) -> Result<StoredProfile, StoreError> {
    let mut tx = begin_write(store).await?;
    query("UPDATE profiles SET archived_at = $3 WHERE tenant = $1 AND name = $2 AND archived_at IS NULL")
        .bind(tenant.as_str())
        .bind(name.as_str())
        .bind(timestamp(at))
        .execute(&mut tx)
        .await?;
    let stored = current(&mut tx, tenant, name).await?;
    tx.commit().await.map_err(sql::db)?;
    stored.ok_or_else(|| not_found(tenant, name))
}

/// The tenant's profiles, or with `None` the active profiles of every tenant.
pub(crate) async fn list<D: Dialect>(
    store: &D,
    tenant: Option<&TenantId>,
) -> Result<Vec<StoredProfile>, StoreError> {
    let rows = match tenant {
        Some(tenant) => {
            query(format!("{CURRENT} WHERE p.tenant = $1 ORDER BY p.name"))
                .bind(tenant.as_str())
                .fetch_all(store.pool())
                .await?
        }
        None => {
            query(format!(
                "{CURRENT} WHERE p.archived_at IS NULL ORDER BY p.tenant, p.name"
            ))
            .fetch_all(store.pool())
            .await?
        }
    };
    rows.iter()
        .map(|row| stored_profile(&D::Db::columns(row)))
        .collect()
}

pub(crate) async fn revisions<D: Dialect>(
    store: &D,
    tenant: &TenantId,
    name: &ProfileName,
) -> Result<Vec<ProfileRevision>, StoreError> {
    let rows = query(
        "SELECT version, revision, definition, created_at, created_by FROM profile_revisions \
         WHERE tenant = $1 AND name = $2 ORDER BY version",
    )
    .bind(tenant.as_str())
    .bind(name.as_str())
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let row = D::Db::columns(row);
            Ok(ProfileRevision {
                version: version_column(&row)?,
                revision: row.text("revision")?,
                definition: sql::json_column(&row, "definition")?,
                created_at: sql::timestamp_column(&row, "created_at")?,
                created_by: row.text("created_by")?,
            })
        })
        .collect()
}

/// The profile at its newest revision. (A boxed future: the compiler proves it `Send`
/// here, once, for every executor.)
pub(crate) fn current<'c, E: Executes<'c>>(
    on: E,
    tenant: &'c TenantId,
    name: &'c ProfileName,
) -> BoxFuture<'c, Result<Option<StoredProfile>, StoreError>> {
    let fetched = query(format!("{CURRENT} WHERE p.tenant = $1 AND p.name = $2"))
        .bind(tenant.as_str())
        .bind(name.as_str())
        .fetch_optional(on);
    Box::pin(async move {
        let row = fetched.await?;
        row.map(|row| stored_profile(&E::Db::columns(&row))).transpose()
    })
}

fn insert_revision<'c, E: Executes<'c>>(
    on: E,
    tenant: &'c TenantId,
    name: &'c ProfileName,
    version: u32,
    definition: &ProfileDefinition,
    by: &'c str,
    at: DateTime<Utc>,
) -> BoxFuture<'c, Result<(), StoreError>> {
    let text = String::from_utf8(canonical_json(definition)).expect("canonical JSON is UTF-8");
    let revision = Profile::new(ProfileId::new(tenant.clone(), name.clone()), definition.clone()).revision;
    let inserted = query(
        "INSERT INTO profile_revisions (tenant, name, version, revision, definition, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant.as_str())
    .bind(name.as_str())
    .bind(i64::from(version))
    .bind(revision)
    .bind(text)
    .bind(timestamp(at))
    .bind(by)
    .execute(on);
    Box::pin(async move {
        inserted.await?;
        Ok(())
    })
}

fn stored_profile(row: &impl Columns) -> Result<StoredProfile, StoreError> {
    let id = ProfileId::new(
        sql::parsed(row, "tenant", TenantId::parse)?,
        sql::parsed(row, "name", ProfileName::parse)?,
    );
    Ok(StoredProfile {
        profile: Profile {
            id,
            revision: row.text("revision")?,
            definition: sql::json_column(row, "definition")?,
        },
        version: version_column(row)?,
        created_at: sql::timestamp_column(row, "created_at")?,
        updated_at: sql::timestamp_column(row, "updated_at")?,
        archived_at: sql::optional_timestamp_column(row, "archived_at")?,
    })
}

fn version_column(row: &impl Columns) -> Result<u32, StoreError> {
    let version = row.integer("version")?;
    u32::try_from(version).map_err(|err| StoreError::corrupt("version", format!("{version}: {err}")))
}

fn not_found(tenant: &TenantId, name: &ProfileName) -> StoreError {
    StoreError::NotFound {
        kind: "profile",
        id: ProfileId::new(tenant.clone(), name.clone()).to_string(),
    }
}
