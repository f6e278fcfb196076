//! Small readers shared by the format modules: the document id, optional strings, arrays.

use serde_json::Value;

use crate::EvidenceError;

/// Longest accepted document id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The document id at `pointer`: a non-empty string of at most [`MAX_ID_BYTES`] bytes
/// without control characters. `format` names the format in error messages.
pub(crate) fn id_at(document: &Value, pointer: &str, format: &str) -> Result<String, EvidenceError> {
    let field = pointer.trim_start_matches('/').replace('/', ".");
    let error = |problem: &str| EvidenceError::new(pointer, format!("{format} id `{field}` {problem}"));
    let id = match document.pointer(pointer) {
        None => {
            return Err(EvidenceError::new(
                pointer,
                format!("missing {format} id `{field}`"),
            ))
        }
        Some(Value::String(id)) if !id.is_empty() => id,
        Some(_) => return Err(error("must be a non-empty string")),
    };
    if id.len() > MAX_ID_BYTES {
        return Err(error(&format!("is longer than {MAX_ID_BYTES} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(error("contains a control character"));
    }
    Ok(id.clone())
}

/// The string at `pointer`, if there is one.
pub(crate) fn string_at(document: &Value, pointer: &str) -> Option<String> {
    document
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The elements of `value` when it is an array, nothing otherwise.
pub(crate) fn array(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// `value` as an alias: a non-empty string.
pub(crate) fn alias(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn id_must_be_a_short_printable_string() {
        let document = json!({"a": {"id": "GO-2020-0001"}, "n": 7, "e": "", "c": "x\u{85}y"});
        assert_eq!(id_at(&document, "/a/id", "OSV").unwrap(), "GO-2020-0001");
        let error = id_at(&document, "/a/missing", "OSV").unwrap_err();
        assert_eq!(
            (error.pointer.as_str(), error.reason.as_str()),
            ("/a/missing", "missing OSV id `a.missing`")
        );
        for (pointer, problem) in [
            ("/n", "must be a non-empty string"),
            ("/e", "must be a non-empty string"),
            ("/c", "contains a control character"),
        ] {
            let error = id_at(&document, pointer, "OSV").unwrap_err();
            assert_eq!(error.pointer, pointer);
            assert!(error.reason.ends_with(problem), "{}", error.reason);
        }
        let longest = "é".repeat(MAX_ID_BYTES / 2);
        assert_eq!(
            id_at(&json!({ "id": longest }), "/id", "policy").unwrap(),
            longest
        );
        let error = id_at(&json!({ "id": format!("{longest}x") }), "/id", "policy").unwrap_err();
        assert_eq!(error.reason, "policy id `id` is longer than 256 bytes");
    }

    #[test]
    fn aliases_are_non_empty_strings() {
        let document = json!({"list": ["A", "", 3, null]});
        let found: Vec<_> = array(document.get("list"))
            .iter()
            .filter_map(|v| alias(Some(v)))
            .collect();
        assert_eq!(found, ["A"]);
        assert!(array(document.get("nothing")).is_empty());
    }
}
