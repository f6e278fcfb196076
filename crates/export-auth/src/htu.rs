//! The DPoP `htu` comparison (RFC 9449 §4.3): URLs without query and fragment, after
//! syntax- and scheme-based normalization (RFC 3986 §6.2.2, §6.2.3).

/// Normalizes an absolute `http(s)` URL for `htu` comparison: scheme and host lowercased,
/// default port removed, dot segments resolved, empty path made `/`, query and fragment
/// dropped. `None` if it is not an absolute `http(s)` URL with a host, or carries userinfo.
pub fn normalize_htu(url: &str) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    Some(url.into())
}

/// The public URL of a request, as a client outside every proxy sees it: the configured
/// public base URL (scheme, host, optional port and path prefix, e.g.
/// `https://gateway.example.com/tools`) followed by the path the service received
/// (`/export-center/runs`). Any query or fragment on `request_path` is dropped.
pub fn public_request_url(public_base_url: &str, request_path: &str) -> String {
    let path = request_path.split(['?', '#']).next().unwrap_or_default();
    let base = public_base_url.trim_end_matches('/');
    if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}
