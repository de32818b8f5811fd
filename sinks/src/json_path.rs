//! The one JSON path lookup: filters (`data.a.0.b`) and delivery properties (`data.a.0.b`)
//! read event data the same way.
//!
//! A path is a list of segments. On an object a segment names a member (case-sensitive; a
//! member named `0` is found by `0`); on an array it is an item's index in decimal; on anything
//! else, or when the member or item is not there, the lookup finds nothing.

use serde_json::Value;

/// The value at `path` in `value`; `value` itself for an empty path.
pub fn lookup<'v, 'p>(
    value: &'v Value,
    path: impl IntoIterator<Item = &'p str>,
) -> Option<&'v Value> {
    path.into_iter().try_fold(value, |value, segment| match value {
        Value::Object(members) => members.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn members_and_items() {
        let data = json!({
            "a": {"b": 1, "0": "member zero"},
            "list": [{"x": "first"}, [true, false]],
            "Case": 2
        });
        let find = |path: &str| lookup(&data, path.split('.').filter(|s| !s.is_empty()));
        assert_eq!(find(""), Some(&data));
        assert_eq!(find("a.b"), Some(&json!(1)));
        assert_eq!(find("a.0"), Some(&json!("member zero")), "an object member named 0");
        assert_eq!(find("list.0.x"), Some(&json!("first")));
        assert_eq!(find("list.1.1"), Some(&json!(false)));
        assert_eq!(find("list.2"), None, "past the end");
        assert_eq!(find("list.x"), None, "not an index");
        assert_eq!(find("list.-1"), None);
        assert_eq!(find("a.b.c"), None, "into a number");
        assert_eq!(find("case"), None, "member names are case-sensitive");
        assert_eq!(find("Case"), Some(&json!(2)));
    }
}
