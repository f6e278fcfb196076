//! Where the issuer's keys come from: a fixed set, a file (the air-gapped default) or a URL
//! fetched with a cache TTL and a rate-limited refetch on unknown `kid` (key rotation).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use crate::error::AuthError;
use crate::jwk::{Jwks, PublicJwk};

/// Largest JWKS document read from a file or URL.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Looks up the issuer's public keys by `kid`.
#[async_trait]
pub trait JwksSource: Send + Sync {
    /// The key named `kid`, `None` if the issuer has no such key; `Err` only when the keys
    /// could not be had at all.
    async fn key(&self, kid: &str) -> Result<Option<Arc<PublicJwk>>, AuthError>;
}

#[async_trait]
impl JwksSource for Jwks {
    async fn key(&self, kid: &str) -> Result<Option<Arc<PublicJwk>>, AuthError> {
        Ok(self.get(kid))
    }
}

/// A JWKS read from a file at startup; [`FileJwks::reload`] rereads it, and with
/// [`FileJwks::with_change_check`] lookups reread it when it has changed.
#[derive(Debug)]
pub struct FileJwks {
    path: PathBuf,
    jwks: RwLock<Arc<Jwks>>,
    check: Option<ChangeCheck>,
}

/// How often a lookup looks at the file's modification time and size, and what they were.
#[derive(Debug)]
struct ChangeCheck {
    interval: Duration,
    state: Mutex<(Instant, Option<FileStamp>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
    })
}

impl FileJwks {
    /// Reads the JWKS at `path`; fails if it cannot be read or has no usable key.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, AuthError> {
        let path = path.into();
        let jwks = read_jwks_file(&path)?;
        Ok(Self {
            path,
            jwks: RwLock::new(Arc::new(jwks)),
            check: None,
        })
    }

    /// Makes lookups check, at most once per `interval`, whether the file changed, and
    /// reread it if so: a key removed from the file stops verifying tokens within
    /// `interval`, without a restart. A file that cannot be read or parsed leaves the keys
    /// as they were (and is logged).
    pub fn with_change_check(mut self, interval: Duration) -> Self {
        // The stamp is taken after the first read, so a change between the two is seen
        // one interval late at worst, never missed for good: any later write changes it.
        let stamp = file_stamp(&self.path);
        self.check = Some(ChangeCheck {
            interval,
            state: Mutex::new((Instant::now(), stamp)),
        });
        self
    }

    /// Rereads the file if the change check is due and the file changed. The `stat` (and
    /// the rare reread of a file of at most 1 MiB) runs inline: once per interval, it costs
    /// less than handing it to a blocking thread on every lookup.
    fn reload_if_changed(&self) {
        let Some(check) = &self.check else {
            return;
        };
        // Whoever holds the lock is checking already; the others go on with the keys
        // they have.
        let Ok(mut state) = check.state.try_lock() else {
            return;
        };
        let (checked_at, stamp) = &mut *state;
        if checked_at.elapsed() < check.interval {
            return;
        }
        *checked_at = Instant::now();
        let current = file_stamp(&self.path);
        if current == *stamp {
            return;
        }
        match self.reload() {
            Ok(count) => {
                *stamp = current;
                tracing::info!(
                    keys = count,
                    "reread the changed jwks file {}",
                    self.path.display()
                );
            }
            Err(error) => {
                tracing::warn!(error = %error, "the jwks file changed but cannot be used; keeping the keys read before")
            }
        }
    }

    /// Rereads the file and swaps the keys in; on failure the old keys stay. Returns the
    /// number of usable keys.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let jwks = read_jwks_file(&self.path)?;
        let count = jwks.len();
        *self.jwks.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(jwks);
        Ok(count)
    }

    /// The file the keys come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys as last read.
    pub fn jwks(&self) -> Arc<Jwks> {
        self.jwks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

fn read_jwks_file(path: &Path) -> Result<Jwks, AuthError> {
    let bytes = std::fs::read(path).map_err(|source| AuthError::io("reading jwks file", path, source))?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(AuthError::Jwks(format!(
            "jwks file {} is larger than 1 MiB",
            path.display()
        )));
    }
    let jwks = Jwks::from_json(&bytes)?;
    if jwks.is_empty() {
        return Err(AuthError::Jwks(format!(
            "jwks file {} has no usable key",
            path.display()
        )));
    }
    Ok(jwks)
}

#[async_trait]
impl JwksSource for FileJwks {
    async fn key(&self, kid: &str) -> Result<Option<Arc<PublicJwk>>, AuthError> {
        self.reload_if_changed();
        Ok(self.jwks().get(kid))
    }
}

/// A JWKS fetched over HTTP(S). Keys are kept for `ttl`; an unknown `kid` triggers a
/// refetch (the issuer may have rotated), at most once per `min_refetch_interval`, so a
/// flood of made-up `kid`s cannot turn into a flood of fetches. When a refetch fails, the
/// keys already known keep being used. Not for sealed mode (SPEC §11).
#[derive(Debug)]
pub struct UrlJwks {
    url: reqwest::Url,
    client: reqwest::Client,
    ttl: Duration,
    min_refetch_interval: Duration,
    state: RwLock<FetchState>,
    /// Held while fetching, so concurrent misses share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct FetchState {
    jwks: Arc<Jwks>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

impl UrlJwks {
    /// Default minimum time between two fetches.
    pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

    /// A source for the JWKS at `url` (`http` or `https`), cached for `ttl`. Nothing is
    /// fetched until the first lookup or [`UrlJwks::refresh`].
    pub fn new(url: &str, ttl: Duration) -> Result<Self, AuthError> {
        let url =
            reqwest::Url::parse(url).map_err(|_| AuthError::Config("jwks url is not a valid url".into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AuthError::Config("jwks url is not http or https".into()));
        }
        let client = Self::client(None)?;
        Ok(Self {
            url,
            client,
            ttl,
            min_refetch_interval: Self::DEFAULT_MIN_REFETCH_INTERVAL,
            state: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// Fetches through the HTTP proxy at `proxy_url` (the server's egress proxy, which
    /// checks every connection, redirects included, against the egress rules).
    pub fn with_proxy(mut self, proxy_url: &str) -> Result<Self, AuthError> {
        self.client = Self::client(Some(proxy_url))?;
        Ok(self)
    }

    fn client(proxy_url: Option<&str>) -> Result<reqwest::Client, AuthError> {
        export_egress::install_crypto_provider();
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(proxy_url) = proxy_url {
            let proxy = reqwest::Proxy::all(proxy_url)
                .map_err(|_| AuthError::Config("the jwks proxy url is not a valid url".into()))?;
            builder = builder.proxy(proxy);
        }
        builder
            .build()
            .map_err(|error| AuthError::Config(format!("building the jwks http client: {error}")))
    }

    /// The `host[:port]` the keys are fetched from.
    pub fn authority(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// Uses `client` for fetches (for proxies or extra root certificates).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// Sets the minimum time between two fetches (default 30 s).
    pub fn with_min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// Fetches the JWKS now (at startup, or for a readiness check); returns the number of
    /// usable keys. The rate limit does not apply.
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        let _fetching = self.fetching.lock().await;
        self.fetch_and_store().await
    }

    /// The keys as last fetched (empty before the first successful fetch).
    pub fn jwks(&self) -> Arc<Jwks> {
        self.read_state(|state| state.jwks.clone())
    }

    fn read_state<T>(&self, read: impl FnOnce(&FetchState) -> T) -> T {
        read(&self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// What a lookup can answer without fetching: `Some(answer)`, or `None` if it must fetch.
    fn answer_from_cache(&self, kid: &str) -> Option<Result<Option<Arc<PublicJwk>>, AuthError>> {
        self.read_state(|state| {
            let fresh = state.fetched_at.is_some_and(|at| at.elapsed() < self.ttl);
            let key = state.jwks.get(kid);
            if fresh && key.is_some() {
                return Some(Ok(key));
            }
            let recently_attempted = state
                .attempted_at
                .is_some_and(|at| at.elapsed() < self.min_refetch_interval);
            if !recently_attempted {
                return None;
            }
            if state.fetched_at.is_none() {
                return Some(Err(AuthError::Jwks("jwks url could not be fetched".into())));
            }
            Some(Ok(key))
        })
    }

    async fn fetch_and_store(&self) -> Result<usize, AuthError> {
        let fetched = self.fetch().await;
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.attempted_at = Some(Instant::now());
        let jwks = fetched?;
        let count = jwks.len();
        state.jwks = Arc::new(jwks);
        state.fetched_at = state.attempted_at;
        Ok(count)
    }

    async fn fetch(&self) -> Result<Jwks, AuthError> {
        let failed =
            |error: reqwest::Error| AuthError::Jwks(format!("fetching jwks: {}", error.without_url()));
        let mut response = self.client.get(self.url.clone()).send().await.map_err(failed)?;
        if !response.status().is_success() {
            return Err(AuthError::Jwks(format!(
                "fetching jwks: http status {}",
                response.status()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(AuthError::Jwks("fetched jwks is larger than 1 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Jwks::from_json(&body)
    }
}

#[async_trait]
impl JwksSource for UrlJwks {
    async fn key(&self, kid: &str) -> Result<Option<Arc<PublicJwk>>, AuthError> {
        if let Some(answer) = self.answer_from_cache(kid) {
            return answer;
        }
        let _fetching = self.fetching.lock().await;
        // Another lookup may have fetched while this one waited.
        if let Some(answer) = self.answer_from_cache(kid) {
            return answer;
        }
        match self.fetch_and_store().await {
            Ok(_) => Ok(self.jwks().get(kid)),
            Err(error) => {
                let known = self.read_state(|state| state.fetched_at.is_some());
                if !known {
                    return Err(error);
                }
                tracing::warn!(error = %error, "refetching the jwks failed; using the keys fetched before");
                Ok(self.jwks().get(kid))
            }
        }
    }
}
