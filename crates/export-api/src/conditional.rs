//! Conditional GET: the one reading of `If-None-Match` (RFC 9110 §13.1.2), used by
//! downloads and distributions.
//!
//! The header is a list of entity tags, in one or several header lines, or `*`; it
//! matches when any tag equals the current one by the weak comparison (RFC 9110
//! §8.8.3.2: `W/` ignored, the quoted opaque tags compared byte for byte), or when it is
//! `*` (these resources always have a current representation). A malformed header is
//! ignored: the answer is the full one. Parsing is `headers`' `IfNoneMatch` (hyperium),
//! which keeps commas inside quoted tags.

use axum::http::HeaderMap;
use headers::{ETag, HeaderMapExt, IfNoneMatch};

/// Whether the request's `If-None-Match` matches `etag` (a quoted entity tag such as
/// `"sha256:…"`), so that the answer is `304 Not Modified`.
pub(crate) fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    let Ok(current) = etag.parse::<ETag>() else {
        return false;
    };
    request
        .typed_get::<IfNoneMatch>()
        .is_some_and(|condition| !condition.precondition_passes(&current))
}

#[cfg(test)]
mod tests {
    use axum::http::header::IF_NONE_MATCH;
    use axum::http::HeaderValue;

    use super::*;

    const ETAG: &str = "\"sha256:ab,cd\"";

    fn matches(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        }
        not_modified(&headers, ETAG)
    }

    #[test]
    fn the_current_tag_matches_strong_or_weak() {
        assert!(matches(&["\"sha256:ab,cd\""]));
        assert!(matches(&["W/\"sha256:ab,cd\""]), "weak comparison ignores W/");
    }

    #[test]
    fn any_tag_of_a_list_or_of_several_lines_matches() {
        assert!(matches(&["\"other\", \"sha256:ab,cd\""]));
        assert!(matches(&["\"other\",W/\"sha256:ab,cd\" , \"third\""]));
        assert!(
            matches(&["\"other\"", "\"sha256:ab,cd\""]),
            "several header lines"
        );
    }

    #[test]
    fn a_star_matches_any_current_representation() {
        assert!(matches(&["*"]));
    }

    #[test]
    fn other_tags_absent_or_malformed_headers_do_not_match() {
        assert!(!matches(&[]));
        assert!(!matches(&["\"other\""]));
        assert!(
            !matches(&["\"sha256:ab\""]),
            "a comma inside a tag does not split it"
        );
        assert!(!matches(&["sha256:ab,cd"]), "an unquoted tag is malformed");
        assert!(
            !matches(&["\"SHA256:AB,CD\""]),
            "opaque tags compare byte for byte"
        );
        assert!(
            !matches(&["w/\"sha256:ab,cd\""]),
            "the weak prefix is case-sensitive"
        );
    }
}
