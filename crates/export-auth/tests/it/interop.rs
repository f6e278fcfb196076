//! Interop with PyJWT on `cryptography`, an independent JOSE implementation: its tokens and
//! proofs are accepted, and their tampered variants refused (`tests/mint.py`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use chrono::Utc;
use export_auth::{AuthConfig, Authenticator, FileJwks, MemoryReplayCache, PublicJwk, RequestFacts};
use serde_json::Value;

const ISSUER: &str = "https://python-issuer.example.test";
const AUDIENCE: &str = "export-center";
const TENANT: &str = "acme";
const METHOD: &str = "POST";
const URL: &str = "https://export.example.test/export-center/runs";

/// Runs `tests/mint.py`, which writes its JWKS into `dir` and prints the cases.
fn mint(dir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mint.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(dir)
        .args([METHOD, URL, ISSUER, AUDIENCE, TENANT])
        .output()
        .expect("running python3 (is Python 3 installed?)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() != Some(3),
        "PyJWT or cryptography is not installed for python3: run `pip install pyjwt cryptography`\n{stderr}"
    );
    assert!(output.status.success(), "tests/mint.py failed:\n{stderr}");
    serde_json::from_slice(&output.stdout).expect("tests/mint.py prints json")
}

#[tokio::test]
async fn tokens_and_proofs_minted_by_pyjwt_are_accepted_and_their_tampered_variants_refused() {
    let dir = tempfile::tempdir().unwrap();
    let minted = mint(dir.path());

    let python_jkt = minted["jkt"].as_str().unwrap();
    let rust_jkt = PublicJwk::from_json(&minted["dpop_jwk"])
        .unwrap()
        .thumbprint()
        .to_owned();
    assert_eq!(
        rust_jkt, python_jkt,
        "both sides compute the same RFC 7638 thumbprint"
    );

    let jwks = FileJwks::load(minted["jwks_path"].as_str().unwrap()).unwrap();
    assert_eq!(jwks.jwks().kids(), ["py-eddsa", "py-es256", "py-rs256"]);
    let auth = Authenticator::new(
        AuthConfig::new(ISSUER, AUDIENCE),
        Arc::new(jwks),
        Arc::new(MemoryReplayCache::new()),
        None,
    );

    let cases = minted["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let (mut accepted, mut refused) = (0, 0);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let expect = case["expect"].as_str().unwrap();
        let authorization = format!("DPoP {}", case["token"].as_str().unwrap());
        let facts = RequestFacts {
            method: METHOD,
            public_url: URL,
            authorization: Some(&authorization),
            dpop: case["proof"].as_str(),
            now: Utc::now(),
        };
        match (expect, auth.authenticate(&facts).await) {
            ("ok", Ok(principal)) => {
                assert_eq!(principal.tenant.as_str(), TENANT, "{name}");
                assert_eq!(principal.subject, "python-client", "{name}");
                assert!(principal.has_scope("export:read"), "{name}");
                accepted += 1;
            }
            ("ok", Err(error)) => panic!("{name}: refused: {error}"),
            (code, Ok(_)) => panic!("{name}: accepted, expected {code}"),
            (code, Err(error)) => {
                assert_eq!(error.error_code(), Some(code), "{name}: {error}");
                assert!(
                    error.www_authenticate().contains(&format!("error=\"{code}\"")),
                    "{name}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(accepted, 5);
    assert!(refused >= 16, "{refused} refused");
}
