//! Signed download URLs (SPEC §9.1): HMAC-SHA256 over the resource and its expiry, with
//! key rotation, verified from the keys alone (no IO, no database).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use export_core::RunId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Where signed links point; the resource (`<runId>/<path>`) follows.
pub const ARTIFACTS_PATH: &str = "/export-center/artifacts/";

/// Shortest accepted secret: as long as the HMAC-SHA256 output.
pub const MIN_SECRET_BYTES: usize = 32;

/// Expiries are rounded up to this many seconds, so that links made within the same
/// window are identical and repeated reads return identical payloads.
const EXPIRY_GRANULARITY_SECONDS: i64 = 300;

/// One URL signing key. `Debug` never shows the secret.
#[derive(Clone)]
pub struct UrlSigningKey {
    pub kid: String,
    pub secret: Vec<u8>,
}

impl fmt::Debug for UrlSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlSigningKey")
            .field("kid", &self.kid)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .finish()
    }
}

/// Why a set of signing keys was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlSigningError {
    #[error("no url signing key configured")]
    NoKeys,
    #[error("url signing key id `{kid}` is used twice")]
    DuplicateKid { kid: String },
    #[error("invalid url signing key id `{kid}`: expected 1-64 letters, digits, `.`, `_` and `-`")]
    InvalidKid { kid: String },
    #[error("url signing key `{kid}` has a {len}-byte secret: at least 32 bytes are required")]
    SecretTooShort { kid: String, len: usize },
}

/// Why a signed link was refused; the API answers 403 `ERR_EXPORT_SIGNATURE_INVALID` and
/// 410 `ERR_EXPORT_EXPIRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlVerifyError {
    #[error("download link signature is invalid")]
    SignatureInvalid,
    #[error("download link has expired")]
    Expired,
}

/// Signs download links with the newest key and verifies them with any configured key.
///
/// Cheap to share behind an `Arc`; `Debug` shows only key ids.
#[derive(Clone)]
pub struct UrlSigner {
    /// Oldest first; the last one signs. Each MAC is keyed once, here, and cloned per use.
    keys: Vec<(String, HmacSha256)>,
}

impl fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlSigner")
            .field("kids", &self.keys.iter().map(|(kid, _)| kid).collect::<Vec<_>>())
            .finish()
    }
}

impl UrlSigner {
    /// `keys` in order of age, newest last: the newest signs, every key verifies.
    pub fn new(keys: Vec<UrlSigningKey>) -> Result<Self, UrlSigningError> {
        if keys.is_empty() {
            return Err(UrlSigningError::NoKeys);
        }
        let mut macs: Vec<(String, HmacSha256)> = Vec::with_capacity(keys.len());
        for UrlSigningKey { kid, secret } in keys {
            if !is_valid_kid(&kid) {
                return Err(UrlSigningError::InvalidKid {
                    kid: kid.chars().take(80).collect(),
                });
            }
            if macs.iter().any(|(known, _)| *known == kid) {
                return Err(UrlSigningError::DuplicateKid { kid });
            }
            if secret.len() < MIN_SECRET_BYTES {
                return Err(UrlSigningError::SecretTooShort {
                    kid,
                    len: secret.len(),
                });
            }
            let mac = HmacSha256::new_from_slice(&secret).expect("HMAC accepts keys of any length");
            macs.push((kid, mac));
        }
        Ok(Self { keys: macs })
    }

    /// The id of the key that signs new links.
    pub fn signing_kid(&self) -> &str {
        &self.signing_key().0
    }

    /// `/export-center/artifacts/<runId>/<path>?expires=<unix>&kid=<kid>&sig=<sig>`, where
    /// `sig` is the unpadded base64url HMAC-SHA256 of `GET\n<runId>/<path>\n<expires>`.
    ///
    /// `path` is an output path (`[A-Za-z0-9._-]` segments, as the artifact store
    /// enforces), which needs no escaping in a URL. Any other byte is percent-encoded in
    /// the link, while the MAC covers the unencoded resource, which is what a router hands
    /// to [`UrlSigner::verify`] after decoding the path.
    pub fn sign(&self, run_id: &RunId, path: &str, expires: DateTime<Utc>) -> String {
        let resource = format!("{run_id}/{path}");
        let expires = expires.timestamp();
        let (kid, key) = self.signing_key();
        let sig = URL_SAFE_NO_PAD.encode(mac(key, &resource, expires).finalize().into_bytes());
        format!(
            "{ARTIFACTS_PATH}{}?expires={expires}&kid={kid}&sig={sig}",
            encode_path(&resource)
        )
    }

    /// Checks a link's `resource` (`<runId>/<path>`, decoded), `expires`, `kid` and `sig`
    /// at time `now`: an unknown key or a wrong signature is `SignatureInvalid` (checked
    /// first, in constant time, so a forged link learns nothing about expiry), and
    /// `now >= expires` is `Expired`.
    pub fn verify(
        &self,
        resource: &str,
        expires: i64,
        kid: &str,
        sig: &str,
        now: DateTime<Utc>,
    ) -> Result<(), UrlVerifyError> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(known, _)| known == kid)
            .ok_or(UrlVerifyError::SignatureInvalid)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| UrlVerifyError::SignatureInvalid)?;
        mac(key, resource, expires)
            .verify_slice(&sig)
            .map_err(|_| UrlVerifyError::SignatureInvalid)?;
        if now.timestamp() >= expires {
            return Err(UrlVerifyError::Expired);
        }
        Ok(())
    }

    fn signing_key(&self) -> &(String, HmacSha256) {
        self.keys.last().expect("a signer has at least one key")
    }
}

/// The MAC of one link, ready to finalize or verify.
fn mac(key: &HmacSha256, resource: &str, expires: i64) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(b"GET\n");
    mac.update(resource.as_bytes());
    mac.update(b"\n");
    mac.update(expires.to_string().as_bytes());
    mac
}

fn is_valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Percent-encodes every byte that may not appear as such in a URL path; `/` and `:`
/// (which run ids contain) stay.
fn encode_path(resource: &str) -> String {
    let mut out = String::with_capacity(resource.len());
    for byte in resource.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b':' | b'.' | b'_' | b'-' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// When a link made at `now` expires: `now + lifetime` rounded up to the next 5-minute
/// boundary (a time already on one stays), and never past `retention_end`, to which it is
/// clamped exactly.
pub fn link_expiry(
    now: DateTime<Utc>,
    lifetime: Duration,
    retention_end: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let end = now + lifetime;
    let seconds = end.timestamp();
    let on_boundary =
        seconds.rem_euclid(EXPIRY_GRANULARITY_SECONDS) == 0 && end.timestamp_subsec_nanos() == 0;
    let rounded_seconds = if on_boundary {
        seconds
    } else {
        (seconds.div_euclid(EXPIRY_GRANULARITY_SECONDS) + 1) * EXPIRY_GRANULARITY_SECONDS
    };
    let rounded = DateTime::from_timestamp(rounded_seconds, 0).unwrap_or(end);
    match retention_end {
        Some(retention_end) if retention_end < rounded => retention_end,
        _ => rounded,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn key(kid: &str, fill: u8) -> UrlSigningKey {
        UrlSigningKey {
            kid: kid.to_owned(),
            secret: vec![fill; 32],
        }
    }

    fn signer(keys: &[(&str, u8)]) -> UrlSigner {
        UrlSigner::new(keys.iter().map(|(kid, fill)| key(kid, *fill)).collect()).unwrap()
    }

    fn run(tenant: &str) -> RunId {
        RunId::parse(&format!("export-run::{tenant}::2025-12-06::0003")).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// A signed link taken apart as a router would: (resource, expires, kid, sig).
    fn parse(url: &str) -> (String, i64, String, String) {
        let rest = url.strip_prefix(ARTIFACTS_PATH).expect("artifacts path");
        let (resource, query) = rest.split_once('?').expect("query");
        let mut expires = None;
        let mut kid = None;
        let mut sig = None;
        for pair in query.split('&') {
            match pair.split_once('=').expect("name=value") {
                ("expires", value) => expires = Some(value.parse().unwrap()),
                ("kid", value) => kid = Some(value.to_owned()),
                ("sig", value) => sig = Some(value.to_owned()),
                (name, _) => panic!("unexpected query parameter {name}"),
            }
        }
        (resource.to_owned(), expires.unwrap(), kid.unwrap(), sig.unwrap())
    }

    fn verify_url(signer: &UrlSigner, url: &str, now: DateTime<Utc>) -> Result<(), UrlVerifyError> {
        let (resource, expires, kid, sig) = parse(url);
        signer.verify(&resource, expires, &kid, &sig, now)
    }

    const NOW: &str = "2025-12-06T10:00:00Z";
    const EXPIRES: &str = "2025-12-06T16:00:00Z";

    #[test]
    fn signed_links_verify_until_they_expire() {
        let signer = signer(&[("k1", 1)]);
        let url = signer.sign(&run("acme"), "manifest.json", at(EXPIRES));
        assert_eq!(
            url.split('&').next().unwrap(),
            "/export-center/artifacts/export-run::acme::2025-12-06::0003/manifest.json?expires=1765036800"
        );
        assert!(url.contains("&kid=k1&sig="));
        assert_eq!(verify_url(&signer, &url, at(NOW)), Ok(()));
        assert_eq!(verify_url(&signer, &url, at("2025-12-06T15:59:59Z")), Ok(()));
        assert_eq!(
            verify_url(&signer, &url, at(EXPIRES)),
            Err(UrlVerifyError::Expired)
        );
        assert_eq!(
            verify_url(&signer, &url, at("2026-01-01T00:00:00Z")),
            Err(UrlVerifyError::Expired)
        );
    }

    /// The expected signature was computed independently:
    /// `python3 -c 'import hmac,hashlib,base64; print(base64.urlsafe_b64encode(hmac.new(
    /// bytes(range(32)), b"GET\nexport-run::tenant-default::2025-12-06::0003/manifest.json\n1765036800",
    /// hashlib.sha256).digest()).rstrip(b"=").decode())'`
    #[test]
    fn signature_matches_a_known_answer() {
        let signer = UrlSigner::new(vec![UrlSigningKey {
            kid: "kat-1".into(),
            secret: (0..32).collect(),
        }])
        .unwrap();
        let run = RunId::parse("export-run::tenant-default::2025-12-06::0003").unwrap();
        let url = signer.sign(&run, "manifest.json", at(EXPIRES));
        assert_eq!(
            url,
            "/export-center/artifacts/export-run::tenant-default::2025-12-06::0003/manifest.json\
             ?expires=1765036800&kid=kat-1&sig=SY_7HEXvCKkAEDpilmtwPEhsV5EWVGnLTzQauZRGN84"
        );
    }

    #[test]
    fn rotation_signs_with_the_newest_key_and_verifies_with_all() {
        let old = signer(&[("2025-01", 1)]);
        let rotated = signer(&[("2025-01", 1), ("2025-06", 2)]);
        assert_eq!(rotated.signing_kid(), "2025-06");

        let by_old = old.sign(&run("acme"), "advisory.ndjson", at(EXPIRES));
        assert_eq!(verify_url(&rotated, &by_old, at(NOW)), Ok(()));

        let by_new = rotated.sign(&run("acme"), "advisory.ndjson", at(EXPIRES));
        assert!(by_new.contains("&kid=2025-06&"));
        assert_eq!(verify_url(&rotated, &by_new, at(NOW)), Ok(()));
        assert_eq!(
            verify_url(&old, &by_new, at(NOW)),
            Err(UrlVerifyError::SignatureInvalid)
        );

        let retired = signer(&[("2025-06", 2)]);
        assert_eq!(
            verify_url(&retired, &by_old, at(NOW)),
            Err(UrlVerifyError::SignatureInvalid)
        );
        assert_eq!(verify_url(&retired, &by_new, at(NOW)), Ok(()));
    }

    #[test]
    fn tampered_links_are_refused() {
        let signer = signer(&[("k1", 1), ("k2", 2)]);
        let url = signer.sign(&run("acme"), "vex.json", at(EXPIRES));
        let (resource, expires, kid, sig) = parse(&url);
        let now = at(NOW);
        assert_eq!(signer.verify(&resource, expires, &kid, &sig, now), Ok(()));

        let mut flipped = sig.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for (resource, expires, kid, sig) in [
            (
                "export-run::acme::2025-12-06::0003/vex.jsoN",
                expires,
                kid.as_str(),
                sig.as_str(),
            ),
            (
                "export-run::acme::2025-12-06::0003/advisory.json",
                expires,
                &kid,
                &sig,
            ),
            (&resource, expires + 300, &kid, &sig),
            (&resource, expires - 1, &kid, &sig),
            (&resource, expires, "k1", &sig),
            (&resource, expires, "k3", &sig),
            (&resource, expires, "", &sig),
            (&resource, expires, &kid, &flipped),
            (&resource, expires, &kid, &sig[..sig.len() - 1]),
            (&resource, expires, &kid, &format!("{sig}A")),
            (&resource, expires, &kid, &format!("{sig}=")),
            (&resource, expires, &kid, ""),
            (&resource, expires, &kid, "not base64!"),
        ] {
            assert_eq!(
                signer.verify(resource, expires, kid, sig, now),
                Err(UrlVerifyError::SignatureInvalid),
                "{resource} {expires} {kid} {sig}"
            );
        }
    }

    #[test]
    fn a_bad_signature_is_reported_before_expiry() {
        let signer = signer(&[("k1", 1)]);
        let url = signer.sign(&run("acme"), "vex.json", at(NOW));
        let (resource, expires, kid, _) = parse(&url);
        let later = at(EXPIRES);
        assert_eq!(verify_url(&signer, &url, later), Err(UrlVerifyError::Expired));
        assert_eq!(
            signer.verify(&resource, expires, &kid, "AAAA", later),
            Err(UrlVerifyError::SignatureInvalid)
        );
        assert_eq!(
            signer.verify(&resource, expires, "unknown", "AAAA", later),
            Err(UrlVerifyError::SignatureInvalid)
        );
    }

    #[test]
    fn a_link_for_one_run_never_opens_another() {
        let signer = signer(&[("k1", 1)]);
        let url = signer.sign(&run("acme"), "manifest.json", at(EXPIRES));
        let (_, expires, kid, sig) = parse(&url);
        for resource in [
            "export-run::globex::2025-12-06::0003/manifest.json",
            "export-run::acme::2025-12-06::0004/manifest.json",
            "export-run::acme::2025-12-07::0003/manifest.json",
            "export-run::acme::2025-12-06::0003/../../export-run::globex::2025-12-06::0003/manifest.json",
        ] {
            assert_eq!(
                signer.verify(resource, expires, &kid, &sig, at(NOW)),
                Err(UrlVerifyError::SignatureInvalid),
                "{resource}"
            );
        }
    }

    #[test]
    fn unusual_bytes_in_paths_are_percent_encoded_in_the_link() {
        let signer = signer(&[("k1", 1)]);
        let url = signer.sign(&run("acme"), "a b?c#d%e.json", at(EXPIRES));
        assert!(url.starts_with(
            "/export-center/artifacts/export-run::acme::2025-12-06::0003/a%20b%3Fc%23d%25e.json?expires="
        ));
        let (_, expires, kid, sig) = parse(&url);
        let decoded = "export-run::acme::2025-12-06::0003/a b?c#d%e.json";
        assert_eq!(signer.verify(decoded, expires, &kid, &sig, at(NOW)), Ok(()));
    }

    #[test]
    fn bad_key_sets_are_refused() {
        let short = UrlSigningKey {
            kid: "k".into(),
            secret: vec![0; 31],
        };
        for (keys, expected) in [
            (vec![], UrlSigningError::NoKeys),
            (
                vec![key("k1", 1), key("k1", 2)],
                UrlSigningError::DuplicateKid { kid: "k1".into() },
            ),
            (vec![key("", 1)], UrlSigningError::InvalidKid { kid: "".into() }),
            (
                vec![key("a b", 1)],
                UrlSigningError::InvalidKid { kid: "a b".into() },
            ),
            (
                vec![key("k&sig=x", 1)],
                UrlSigningError::InvalidKid {
                    kid: "k&sig=x".into(),
                },
            ),
            (
                vec![key(&"k".repeat(65), 1)],
                UrlSigningError::InvalidKid { kid: "k".repeat(65) },
            ),
            (
                vec![short],
                UrlSigningError::SecretTooShort {
                    kid: "k".into(),
                    len: 31,
                },
            ),
        ] {
            assert_eq!(UrlSigner::new(keys).unwrap_err(), expected);
        }
        assert!(UrlSigner::new(vec![key(&"K.9_-".repeat(12), 1)]).is_ok());
        assert_eq!(
            UrlSigningError::SecretTooShort {
                kid: "k".into(),
                len: 31
            }
            .to_string(),
            "url signing key `k` has a 31-byte secret: at least 32 bytes are required"
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let signer = signer(&[("k1", 0xAB)]);
        let shown = format!("{signer:?} {:?}", key("k1", 0xAB));
        assert!(shown.contains("k1"));
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn expiry_rounds_up_to_five_minutes() {
        let six_hours = Duration::hours(6);
        let cases = [
            ("2025-12-06T10:00:00Z", "2025-12-06T16:00:00Z"), // on a boundary: stays
            ("2025-12-06T10:00:01Z", "2025-12-06T16:05:00Z"), // one second past: next boundary
            ("2025-12-06T10:04:59Z", "2025-12-06T16:05:00Z"),
            ("2025-12-06T10:05:00Z", "2025-12-06T16:05:00Z"),
            ("2025-12-06T10:00:00.001Z", "2025-12-06T16:05:00Z"),
            ("2025-12-06T21:57:30Z", "2025-12-07T04:00:00Z"), // across midnight
        ];
        for (now, expected) in cases {
            assert_eq!(link_expiry(at(now), six_hours, None), at(expected), "{now}");
        }
        let before_epoch = Utc.with_ymd_and_hms(1969, 12, 31, 23, 58, 0).unwrap();
        assert_eq!(
            link_expiry(before_epoch, Duration::zero(), None),
            DateTime::UNIX_EPOCH
        );
    }

    #[test]
    fn expiry_never_passes_retention() {
        let six_hours = Duration::hours(6);
        let now = at("2025-12-06T10:00:01Z");
        let retention = at("2025-12-06T12:34:56Z");
        assert_eq!(link_expiry(now, six_hours, Some(retention)), retention);
        // Retention exactly at the rounded expiry, or after it, changes nothing.
        let rounded = at("2025-12-06T16:05:00Z");
        assert_eq!(link_expiry(now, six_hours, Some(rounded)), rounded);
        assert_eq!(
            link_expiry(now, six_hours, Some(at("2025-12-06T16:04:59Z"))),
            at("2025-12-06T16:04:59Z")
        );
        assert_eq!(
            link_expiry(now, six_hours, Some(at("2026-01-01T00:00:00Z"))),
            rounded
        );
    }

    proptest! {
        #[test]
        fn changing_any_byte_of_the_resource_breaks_the_signature(
            tenant in "[a-z0-9-]{1,64}",
            path in "[A-Za-z0-9._-]{1,40}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}){0,3}",
            index in any::<prop::sample::Index>(),
            replacement in 0x20u8..0x7f,
        ) {
            let signer = signer(&[("k1", 7)]);
            let run = RunId::parse(&format!("export-run::{tenant}::2025-12-06::0003")).unwrap();
            let url = signer.sign(&run, &path, at(EXPIRES));
            let (resource, expires, kid, sig) = parse(&url);
            prop_assert_eq!(signer.verify(&resource, expires, &kid, &sig, at(NOW)), Ok(()));

            let mut tampered = resource.clone().into_bytes();
            let at_idx = index.index(tampered.len());
            prop_assume!(tampered[at_idx] != replacement);
            tampered[at_idx] = replacement;
            let tampered = String::from_utf8(tampered).unwrap();
            prop_assert_eq!(
                signer.verify(&tampered, expires, &kid, &sig, at(NOW)),
                Err(UrlVerifyError::SignatureInvalid)
            );
        }

        #[test]
        fn verifying_arbitrary_input_never_panics(
            resource in ".{0,80}", expires in any::<i64>(), kid in ".{0,10}", sig in ".{0,60}",
        ) {
            let signer = signer(&[("k1", 7)]);
            prop_assert!(signer.verify(&resource, expires, &kid, &sig, at(NOW)).is_err());
        }
    }
}
