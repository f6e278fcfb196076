//! `GET /export-center/profiles`: the caller's tenant's export recipes.

use axum::extract::State;
use axum::Json;
use export_api_types::{
    ProfileBundle, ProfileEncryption, ProfileList, ProfileMirror, ProfileResponse, ProfileRetention,
    ProfileSigning,
};
use export_core::{BundleFormat, Profile};

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
        .map(profile_response)
        .collect();
    Ok(Json(ProfileList { items }))
}

fn profile_response(profile: &Profile) -> ProfileResponse {
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
        mirror: def.mirror.map(|mirror| ProfileMirror {
            mode: mirror.mode.to_string(),
            valid_days: mirror.valid_days,
        }),
    }
}
