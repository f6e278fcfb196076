//! Test support for other crates (feature `testing`): a real S3-compatible server, and a
//! publisher into it.

pub use export_artifacts::testing::S3Server;

use crate::ObjectPublisher;

/// A publisher into `server`'s bucket [`S3Server::BUCKET`], under `prefix`.
pub fn object_publisher(server: &S3Server, prefix: &str) -> ObjectPublisher {
    ObjectPublisher::new(&server.settings(), S3Server::BUCKET, prefix)
        .expect("a publisher into the test S3 server")
}
