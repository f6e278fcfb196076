//! Fuzzes the download route's `Range` parser (`export_api::fuzzing::RangeRequest`): for any
//! header and any file length, a satisfiable range is never empty and ends inside the file,
//! so the `Content-Length` and `Content-Range` the handler computes from it cannot wrap.
//!
//! Input: the file length in decimal, a newline, then the header text.
#![no_main]

use export_api::fuzzing::RangeRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A header value the handler reads is visible ASCII (`HeaderValue::to_str`); any
    // UTF-8 is tried here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((length, header)) = text.split_once('\n') else {
        return;
    };
    let Ok(length) = length.parse::<u64>() else {
        return;
    };
    // The length the input names and the lengths either side of it, so that positions
    // and lengths meet at their edges (`bytes=N-` against a file of N, N+1 and N-1 bytes).
    for length in [length, length.wrapping_add(1), length.saturating_sub(1)] {
        if let RangeRequest::Satisfiable(range) = RangeRequest::parse(header, length) {
            assert!(
                range.start < range.end,
                "{header:?} of {length}: {range:?} is empty"
            );
            assert!(
                range.end <= length,
                "{header:?} of {length}: {range:?} ends past the file"
            );
            // What `content_range` computes: neither may wrap.
            let _content_length = range.end - range.start;
            let _last_byte = range.end - 1;
        }
    }
});
