//! `GET /export-center/profiles`: the caller's tenant's export recipes.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use export_api_types::{
    ProfileBundle, ProfileEncryption, ProfileList, ProfileMirror, ProfileResponse, ProfileRetention,
    ProfileSchedule, ProfileSigning,
};
use export_core::{format_timestamp, BundleFormat, Profile};

use crate::context::{Caller, Scope};
use crate::error::ApiError;
use crate::state::AppState;

/// The tenant's profiles, sorted by id.
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
    let items = app
        .profiles
        .for_tenant(&caller.tenant)
        .map(|profile| profile_response(profile, app.clock.now()))
        .collect();
    Ok(Json(ProfileList { items }))
}

fn profile_response(profile: &Profile, now: DateTime<Utc>) -> ProfileResponse {
    let def = &profile.definition;
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
    }
}
