//! `GET /export-center/distributions/{id}`: where a run was published, with signed
//! links. The payload is a pure function of the run and the 5-minute link window, so
//! repeated reads inside a window are byte-identical and `If-None-Match` answers `304`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use export_api_types::{
    DistributionArtifact, DistributionLink, DistributionResponse, DsseReference, Problem,
};
use export_core::{
    canonical_json, format_timestamp, DistributionId, DistributionType, ErrorCode, OutputKind, RunStatus,
    Sha256Digest, MANIFEST_DSSE_PATH, MANIFEST_PATH,
};
use export_store::{Run, RunOutput};

use crate::body::Path;
use crate::conditional::not_modified;
use crate::context::{Caller, Scope};
use crate::error::ApiError;
use crate::links::{LinkWindow, Links};
use crate::runs::visible_run;
use crate::state::AppState;

/// The distribution of one run.
#[utoipa::path(
    get,
    path = "/export-center/distributions/{id}",
    tag = "distributions",
    params(
        ("id" = String, Path, description = "export-dist::<tenant>::<YYYY-MM-DD>::<seq>"),
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
    let (dist_id, run) = visible_distribution(&app, &caller, &id).await?;
    let bytes = canonical_json(&distribution(&app, &dist_id, &run));
    let etag = format!("\"{}\"", Sha256Digest::of(&bytes));
    let mut response = if not_modified(&headers, &etag) {
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

/// The distribution `id` and its run, if the run is the caller's and within its
/// retention: `404` for a malformed id or a run the caller cannot see, `410` past the
/// retention.
async fn visible_distribution(
    app: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(DistributionId, Run), ApiError> {
    let not_found = || ApiError::not_found(format!("distribution `{id}`"));
    let dist_id = DistributionId::parse(id).map_err(|_| not_found())?;
    let run = visible_run(app, caller, &dist_id.run_id().to_string())
        .await
        .map_err(|_| not_found())?;
    let now = app.clock.now();
    if run.status == RunStatus::Expired || run.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::new(
            ErrorCode::Expired,
            format!("distribution `{id}` is past its retention"),
        ));
    }
    Ok((dist_id, run))
}

/// The body: a pure function of the run and the link window.
fn distribution(app: &AppState, dist_id: &DistributionId, run: &Run) -> DistributionResponse {
    let status = match run.status {
        RunStatus::Queued | RunStatus::Running => "pending",
        RunStatus::Succeeded => "published",
        _ => "failed",
    };
    let links = Links::new(app);
    let mut window = links.for_run(&run.id, run.expires_at);
    // An `object` run's links are the bucket's own presigned URLs; every other run's
    // are this service's signed URLs.
    if let Some(bucket) = app
        .object
        .as_ref()
        .filter(|_| run.plan.distribution.kind() == DistributionType::Object)
    {
        window = window.presigned_by(bucket);
    }
    let published = run.status == RunStatus::Succeeded;
    let outputs = if published { run.outputs.as_slice() } else { &[] };
    let find = |path: &str| outputs.iter().find(|o| o.path == path);
    let dsse = find(MANIFEST_DSSE_PATH).map(|envelope| DsseReference {
        href: window.url(&envelope.path),
        sha256: envelope.sha256.to_string(),
    });
    DistributionResponse {
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
        expires_at: published.then(|| format_timestamp(window.expires())),
        links: distribution_links(&window, outputs, dsse.as_ref()),
        artifacts: artifacts(&window, outputs),
        dsse,
    }
}

/// `self` (the manifest), `alternate` (its DSSE envelope) and `bundle`, sorted by (rel,
/// href).
fn distribution_links(
    window: &LinkWindow<'_>,
    outputs: &[RunOutput],
    dsse: Option<&DsseReference>,
) -> Vec<DistributionLink> {
    let mut links = Vec::new();
    if let Some(manifest) = outputs.iter().find(|o| o.path == MANIFEST_PATH) {
        links.push(DistributionLink {
            rel: "self".to_owned(),
            href: window.url(&manifest.path),
            media_type: None,
            sha256: Some(manifest.sha256.to_string()),
            expires_at: Some(format_timestamp(window.expires())),
        });
    }
    if let Some(dsse) = dsse {
        links.push(DistributionLink {
            rel: "alternate".to_owned(),
            href: dsse.href.clone(),
            media_type: Some("application/vnd.dsse+json".to_owned()),
            sha256: None,
            expires_at: None,
        });
    }
    if let Some(bundle) = outputs.iter().find(|o| o.kind == OutputKind::Bundle) {
        links.push(DistributionLink {
            rel: "bundle".to_owned(),
            href: window.url(&bundle.path),
            media_type: None,
            sha256: Some(bundle.sha256.to_string()),
            expires_at: None,
        });
    }
    links.sort_by(|a, b| (&a.rel, &a.href).cmp(&(&b.rel, &b.href)));
    links
}

/// Every output but the DSSE envelope with its link, sorted by (type, id, format, url).
fn artifacts(window: &LinkWindow<'_>, outputs: &[RunOutput]) -> Vec<DistributionArtifact> {
    let expires_at = format_timestamp(window.expires());
    let mut artifacts: Vec<DistributionArtifact> = outputs
        .iter()
        .filter(|o| o.path != MANIFEST_DSSE_PATH)
        .map(|o| DistributionArtifact {
            kind: o.kind.to_string(),
            id: o.id.clone(),
            format: o.format.clone(),
            url: window.url(&o.path),
            sha256: o.sha256.to_string(),
            expires_at: expires_at.clone(),
        })
        .collect();
    artifacts.sort_by(|a, b| (&a.kind, &a.id, &a.format, &a.url).cmp(&(&b.kind, &b.id, &b.format, &b.url)));
    artifacts
}
