//! Feeds arbitrary bytes to the MQTT decoder for each starting state (before CONNECT, 3.1.1 and
//! 5.0), decoding packet after packet until an error or an incomplete packet. Every packet that
//! decodes is re-encoded, and the encoding must decode to the same packet: this catches panics,
//! and disagreements between the decoder and the encoder.

#![no_main]

use bytes::BytesMut;
use gateway::mqtt::{Codec, Packet, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = Codec::new(1 << 20);
    for start in [None, Some(Protocol::V311), Some(Protocol::V5)] {
        let mut buf = BytesMut::from(data);
        let mut protocol = start;
        while let Ok(Some(packet)) = codec.decode(&mut buf, protocol) {
            // A CONNECT fixes the version for the rest of the connection, as in the broker.
            let version = match &packet {
                Packet::Connect(connect) => connect.protocol,
                _ => protocol.unwrap_or(Protocol::V311),
            };
            let mut encoded = BytesMut::new();
            Codec::encode(&packet, version, &mut encoded);
            let again = codec.decode(&mut encoded, protocol);
            assert_eq!(again, Ok(Some(packet.clone())), "re-encoded packet decodes differently");
            assert!(encoded.is_empty(), "re-encoded packet has trailing bytes");
            protocol = Some(version);
        }
    }
});
