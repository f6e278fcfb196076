//! Fuzzes the checks of a signed download link (`export_api::fuzzing::check_download_link`:
//! the query as the handler's extractor reads it, the path's run id and output path, then
//! `UrlSigner::verify` with fixed keys at a fixed time).
//!
//! Input, after its first byte:
//! - first byte `R` (round trip): `<expires>\n<run id>\n<output path>`; when the run id and
//!   path are valid, the link `UrlSigner::sign` makes for them must pass the checks before
//!   it expires and be refused as expired after, naming the same run, path and expiry;
//! - any other first byte: a request target (`/export-center/artifacts/<run>/<path>?…`),
//!   which must be checked without a panic; a link that passes names a valid run and path
//!   and has not expired.
#![no_main]

use chrono::{DateTime, Utc};
use export_api::fuzzing::check_download_link;
use export_core::{ErrorCode, RunId};
use export_distribution::{UrlSigner, UrlSigningKey};
use libfuzzer_sys::fuzz_target;

/// The time every link is checked at: 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;

fn signer() -> UrlSigner {
    // Two keys, as after a rotation: `k2` signs, both verify. The seeds' links were signed
    // with these secrets (fuzz/seeds/README.md).
    UrlSigner::new(vec![
        UrlSigningKey {
            kid: "k1".into(),
            secret: vec![1; 32],
        },
        UrlSigningKey {
            kid: "k2".into(),
            secret: vec![2; 32],
        },
    ])
    .expect("valid keys")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = DateTime::from_timestamp(NOW, 0).expect("a valid time");
    let signer = signer();
    match text.strip_prefix('R') {
        Some(round_trip) => check_round_trip(&signer, round_trip, now),
        None => check_link(&signer, text.get(1..).unwrap_or_default(), now),
    }
});

fn check_link(signer: &UrlSigner, target: &str, now: DateTime<Utc>) {
    let Ok(uri) = target.parse::<http::Uri>() else {
        return;
    };
    if let Ok((run, path, expires)) = check_download_link(signer, &uri, now) {
        assert!(expires > NOW, "{target}: an expired link passed");
        assert!(
            export_artifacts::validate_output_path(&path).is_ok(),
            "{target}: passed with the output path {path:?}"
        );
        assert_eq!(
            RunId::parse(&run.to_string()).as_ref(),
            Ok(&run),
            "{target}: passed for a run id that does not read back"
        );
    }
}

fn check_round_trip(signer: &UrlSigner, input: &str, now: DateTime<Utc>) {
    let mut lines = input.splitn(3, '\n');
    let (Some(expires), Some(run), Some(path)) = (lines.next(), lines.next(), lines.next()) else {
        return;
    };
    let (Ok(expires), Ok(run)) = (expires.parse::<i64>(), RunId::parse(run)) else {
        return;
    };
    let Some(expires_at) = DateTime::from_timestamp(expires, 0) else {
        return;
    };
    if export_artifacts::validate_output_path(path).is_err() {
        return;
    }
    let link = signer.sign(&run, path, expires_at);
    let uri: http::Uri = link
        .parse()
        .unwrap_or_else(|err| panic!("the signed link {link:?} is not a URI: {err}"));
    match check_download_link(signer, &uri, now) {
        Ok(checked) => {
            assert!(NOW < expires, "{link}: passed after it expired");
            assert_eq!(checked, (run, path.to_owned(), expires), "{link}");
        }
        Err(error) => {
            assert!(
                NOW >= expires && error.code == ErrorCode::Expired,
                "{link}: refused with {:?}: {}",
                error.code,
                error.detail
            );
        }
    }
}
