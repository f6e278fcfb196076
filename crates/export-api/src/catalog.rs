//! Where a tenant's profiles come from (SPEC §16): the configuration file, read-only
//! through the API, and the store, which holds the profiles of the API with their
//! revisions. A name of the configuration file is never the store's: the file wins, and
//! the API refuses to create, change or archive it (`409`).

use export_api_types::ProfileDefinitionBody;
use export_core::{ErrorCode, Limits, Profile, ProfileDefinition, ProfileId, ProfileName, TenantId};
use export_store::{Store, StoreError, StoredProfile};

use crate::error::ApiError;
use crate::state::{AppState, ProfileRegistry};

/// A profile as the API shows it.
#[derive(Debug, Clone)]
pub(crate) enum ProfileEntry {
    /// Declared in the configuration file.
    Config(Profile),
    /// Created through the API, at its newest revision.
    Stored(StoredProfile),
}

impl ProfileEntry {
    pub(crate) fn profile(&self) -> &Profile {
        match self {
            Self::Config(profile) => profile,
            Self::Stored(stored) => &stored.profile,
        }
    }
}

/// The tenant's profile `id` (text of a path or a request), archived or not; `404
/// ERR_EXPORT_PROFILE_NOT_FOUND` for a malformed id or another tenant's profile.
pub(crate) async fn find(app: &AppState, tenant: &TenantId, id: &str) -> Result<ProfileEntry, ApiError> {
    let not_found = || ApiError::new(ErrorCode::ProfileNotFound, format!("profile `{id}` not found"));
    let id = ProfileId::parse(id)
        .ok()
        .filter(|id| &id.tenant == tenant)
        .ok_or_else(not_found)?;
    if let Some(profile) = app.profiles.get(tenant, &id) {
        return Ok(ProfileEntry::Config(profile.clone()));
    }
    let stored = app.store.get_profile(tenant, &id.name).await?;
    stored.map(ProfileEntry::Stored).ok_or_else(not_found)
}

/// The tenant's profiles that take runs, sorted by id.
pub(crate) async fn for_tenant(app: &AppState, tenant: &TenantId) -> Result<Vec<ProfileEntry>, ApiError> {
    let mut entries: Vec<ProfileEntry> = app
        .profiles
        .for_tenant(tenant)
        .cloned()
        .map(ProfileEntry::Config)
        .collect();
    let stored = app.store.list_profiles(tenant).await?;
    entries.extend(
        stored
            .into_iter()
            .filter(|stored| stored.archived_at.is_none() && !shadowed(&app.profiles, &stored.profile.id))
            .map(ProfileEntry::Stored),
    );
    entries.sort_by(|a, b| a.profile().id.cmp(&b.profile().id));
    Ok(entries)
}

/// Every profile of every tenant that takes runs: the configuration's and the store's
/// active ones, the configuration's first where both name one.
pub async fn active_profiles(
    store: &dyn Store,
    profiles: &ProfileRegistry,
) -> Result<Vec<Profile>, StoreError> {
    let mut active: Vec<Profile> = profiles.all().cloned().collect();
    let stored = store.active_profiles().await?;
    active.extend(
        stored
            .into_iter()
            .filter(|stored| !shadowed(profiles, &stored.profile.id))
            .map(|stored| stored.profile),
    );
    Ok(active)
}

/// The profile a run of the tenant is planned against: its newest revision, or the
/// revision `pinned` names. An archived profile takes no new runs (`409`).
pub(crate) async fn for_run(
    app: &AppState,
    tenant: &TenantId,
    id: &str,
    pinned: Option<&str>,
) -> Result<Profile, ApiError> {
    let entry = find(app, tenant, id).await?;
    let unknown_revision = |revision: &str| {
        ApiError::invalid_field(
            "profileRevision",
            format!("profile `{id}` has no revision `{revision}`"),
        )
    };
    match entry {
        ProfileEntry::Config(profile) => match pinned {
            Some(revision) if revision != profile.revision => Err(unknown_revision(revision)),
            _ => Ok(profile),
        },
        ProfileEntry::Stored(stored) if stored.archived_at.is_some() => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("profile `{id}` is archived: it takes no new runs"),
        )),
        ProfileEntry::Stored(stored) => match pinned {
            Some(revision) if revision != stored.profile.revision => {
                let revisions = app
                    .store
                    .profile_revisions(tenant, &stored.profile.id.name)
                    .await?;
                let found = revisions
                    .into_iter()
                    .find(|stored| stored.revision == revision)
                    .ok_or_else(|| unknown_revision(revision))?;
                Ok(Profile {
                    id: stored.profile.id,
                    revision: found.revision,
                    definition: found.definition,
                })
            }
            _ => Ok(stored.profile),
        },
    }
}

/// The profile of the API that `id` names, for a change: `409` for a profile of the
/// configuration file, `404` for none.
pub(crate) async fn writable(app: &AppState, tenant: &TenantId, id: &str) -> Result<ProfileName, ApiError> {
    match find(app, tenant, id).await? {
        ProfileEntry::Config(profile) => Err(read_only(&profile.id)),
        ProfileEntry::Stored(stored) => Ok(stored.profile.id.name),
    }
}

pub(crate) fn read_only(id: &ProfileId) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!("profile `{id}` is defined in the configuration file: it is read-only through the API"),
    )
}

fn shadowed(profiles: &ProfileRegistry, id: &ProfileId) -> bool {
    profiles.get(&id.tenant, id).is_some()
}

/// A definition sent to the API: first the documented shape (unknown keys, types), then
/// its values as the configuration file reads them, then the definition's own rules;
/// every error names its field (`retention.max_days`, `targets[1]`,
/// `schedule.request.formats`), as the configuration file's are checked.
pub(crate) fn definition_from(
    value: serde_json::Value,
    id: &ProfileId,
    limits: &Limits,
) -> Result<ProfileDefinition, ApiError> {
    let field_error = |err: serde_path_to_error::Error<serde_json::Error>| {
        let path = err.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::invalid_field(field, err.into_inner().to_string())
    };
    let body: ProfileDefinitionBody = serde_path_to_error::deserialize(value).map_err(field_error)?;
    let value = serde_json::to_value(&body).map_err(ApiError::internal)?;
    let definition: ProfileDefinition = serde_path_to_error::deserialize(value).map_err(field_error)?;
    let profile = Profile::new(id.clone(), definition);
    profile
        .validate(limits)
        .map_err(|(field, message)| ApiError::invalid_field(field, message))?;
    check_key_references(&profile.definition, &id.tenant)?;
    Ok(profile.definition)
}

/// A definition as the API shows it: the shape it was sent in.
pub(crate) fn definition_body(definition: &ProfileDefinition) -> Result<ProfileDefinitionBody, ApiError> {
    serde_json::to_value(definition)
        .and_then(serde_json::from_value)
        .map_err(ApiError::internal)
}

/// Keys a profile of the API may name (SPEC §17): the tenant's own `kms://` keys only;
/// `file:` keys, and so server paths, come from the configuration file alone.
fn check_key_references(definition: &ProfileDefinition, tenant: &TenantId) -> Result<(), ApiError> {
    let own = format!("kms://{tenant}/");
    let lists = [
        ("signing.keys", &definition.signing.keys),
        ("encryption.keys", &definition.encryption.keys),
    ];
    for (field, keys) in lists {
        if let Some(key) = keys.iter().find(|key| {
            !key.strip_prefix(&own)
                .is_some_and(|name| !name.is_empty() && !name.contains('/'))
        }) {
            let shown = if key.starts_with("kms://") {
                key.as_str()
            } else {
                "a `file:` key"
            };
            return Err(ApiError::invalid_field(
                field,
                format!("{shown} is not allowed: a profile of the API names keys of the tenant's keyring, `{own}<name>`"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ProfileId {
        ProfileId::new(
            TenantId::parse("acme").unwrap(),
            ProfileName::parse("nightly").unwrap(),
        )
    }

    fn definition_from(value: serde_json::Value, id: &ProfileId) -> Result<ProfileDefinition, ApiError> {
        super::definition_from(value, id, &Limits::default())
    }

    #[test]
    fn a_definition_reads_and_shows_as_the_configuration_spells_it() {
        let sent = serde_json::json!({
            "description": "nightly",
            "targets": ["advisory", "vex:csaf"],
            "formats": ["ndjson", "trivy-db"],
            "distributions": ["http", "oci"],
            "signing": { "enabled": true, "keys": ["kms://acme/signer"], "default_key": "kms://acme/signer" },
            "encryption": { "enabled": false, "recipients": ["age1example"], "keys": ["kms://acme/age"] },
            "retention": { "default_days": 7, "max_days": 30 },
            "bundle": { "enabled": true, "format": "tar.gz" },
            "trivy": { "next_update_hours": 12 },
        });
        let definition = definition_from(sent.clone(), &id()).unwrap();
        assert_eq!(definition.retention.max_days, 30);
        assert_eq!(definition.trivy.next_update_hours, 12);
        let shown = serde_json::to_value(definition_body(&definition).unwrap()).unwrap();
        assert_eq!(shown, sent, "what is shown is what was sent, key for key");
        let reread = definition_from(shown, &id()).unwrap();
        assert_eq!(reread, definition);
    }

    #[test]
    fn errors_name_the_field() {
        let field = |value: serde_json::Value| {
            let error = definition_from(value, &id()).unwrap_err();
            error.errors[0].field.clone()
        };
        assert_eq!(
            field(serde_json::json!({ "targets": ["advisory"], "colour": 1 })),
            "colour"
        );
        assert_eq!(
            field(serde_json::json!({ "targets": ["advisory", "bogus"] })),
            "targets[1]"
        );
        assert_eq!(
            field(serde_json::json!({ "targets": ["advisory"], "retention": { "max_days": "x" } })),
            "retention.max_days"
        );
        assert_eq!(
            field(
                serde_json::json!({ "targets": ["advisory"], "retention": { "default_days": 40, "max_days": 30 } })
            ),
            "retention.default_days"
        );
        assert_eq!(field(serde_json::json!({ "formats": ["json"] })), "body");
    }

    #[test]
    fn only_the_tenants_own_keys_may_be_named() {
        let with_keys = |keys: serde_json::Value| {
            definition_from(
                serde_json::json!({ "targets": ["advisory"], "signing": { "keys": keys } }),
                &id(),
            )
        };
        assert!(with_keys(serde_json::json!(["kms://acme/signer"])).is_ok());
        for refused in [
            "file:/etc/keys/signer.pem",
            "kms://globex/signer",
            "kms://acme/",
            "kms://acme/a/b",
        ] {
            let error = with_keys(serde_json::json!([refused])).unwrap_err();
            assert_eq!(error.errors[0].field, "signing.keys", "{refused}");
            assert!(
                !error.detail.contains("/etc/keys"),
                "no server path is echoed: {}",
                error.detail
            );
        }
    }
}
