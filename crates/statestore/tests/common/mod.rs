//! What the state store's integration tests share: building a request as a client sends it.

use bytes::Bytes;
use edgeplane_statestore::hlc::{wall_ms, Hlc};
use edgeplane_statestore::resp::encode_request;
use edgeplane_statestore::REQUEST_TOPIC;
use edgeplane_tests::codec::{Properties, Publish, QoS};

/// A QoS 1 request with a current `__ts`, answered on `response_topic`, its packet id as
/// correlation data.
pub fn request(args: &[&[u8]], packet_id: u16, response_topic: &str) -> Publish {
    let ts = Hlc {
        ms: wall_ms(),
        counter: 0,
        node: "test".into(),
    };
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: REQUEST_TOPIC.into(),
        packet_id,
        properties: Properties {
            response_topic: Some(response_topic.into()),
            correlation_data: Some(Bytes::from(packet_id.to_be_bytes().to_vec())),
            user_properties: vec![("__ts".into(), ts.to_string())],
            ..Properties::default()
        },
        payload: encode_request(args),
    }
}
