//! `Range: bytes=…` (RFC 9110 §14): which single byte range of a file of known length a
//! request asks for.
//!
//! Positions come from the client and may be as large as it likes, so every bound is
//! checked: no header and no file length can overflow, and a satisfiable range always
//! lies inside the file.

use std::ops::Range;

/// What a `Range` header asks of a file of known length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// Not one byte range this server serves (another unit, several ranges, a malformed
    /// or inverted range): RFC 9110 lets the server ignore the header and send the whole
    /// file.
    Ignored,
    /// The bytes `start..end` of the file, with `start < end <= length`: never empty and
    /// never past the end.
    Satisfiable(Range<u64>),
    /// No byte of the file is in the range: `416` with `Content-Range: bytes */<length>`.
    Unsatisfiable,
}

impl RangeRequest {
    /// Reads a `bytes=a-b`, `bytes=a-` or `bytes=-n` header for a file of `length` bytes.
    pub fn parse(header: &str, length: u64) -> Self {
        let Some((unit, spec)) = header.trim().split_once('=') else {
            return Self::Ignored;
        };
        if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
            return Self::Ignored;
        }
        let Some((first, last)) = spec.trim().split_once('-') else {
            return Self::Ignored;
        };
        match (position(first), position(last)) {
            // `bytes=-n`: the last n bytes, or the whole file when it is shorter.
            (Position::Absent, Position::Value(0)) => Self::Unsatisfiable,
            (Position::Absent, Position::Value(_)) if length == 0 => Self::Ignored,
            (Position::Absent, Position::Value(suffix)) => {
                Self::Satisfiable(length - suffix.min(length)..length)
            }
            // `bytes=a-` and `bytes=a-b`: from a to b (or the end), clamped to the file.
            (Position::Value(first), Position::Absent) => Self::from(first, u64::MAX, length),
            (Position::Value(first), Position::Value(last)) if first <= last => {
                Self::from(first, last, length)
            }
            _ => Self::Ignored,
        }
    }

    /// The bytes `first..=last` of a file of `length` bytes, with `first <= last`.
    fn from(first: u64, last: u64, length: u64) -> Self {
        if first >= length {
            return Self::Unsatisfiable;
        }
        // `length - 1` cannot underflow (`first < length`), and so `+ 1` cannot overflow.
        Self::Satisfiable(first..last.min(length - 1) + 1)
    }
}

enum Position {
    Absent,
    Value(u64),
    Malformed,
}

/// A `1*DIGIT` position. A number too large for `u64` is past the end of any file, so it
/// saturates to `u64::MAX` instead of making the range malformed.
fn position(text: &str) -> Position {
    let text = text.trim();
    if text.is_empty() {
        Position::Absent
    } else if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        Position::Malformed
    } else {
        Position::Value(text.parse().unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::RangeRequest::{self, Ignored, Satisfiable, Unsatisfiable};

    #[test]
    fn ranges_follow_rfc_9110() {
        let cases = [
            ("bytes=0-9", Satisfiable(0..10)),
            ("bytes=90-", Satisfiable(90..100)),
            ("bytes=-10", Satisfiable(90..100)),
            ("bytes=-500", Satisfiable(0..100)),
            ("bytes=50-500", Satisfiable(50..100)),
            ("Bytes = 1-1", Satisfiable(1..2)),
            ("bytes=100-", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=0-1,5-6", Ignored),
            ("items=0-1", Ignored),
            ("bytes=9-2", Ignored),
            ("bytes=+1-2", Ignored),
            ("bytes=-", Ignored),
            ("bytes=1", Ignored),
            ("bytes=5-18446744073709551615", Satisfiable(5..100)),
            ("bytes=5-99999999999999999999999999", Satisfiable(5..100)),
            ("bytes=18446744073709551615-", Unsatisfiable),
            ("bytes=99999999999999999999999999-", Unsatisfiable),
            ("bytes=-18446744073709551615", Satisfiable(0..100)),
            ("bytes=18446744073709551615-18446744073709551615", Unsatisfiable),
        ];
        for (header, expected) in cases {
            assert_eq!(RangeRequest::parse(header, 100), expected, "{header}");
        }
        assert_eq!(RangeRequest::parse("bytes=0-", 0), Unsatisfiable);
        assert_eq!(RangeRequest::parse("bytes=-5", 0), Ignored);
        assert_eq!(
            RangeRequest::parse("bytes=0-", u64::MAX),
            Satisfiable(0..u64::MAX)
        );
        assert_eq!(
            RangeRequest::parse("bytes=-18446744073709551615", u64::MAX),
            Satisfiable(0..u64::MAX)
        );
    }

    /// Lengths and positions, with the edges that overflow naive arithmetic drawn often.
    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0),
            Just(1),
            Just(u64::MAX - 1),
            Just(u64::MAX),
            0..1_000u64,
            any::<u64>(),
        ]
    }

    /// `Range` headers: well-formed ones with edge positions, near misses, and any text.
    fn header() -> impl Strategy<Value = String> {
        let position = || {
            prop_oneof![
                1 => Just(String::new()),
                3 => number().prop_map(|n| n.to_string()),
                1 => "[0-9]{19,24}",
                1 => "[+ a-z0-9-]{0,3}",
            ]
        };
        prop_oneof![
            3 => (position(), position()).prop_map(|(first, last)| format!("bytes={first}-{last}")),
            1 => "[ ]?(bytes|BYTES|items)?[ ]?=?[ ]?[0-9]{0,22}[ ]?-?[ ]?[0-9]{0,22}(,[0-9]{0,3}-[0-9]{0,3})?",
            1 => any::<String>(),
        ]
    }

    /// What RFC 9110 says `first..=last` (or `first..` when `last` is `None`) selects, worked
    /// out in 128 bits so that nothing can overflow.
    fn expected_int_range(first: u64, last: Option<u64>, length: u64) -> RangeRequest {
        let last = u128::from(last.unwrap_or(u64::MAX));
        let (first, length) = (u128::from(first), u128::from(length));
        if last < first {
            Ignored
        } else if first >= length {
            Unsatisfiable
        } else {
            let end = (last + 1).min(length);
            Satisfiable(u64::try_from(first).unwrap()..u64::try_from(end).unwrap())
        }
    }

    proptest! {
        // Parsing takes nanoseconds: many cases make the rare edges (a position of exactly
        // `u64::MAX` beside a small one) certain to come up.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn any_header_selects_bytes_inside_the_file_or_none(
            header in header(),
            length in number(),
        ) {
            if let Satisfiable(range) = RangeRequest::parse(&header, length) {
                // Then `Content-Length` (end - start) and `Content-Range`'s last byte
                // (end - 1) are computed without overflow, and name bytes of the file.
                prop_assert!(range.start < range.end, "{header}: {range:?}");
                prop_assert!(range.end <= length, "{header}: {range:?} of {length}");
            }
        }

        #[test]
        fn int_ranges_select_what_rfc_9110_says(
            first in number(),
            last in proptest::option::of(number()),
            length in number(),
        ) {
            let header = match last {
                Some(last) => format!("bytes={first}-{last}"),
                None => format!("bytes={first}-"),
            };
            prop_assert_eq!(
                RangeRequest::parse(&header, length),
                expected_int_range(first, last, length),
                "{}", header
            );
        }

        #[test]
        fn suffix_ranges_select_the_tail(suffix in number(), length in number()) {
            let expected = match (suffix, length) {
                (0, _) => Unsatisfiable,
                (_, 0) => Ignored,
                _ => Satisfiable(length - suffix.min(length)..length),
            };
            prop_assert_eq!(RangeRequest::parse(&format!("bytes=-{suffix}"), length), expected);
        }

        #[test]
        fn positions_beyond_u64_are_past_every_file(digits in "[1-9][0-9]{20,40}", length in number()) {
            prop_assert_eq!(
                RangeRequest::parse(&format!("bytes={digits}-"), length),
                Unsatisfiable
            );
            let expected = if length == 0 { Unsatisfiable } else { Satisfiable(0..length) };
            prop_assert_eq!(RangeRequest::parse(&format!("bytes=0-{digits}"), length), expected);
        }
    }
}
