//! `/export-center/profiles`: the caller's tenant's export recipes, and the management
//! of those created through the API, each change an immutable revision (SPEC §16).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use export_api_types::{
    Problem, ProfileBundle, ProfileDefinitionBody, ProfileEncryption, ProfileList, ProfileMirror,
    ProfileResponse, ProfileRetention, ProfileRevisionList, ProfileRevisionResponse, ProfileSchedule,
    ProfileSigning,
};
use export_core::{BundleFormat, Profile, ProfileId, ProfileName};
use export_store::StoreError;

use crate::body::{JsonBody, Path};
use crate::catalog::{self, ProfileEntry};
use crate::context::{Caller, Scope};
use crate::error::ApiError;
use crate::state::AppState;
use export_core::format_timestamp;

/// The tenant's profiles that take runs, sorted by id.
#[utoipa::path(
    get,
    path = "/export-center/profiles",
    tag = "profiles",
    responses((status = 200, description = "The tenant's profiles", body = ProfileList))
)]
pub(crate) async fn list_profiles(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<ProfileList>, ApiError> {
    caller.require(Scope::ExportRead)?;
    let entries = catalog::for_tenant(&app, &caller.tenant).await?;
    let now = app.clock.now();
    let items = entries.iter().map(|entry| profile_response(entry, now)).collect();
    Ok(Json(ProfileList { items }))
}

/// Creates a profile of the tenant as its revision 1.
#[utoipa::path(
    post,
    path = "/export-center/profiles",
    tag = "profiles",
    request_body(content = ProfileDefinitionBody, description = "`name` (required) and the definition"),
    responses(
        (status = 201, description = "Created", body = ProfileResponse,
            headers(("Location" = String, description = "The profile's link"))),
        (status = 400, description = "Invalid definition; `errors` names the field", body = Problem),
        (status = 409, description = "The tenant has a profile of that name (archived ones and those of the configuration file included)", body = Problem),
        (status = 413, description = "Body over the limit", body = Problem),
        (status = 415, description = "Content type is not JSON", body = Problem),
    )
)]
pub(crate) async fn create_profile(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody { value, .. }: JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    caller.require(Scope::ExportAdmin)?;
    let (name, definition) = named_definition(value)?;
    let name = name.ok_or_else(|| ApiError::invalid_field("name", "is required"))?;
    let id = ProfileId::new(caller.tenant.clone(), name);
    if app.profiles.get(&caller.tenant, &id).is_some() {
        return Err(catalog::read_only(&id));
    }
    let definition = catalog::definition_from(definition, &id, &app.config.limits)?;
    let stored = app
        .store
        .create_profile(
            &caller.tenant,
            &id.name,
            &definition,
            &caller.subject,
            app.clock.now(),
        )
        .await
        .map_err(profile_error)?;
    let location = format!("/export-center/profiles/{id}");
    let body = Json(profile_response(&ProfileEntry::Stored(stored), app.clock.now()));
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], body).into_response())
}

/// The profile, archived or not.
#[utoipa::path(
    get,
    path = "/export-center/profiles/{profileId}",
    tag = "profiles",
    params(("profileId" = String, Path, description = "`export-profile::<tenant>::<name>`")),
    responses(
        (status = 200, description = "The profile at its newest revision", body = ProfileResponse),
        (status = 404, description = "No such profile in the tenant", body = Problem),
    )
)]
pub(crate) async fn get_profile(
    State(app): State<AppState>,
    caller: Caller,
    Path(profile_id): Path<String>,
) -> Result<Json<ProfileResponse>, ApiError> {
    caller.require(Scope::ExportRead)?;
    let entry = catalog::find(&app, &caller.tenant, &profile_id).await?;
    Ok(Json(profile_response(&entry, app.clock.now())))
}

/// Records a new revision of a profile of the API; the same definition again changes
/// nothing.
#[utoipa::path(
    put,
    path = "/export-center/profiles/{profileId}",
    tag = "profiles",
    params(("profileId" = String, Path, description = "`export-profile::<tenant>::<name>`")),
    request_body = ProfileDefinitionBody,
    responses(
        (status = 200, description = "The profile at its newest revision", body = ProfileResponse),
        (status = 400, description = "Invalid definition; `errors` names the field", body = Problem),
        (status = 404, description = "No such profile in the tenant", body = Problem),
        (status = 409, description = "A profile of the configuration file, or an archived one", body = Problem),
        (status = 413, description = "Body over the limit", body = Problem),
        (status = 415, description = "Content type is not JSON", body = Problem),
    )
)]
pub(crate) async fn update_profile(
    State(app): State<AppState>,
    caller: Caller,
    Path(profile_id): Path<String>,
    JsonBody { value, .. }: JsonBody<serde_json::Value>,
) -> Result<Json<ProfileResponse>, ApiError> {
    caller.require(Scope::ExportAdmin)?;
    let name = catalog::writable(&app, &caller.tenant, &profile_id).await?;
    let (named, definition) = named_definition(value)?;
    if named.is_some_and(|named| named != name) {
        return Err(ApiError::invalid_field(
            "name",
            format!("must be `{name}`, the profile's own name"),
        ));
    }
    let id = ProfileId::new(caller.tenant.clone(), name.clone());
    let definition = catalog::definition_from(definition, &id, &app.config.limits)?;
    let stored = app
        .store
        .update_profile(
            &caller.tenant,
            &name,
            &definition,
            &caller.subject,
            app.clock.now(),
        )
        .await
        .map_err(profile_error)?;
    Ok(Json(profile_response(
        &ProfileEntry::Stored(stored),
        app.clock.now(),
    )))
}

/// Archives a profile of the API: it takes no new runs; its runs and revisions stay.
#[utoipa::path(
    delete,
    path = "/export-center/profiles/{profileId}",
    tag = "profiles",
    params(("profileId" = String, Path, description = "`export-profile::<tenant>::<name>`")),
    responses(
        (status = 204, description = "Archived (or already archived)"),
        (status = 404, description = "No such profile in the tenant", body = Problem),
        (status = 409, description = "A profile of the configuration file", body = Problem),
    )
)]
pub(crate) async fn delete_profile(
    State(app): State<AppState>,
    caller: Caller,
    Path(profile_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::ExportAdmin)?;
    let name = catalog::writable(&app, &caller.tenant, &profile_id).await?;
    app.store
        .archive_profile(&caller.tenant, &name, app.clock.now())
        .await
        .map_err(profile_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every revision of the profile, oldest first; a profile of the configuration file has
/// one, its current definition.
#[utoipa::path(
    get,
    path = "/export-center/profiles/{profileId}/revisions",
    tag = "profiles",
    params(("profileId" = String, Path, description = "`export-profile::<tenant>::<name>`")),
    responses(
        (status = 200, description = "The revisions, oldest first", body = ProfileRevisionList),
        (status = 404, description = "No such profile in the tenant", body = Problem),
    )
)]
pub(crate) async fn list_revisions(
    State(app): State<AppState>,
    caller: Caller,
    Path(profile_id): Path<String>,
) -> Result<Json<ProfileRevisionList>, ApiError> {
    caller.require(Scope::ExportRead)?;
    let items = match catalog::find(&app, &caller.tenant, &profile_id).await? {
        ProfileEntry::Config(profile) => vec![revision_response(None, &profile, None)?],
        ProfileEntry::Stored(stored) => {
            let id = stored.profile.id;
            let revisions = app.store.profile_revisions(&caller.tenant, &id.name).await?;
            revisions
                .into_iter()
                .map(|r| {
                    let profile = Profile {
                        id: id.clone(),
                        revision: r.revision,
                        definition: r.definition,
                    };
                    revision_response(Some(r.version), &profile, Some((r.created_at, r.created_by)))
                })
                .collect::<Result<_, _>>()?
        }
    };
    Ok(Json(ProfileRevisionList { items }))
}

/// A body's `name`, if any, and the definition's fields beside it.
fn named_definition(
    mut value: serde_json::Value,
) -> Result<(Option<ProfileName>, serde_json::Value), ApiError> {
    let Some(name) = value.as_object_mut().and_then(|fields| fields.remove("name")) else {
        return Ok((None, value));
    };
    let name = name
        .as_str()
        .ok_or_else(|| ApiError::invalid_field("name", "must be a string"))?;
    let name = ProfileName::parse(name).map_err(|err| ApiError::invalid_field("name", err.to_string()))?;
    Ok((Some(name), value))
}

/// The store's refusals of a profile change as the API answers them.
fn profile_error(err: StoreError) -> ApiError {
    match err {
        StoreError::Conflict { detail, .. } => ApiError::new(export_core::ErrorCode::Conflict, detail),
        StoreError::NotFound { id, .. } => ApiError::new(
            export_core::ErrorCode::ProfileNotFound,
            format!("profile `{id}` not found"),
        ),
        err => err.into(),
    }
}

fn revision_response(
    version: Option<u32>,
    profile: &Profile,
    recorded: Option<(chrono::DateTime<chrono::Utc>, String)>,
) -> Result<ProfileRevisionResponse, ApiError> {
    let (created_at, created_by) = recorded.unzip();
    Ok(ProfileRevisionResponse {
        version,
        revision: profile.revision.clone(),
        created_at: created_at.map(format_timestamp),
        created_by,
        definition: catalog::definition_body(&profile.definition)?,
    })
}

fn profile_response(entry: &ProfileEntry, now: DateTime<Utc>) -> ProfileResponse {
    let profile = entry.profile();
    let def = &profile.definition;
    let stored = match entry {
        ProfileEntry::Config(_) => None,
        ProfileEntry::Stored(stored) => Some(stored),
    };
    ProfileResponse {
        id: profile.id.to_string(),
        name: profile.id.name.to_string(),
        revision: profile.revision.clone(),
        description: def.description.clone(),
        targets: def.targets.iter().map(ToString::to_string).collect(),
        formats: def.formats.iter().map(ToString::to_string).collect(),
        distributions: def.distributions.iter().map(ToString::to_string).collect(),
        signing: ProfileSigning {
            enabled: def.signing.enabled,
            keys: def.signing.keys.clone(),
        },
        encryption: ProfileEncryption {
            enabled: def.encryption.enabled,
            recipients: def.encryption.recipients.clone(),
        },
        retention: ProfileRetention {
            default_days: def.retention.default_days,
            max_days: def.retention.max_days,
        },
        bundle: ProfileBundle {
            enabled: def.bundle.enabled,
            format: match def.bundle.format {
                BundleFormat::TarZst => "tar.zst",
                BundleFormat::TarGz => "tar.gz",
                BundleFormat::Zip => "zip",
            }
            .to_owned(),
        },
        schedule: def.schedule.as_ref().map(|schedule| ProfileSchedule {
            cron: schedule.cron.clone(),
            timezone: schedule.timezone.clone(),
            request: serde_json::to_value(&schedule.request).unwrap_or_default(),
            next_fire_at: schedule
                .fire_times()
                .ok()
                .and_then(|times| times.next_after(now))
                .map(format_timestamp),
        }),
        mirror: def.mirror.map(|mirror| ProfileMirror {
            mode: mirror.mode.to_string(),
            valid_days: mirror.valid_days,
        }),
        source: if stored.is_some() { "api" } else { "config" }.to_owned(),
        version: stored.map(|stored| stored.version),
        created_at: stored.map(|stored| format_timestamp(stored.created_at)),
        updated_at: stored.map(|stored| format_timestamp(stored.updated_at)),
        archived_at: stored.and_then(|stored| stored.archived_at.map(format_timestamp)),
    }
}
