//! Reading MQTT's primitive data types (section 1.5 of both specifications) from the body of
//! one packet.
//!
//! The reader owns the packet body as `Bytes`, so binary fields come out as slices of the
//! buffer the packet arrived in rather than as copies. Every read checks the length first: a
//! field that runs past the end of the body is a malformed packet, never a panic.

use bytes::{Buf, Bytes};

use crate::mqtt::DecodeError;

/// What a length field that points past the end of the packet is reported as.
const OVERRUN: DecodeError = DecodeError::Malformed("a field runs past the end of the packet");

/// The unread part of one packet body (or of one property block inside it).
pub(super) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(super) fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    /// How many bytes are left unread.
    pub(super) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(OVERRUN);
        }
        Ok(self.buf.get_u8())
    }

    /// A big-endian Two Byte Integer.
    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(OVERRUN);
        }
        Ok(self.buf.get_u16())
    }

    /// A big-endian Four Byte Integer.
    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(OVERRUN);
        }
        Ok(self.buf.get_u32())
    }

    /// A Variable Byte Integer: seven bits per byte, least significant group first, at most
    /// four bytes.
    pub(super) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for shift in [0, 7, 14, 21] {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("variable byte integer longer than four bytes"))
    }

    /// The next `len` bytes, as a slice of the packet buffer.
    pub(super) fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if self.buf.len() < len {
            return Err(OVERRUN);
        }
        Ok(self.buf.split_to(len))
    }

    /// Binary Data: a two-byte length, then that many bytes.
    pub(super) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    /// A UTF-8 Encoded String: a two-byte length, then well-formed UTF-8 without U+0000.
    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        let raw = self.buf.get(..len).ok_or(OVERRUN)?;
        // Validating in place and copying once into the `String` avoids a refcounted slice for
        // every topic and user property.
        let text = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)?;
        if text.contains('\0') {
            return Err(DecodeError::NullCharacter);
        }
        let text = text.to_owned();
        self.buf.advance(len);
        Ok(text)
    }

    /// Everything left, e.g. a PUBLISH payload.
    pub(super) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Succeeds only when every byte has been read: MQTT packets carry no padding.
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed("bytes left over after the packet's fields"))
        }
    }
}
