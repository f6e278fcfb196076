//! Reads the bytes of a document into a `serde_json::Value`: JSON when they start with
//! `{`, YAML otherwise.
//!
//! Plain `serde_json::Value` parsing keeps the last of two equal keys and turns YAML's
//! `.nan` into `null`, so the stored canonical document would silently differ from what
//! another reader sees. RFC 8785 only defines canonical JSON for I-JSON, so both are
//! rejected here, with the JSON pointer of the offending value.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::EvidenceError;

/// What a document was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Json,
    Yaml,
}

pub(crate) fn read(bytes: &[u8]) -> Result<(Value, Syntax), EvidenceError> {
    // A UTF-8 byte order mark may precede JSON (RFC 8259 §8.1) and YAML alike.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let Some(&first) = bytes.iter().find(|byte| !byte.is_ascii_whitespace()) else {
        return Err(EvidenceError::whole("empty document"));
    };
    let problem = RefCell::new(None);
    let reader = Reader {
        path: Path::Root,
        problem: &problem,
    };
    let syntax = if first == b'{' { Syntax::Json } else { Syntax::Yaml };
    let parsed = if syntax == Syntax::Yaml {
        reader
            .deserialize(serde_yaml_ng::Deserializer::from_slice(bytes))
            .map_err(|err| format!("not JSON (does not start with `{{`) and not valid YAML: {err}"))
    } else {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        reader
            .deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value))
            .map_err(|err| format!("invalid JSON: {err}"))
    };
    match parsed {
        Ok(value) => Ok((value, syntax)),
        Err(reason) => Err(EvidenceError::new(problem.take().unwrap_or_default(), reason)),
    }
}

/// Where a value is in the document: a chain of keys and indexes up to the root, kept
/// on the stack while the value is read and written out as a JSON pointer only when a
/// value is refused, so valid documents never pay for pointers.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// The RFC 6901 pointer to this value.
    fn pointer(&self) -> String {
        match *self {
            Path::Root => String::new(),
            Path::Key(parent, key) => {
                format!(
                    "{}/{}",
                    parent.pointer(),
                    key.replace('~', "~0").replace('/', "~1")
                )
            }
            Path::Index(parent, idx) => format!("{}/{idx}", parent.pointer()),
        }
    }
}

/// Builds a `Value` like serde_json's own visitor, knowing where in the document it is.
struct Reader<'a> {
    path: Path<'a>,
    /// Where the value this reader refused is, for the error.
    problem: &'a RefCell<Option<String>>,
}

impl<'a> Reader<'a> {
    fn child<'b>(&'b self, path: Path<'b>) -> Reader<'b> {
        Reader {
            path,
            problem: self.problem,
        }
    }

    fn refuse<E: de::Error>(&self, path: Path<'_>, reason: &str) -> E {
        *self.problem.borrow_mut() = Some(path.pointer());
        E::custom(reason)
    }
}

impl<'de> DeserializeSeed<'de> for Reader<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reader<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        match Number::from_f64(value) {
            Some(number) => Ok(Value::Number(number)),
            None => Err(self.refuse(self.path, "numbers must be finite (no NaN or infinity)")),
        }
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child(Path::Index(&self.path, items.len())))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = Path::Key(&self.path, &key);
            if object.contains_key(&key) {
                return Err(self.refuse(path, &format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(self.child(path))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_of(bytes: &[u8]) -> EvidenceError {
        read(bytes).expect_err("document should be rejected")
    }

    #[test]
    fn reads_json_and_yaml_alike() {
        let (json, json_syntax) = read(br#"{"a": [1, -2, 2.5, true, null, "x"], "b": {"c": {}}}"#).unwrap();
        let (yaml, yaml_syntax) = read(b"a: [1, -2, 2.5, true, null, x]\nb:\n  c: {}\n").unwrap();
        assert_eq!((json_syntax, yaml_syntax), (Syntax::Json, Syntax::Yaml));
        assert_eq!(json, json!({"a": [1, -2, 2.5, true, null, "x"], "b": {"c": {}}}));
        assert_eq!(yaml, json);
        assert_eq!(
            read(b"\xef\xbb\xbf {\"a\": 1}").unwrap(),
            (json!({"a": 1}), Syntax::Json)
        );
    }

    #[test]
    fn duplicate_keys_are_rejected_where_they_are() {
        let error = error_of(br#"{"statements": [{"status": "fixed", "status": "affected"}]}"#);
        assert_eq!(error.pointer, "/statements/0/status");
        assert!(
            error
                .reason
                .starts_with("invalid JSON: duplicate key `status` at line 1"),
            "{error}"
        );
        let error = error_of(b"id: a\nrules:\n  a/b~: 1\n  a/b~: 2\n");
        assert_eq!(error.pointer, "/rules/a~1b~0");
        assert!(error.reason.contains("duplicate key `a/b~`"), "{error}");
    }

    #[test]
    fn non_finite_numbers_are_rejected() {
        let error = error_of(b"id: x\nlimits: [1, .nan]\n");
        assert_eq!(error.pointer, "/limits/1");
        assert!(error.reason.contains("numbers must be finite"), "{error}");
    }

    #[test]
    fn pointers_name_every_key_and_index_on_the_way() {
        let error = error_of(b"id: x\n\"a/b\":\n  - 0\n  - \"c~\": [1, .inf]\n");
        assert_eq!(error.pointer, "/a~1b/1/c~0/1");
        let error = error_of(br#"{"a": [{}, {"b": [[], [{"c": 1, "c": 2}]]}]}"#);
        assert_eq!(error.pointer, "/a/1/b/1/0/c");
    }

    #[test]
    fn syntax_errors_have_no_pointer() {
        let error = error_of(b"{\"a\": 1} x");
        assert_eq!(error.pointer, "");
        assert_eq!(
            error.reason,
            "invalid JSON: trailing characters at line 1 column 10"
        );
    }
}
