//! Writing MQTT's primitive data types, and their encoded lengths.
//!
//! Each writer has a matching `*_len` so that a packet's remaining length can be computed before
//! anything is written; the buffer is then reserved once and filled in one pass.

use bytes::{BufMut, BytesMut};

/// The largest value a Variable Byte Integer can hold (four bytes of seven bits).
pub(super) const VARINT_MAX: u32 = 268_435_455;

/// Strings and binary data carry a 16-bit length, so longer values are cut to this size rather
/// than letting the length prefix disagree with the bytes that follow it.
const FIELD_MAX: usize = u16::MAX as usize;

/// How many bytes `write_varint` uses for `value`.
pub(super) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a Variable Byte Integer. Values above `VARINT_MAX` cannot be represented; the caller
/// keeps packets below that size.
pub(super) fn write_varint(buf: &mut BytesMut, value: usize) {
    let mut value = value;
    loop {
        // The mask keeps the cast lossless.
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// The encoded length of a string or binary field, length prefix included.
pub(super) fn field_len(data: &[u8]) -> usize {
    2 + data.len().min(FIELD_MAX)
}

/// Writes Binary Data (or the bytes of a UTF-8 string): a two-byte length, then the bytes.
pub(super) fn write_field(buf: &mut BytesMut, data: &[u8]) {
    let len = data.len().min(FIELD_MAX);
    // `len` is at most `u16::MAX`, so the cast is lossless.
    buf.put_u16(len as u16);
    buf.put_slice(&data[..len]);
}

/// Writes the fixed header: the type-and-flags byte and the remaining length.
pub(super) fn write_header(buf: &mut BytesMut, first: u8, remaining: usize) {
    buf.reserve(1 + varint_len(remaining) + remaining);
    buf.put_u8(first);
    write_varint(buf, remaining);
}

/// The size of a whole packet whose body is `remaining` bytes long.
pub(super) fn packet_len(remaining: usize) -> usize {
    1 + varint_len(remaining) + remaining
}
