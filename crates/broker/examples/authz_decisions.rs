//! Benchmark: PUBLISH authorization decisions per second, evaluated against the policy every
//! time versus through the per-connection decision cache, for policies of growing size.
//!
//! `cargo run --release -p edgeplane-broker --example authz_decisions`
//!
//! Each policy has `rules` rules for other devices (by client id, user name and attributes),
//! then the rule that grants this client, so a decision walks every rule as it would for the
//! last-listed device. The client publishes round-robin to 8 topics (a device's usual few),
//! half of them denied.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use edgeplane_broker::auth::{Authorization, DecisionCache, Principal};

const DECISIONS: u32 = 2_000_000;

fn policy(rules: usize) -> Arc<Authorization> {
    let mut list: Vec<serde_json::Value> = (0..rules)
        .map(|i| {
            serde_json::json!({
                "principals": {
                    "clientIds": [format!("device-{i}")],
                    "usernames": [format!("user-{i}")],
                    "attributes": [{"line": format!("{i}"), "site": "north"}],
                },
                "brokerResources": [
                    {"method": "Publish", "topics": [format!("lines/{i}/{{principal.clientId}}/#")]},
                    {"method": "Subscribe", "topics": [format!("commands/{i}/#")]},
                ],
            })
        })
        .collect();
    list.push(serde_json::json!({
        "principals": {"attributes": [{"line": "7", "site": "south"}]},
        "brokerResources": [{"method": "Publish", "topics": [
            "lines/{principal.attributes.line}/{principal.clientId}/#",
            "status/{principal.clientId}",
        ]}],
    }));
    let spec = serde_json::json!({"authorizationPolicies": {"rules": list}});
    match Authorization::from_spec(&spec) {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("benchmark policy does not compile: {e:?}"),
    }
}

fn main() {
    let principal = Principal {
        client_id: "press-7".into(),
        username: Some("press".into()),
        attributes: [("line", "7"), ("site", "south")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    let topics = [
        "lines/7/press-7/temperature",
        "lines/7/press-7/pressure",
        "status/press-7",
        "lines/7/press-7/cycle/count",
        "lines/8/press-7/temperature",
        "status/press-8",
        "lines/7/press-8/pressure",
        "alarms/press-7",
    ];
    println!("rules\tuncached ns/decision\tcached ns/decision\tspeed-up");
    for rules in [3, 30, 300] {
        let policy = policy(rules);
        let t = Instant::now();
        let mut allowed = 0u32;
        for i in 0..DECISIONS {
            let topic = topics[i as usize % topics.len()];
            allowed += u32::from(policy.allows_publish(black_box(&principal), black_box(topic)));
        }
        let uncached = t.elapsed().as_nanos() as f64 / f64::from(DECISIONS);
        let mut cache = DecisionCache::default();
        let t = Instant::now();
        let mut allowed_cached = 0u32;
        for i in 0..DECISIONS {
            let topic = topics[i as usize % topics.len()];
            allowed_cached +=
                u32::from(cache.allows_publish(&policy, black_box(&principal), black_box(topic)));
        }
        let cached = t.elapsed().as_nanos() as f64 / f64::from(DECISIONS);
        assert_eq!(allowed, allowed_cached, "the cache answers like the policy");
        assert_eq!(allowed, DECISIONS / 2, "half the topics are granted");
        println!(
            "{rules}\t{uncached:.0}\t{cached:.0}\t{:.1}x",
            uncached / cached
        );
    }
}
