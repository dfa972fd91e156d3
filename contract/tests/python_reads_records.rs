//! The Kafka JSON record is read by the prototype's Python consumer and
//! dashboard: check that Python parses it with the contract's names and types.

use std::io::Write;
use std::process::{Command, Stdio};

use contract::event::examples;
use contract::record::to_json;

const CHECK: &str = r#"
import json, sys
from datetime import datetime
types = {"schema_version": int, "event_id": str, "event_type": str, "site_id": str,
         "kiosk_id": str, "seq": int, "created_at": str}
arrival = dict(types, patient_id=str, patient_name=str, arrival_time=str, patient_type=str,
               modality=str, is_emergency=bool, age=int, with_contrast=bool)
status = dict(types, patient_id=str, modality=str, status=str, changed_at=str)
for line in sys.stdin:
    rec = json.loads(line)
    want = arrival if rec["event_type"] == "arrival" else status
    assert set(rec) == set(want), sorted(set(rec) ^ set(want))
    for k, t in want.items():
        assert type(rec[k]) is t, (k, type(rec[k]))
    for k in ("created_at", "arrival_time", "changed_at"):
        if k in rec:
            assert datetime.fromisoformat(rec[k]).tzinfo is not None, k
    assert rec["event_id"] == f'{rec["kiosk_id"]}-{rec["seq"]}'
    print(rec["event_type"], rec.get("patient_type", rec.get("status")), rec["modality"])
"#;

#[test]
fn python_parses_contract_records() {
    let mut child = Command::new("python3")
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed for this test");
    let mut stdin = child.stdin.take().expect("stdin");
    for event in [examples::arrival(), examples::status_change()] {
        stdin.write_all(&to_json(&event)).expect("write");
        stdin.write_all(b"\n").expect("write");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("python3 ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python3 refused the records: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["arrival Emergency MRI", "status_change WITH_DOCTOR MRI"]
    );
}
