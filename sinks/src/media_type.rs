//! Media types (`Content-Type` values) as CloudEvents reads them: the one place that decides
//! whether data is JSON, for the MQTT routing, the HTTP APIs and the sinks alike.
//!
//! The rule is the CloudEvents JSON event format's (1.0.2, section 3.1), which Event Grid
//! implements: a content type declares JSON when its media type, stripped of parameters and
//! compared case-insensitively, has the form `*/json` or `*/*+json`. So `application/json`,
//! `text/json`, `application/geo+json` and `Application/JSON; charset=utf-8` are JSON;
//! `text/plain` and `application/jsonl` are not.

/// The media type of a content type: lowercased, without parameters or surrounding spaces
/// (`Application/JSON; charset=utf-8` is `application/json`).
pub fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Whether data of `content_type` is JSON, by the rule in the module documentation.
pub fn is_json(content_type: &str) -> bool {
    let essence = essence(content_type);
    let Some((_, subtype)) = essence.split_once('/') else { return false };
    subtype == "json" || subtype.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn essence_drops_parameters_and_case() {
        assert_eq!(essence(" Application/JSON ; charset=utf-8"), "application/json");
        assert_eq!(essence("text/plain"), "text/plain");
        assert_eq!(essence(""), "");
    }

    #[test]
    fn json_media_types() {
        for json in [
            "application/json",
            "text/json",
            "Text/JSON",
            "application/json; charset=utf-8",
            "application/geo+json",
            "application/cloudevents+json; charset=utf-8",
        ] {
            assert!(is_json(json), "{json}");
        }
        for other in
            ["text/plain", "application/octet-stream", "application/jsonl", "json", "", "+json"]
        {
            assert!(!is_json(other), "{other}");
        }
    }
}
