//! Event Grid shared access signatures:
//! `r=<url-encoded resource>&e=<url-encoded expiry>&s=<url-encoded signature>`, where the
//! signature is base64(HMAC-SHA256(decoded access key, "r=<...>&e=<...>")).
//!
//! The expiry is written as Event Grid's own samples write it (.NET's en-US format, e.g.
//! `11/18/2019 3:13:39 PM`, in UTC), and the resource is the exact URL we post to, which the
//! token's prefix match then covers.

use std::time::SystemTime;

use base64::Engine as _;

/// A token for `resource`, signed with `key`, valid until `expires`.
pub(crate) fn token(resource: &str, key: &[u8], expires: SystemTime) -> String {
    let unsigned = format!("r={}&e={}", encode(resource), encode(&format_expiry(expires)));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let signature = ring::hmac::sign(&key, unsigned.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(signature.as_ref());
    format!("{unsigned}&s={}", encode(&signature))
}

/// `M/d/yyyy h:mm:ss AM` in UTC.
fn format_expiry(at: SystemTime) -> String {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let at = time::OffsetDateTime::UNIX_EPOCH + since;
    let hour = match at.hour() % 12 {
        0 => 12,
        hour => hour,
    };
    let meridiem = if at.hour() < 12 { "AM" } else { "PM" };
    format!(
        "{}/{}/{} {hour}:{:02}:{:02} {meridiem}",
        u8::from(at.month()),
        at.day(),
        at.year(),
        at.minute(),
        at.second()
    )
}

/// What the Azure SDKs percent-encode: every byte but letters, digits and `-_.~()*!'`.
const SDK_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'!')
    .remove(b'\'');

/// Percent-encoding as the Azure SDKs do it.
fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SDK_ENCODED).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn expiry_in_dotnet_en_us_format() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_574_090_019);
        assert_eq!(format_expiry(at), "11/18/2019 3:13:39 PM");
        let midnight = SystemTime::UNIX_EPOCH + Duration::from_secs(1_574_035_205);
        assert_eq!(format_expiry(midnight), "11/18/2019 12:00:05 AM");
    }

    #[test]
    fn token_layout_and_signature() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_574_090_019);
        let resource = "https://t.westus2-1.eventgrid.azure.net/api/events?api-version=2018-01-01";
        let token = token(resource, b"key", at);
        let expected_unsigned = "r=https%3A%2F%2Ft.westus2-1.eventgrid.azure.net%2Fapi%2Fevents%3Fapi-version%3D2018-01-01&e=11%2F18%2F2019%203%3A13%3A39%20PM";
        let (unsigned, signature) = token.split_once("&s=").unwrap();
        assert_eq!(unsigned, expected_unsigned);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key");
        let expected = base64::engine::general_purpose::STANDARD
            .encode(ring::hmac::sign(&key, expected_unsigned.as_bytes()).as_ref());
        assert_eq!(signature, encode(&expected));
    }
}
