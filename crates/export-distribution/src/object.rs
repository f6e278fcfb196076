//! Object-storage distribution (SPEC §9.3): a run's outputs copied to an S3-compatible
//! bucket under `<prefix>/<tenant>/<runId>/<path>`, and S3 presigned GET links to them.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use export_artifacts::{ArtifactError, ArtifactKey, ArtifactStore, S3Location, S3Settings};
use export_core::{EgressRefusal, RunId};
use export_egress::{EgressProxy, EgressSession};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The longest lifetime S3 accepts for a presigned URL: 7 days.
pub const MAX_PRESIGNED_LIFETIME_SECONDS: i64 = 7 * 24 * 60 * 60;

/// Presigned links are signed at the start of their 5-minute window, so that every link
/// made within one window is byte-identical (the distribution payload and its ETag depend
/// on it); the same window as the expiry rounding of signed URLs.
const LINK_WINDOW_SECONDS: i64 = 300;

/// Outputs up to this size go up in one `PutObject`; larger ones as a multipart upload of
/// parts this size, so that memory stays flat whatever the size of the file.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// How many parts may be uploading at the same time before reading waits.
const MAX_PARTS_IN_FLIGHT: usize = 4;

/// What the signer's credentials are called in its debug output.
const CREDENTIALS_PROVIDER: &str = "export-center-settings";

/// Key characters left as they are in a URL path: the unreserved characters of RFC 3986,
/// which SigV4 leaves unencoded, and the `/` between segments. Everything else (the `:`
/// of run ids, for one) is percent-encoded, as in the canonical request.
const KEY_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Why publishing to object storage failed; the runner marks the run failed with
/// `ERR_EXPORT_DISTRIBUTION_FAILED`.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Invalid settings or location, or reading an output from the artifact store failed.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),

    #[error("cannot upload `{key}` to object storage")]
    Upload {
        key: String,
        #[source]
        source: object_store::Error,
    },

    /// The egress rules refused a connection to the endpoint (or where it redirected).
    #[error("{0}")]
    EgressBlocked(EgressRefusal),

    #[error("object storage bucket `{bucket}` is not reachable")]
    Unreachable {
        bucket: String,
        #[source]
        source: object_store::Error,
    },
}

/// Publishes runs to one bucket and prefix, and presigns GET links to what it published.
///
/// Cheap to clone. Links are signed with [`aws_sigv4`], the signer of the official AWS
/// SDK for Rust, because it takes the signing time as a parameter: `object_store`'s own
/// presigner reads the wall clock, so two links made seconds apart would differ, while
/// ours must be identical for a whole link window (see [`ObjectPublisher::presign_get`]).
/// Signing needs no request and no IO.
#[derive(Clone)]
pub struct ObjectPublisher {
    client: Arc<AmazonS3>,
    location: S3Location,
    /// `<endpoint>/<bucket>`: keys follow after a `/`.
    bucket_url: String,
    region: String,
    /// `Debug` of `Credentials` never shows the secret.
    credentials: Credentials,
    /// The client's way through the egress proxy, which knows what it refused.
    egress: Option<Arc<EgressSession>>,
}

impl fmt::Debug for ObjectPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPublisher")
            .field("location", &format_args!("{}", self.location))
            .field("bucket_url", &self.bucket_url)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl ObjectPublisher {
    /// A publisher to `bucket` under `prefix` (empty for none); checks the settings and
    /// the location, but makes no request.
    pub fn new(settings: &S3Settings, bucket: &str, prefix: &str) -> Result<Self, ObjectError> {
        Self::build(settings, bucket, prefix, None)
    }

    /// As [`ObjectPublisher::new`], with every request through `egress`, which applies
    /// the egress rules; plain HTTP reaches the endpoint only when `allow_http` says so.
    pub fn new_through(
        settings: &S3Settings,
        bucket: &str,
        prefix: &str,
        egress: &EgressProxy,
    ) -> Result<Self, ObjectError> {
        Self::build(settings, bucket, prefix, Some(egress))
    }

    fn build(
        settings: &S3Settings,
        bucket: &str,
        prefix: &str,
        egress: Option<&EgressProxy>,
    ) -> Result<Self, ObjectError> {
        let location = S3Location::new(bucket, prefix)?;
        let bucket_url = settings.bucket_url(location.bucket());
        let egress = egress.map(|proxy| {
            let plain_http = bucket_url
                .strip_prefix("http://")
                .map(|rest| rest.split('/').next().unwrap_or(rest));
            Arc::new(proxy.session(plain_http))
        });
        let proxy_url = egress.as_ref().map(|session| session.proxy_url());
        let client = settings.client_through(location.bucket(), proxy_url.as_deref())?;
        Ok(Self {
            egress,
            client: Arc::new(client),
            bucket_url: settings.bucket_url(location.bucket()),
            region: settings.region.clone(),
            credentials: Credentials::new(
                &settings.access_key_id,
                settings.secret_access_key.expose(),
                None,
                None,
                CREDENTIALS_PROVIDER,
            ),
            location,
        })
    }

    /// The egress refusal behind a failed request, if there was one.
    fn refused(&self) -> Option<ObjectError> {
        self.egress
            .as_ref()
            .and_then(|session| session.take_refusal())
            .map(ObjectError::EgressBlocked)
    }

    /// Where this publisher puts runs.
    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// `host[:port]` of the S3 endpoint: what a sealed site's egress allowlist must name.
    pub fn authority(&self) -> &str {
        let rest = self
            .bucket_url
            .split_once("://")
            .map_or(self.bucket_url.as_str(), |(_, rest)| rest);
        rest.split('/').next().unwrap_or(rest)
    }

    /// `s3://<bucket>/<prefix>/<tenant>/<runId>/`: where the outputs of `run` are.
    pub fn run_url(&self, run: &RunId) -> String {
        format!("s3://{}/{}", self.location.bucket(), self.object_key(run, ""))
    }

    /// The object key of output `path` of `run`: `<prefix>/<tenant>/<runId>/<path>`.
    pub fn object_key(&self, run: &RunId, path: &str) -> String {
        let mut key = String::new();
        if !self.location.prefix().is_empty() {
            key.push_str(self.location.prefix());
            key.push('/');
        }
        let _ = write!(key, "{}/{run}/{path}", run.tenant);
        key
    }

    /// Uploads the outputs `paths` of `run` from `artifacts`, one after the other, and
    /// returns how many bytes it uploaded.
    ///
    /// Each object appears only once it is complete, and uploading again replaces it, so
    /// a retried step publishes the same objects.
    #[tracing::instrument(skip_all, fields(tenant.id = %run.tenant, run.id = %run))]
    pub async fn publish_run<S: AsRef<str>>(
        &self,
        artifacts: &ArtifactStore,
        run: &RunId,
        paths: &[S],
    ) -> Result<u64, ObjectError> {
        let mut bytes = 0;
        for path in paths {
            bytes += self.publish_output(artifacts, run, path.as_ref()).await?;
        }
        tracing::info!(
            objects = paths.len(),
            bytes,
            "published {} outputs ({bytes} bytes) of run {run} to {}",
            paths.len(),
            self.location
        );
        Ok(bytes)
    }

    /// Uploads output `path` of `run`, streaming it from `artifacts`, and returns its size.
    ///
    /// An output larger than one part goes up as a multipart upload, completed only
    /// after its last part and aborted on any error, so a failed upload publishes nothing.
    pub async fn publish_output(
        &self,
        artifacts: &ArtifactStore,
        run: &RunId,
        path: &str,
    ) -> Result<u64, ObjectError> {
        let read = artifacts
            .get(&ArtifactKey::for_run_output(run, path)?, None)
            .await?;
        let key = Path::from(self.object_key(run, path));
        let upload_error = |source| {
            self.refused().unwrap_or_else(|| ObjectError::Upload {
                key: key.to_string(),
                source,
            })
        };
        if read.total_size <= PART_SIZE as u64 {
            let chunks: Vec<Bytes> = read.stream.try_collect().await?;
            let payload: PutPayload = chunks.into_iter().collect();
            self.client.put(&key, payload).await.map_err(upload_error)?;
        } else {
            let upload = self.client.put_multipart(&key).await.map_err(upload_error)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            match copy_into(read.stream, &mut writer).await {
                Ok(()) => {
                    writer.finish().await.map_err(upload_error)?;
                }
                Err(CopyError::Read(err)) => {
                    // The error to report is the one that stopped the copy.
                    let _ = writer.abort().await;
                    return Err(err.into());
                }
                Err(CopyError::Write(source)) => {
                    let _ = writer.abort().await;
                    return Err(upload_error(source));
                }
            }
        }
        Ok(read.total_size)
    }

    /// An S3 SigV4 presigned GET URL for output `path` of `run`, valid until `expires_at`
    /// (at most 7 days).
    ///
    /// The URL is signed as of the start of the 5-minute window holding `now`
    /// (`X-Amz-Date`), for `expires_at` minus that time (`X-Amz-Expires`, at least 1 and
    /// at most 604800 seconds): every call within one window, on any replica, with the
    /// same `expires_at` returns the same bytes. [`presigned_link_expiry`] says when the
    /// link really stops working. Only `GET` of exactly this key is allowed: the key is
    /// part of the signature, so a link for one tenant's or run's object can never reach
    /// another's.
    pub fn presign_get(
        &self,
        run: &RunId,
        path: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> String {
        let signed_at = link_window_start(now);
        let lifetime = presigned_lifetime_seconds(signed_at, expires_at);
        let url = format!(
            "{}/{}",
            self.bucket_url,
            utf8_percent_encode(&self.object_key(run, path), KEY_ENCODE_SET)
        );

        // What the AWS SDK uses for S3: the path is signed as it is sent (S3 does not
        // double-encode or normalize it), and the payload of a presigned GET is unsigned.
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(lifetime.unsigned_abs()));
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::from(signed_at))
            .settings(settings)
            .build()
            .expect("every signing parameter is set")
            .into();
        let request = SignableRequest::new(
            "GET",
            url.as_str(),
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .expect("a validated endpoint and an encoded key make a valid URI");
        let (instructions, _signature) = sign(request, &params)
            .expect("static credentials and a header-less GET always sign")
            .into_parts();
        let mut request = http::Request::get(url.as_str()).body(()).expect("a valid URI");
        instructions.apply_to_request_http1x(&mut request);
        request.uri().to_string()
    }

    /// Readiness: lists (at most one page of) the prefix, which needs the bucket to exist
    /// and the credentials to be accepted.
    ///
    /// Against an endpoint that refuses connections it fails after the client's retries
    /// (about 3.5 seconds); a readiness probe that must answer sooner bounds it itself.
    pub async fn check(&self) -> Result<(), ObjectError> {
        let prefix = Path::from(self.location.prefix());
        match self.client.list(Some(&prefix)).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(source)) => Err(self.refused().unwrap_or_else(|| ObjectError::Unreachable {
                bucket: self.location.bucket().to_owned(),
                source,
            })),
        }
    }
}

/// When a link presigned at `now` for `expires_at` stops working: `expires_at`, unless
/// that is more than 7 days after the start of the link window (see
/// [`ObjectPublisher::presign_get`]).
pub fn presigned_link_expiry(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> DateTime<Utc> {
    let signed_at = link_window_start(now);
    signed_at + TimeDelta::seconds(presigned_lifetime_seconds(signed_at, expires_at))
}

/// The start of the 5-minute window holding `now`, to the second.
fn link_window_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let start = now.timestamp().div_euclid(LINK_WINDOW_SECONDS) * LINK_WINDOW_SECONDS;
    DateTime::from_timestamp(start, 0).expect("a window start is a valid time")
}

/// `X-Amz-Expires`: from the signing time to `expires_at`, within what S3 accepts. A link
/// asked to expire before it is signed lives one second, so it is already expired when
/// anyone gets it.
fn presigned_lifetime_seconds(signed_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> i64 {
    (expires_at - signed_at)
        .num_seconds()
        .clamp(1, MAX_PRESIGNED_LIFETIME_SECONDS)
}

enum CopyError {
    Read(ArtifactError),
    Write(object_store::Error),
}

/// Copies `stream` into the multipart upload, waiting while too many parts are in flight
/// so that a fast source cannot outrun the upload.
async fn copy_into(
    mut stream: BoxStream<'static, Result<Bytes, ArtifactError>>,
    writer: &mut WriteMultipart,
) -> Result<(), CopyError> {
    while let Some(chunk) = stream.try_next().await.map_err(CopyError::Read)? {
        writer
            .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
            .await
            .map_err(CopyError::Write)?;
        writer.put(chunk);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn links_are_signed_at_the_start_of_their_window() {
        for now in [
            "2025-12-06T10:05:00Z",
            "2025-12-06T10:07:31Z",
            "2025-12-06T10:09:59.999Z",
        ] {
            assert_eq!(link_window_start(at(now)), at("2025-12-06T10:05:00Z"), "{now}");
        }
        assert_eq!(
            link_window_start(at("1969-12-31T23:59:59Z")),
            at("1969-12-31T23:55:00Z")
        );
    }

    #[test]
    fn lifetimes_run_from_the_window_start_and_are_clamped() {
        let now = at("2025-12-06T10:07:31Z");
        assert_eq!(
            presigned_link_expiry(now, at("2025-12-06T16:10:00Z")),
            at("2025-12-06T16:10:00Z")
        );
        assert_eq!(
            presigned_link_expiry(now, at("2026-01-06T00:00:00Z")),
            at("2025-12-13T10:05:00Z"),
            "at most 7 days"
        );
        assert_eq!(
            presigned_link_expiry(now, at("2025-12-01T00:00:00Z")),
            at("2025-12-06T10:05:01Z"),
            "already expired"
        );
    }
}
