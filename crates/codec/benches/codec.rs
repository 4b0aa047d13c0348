//! Microbenchmarks of the MQTT codec: decoding and encoding the packets of the hot path.
//!
//! `cargo bench -p edgeplane-codec` (criterion; results in `target/criterion/`).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use edgeplane_codec::{
    decode, encode, Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
};

fn publish(qos: QoS, payload: usize, v5: bool) -> Publish {
    let mut properties = Properties::default();
    if v5 {
        properties.message_expiry_interval = Some(60);
        properties.user_properties = vec![("line".into(), "7".into())];
        properties.content_type = Some("application/json".into());
    }
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: "factory/line7/press/temperature".into(),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 42 },
        properties,
        payload: Bytes::from(vec![b'x'; payload]),
    }
}

fn encoded(p: &Packet, v: ProtocolVersion) -> Bytes {
    let mut out = BytesMut::new();
    encode(p, v, &mut out);
    out.freeze()
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    let cases = [
        (
            "publish_qos0_64B_v311",
            Packet::Publish(publish(QoS::AtMostOnce, 64, false)),
            ProtocolVersion::V311,
        ),
        (
            "publish_qos1_64B_v311",
            Packet::Publish(publish(QoS::AtLeastOnce, 64, false)),
            ProtocolVersion::V311,
        ),
        (
            "publish_qos1_64B_v5_props",
            Packet::Publish(publish(QoS::AtLeastOnce, 64, true)),
            ProtocolVersion::V5,
        ),
        (
            "publish_qos1_4KB_v311",
            Packet::Publish(publish(QoS::AtLeastOnce, 4096, false)),
            ProtocolVersion::V311,
        ),
        (
            "puback_v5",
            Packet::PubAck(Ack::new(42, ReasonCode::SUCCESS)),
            ProtocolVersion::V5,
        ),
        (
            "connect_v5",
            Packet::Connect(Box::new(Connect {
                protocol: ProtocolVersion::V5,
                clean_start: true,
                keep_alive: 60,
                client_id: "press-7-controller".into(),
                will: None,
                username: Some("line7".into()),
                password: Some(Bytes::from_static(b"secret")),
                properties: Properties::default(),
            })),
            ProtocolVersion::V5,
        ),
    ];
    for (name, packet, v) in cases {
        let bytes = encoded(&packet, v);
        g.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&bytes[..]),
                |mut buf| black_box(decode(&mut buf, v, usize::MAX)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let cases = [
        (
            "publish_qos0_64B_v311",
            publish(QoS::AtMostOnce, 64, false),
            ProtocolVersion::V311,
        ),
        (
            "publish_qos1_64B_v5_props",
            publish(QoS::AtLeastOnce, 64, true),
            ProtocolVersion::V5,
        ),
        (
            "publish_qos1_4KB_v311",
            publish(QoS::AtLeastOnce, 4096, false),
            ProtocolVersion::V311,
        ),
    ];
    for (name, p, v) in cases {
        let packet = Packet::Publish(p);
        let mut out = BytesMut::with_capacity(64 * 1024);
        g.bench_function(name, |b| {
            b.iter(|| {
                // A connection's write buffer: appended to, cleared once written.
                if out.len() > 60 * 1024 {
                    out.clear();
                }
                encode(black_box(&packet), v, &mut out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
