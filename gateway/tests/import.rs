//! Manual replay: an `agent export` file produced to Kafka by `gateway import`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use agent::outbox::Outbox;
use common::*;
use contract::UtcMillis;
use testkit::*;

#[test]
fn an_export_file_is_imported_with_its_identity_and_bad_lines_are_refused_by_number() {
    let dir = temp_dir("import");
    let config = test_config(&dir, 1883, &shared_kafka());
    // An offline kiosk's outbox with 250 events.
    let mut outbox = Outbox::open(&config.agent.outbox, "site-t", &config.agent.kiosk_id).unwrap();
    let cfg = contract::config::SimulationConfig::default();
    let mut sim =
        agent::sim::Reception::new(&cfg, 9, UtcMillis::from_parts(2026, 12, 7, 8, 0, 0, 0));
    let items: Vec<_> = (0..250)
        .map(|_| (UtcMillis::now(), sim.next_event().unwrap().1))
        .collect();
    outbox.append(&items).unwrap();
    let mut file = Vec::new();
    assert_eq!(agent::export::export(&outbox, &mut file).unwrap(), 250);
    // Damage line 7 and add a line of garbage at the end.
    let mut lines: Vec<String> = String::from_utf8(file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let original_7 = lines[6].clone();
    lines[6] = lines[6].replace("\"seq\":7", "\"seq\":0");
    lines.push("not json".into());
    let text = lines.join("\n");

    let report = gateway::import::import(&config.kafka, text.as_bytes()).unwrap();
    assert_eq!(
        (
            report.lines,
            report.sent,
            report.refused_count,
            report.failed
        ),
        (251, 249, 2, 0)
    );
    assert_eq!(
        report.refused.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![7, 251]
    );

    let recs = read_distinct(
        &config.kafka.bootstrap_servers,
        &config.kafka.topic,
        249,
        Duration::from_secs(30),
    );
    let kiosk = &config.agent.kiosk_id;
    let mut seqs: Vec<u64> = recs
        .iter()
        .map(|r| {
            r.headers["event_id"]
                .rsplit('-')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (1..=250).filter(|s| *s != 7).collect::<Vec<u64>>());
    assert!(recs
        .iter()
        .all(|r| r.headers["event_id"].starts_with(kiosk.as_str())));
    // The re-imported original line 7 completes the kiosk's stream.
    let report = gateway::import::import(&config.kafka, original_7.as_bytes()).unwrap();
    assert_eq!((report.sent, report.refused_count), (1, 0));
}
