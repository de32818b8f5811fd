//! Data-plane credentials, as Event Grid accepts them on a namespace:
//!
//! - an access key, in the `aeg-sas-key` header, the `aeg-sas-key` query parameter, or as
//!   `Authorization: SharedAccessKey <key>` (what the Azure SDKs' `AzureKeyCredential` sends);
//! - a shared access signature, in the `aeg-sas-token` header or as
//!   `Authorization: SharedAccessSignature <token>`: `r=<url-encoded resource>&e=<url-encoded
//!   expiry>&s=<url-encoded signature>`, the signature being base64(HMAC-SHA256(decoded access
//!   key, "r=<url-encoded resource>&e=<url-encoded expiry>"));
//! - the management API's admin token as `Authorization: Bearer <token>`.
//!
//! A token's resource scopes it by prefix: its path (after the scheme and host, which are not
//! compared, so a token made for a proxy's public name still works, and without its query) must
//! start the request's path, compared without regard to ASCII case. The expiry is unix seconds
//! or, as Event Grid's C# sample and our own custom topic sink write it, `M/d/yyyy h:mm:ss AM`
//! in UTC; a token is refused from that instant on.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, Uri, header};
use base64::Engine as _;
// Keys and tokens are compared in constant time, so response timing does not reveal how much
// of a guess was right.
use subtle::ConstantTimeEq as _;

use super::{param, percent_decode, percent_decode_utf8};

/// What the data plane accepts as a credential.
pub(super) struct Credentials {
    /// Each access key as given (compared with `aeg-sas-key`) and decoded (the HMAC key).
    keys: Vec<(String, Vec<u8>)>,
    admin_token: Option<String>,
}

/// Why a request's credential is refused; says what is wrong without revealing anything
/// about the keys.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error("the query string is not UTF-8")]
    QueryNotUtf8,
    #[error("the bearer token is not the admin token")]
    NotTheAdminToken,
    #[error("bearer tokens need [management] with an admin token")]
    NoAdminToken,
    #[error("unsupported Authorization scheme `{0}`")]
    Scheme(String),
    #[error(
        "a credential is required: aeg-sas-key, aeg-sas-token, Authorization: SharedAccessKey \
         <key>, Authorization: SharedAccessSignature <token> or Authorization: Bearer <admin \
         token>"
    )]
    NoCredential,
    #[error("the {0} is not an access key of this namespace")]
    NotAnAccessKey(&'static str),
    #[error("the SAS token must be r=<resource>&e=<expiry>&s=<signature>")]
    TokenShape,
    #[error("the SAS token's signature is not base64")]
    SignatureNotBase64,
    #[error("the SAS token's signature does not match an access key")]
    Signature,
    #[error("the SAS token's expiry is neither unix seconds nor M/d/yyyy h:mm:ss AM")]
    Expiry,
    #[error("the SAS token has expired")]
    Expired,
    #[error("the SAS token's resource is not UTF-8")]
    ResourceNotUtf8,
    #[error("the SAS token's resource does not cover {0}")]
    Scope(String),
}

impl Credentials {
    pub(super) fn new(keys: Vec<(String, Vec<u8>)>, admin_token: Option<String>) -> Credentials {
        Credentials { keys, admin_token }
    }

    /// Whether the request to `uri` with `headers` carries a valid credential at `now`; the
    /// error says what is wrong, without revealing anything about the keys.
    pub(super) fn check(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        now: SystemTime,
    ) -> Result<(), Refused> {
        let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        if let Some(key) = text("aeg-sas-key") {
            return self.check_key(key.trim(), "aeg-sas-key header");
        }
        let params = super::query_params(uri).map_err(|_| Refused::QueryNotUtf8)?;
        if let Some(key) = param(&params, "aeg-sas-key") {
            return self.check_key(key.trim(), "aeg-sas-key query parameter");
        }
        if let Some(token) = text("aeg-sas-token") {
            return self.check_token(token.trim(), uri, now);
        }
        if let Some(authorization) = text(header::AUTHORIZATION.as_str()) {
            let (scheme, credential) =
                authorization.trim().split_once(' ').unwrap_or((authorization, ""));
            if scheme.eq_ignore_ascii_case("SharedAccessSignature") {
                return self.check_token(credential.trim(), uri, now);
            }
            if scheme.eq_ignore_ascii_case("SharedAccessKey") {
                return self.check_key(credential.trim(), "SharedAccessKey credential");
            }
            if scheme.eq_ignore_ascii_case("Bearer") {
                return match &self.admin_token {
                    Some(token)
                        if bool::from(credential.trim().as_bytes().ct_eq(token.as_bytes())) =>
                    {
                        Ok(())
                    }
                    Some(_) => Err(Refused::NotTheAdminToken),
                    None => Err(Refused::NoAdminToken),
                };
            }
            return Err(Refused::Scheme(scheme.into()));
        }
        Err(Refused::NoCredential)
    }

    fn check_key(&self, presented: &str, source: &'static str) -> Result<(), Refused> {
        if self.keys.iter().any(|(key, _)| bool::from(presented.as_bytes().ct_eq(key.as_bytes()))) {
            Ok(())
        } else {
            Err(Refused::NotAnAccessKey(source))
        }
    }

    fn check_token(&self, token: &str, uri: &Uri, now: SystemTime) -> Result<(), Refused> {
        let field = |name: &str| {
            token
                .split('&')
                .find_map(|pair| pair.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        };
        let (Some(resource), Some(expiry), Some(signature)) = (field("r"), field("e"), field("s"))
        else {
            return Err(Refused::TokenShape);
        };
        // The signature covers the resource and expiry exactly as the token carries them.
        let unsigned = format!("r={resource}&e={expiry}");
        let signature = base64::engine::general_purpose::STANDARD
            .decode(percent_decode(signature))
            .map_err(|_| Refused::SignatureNotBase64)?;
        let signed_by_a_key = self.keys.iter().any(|(_, key)| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
            ring::hmac::verify(&key, unsigned.as_bytes(), &signature).is_ok()
        });
        if !signed_by_a_key {
            return Err(Refused::Signature);
        }
        let expiry = percent_decode_utf8(expiry)
            .and_then(|text| parse_expiry(&text))
            .ok_or(Refused::Expiry)?;
        if expiry <= now {
            return Err(Refused::Expired);
        }
        let resource = percent_decode_utf8(resource).ok_or(Refused::ResourceNotUtf8)?;
        let scope = resource_path(&resource);
        if !starts_with_ignoring_case(uri.path(), scope) {
            return Err(Refused::Scope(uri.path().into()));
        }
        Ok(())
    }
}

/// The path a resource URL scopes: after `scheme://host`, before `?`; `/` for a bare host.
fn resource_path(resource: &str) -> &str {
    let without_query = resource.split(['?', '#']).next().unwrap_or_default();
    let after_scheme = match without_query.split_once("://") {
        Some((_, rest)) => rest,
        None if without_query.starts_with('/') => return without_query,
        None => without_query,
    };
    match after_scheme.find('/') {
        Some(slash) => &after_scheme[slash..],
        None => "/",
    }
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// An expiry as unix seconds, or as .NET's en-US `M/d/yyyy h:mm:ss AM` in UTC.
fn parse_expiry(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds));
    }
    let mut parts = text.split_whitespace();
    let (date, clock, meridiem) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let numbers = |text: &str, separator: char| -> Option<Vec<u32>> {
        text.split(separator).map(|n| n.parse().ok()).collect()
    };
    let (date, clock) = (numbers(date, '/')?, numbers(clock, ':')?);
    let ([month, day, year], [hour, minute, second]) = (date.as_slice(), clock.as_slice()) else {
        return None;
    };
    if !(1..=12).contains(hour) {
        return None;
    }
    let hour = match meridiem.to_ascii_uppercase().as_str() {
        "AM" => hour % 12,
        "PM" => hour % 12 + 12,
        _ => return None,
    };
    let month = time::Month::try_from(u8::try_from(*month).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(*year).ok()?, month, u8::try_from(*day).ok()?)
            .ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(*minute).ok()?,
        u8::try_from(*second).ok()?,
    )
    .ok()?;
    let at = time::PrimitiveDateTime::new(date, clock).assume_utc().unix_timestamp();
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(at).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_in_both_formats() {
        let at = |secs| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(parse_expiry("1574090019"), at(1_574_090_019));
        assert_eq!(parse_expiry("11/18/2019 3:13:39 PM"), at(1_574_090_019));
        assert_eq!(parse_expiry("11/18/2019 12:00:05 AM"), at(1_574_035_205));
        assert_eq!(parse_expiry("11/18/2019 12:00:05 PM"), at(1_574_035_205 + 12 * 3600));
        for bad in
            ["", "soon", "13/1/2019 1:00:00 PM", "11/18/2019 13:00:00 PM", "11/18/2019 1:00:00"]
        {
            assert_eq!(parse_expiry(bad), None, "{bad}");
        }
    }

    #[test]
    fn resources_scope_by_path() {
        assert_eq!(
            resource_path("https://ns.westus2-1.eventgrid.azure.net/topics/t?api-version=1"),
            "/topics/t"
        );
        assert_eq!(resource_path("https://ns.westus2-1.eventgrid.azure.net"), "/");
        assert_eq!(resource_path("ns.example/topics"), "/topics");
        assert_eq!(resource_path("/topics/t"), "/topics/t");
        assert!(starts_with_ignoring_case("/Topics/t:publish", "/topics/T"));
        assert!(!starts_with_ignoring_case("/topics", "/topics/t"));
    }
}
