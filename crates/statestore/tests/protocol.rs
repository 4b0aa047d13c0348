//! The state store protocol byte for byte, driven by in-process MQTT clients against a live
//! broker: replies, error texts, `__ts` versions, notification topics and payloads, quotas,
//! SCAN paging, registrations dropped on disconnect, and the typed in-process API.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use edgeplane_broker::message::Message;
use edgeplane_broker::{LocalClient, LocalOptions};
use edgeplane_statestore::hlc::{wall_ms, Hlc};
use edgeplane_statestore::resp::encode_request;
use edgeplane_statestore::{
    notification_topic, SetOptions, StateStore, StateStoreHandle, StateStoreSettings, Written,
    REQUEST_TOPIC,
};
use edgeplane_tests::codec::{Properties, Publish, QoS, SubOptions};
use edgeplane_tests::TestBroker;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

struct Harness {
    broker: TestBroker,
    store: StateStoreHandle,
}

async fn start(f: impl FnOnce(&mut StateStoreSettings)) -> Result<Harness> {
    let broker = TestBroker::start().await;
    let mut settings = StateStoreSettings::default();
    f(&mut settings);
    let store = StateStore::start(&broker.broker, settings).await?;
    Ok(Harness { broker, store })
}

/// An application talking the raw protocol through an in-process session.
struct App {
    client: LocalClient,
    response_topic: String,
    next: u64,
}

impl App {
    async fn connect(h: &Harness, id: &str) -> Result<App> {
        let mut client = h.broker.broker.local_client(LocalOptions::new(id)).await?;
        let response_topic = format!("clients/{id}/services/statestore/response");
        client
            .subscribe(&response_topic, SubOptions::new(QoS::AtLeastOnce))
            .await?;
        Ok(App {
            client,
            response_topic,
            next: 1,
        })
    }

    /// Send a request with a current `__ts` plus `extra` user properties.
    async fn call(&mut self, args: &[&[u8]], extra: &[(&str, &str)]) -> Result<Arc<Message>> {
        let mut props = vec![("__ts".to_owned(), now_hlc())];
        props.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.send(encode_request(args), props).await
    }

    async fn send(&mut self, payload: Bytes, user: Vec<(String, String)>) -> Result<Arc<Message>> {
        let correlation = Bytes::from(self.next.to_be_bytes().to_vec());
        self.next += 1;
        let properties = Properties {
            response_topic: Some(self.response_topic.clone()),
            correlation_data: Some(correlation.clone()),
            user_properties: user,
            ..Properties::default()
        };
        self.client
            .publish(request(REQUEST_TOPIC, properties, payload))
            .await?;
        let msg = self.recv().await?.context("no response")?;
        assert_eq!(msg.topic, self.response_topic);
        assert_eq!(msg.properties.correlation_data.as_ref(), Some(&correlation));
        Ok(msg)
    }

    async fn recv(&mut self) -> Result<Option<Arc<Message>>> {
        self.recv_within(WAIT).await
    }

    async fn recv_within(&mut self, wait: Duration) -> Result<Option<Arc<Message>>> {
        match tokio::time::timeout(wait, self.client.recv()).await {
            Err(_) => Ok(None),
            Ok(None) => bail!("session closed"),
            Ok(Some(r)) => {
                self.client.ack(&r).await;
                Ok(Some(r.message))
            }
        }
    }
}

fn request(topic: &str, properties: Properties, payload: Bytes) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.into(),
        packet_id: 0,
        properties,
        payload,
    }
}

fn now_hlc() -> String {
    Hlc {
        ms: wall_ms(),
        counter: 0,
        node: "app".into(),
    }
    .to_string()
}

fn prop<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.properties
        .user_properties
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn version(m: &Message) -> Result<Hlc> {
    Ok(prop(m, "__ts").context("__ts")?.parse()?)
}

#[tokio::test]
async fn replies_carry_status_protocol_version_and_key_version() -> Result<()> {
    let h = start(|_| {}).await?;
    let mut app = App::connect(&h, "app").await?;
    let set = app.call(&[b"SET", b"k", b"v1"], &[]).await?;
    assert_eq!(&set.payload[..], b"+OK\r\n");
    assert_eq!(prop(&set, "__stat"), Some("200"));
    assert_eq!(prop(&set, "__protVer"), Some("1.0"));
    assert_eq!(
        set.properties.content_type.as_deref(),
        Some("application/octet-stream")
    );
    let ts = prop(&set, "__ts").context("__ts")?;
    let parts: Vec<&str> = ts.split(':').collect();
    assert_eq!(parts.len(), 3, "{ts}");
    assert!(
        parts[0].len() == 15 && parts[1].len() == 5,
        "zero-padded HLC: {ts}"
    );
    assert_eq!(parts[2], "edgeplane");

    let get = app.call(&[b"GET", b"k"], &[]).await?;
    assert_eq!(&get.payload[..], b"$2\r\nv1\r\n");
    assert_eq!(
        version(&get)?,
        version(&set)?,
        "GET reports the key's version"
    );
    let set2 = app.call(&[b"SET", b"k", b"v2"], &[]).await?;
    assert!(version(&set2)? > version(&set)?);

    let cases: &[(&[&[u8]], &[u8])] = &[
        (&[b"GET", b"missing"], b"$-1\r\n"),
        (&[b"SET", b"k", b"x", b"NX"], b":-1\r\n"),
        (&[b"SET", b"k", b"x", b"NEX"], b":-1\r\n"),
        (&[b"SET", b"k", b"v2", b"NEX", b"PX", b"60000"], b"+OK\r\n"),
        (&[b"SET", b"n", b"x", b"NX"], b"+OK\r\n"),
        (&[b"VDEL", b"k", b"other"], b":-1\r\n"),
        (&[b"VDEL", b"k", b"v2"], b":1\r\n"),
        (&[b"VDEL", b"k", b"v2"], b":0\r\n"),
        (&[b"DEL", b"n"], b":1\r\n"),
        (&[b"DEL", b"n"], b":0\r\n"),
        (&[b"set", b"lower", b"case", b"px", b"1000"], b"+OK\r\n"),
        (&[b"SET", b"bin\r\n\x00", b"\x00\xff"], b"+OK\r\n"),
        (&[b"GET", b"bin\r\n\x00"], b"$2\r\n\x00\xff\r\n"),
    ];
    for (args, want) in cases {
        let r = app.call(args, &[]).await?;
        assert_eq!(&r.payload[..], *want, "{args:?}");
        assert_eq!(prop(&r, "__stat"), Some("200"));
        assert!(prop(&r, "__ts").is_some());
    }
    Ok(())
}

#[tokio::test]
async fn errors_use_the_exact_documented_texts() -> Result<()> {
    let h = start(|_| {}).await?;
    let mut app = App::connect(&h, "app").await?;
    let future = Hlc {
        ms: wall_ms() + 120_000,
        counter: 0,
        node: "app".into(),
    }
    .to_string();
    let err = |t: &str| format!("-ERR {t}\r\n").into_bytes();

    let r = app.send(encode_request(&["GET", "k"]), vec![]).await?;
    assert_eq!(r.payload[..], err("missing timestamp"));
    let r = app
        .send(
            encode_request(&["GET", "k"]),
            vec![("__ts".into(), "yesterday".into())],
        )
        .await?;
    assert_eq!(r.payload[..], err("malformed timestamp"));
    let r = app
        .send(
            encode_request(&["GET", "k"]),
            vec![("__ts".into(), future.clone())],
        )
        .await?;
    assert_eq!(
        r.payload[..],
        err("the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized")
    );
    let r = app
        .call(&[b"SET", b"k", b"v"], &[("__ft", &future)])
        .await?;
    assert_eq!(
        r.payload[..],
        err("the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized")
    );
    let past = Hlc {
        ms: wall_ms() - 3_600_000,
        counter: 0,
        node: "app".into(),
    }
    .to_string();
    let r = app
        .send(encode_request(&["GET", "k"]), vec![("__ts".into(), past)])
        .await?;
    assert_eq!(
        &r.payload[..],
        b"$-1\r\n",
        "timestamps in the past are accepted"
    );

    let cases: &[(&[&[u8]], &str)] = &[
        (&[b"FLUSHALL"], "unknown command"),
        (&[b"GET"], "wrong number of arguments"),
        (&[b"GET", b"a", b"b"], "wrong number of arguments"),
        (&[b"SET", b"k"], "wrong number of arguments"),
        (&[b"DEL"], "wrong number of arguments"),
        (&[b"VDEL", b"k"], "wrong number of arguments"),
        (&[b"KEYNOTIFY"], "wrong number of arguments"),
        (&[b"SET", b"k", b"v", b"PX"], "syntax error"),
        (&[b"SET", b"k", b"v", b"PX", b"soon"], "syntax error"),
        (&[b"SET", b"k", b"v", b"PX", b"0"], "syntax error"),
        (&[b"SET", b"k", b"v", b"NX", b"NEX"], "syntax error"),
        (&[b"SET", b"k", b"v", b"XX"], "syntax error"),
        (&[b"KEYNOTIFY", b"k", b"START"], "syntax error"),
        (&[b"SET", b"", b"v"], "the key length is zero"),
        (&[b"GET", b""], "the key length is zero"),
    ];
    for (args, text) in cases {
        let r = app.call(args, &[]).await?;
        assert_eq!(r.payload[..], err(text), "{args:?}");
        assert_eq!(
            prop(&r, "__stat"),
            Some("200"),
            "errors are 200 with an -ERR payload"
        );
    }
    for garbage in [
        &b"GET k\r\n"[..],
        b"",
        b"*1\r\n$3\r\nGE",
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
    ] {
        let r = app
            .send(
                Bytes::from_static(garbage),
                vec![("__ts".into(), now_hlc())],
            )
            .await?;
        assert_eq!(r.payload[..], err("syntax error"), "{garbage:?}");
    }
    Ok(())
}

#[tokio::test]
async fn quotas_limit_keys_and_bytes() -> Result<()> {
    let h = start(|s| {
        s.max_keys = 2;
        s.max_bytes = 20;
    })
    .await?;
    let mut app = App::connect(&h, "app").await?;
    let quota = b"-ERR the quota has been exceeded\r\n";
    assert_eq!(
        &app.call(&[b"SET", b"a", b"1"], &[]).await?.payload[..],
        b"+OK\r\n"
    );
    assert_eq!(
        &app.call(&[b"SET", b"b", b"2"], &[]).await?.payload[..],
        b"+OK\r\n"
    );
    assert_eq!(
        &app.call(&[b"SET", b"c", b"3"], &[]).await?.payload[..],
        quota
    );
    assert_eq!(
        &app.call(&[b"SET", b"a", b"overwrite ok"], &[])
            .await?
            .payload[..],
        b"+OK\r\n"
    );
    assert_eq!(
        &app.call(&[b"SET", b"b", b"this is far too long"], &[])
            .await?
            .payload[..],
        quota
    );
    assert_eq!(
        &app.call(&[b"DEL", b"a"], &[]).await?.payload[..],
        b":1\r\n"
    );
    assert_eq!(
        &app.call(&[b"SET", b"c", b"3"], &[]).await?.payload[..],
        b"+OK\r\n"
    );
    Ok(())
}

#[tokio::test]
async fn keynotify_publishes_to_the_hex_topic_until_stopped() -> Result<()> {
    let h = start(|_| {}).await?;
    let mut watcher = App::connect(&h, "watcher/1").await?;
    let mut writer = App::connect(&h, "writer").await?;
    let topic = notification_topic("watcher/1", b"k\x01");
    assert_eq!(
        topic,
        "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/776174636865722F31/command/notify/6B01"
    );
    watcher
        .client
        .subscribe(&topic, SubOptions::new(QoS::AtLeastOnce))
        .await?;
    assert_eq!(
        &watcher.call(&[b"KEYNOTIFY", b"k\x01"], &[]).await?.payload[..],
        b"+OK\r\n"
    );

    let set = writer
        .call(&[b"SET", b"k\x01", b"hello", b"PX", b"300"], &[])
        .await?;
    let n = watcher.recv().await?.context("SET notification")?;
    assert_eq!(n.topic, topic);
    assert_eq!(
        &n.payload[..],
        b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$5\r\nhello\r\n"
    );
    assert_eq!(version(&n)?, version(&set)?);
    let n = watcher.recv().await?.context("expiry notification")?;
    assert_eq!(&n.payload[..], b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n");
    assert!(version(&n)? > version(&set)?);
    assert_eq!(
        &writer.call(&[b"GET", b"k\x01"], &[]).await?.payload[..],
        b"$-1\r\n"
    );

    writer.call(&[b"SET", b"k\x01", b"again"], &[]).await?;
    watcher.recv().await?.context("SET notification")?;
    writer.call(&[b"DEL", b"k\x01"], &[]).await?;
    let n = watcher.recv().await?.context("DEL notification")?;
    assert_eq!(&n.payload[..], b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n");

    assert_eq!(
        &watcher
            .call(&[b"KEYNOTIFY", b"k\x01", b"STOP"], &[])
            .await?
            .payload[..],
        b"+OK\r\n"
    );
    assert_eq!(
        &watcher
            .call(&[b"KEYNOTIFY", b"k\x01", b"STOP"], &[])
            .await?
            .payload[..],
        b":0\r\n"
    );
    writer.call(&[b"SET", b"k\x01", b"unwatched"], &[]).await?;
    assert!(
        watcher.recv_within(QUIET).await?.is_none(),
        "no notification after STOP"
    );
    Ok(())
}

#[tokio::test]
async fn registrations_are_dropped_when_the_client_disconnects() -> Result<()> {
    let h = start(|_| {}).await?;
    let mut writer = App::connect(&h, "writer").await?;
    let watcher = {
        let mut w = App::connect(&h, "watcher").await?;
        w.call(&[b"KEYNOTIFY", b"k"], &[]).await?;
        w
    };
    watcher.client.disconnect().await;
    let mut again = App::connect(&h, "watcher").await?;
    let topic = notification_topic("watcher", b"k");
    again
        .client
        .subscribe(&topic, SubOptions::new(QoS::AtLeastOnce))
        .await?;
    writer.call(&[b"SET", b"k", b"v"], &[]).await?;
    assert!(
        again.recv_within(QUIET).await?.is_none(),
        "registration survived a disconnect"
    );
    Ok(())
}

#[tokio::test]
async fn scan_pages_through_matching_keys_with_a_cursor() -> Result<()> {
    let h = start(|s| s.scan_page_size = 2).await?;
    let mut app = App::connect(&h, "app").await?;
    for k in ["key1", "key2", "key3", "other", "key4", "key5"] {
        app.call(&[b"SET", k.as_bytes(), b"v"], &[]).await?;
    }
    let page = app.call(&[b"SCAN", b"key*"], &[]).await?;
    assert_eq!(
        &page.payload[..],
        b"*2\r\n*2\r\n$4\r\nkey1\r\n$4\r\nkey2\r\n$4\r\nkey2\r\n"
    );
    let page = app.call(&[b"SCAN", b"key*", b"key2"], &[]).await?;
    assert_eq!(
        &page.payload[..],
        b"*2\r\n*2\r\n$4\r\nkey3\r\n$4\r\nkey4\r\n$4\r\nkey4\r\n"
    );
    let page = app.call(&[b"SCAN", b"key*", b"key4"], &[]).await?;
    assert_eq!(&page.payload[..], b"*1\r\n*1\r\n$4\r\nkey5\r\n");
    let none = app.call(&[b"SCAN", b"nothing?"], &[]).await?;
    assert!(none.payload.starts_with(b"*"), "a page, possibly empty");
    assert_eq!(
        h.store.list("key*").await?,
        ["key1", "key2", "key3", "key4", "key5"].map(|s| Bytes::from_static(s.as_bytes()))
    );
    Ok(())
}

#[tokio::test]
async fn forbidden_response_topics_get_no_answer() -> Result<()> {
    let h = start(|_| {}).await?;
    let mut app = App::connect(&h, "app").await?;
    let mut spy = h
        .broker
        .broker
        .local_client(LocalOptions::new("spy"))
        .await?;
    spy.subscribe(REQUEST_TOPIC, SubOptions::new(QoS::AtMostOnce))
        .await?;
    let properties = Properties {
        response_topic: Some(REQUEST_TOPIC.to_owned()),
        correlation_data: Some(Bytes::from_static(b"loop")),
        user_properties: vec![("__ts".into(), now_hlc())],
        ..Properties::default()
    };
    app.client
        .publish(request(
            REQUEST_TOPIC,
            properties,
            encode_request(&["GET", "k"]),
        ))
        .await?;
    let first = tokio::time::timeout(WAIT, spy.recv())
        .await?
        .context("request")?;
    assert!(
        first.message.properties.response_topic.is_some(),
        "the request itself"
    );
    let echo = tokio::time::timeout(QUIET, spy.recv()).await;
    assert!(
        echo.is_err(),
        "the service answered onto its own request topic"
    );
    assert_eq!(
        &app.call(&[b"GET", b"k"], &[]).await?.payload[..],
        b"$-1\r\n"
    );
    Ok(())
}

#[tokio::test]
async fn the_in_process_api_shares_store_and_notifications() -> Result<()> {
    let h = start(|_| {}).await?;
    let mut watcher = App::connect(&h, "watcher").await?;
    let topic = notification_topic("watcher", b"dataset");
    watcher
        .client
        .subscribe(&topic, SubOptions::new(QoS::AtLeastOnce))
        .await?;
    watcher.call(&[b"KEYNOTIFY", b"dataset"], &[]).await?;

    let Written::Applied(v1) = h
        .store
        .set("dataset", "rows", SetOptions::default())
        .await?
    else {
        bail!("unconditional SET not applied");
    };
    let n = watcher
        .recv()
        .await?
        .context("notification of an in-process SET")?;
    assert_eq!(version(&n)?, v1);
    let got = h.store.get("dataset").await?.context("value")?;
    assert_eq!((got.value, got.version), (Bytes::from_static(b"rows"), v1));
    let r = watcher.call(&[b"GET", b"dataset"], &[]).await?;
    assert_eq!(&r.payload[..], b"$4\r\nrows\r\n");
    assert!(h.store.del("dataset", None).await?);
    assert!(!h.store.del("dataset", None).await?);
    let n = watcher
        .recv()
        .await?
        .context("notification of an in-process DEL")?;
    assert_eq!(&n.payload[..], b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n");
    Ok(())
}
