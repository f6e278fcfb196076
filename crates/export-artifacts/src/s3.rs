//! S3-compatible object storage: the connection settings (`S3Settings`), the place in a
//! bucket (`S3Location`), and the `object_store` client built from both.

use std::fmt;

use export_core::Secret;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::ClientOptions;
use serde::{Deserialize, Serialize};

use crate::ArtifactError;

/// The region requests are signed for when the settings name none: AWS's original region,
/// and what most S3-compatible servers expect.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

/// The longest prefix we accept, in bytes.
const MAX_PREFIX_BYTES: usize = 200;

/// How to reach an S3-compatible service: where it answers, the region requests are
/// signed for, and the credentials.
///
/// The bucket and the prefix are not part of it: they come from where the storage is used
/// (an `s3://<bucket>/<prefix>` artifact store url, an object distribution), so that one
/// set of settings serves both. Buckets are always addressed path-style,
/// `<endpoint>/<bucket>/<key>`, which every S3-compatible server understands.
///
/// `Debug` never shows the secret access key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// The base URL of the S3 API, `http[s]://<host>[:<port>]`, for S3-compatible
    /// services (MinIO, Ceph, Garage, s3s, a gateway). Unset: AWS itself,
    /// `https://s3.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region requests are signed for (`us-east-1` when unset).
    #[serde(default = "default_region")]
    pub region: String,
    /// The access key id of the credentials.
    pub access_key_id: String,
    /// The secret access key of the credentials (never serialized, printed redacted).
    #[serde(skip_serializing)]
    pub secret_access_key: Secret,
    /// Accept a plain `http://` endpoint. Off by default, so that credentials, data and
    /// presigned links only travel over TLS; meant for loopback test servers.
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    DEFAULT_S3_REGION.to_owned()
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Settings {
    /// Checks the settings as a whole, so that a mistake shows at startup rather than at
    /// the first request.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        let invalid = |reason: String| Err(ArtifactError::InvalidS3Settings { reason });
        if let Some(endpoint) = &self.endpoint {
            if let Err(reason) = check_endpoint(endpoint, self.allow_http) {
                return invalid(format!("endpoint `{endpoint}`: {reason}"));
            }
        }
        let region_ok = !self.region.is_empty()
            && self.region.len() <= 64
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !region_ok {
            return invalid(format!(
                "region `{}`: expected letters, digits, `-` and `_` (such as `us-east-1`)",
                self.region.chars().take(64).collect::<String>()
            ));
        }
        if self.access_key_id.is_empty() || self.access_key_id.contains('/') {
            return invalid("access_key_id: must be non-empty and contain no `/`".to_owned());
        }
        if self.secret_access_key.is_empty() {
            return invalid("secret_access_key: must be non-empty".to_owned());
        }
        Ok(())
    }

    /// The URL of `bucket`, path-style, without a trailing slash: object keys follow it
    /// after a `/`.
    pub fn bucket_url(&self, bucket: &str) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            None => format!("https://s3.{}.amazonaws.com/{bucket}", self.region),
        }
    }

    /// An `object_store` client for `bucket`, after [`S3Settings::validate`].
    ///
    /// Built from these settings alone: nothing is read from the environment or from
    /// instance metadata.
    pub fn client(&self, bucket: &str) -> Result<AmazonS3, ArtifactError> {
        self.client_through(bucket, None)
    }

    /// As [`S3Settings::client`], with every request sent through the HTTP proxy at
    /// `proxy_url` when given (the egress proxy of `object` distributions).
    pub fn client_through(&self, bucket: &str, proxy_url: Option<&str>) -> Result<AmazonS3, ArtifactError> {
        self.validate()?;
        export_egress::install_crypto_provider();
        // Client options replace each other whole: `allow_http` goes in with the proxy.
        let mut options = ClientOptions::new().with_allow_http(self.allow_http);
        if let Some(proxy_url) = proxy_url {
            options = options.with_proxy_url(proxy_url);
        }
        let mut builder = AmazonS3Builder::new()
            .with_client_options(options)
            .with_bucket_name(bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(self.secret_access_key.expose())
            .with_virtual_hosted_style_request(false);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        builder.build().map_err(|err| ArtifactError::InvalidS3Settings {
            reason: err.to_string(),
        })
    }
}

fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<(), String> {
    let url = url::Url::parse(endpoint).map_err(|err| err.to_string())?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err("plain `http` needs `allow_http = true`".to_owned()),
        scheme => {
            return Err(format!(
                "unsupported scheme `{scheme}`: expected `https` or `http`"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("names no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials belong in `access_key_id` and `secret_access_key`".to_owned());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err("expected `http[s]://<host>[:<port>]` without a path, query or fragment".to_owned());
    }
    Ok(())
}

/// A place in S3: a bucket, and a prefix inside it (possibly empty).
///
/// The prefix follows the rule of output paths (segments of `[A-Za-z0-9._-]`, none empty
/// or starting with `.`), so that it means the same thing in every key and URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Location {
    bucket: String,
    prefix: String,
}

impl S3Location {
    /// `bucket` and `prefix` (leading and trailing `/` ignored; empty for none).
    pub fn new(bucket: &str, prefix: &str) -> Result<Self, ArtifactError> {
        Self::checked(bucket, prefix).map_err(|reason| ArtifactError::InvalidS3Location {
            location: format!("s3://{bucket}/{prefix}").chars().take(200).collect(),
            reason,
        })
    }

    /// Parses `s3://<bucket>[/<prefix>]`.
    ///
    /// Read as written, not through a URL parser, which would resolve `a/../b` to `b`
    /// and percent-encode what it dislikes: a location means exactly what it says, or it
    /// is refused.
    pub fn parse(url: &str) -> Result<Self, ArtifactError> {
        let invalid = |reason: &str| ArtifactError::InvalidUrl {
            url: crate::store::redact(url),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("expected `s3://<bucket>[/<prefix>]`"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(invalid("credentials belong in the S3 settings, not in the url"));
        }
        if authority.contains(':') || path.contains(['?', '#']) {
            return Err(invalid(
                "expected `s3://<bucket>[/<prefix>]` without a port, query or fragment",
            ));
        }
        Self::checked(authority, path).map_err(|reason| invalid(&reason))
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix without leading or trailing `/`; empty when there is none.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn checked(bucket: &str, prefix: &str) -> Result<Self, String> {
        check_bucket(bucket)?;
        let prefix = prefix.trim_matches('/');
        check_prefix(prefix)?;
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// The S3 bucket naming rules that matter here: 3-63 lowercase letters, digits, `.` and
/// `-`, starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let bytes = bucket.as_bytes();
    let ok = (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bucket `{}`: expected 3-63 lowercase letters, digits, `.` and `-`",
            bucket.chars().take(80).collect::<String>()
        ))
    }
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.len() > MAX_PREFIX_BYTES {
        return Err("prefix: must be at most 200 bytes".to_owned());
    }
    let segment_ok = |segment: &str| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if prefix.split('/').all(segment_ok) {
        Ok(())
    } else {
        Err(format!(
            "prefix `{}`: segments may only contain letters, digits, `.`, `_` and `-`, and must not be empty or start with `.`",
            prefix.chars().take(80).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> S3Settings {
        S3Settings {
            endpoint: Some("http://127.0.0.1:9000".to_owned()),
            region: DEFAULT_S3_REGION.to_owned(),
            access_key_id: "AKID".to_owned(),
            secret_access_key: Secret::new("hunter2"),
            allow_http: true,
        }
    }

    #[test]
    fn locations_parse_from_urls() {
        for (url, bucket, prefix) in [
            ("s3://exports", "exports", ""),
            ("s3://exports/", "exports", ""),
            ("s3://exports/a/b-c_d.e/", "exports", "a/b-c_d.e"),
            ("s3://my.bucket-1/x", "my.bucket-1", "x"),
        ] {
            let location = S3Location::parse(url).unwrap();
            assert_eq!((location.bucket(), location.prefix()), (bucket, prefix), "{url}");
        }
        assert_eq!(
            S3Location::parse("s3://exports/a/b/").unwrap().to_string(),
            "s3://exports/a/b"
        );
        assert_eq!(S3Location::new("exports", "/a/").unwrap().prefix(), "a");
    }

    #[test]
    fn bad_locations_are_rejected() {
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://-bucket",
            "s3://bucket_underscore",
            "s3://bucket:9000/x",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "s3://bucket/.hidden",
            "s3://bucket/a b",
            "s3://bucket/x?y=1",
            "s3://key:secret@bucket/x",
            "file:///tmp",
        ] {
            match S3Location::parse(bad) {
                Err(ArtifactError::InvalidUrl { url, .. }) => {
                    assert!(!url.contains("secret"), "{url}");
                }
                other => panic!("{bad:?} should be rejected, got {other:?}"),
            }
        }
        let err = S3Location::new("exports", "a/%2F").unwrap_err();
        assert!(matches!(err, ArtifactError::InvalidS3Location { .. }), "{err}");
    }

    #[test]
    fn settings_validate_the_endpoint() {
        settings().validate().unwrap();
        let aws = S3Settings {
            endpoint: None,
            allow_http: false,
            ..settings()
        };
        aws.validate().unwrap();
        assert_eq!(
            aws.bucket_url("exports"),
            "https://s3.us-east-1.amazonaws.com/exports"
        );
        assert_eq!(settings().bucket_url("exports"), "http://127.0.0.1:9000/exports");

        let http_refused = S3Settings {
            allow_http: false,
            ..settings()
        };
        assert_eq!(
            http_refused.validate().unwrap_err().to_string(),
            "invalid S3 settings: endpoint `http://127.0.0.1:9000`: plain `http` needs `allow_http = true`"
        );
        for endpoint in [
            "ftp://host",
            "http://user:pw@host",
            "http://host/path",
            "http://host?x=1",
            "not a url",
        ] {
            let bad = S3Settings {
                endpoint: Some(endpoint.to_owned()),
                ..settings()
            };
            assert!(bad.validate().is_err(), "{endpoint} should be refused");
        }
        for (region, access_key_id, secret_access_key) in [
            ("", "AKID", "s"),
            ("us east", "AKID", "s"),
            ("r", "", "s"),
            ("r", "AKID", ""),
        ] {
            let bad = S3Settings {
                region: region.to_owned(),
                access_key_id: access_key_id.to_owned(),
                secret_access_key: Secret::new(secret_access_key),
                ..settings()
            };
            assert!(bad.validate().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", settings());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("AKID"), "{shown}");
    }
}
