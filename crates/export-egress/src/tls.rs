//! The one TLS stack of every outbound client: rustls over `ring`, trusting the operating
//! system's store.

/// Makes `ring` the process's rustls crypto provider; a provider installed earlier is kept.
///
/// The workspace builds reqwest 0.13 with `rustls-no-provider`, so that `aws-lc-rs` is not
/// linked beside the `ring` that sqlx's TLS already uses. Such a reqwest takes the process's
/// provider whenever a client is built, and panics if none is installed; so do the clients
/// that `oci-client` and `object_store` build for themselves. Every constructor of ours that
/// builds an HTTP client calls this first, as do both binaries' `main`.
pub fn install_crypto_provider() {
    // `Err` only says that a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
