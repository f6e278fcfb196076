//! The in-memory replay cache and the stateless server nonces.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use export_auth::{AuthError, MemoryReplayCache, NonceSource, ReplayCache};

#[tokio::test]
async fn a_jti_is_accepted_once_until_it_expires() {
    let cache = MemoryReplayCache::new();
    let until = Utc::now() + TimeDelta::seconds(90);
    assert!(cache.check_and_insert([1; 32], until, Utc::now()).await.unwrap());
    assert!(!cache.check_and_insert([1; 32], until, Utc::now()).await.unwrap());
    assert!(cache.check_and_insert([2; 32], until, Utc::now()).await.unwrap());
    assert_eq!(cache.len(), 2);

    let past = Utc::now() - TimeDelta::seconds(1);
    assert!(cache.check_and_insert([3; 32], past, Utc::now()).await.unwrap());
    assert!(
        cache.check_and_insert([3; 32], past, Utc::now()).await.unwrap(),
        "an expired entry no longer counts"
    );
}

#[tokio::test]
async fn expired_entries_are_dropped() {
    let cache = MemoryReplayCache::new();
    let past = Utc::now() - TimeDelta::seconds(1);
    for byte in 0..100u8 {
        cache
            .check_and_insert([byte; 32], past, Utc::now())
            .await
            .unwrap();
    }
    cache
        .check_and_insert([200; 32], Utc::now() + TimeDelta::seconds(60), Utc::now())
        .await
        .unwrap();
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn a_full_cache_refuses_rather_than_forgets() {
    let cache = MemoryReplayCache::with_capacity(2);
    let until = Utc::now() + TimeDelta::seconds(60);
    cache.check_and_insert([1; 32], until, Utc::now()).await.unwrap();
    cache.check_and_insert([2; 32], until, Utc::now()).await.unwrap();
    let error = cache
        .check_and_insert([3; 32], until, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::ReplayCache(_)), "{error}");
    assert!(!error.is_unauthenticated());
    assert!(!cache.check_and_insert([1; 32], until, Utc::now()).await.unwrap());
}

#[test]
fn a_nonce_is_valid_within_its_window_at_any_replica() {
    let window = Duration::from_secs(60);
    let replica_a = NonceSource::new(b"shared secret of at least 32 bytes!", window);
    let replica_b = NonceSource::new(b"shared secret of at least 32 bytes!", window);
    let now = Utc::now();
    let nonce = replica_a.issue(now);
    assert!(replica_b.verify(&nonce, now));
    assert!(replica_b.verify(&nonce, now + TimeDelta::seconds(60)));
    assert!(!replica_b.verify(&nonce, now + TimeDelta::seconds(61)));
    assert!(!replica_b.verify(&nonce, now - TimeDelta::seconds(61)));

    let stranger = NonceSource::random(window);
    assert!(!stranger.verify(&nonce, now));
    for garbage in ["", "abc", "!!!!", &nonce[1..]] {
        assert!(!replica_a.verify(garbage, now), "{garbage}");
    }
    assert!(!format!("{replica_a:?}").contains("shared secret"));
}

/// A verifier whose replay record began at `since` (a process start), with nonces keyed by
/// `secret`.
fn started_at(since: chrono::DateTime<Utc>, secret: &[u8]) -> crate::Setup {
    crate::Setup::build(
        export_auth::Alg::ES256,
        |config| config.replay_record_since = Some(since),
        Some(NonceSource::new(secret, Duration::from_secs(60))),
    )
}

#[tokio::test]
async fn a_proof_dated_before_the_replay_record_began_needs_a_nonce_of_this_verifier() {
    let secret = b"a secret shared by every replica!";
    // On a whole second, as `iat` is.
    let since = chrono::DateTime::from_timestamp(Utc::now().timestamp() - 5, 0).unwrap();
    let setup = started_at(since, secret);
    let token = setup.valid_token();
    let proof_at =
        |iat, nonce: Option<&str>| setup.client.proof_at("GET", crate::URL, Some(&token), nonce, iat);

    // Dated before the start: an earlier process may have accepted it.
    let before = since - TimeDelta::seconds(1);
    let error = setup.send(&token, &proof_at(before, None)).await.unwrap_err();
    assert_eq!(error.error_code(), Some("use_dpop_nonce"), "{error}");
    let nonce = error.dpop_nonce().unwrap().to_owned();

    // A valid nonce of another process with the same secret (an earlier one of this
    // server, or another replica) does not do, however recent.
    let old_nonce = NonceSource::new(secret, Duration::from_secs(60)).issue(Utc::now());
    let error = setup
        .send(&token, &proof_at(before, Some(&old_nonce)))
        .await
        .unwrap_err();
    assert_eq!(error.error_code(), Some("use_dpop_nonce"), "{error}");

    // With the nonce of the challenge it is accepted, once.
    let answered = proof_at(before, Some(&nonce));
    setup.send(&token, &answered).await.unwrap();
    let error = setup.send(&token, &answered).await.unwrap_err();
    assert_eq!(error.description(), Some("dpop proof replayed"));

    // Proofs made since the start need no nonce.
    setup.send(&token, &proof_at(since, None)).await.unwrap();
    setup.send(&token, &proof_at(Utc::now(), None)).await.unwrap();
}

#[tokio::test]
async fn verifiers_with_the_same_nonce_secret_file_accept_each_others_nonces() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::from_secs(60);
    let shared = dir.path().join("shared.key");
    let replica_a = NonceSource::load_or_create(&shared, window).unwrap();
    let replica_b = NonceSource::from_file(&shared, window).unwrap();
    let stranger = NonceSource::load_or_create(&dir.path().join("other.key"), window).unwrap();
    let now = Utc::now();
    let nonce = replica_a.issue(now);
    assert!(replica_b.verify(&nonce, now));
    assert!(!stranger.verify(&nonce, now));

    // Two verifiers that require nonces: one's challenge is the other's answer.
    let build = |nonces: NonceSource| {
        crate::Setup::build(
            export_auth::Alg::ES256,
            |config| config.require_nonce = true,
            Some(nonces),
        )
    };
    let (a, b, c) = (build(replica_a), build(replica_b), build(stranger));
    let token = a.valid_token();
    let challenge = a.send(&token, &a.proof(&token)).await.unwrap_err();
    let nonce = challenge.dpop_nonce().unwrap();
    let token_b = b.valid_token();
    let proof_b = b.client.proof("GET", crate::URL, Some(&token_b), Some(nonce));
    b.send(&token_b, &proof_b).await.unwrap();
    let token_c = c.valid_token();
    let proof_c = c.client.proof("GET", crate::URL, Some(&token_c), Some(nonce));
    let error = c.send(&token_c, &proof_c).await.unwrap_err();
    assert_eq!(error.error_code(), Some("use_dpop_nonce"), "{error}");
}

#[test]
fn a_nonce_secret_file_is_created_once_owner_only_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::from_secs(60);
    let path = dir.path().join("data/dpop-nonce.key");
    let first = NonceSource::load_or_create(&path, window).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let again = NonceSource::load_or_create(&path, window).unwrap();
    assert!(again.verify(&first.issue(Utc::now()), Utc::now()));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1,
        "no temporary files left"
    );

    // A file that is there but unusable is an error, and stays as it is.
    for (content, reason) in [
        ("not base64!", "does not hold base64"),
        ("c2hvcnQ=", "needs at least 32"),
    ] {
        std::fs::write(&path, content).unwrap();
        let error = NonceSource::load_or_create(&path, window).unwrap_err();
        assert!(error.to_string().contains(reason), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    }
    let missing = NonceSource::from_file(&dir.path().join("missing.key"), window).unwrap_err();
    assert!(matches!(missing, AuthError::Io { .. }), "{missing}");
}
