//! `Links`: the one place download links are made (SPEC §9.1, §9.3). Every answer that
//! hands out a link (run status, distributions, event streams) asks it, so the link
//! window, the retention cap, the key and the base URL are decided once.
//!
//! A link made at `now` expires at `now + server.link_lifetime` rounded up to the next
//! 5-minute boundary and never past the run's retention (`link_expiry`): reads inside one
//! window get identical links, which is what makes status and distribution bodies
//! cacheable. Links are this service's HMAC-signed URLs, except the links of an `object`
//! distribution, which are the bucket's own presigned URLs (at most 7 days).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use export_core::{Clock, RunId};
use export_distribution::{link_expiry, presigned_link_expiry, ObjectPublisher, UrlSigner};

use crate::state::{ApiConfig, AppState};

/// Signs download links; cheap to clone (shared parts only), so an event stream's
/// renderer keeps one.
#[derive(Clone)]
pub(crate) struct Links {
    clock: Arc<dyn Clock>,
    urls: Arc<UrlSigner>,
    config: Arc<ApiConfig>,
}

impl Links {
    pub(crate) fn new(app: &AppState) -> Self {
        Self {
            clock: app.clock.clone(),
            urls: app.urls.clone(),
            config: app.config.clone(),
        }
    }

    /// The links of run `run_id` as of now, capped at its retention end.
    pub(crate) fn for_run<'a>(
        &'a self,
        run_id: &'a RunId,
        retention_end: Option<DateTime<Utc>>,
    ) -> LinkWindow<'a> {
        self.for_run_at(run_id, retention_end, self.clock.now())
    }

    /// The links of run `run_id` as of `now`, capped at its retention end.
    pub(crate) fn for_run_at<'a>(
        &'a self,
        run_id: &'a RunId,
        retention_end: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> LinkWindow<'a> {
        let lifetime =
            chrono::Duration::from_std(self.config.link_lifetime).unwrap_or(chrono::Duration::hours(6));
        LinkWindow {
            links: self,
            run_id,
            now,
            expires: link_expiry(now, lifetime, retention_end),
            bucket: None,
        }
    }
}

/// The links of one run for one link window.
pub(crate) struct LinkWindow<'a> {
    links: &'a Links,
    run_id: &'a RunId,
    now: DateTime<Utc>,
    expires: DateTime<Utc>,
    bucket: Option<&'a ObjectPublisher>,
}

impl<'a> LinkWindow<'a> {
    /// The same links presigned by `bucket` (an `object` distribution): they expire when
    /// the bucket's presigned URLs stop working.
    pub(crate) fn presigned_by(mut self, bucket: &'a ObjectPublisher) -> Self {
        self.expires = presigned_link_expiry(self.now, self.expires);
        self.bucket = Some(bucket);
        self
    }

    /// When every link of this window expires.
    pub(crate) fn expires(&self) -> DateTime<Utc> {
        self.expires
    }

    /// The absolute link to output `path` of the run.
    pub(crate) fn url(&self, path: &str) -> String {
        match self.bucket {
            Some(bucket) => bucket.presign_get(self.run_id, path, self.now, self.expires),
            None => format!(
                "{}{}",
                self.links.config.public_base_url,
                self.links.urls.sign(self.run_id, path, self.expires)
            ),
        }
    }
}
