//! `GET /export-center/distributions/{id}`: where a run was published, with signed
//! links. The payload is a pure function of the run and the 5-minute link window, so
//! repeated reads inside a window are byte-identical and `If-None-Match` answers `304`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use export_api_types::{
    DistributionArtifact, DistributionLink, DistributionResponse, DsseReference, Problem,
};
use export_core::{
    canonical_json, format_timestamp, DistributionId, DistributionType, ErrorCode, RunStatus, Sha256Digest,
    MANIFEST_DSSE_PATH, MANIFEST_PATH,
};
use export_distribution::{link_expiry, presigned_link_expiry};

use crate::context::{Caller, Scope};
use crate::error::ApiError;
use crate::presenter::chrono_duration;
use crate::runs::visible_run;
use crate::state::AppState;

/// The distribution of one run.
#[utoipa::path(
    get,
    path = "/export-center/distributions/{id}",
    tag = "distributions",
    params(
        ("id" = String, Path, description = "export-dist::<tenant>::<YYYY-MM-DD>::<seq>"),
        ("X-StellaOps-Tenant" = String, Header, description = "The caller's tenant"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of a cached copy"),
    ),
    responses(
        (status = 200, description = "The distribution", body = DistributionResponse),
        (status = 304, description = "The cached copy is current"),
        (status = 404, description = "No such distribution for this tenant", body = Problem),
        (status = 410, description = "The run is past its retention", body = Problem),
    )
)]
pub(crate) async fn get_distribution(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Scope::ExportRead)?;
    let not_found = || ApiError::not_found(format!("distribution `{id}`"));
    let dist_id = DistributionId::parse(&id).map_err(|_| not_found())?;
    let run = visible_run(&app, &caller, &dist_id.run_id().to_string())
        .await
        .map_err(|_| not_found())?;
    let now = app.clock.now();
    if run.status == RunStatus::Expired || run.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::new(
            ErrorCode::Expired,
            format!("distribution `{id}` is past its retention"),
        ));
    }
    let status = match run.status {
        RunStatus::Queued | RunStatus::Running => "pending",
        RunStatus::Succeeded => "published",
        _ => "failed",
    };
    let mut expires = link_expiry(now, chrono_duration(app.config.link_lifetime), run.expires_at);
    let published = run.status == RunStatus::Succeeded;
    // An `object` run's links are the bucket's own presigned URLs (at most 7 days);
    // every other run's are this service's signed URLs.
    let bucket = app
        .object
        .as_ref()
        .filter(|_| run.plan.distribution.kind() == DistributionType::Object);
    if bucket.is_some() {
        expires = presigned_link_expiry(now, expires);
    }
    let expires_at = format_timestamp(expires);
    let sign = |path: &str| match bucket {
        Some(bucket) => bucket.presign_get(&run.id, path, now, expires),
        None => format!(
            "{}{}",
            app.config.public_base_url,
            app.urls.sign(&run.id, path, expires)
        ),
    };
    let outputs = if published { run.outputs.as_slice() } else { &[] };
    let find = |path: &str| outputs.iter().find(|o| o.path == path);

    let mut links = Vec::new();
    if let Some(manifest) = find(MANIFEST_PATH) {
        links.push(DistributionLink {
            rel: "self".to_owned(),
            href: sign(&manifest.path),
            media_type: None,
            sha256: Some(manifest.sha256.to_string()),
            expires_at: Some(expires_at.clone()),
        });
    }
    let dsse = find(MANIFEST_DSSE_PATH).map(|envelope| DsseReference {
        href: sign(&envelope.path),
        sha256: envelope.sha256.to_string(),
    });
    if let Some(dsse) = &dsse {
        links.push(DistributionLink {
            rel: "alternate".to_owned(),
            href: dsse.href.clone(),
            media_type: Some("application/vnd.dsse+json".to_owned()),
            sha256: None,
            expires_at: None,
        });
    }
    if let Some(bundle) = outputs.iter().find(|o| o.kind == "bundle") {
        links.push(DistributionLink {
            rel: "bundle".to_owned(),
            href: sign(&bundle.path),
            media_type: None,
            sha256: Some(bundle.sha256.to_string()),
            expires_at: None,
        });
    }
    links.sort_by(|a, b| (&a.rel, &a.href).cmp(&(&b.rel, &b.href)));
    let mut artifacts: Vec<DistributionArtifact> = outputs
        .iter()
        .filter(|o| o.path != MANIFEST_DSSE_PATH)
        .map(|o| DistributionArtifact {
            kind: o.kind.clone(),
            id: o.id.clone(),
            format: o.format.clone(),
            url: sign(&o.path),
            sha256: o.sha256.to_string(),
            expires_at: expires_at.clone(),
        })
        .collect();
    artifacts.sort_by(|a, b| (&a.kind, &a.id, &a.format, &a.url).cmp(&(&b.kind, &b.id, &b.format, &b.url)));

    let body = DistributionResponse {
        id: dist_id.to_string(),
        run_id: run.id.to_string(),
        kind: run.plan.distribution.kind().to_string(),
        status: status.to_owned(),
        // Once pushed, the reference carries the digest (`host/repo@sha256:…`).
        reference: run
            .published_ref
            .clone()
            .or_else(|| run.plan.distribution.oci_reference().map(ToString::to_string)),
        checksum: find(MANIFEST_PATH).map(|m| m.sha256.to_string()),
        expires_at: published.then_some(expires_at),
        dsse,
        links,
        artifacts,
    };
    let bytes = canonical_json(&body);
    let etag = format!("\"{}\"", Sha256Digest::of(&bytes));
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim().trim_start_matches("W/") == etag || tag.trim() == "*");
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60, stale-if-error=300"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}
