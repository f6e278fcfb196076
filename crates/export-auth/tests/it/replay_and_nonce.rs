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
