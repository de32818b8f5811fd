//! DISCONNECT and AUTH (sections 3.14 and 3.15). PINGREQ and PINGRESP have no body at all, so
//! the caller's trailing-bytes check is all they need.

use super::{Reader, reason, reasons};
use crate::mqtt::codec::properties::{self, Context};
use crate::mqtt::{Auth, DecodeError, Disconnect, Packet, Properties, Protocol, ReasonCode};

/// DISCONNECT. A 3.1.1 DISCONNECT has no body; a 5.0 one may stop after the reason code, or
/// carry nothing at all, which means normal disconnection.
pub(super) fn disconnect(r: &mut Reader, version: Protocol) -> Result<Packet, DecodeError> {
    if version == Protocol::V311 {
        return Ok(Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)));
    }
    let (reason, properties) = reason_and_properties(r, reasons::DISCONNECT, Context::DISCONNECT)?;
    Ok(Packet::Disconnect(Disconnect { reason, properties }))
}

/// AUTH (5.0 only; the caller rejects it on a 3.1.1 connection).
pub(super) fn auth(r: &mut Reader) -> Result<Packet, DecodeError> {
    let (reason, properties) = reason_and_properties(r, reasons::AUTH, Context::AUTH)?;
    Ok(Packet::Auth(Auth { reason, properties }))
}

/// The optional reason code and optional properties that end DISCONNECT and AUTH.
fn reason_and_properties(
    r: &mut Reader,
    allowed: &[ReasonCode],
    ctx: Context,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::Success, Properties::default()));
    }
    let reason = reason(r, allowed)?;
    let properties = if r.is_empty() { Properties::default() } else { properties::decode(r, ctx)? };
    Ok((reason, properties))
}
