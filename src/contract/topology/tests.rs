//! The topology's definitions against the files in `nats/` and its own rules.
use super::*;

/// `nats/` holds the same definitions as files for operators: every field a file states
/// is what the code creates (with the default settings), and the code sets nothing the
/// files leave out.
#[test]
fn the_definitions_in_nats_are_what_the_topology_creates() {
    let topology = Topology::from_settings(&crate::settings::Settings::default());
    let files = [
        (
            include_str!("../../../nats/streams/CODES.json"),
            serde_json::to_value(topology.codes_config()),
        ),
        (
            include_str!("../../../nats/streams/RESULTS.json"),
            serde_json::to_value(topology.results_config()),
        ),
        (
            include_str!("../../../nats/streams/PARKED.json"),
            serde_json::to_value(topology.parked_config()),
        ),
        (
            include_str!("../../../nats/consumers/exchange.json"),
            serde_json::to_value(topology.exchange_consumer_config()),
        ),
        (
            include_str!("../../../nats/consumers/upserter.json"),
            serde_json::to_value(topology.upsert_consumer_config()),
        ),
    ];
    for (file, code) in files {
        let file: serde_json::Value = serde_json::from_str(file).unwrap();
        let code = code.unwrap();
        let name = file.get("name").or(file.get("durable_name")).unwrap();
        // "No limit" is -1 in the server's own terms, 0 as the client sends it.
        let same = |v: &serde_json::Value| {
            if v == &serde_json::json!(-1) {
                serde_json::json!(0)
            } else {
                v.clone()
            }
        };
        for (key, value) in file.as_object().unwrap() {
            // A field the client leaves out is at its default: "no limit".
            let in_code = code.get(key).map_or(serde_json::json!(0), same);
            assert_eq!(in_code, same(value), "{name}: {key}");
        }
        for (key, value) in code.as_object().unwrap() {
            let unset = value.is_null() || value == &serde_json::json!(0);
            assert!(
                unset || file.get(key).is_some() || DEFAULTS_LEFT_OUT.contains(&key.as_str()),
                "{name}: the code sets {key} = {value}, the file does not say"
            );
        }
    }
}

/// Fields the serialized configs always carry, at the server's own defaults.
const DEFAULTS_LEFT_OUT: &[&str] = &[
    "max_msgs_per_subject",
    "compression",
    "first_seq",
    "discard_new_per_subject",
    "mirror_direct",
    "sealed",
    "deny_delete",
    "deny_purge",
    "allow_rollup_hdrs",
    "inactive_threshold",
    "num_replicas",
    "memory_storage",
    "headers_only",
    "backoff",
    "metadata",
    "pause_until",
];

#[test]
fn a_code_message_is_kept_as_long_as_its_result_would_be() {
    let topology = Topology::from_settings(&crate::settings::Settings::default());
    assert_ne!(topology.results_max_age, Duration::ZERO);
    // Only a worker may end a code (with a result), however long the workers are away.
    assert_eq!(
        topology.codes_config().max_age,
        topology.results_config().max_age
    );
    let forever = Topology {
        results_max_age: Duration::ZERO,
        ..topology
    };
    assert_eq!(forever.codes_config().max_age, Duration::ZERO);
}
