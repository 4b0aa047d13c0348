//! Arbitrary bytes into `decode`, as a stream, for both protocol versions. Decoding must
//! never panic; every packet it yields must survive `encode` → `decode` unchanged, take no
//! more bytes than it came from, and encode to exactly `encoded_len` bytes. A failure here
//! is an encoder/decoder disagreement or a decoder that accepts what it cannot re-encode.

#![no_main]

use bytes::BytesMut;
use edgeplane_codec::{decode, encode, encoded_len, Packet, ProtocolVersion};
use libfuzzer_sys::fuzz_target;

/// Large enough never to refuse an input libFuzzer generates, small enough to exercise the
/// size check on hostile remaining lengths.
const MAX_PACKET_SIZE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, MAX_PACKET_SIZE) {
                Ok(Some(packet)) => round_trip(&packet, version, before - buf.len()),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) must consume nothing");
                    break;
                }
                Err(_) => break,
            }
        }
    }
});

fn round_trip(packet: &Packet, version: ProtocolVersion, consumed: usize) {
    let mut wire = BytesMut::new();
    encode(packet, version, &mut wire);
    assert_eq!(
        wire.len(),
        encoded_len(packet, version),
        "encoded_len disagrees with encode"
    );
    assert!(
        wire.len() <= consumed,
        "re-encoding grew {consumed} bytes to {}",
        wire.len()
    );

    let mut again = wire.clone();
    let decoded = match decode(&mut again, version, MAX_PACKET_SIZE) {
        Ok(Some(p)) => p,
        other => panic!(
            "re-encoded {} does not decode: {other:?}\n{packet:?}",
            packet.name()
        ),
    };
    assert!(
        again.is_empty(),
        "{} bytes left after re-decoding",
        again.len()
    );
    assert_eq!(&decoded, packet, "round trip changed the packet");

    let mut canonical = BytesMut::new();
    encode(&decoded, version, &mut canonical);
    assert_eq!(canonical, wire, "encoding is not stable");
}
