//! The wait-time model as shipped in models/: tract agrees with onnxruntime,
//! bad models are refused clearly, and training reproduces its metrics.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use gateway::features::{Row, WIDTH};
use gateway::predictor::{PredictError, Predictor};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn model_path() -> PathBuf {
    repo().join("models/wait_time.onnx")
}

fn load_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tract_matches_onnxruntime_on_the_golden_rows() {
    let golden = load_json(&repo().join("models/golden.json"));
    let rows: Vec<Row> = golden["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let v: Vec<f32> = r
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            <Row>::try_from(v.as_slice()).unwrap()
        })
        .collect();
    let expected: Vec<f64> = golden["onnxruntime"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(rows.len() >= 200);
    let p = Predictor::load(&model_path(), 0.0, 480.0).unwrap();
    let got = p.predict_raw(&rows).unwrap();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(
            (f64::from(*g) - e).abs() <= 1e-4,
            "row {i}: tract {g}, onnxruntime {e}"
        );
    }
    // Minutes are the squared output, clipped.
    let minutes = p.predict(&rows).unwrap();
    for (m, g) in minutes.iter().zip(&got) {
        assert!((m - g.max(0.0).powi(2).min(480.0)).abs() < 1e-3);
    }
    assert!(p.model_version().starts_with("wait_time-fv1-"));
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ktk-model-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_missing_truncated_or_mismatched_model_is_refused_clearly() {
    let err = Predictor::load(Path::new("/nonexistent/wait_time.onnx"), 0.0, 480.0)
        .err()
        .unwrap();
    assert!(matches!(err, PredictError::Missing(_)));
    assert!(err.to_string().contains("/nonexistent/wait_time.onnx"));

    let dir = scratch("bad");
    let meta = std::fs::read(repo().join("models/wait_time.json")).unwrap();
    // Truncated.
    let truncated = dir.join("truncated.onnx");
    let bytes = std::fs::read(model_path()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(dir.join("truncated.json"), &meta).unwrap();
    let err = Predictor::load(&truncated, 0.0, 480.0).err().unwrap();
    assert!(matches!(err, PredictError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("truncated.onnx"), "{err}");

    // Wrong input width (a 5-feature model with otherwise valid metadata).
    let wrong = dir.join("wrong_width.onnx");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wrong_width.onnx"),
        &wrong,
    )
    .unwrap();
    std::fs::write(dir.join("wrong_width.json"), &meta).unwrap();
    let err = Predictor::load(&wrong, 0.0, 480.0).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, PredictError::Mismatch { .. }), "{msg}");
    assert!(
        msg.contains("5 features") && msg.contains(&WIDTH.to_string()),
        "{msg}"
    );

    // Another feature version.
    let other = dir.join("other.onnx");
    std::fs::copy(model_path(), &other).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    m["feature_version"] = 99.into();
    std::fs::write(dir.join("other.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let msg = Predictor::load(&other, 0.0, 480.0)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("feature version 99"), "{msg}");

    // No metadata beside the model.
    let lonely = dir.join("lonely.onnx");
    std::fs::copy(model_path(), &lonely).unwrap();
    let msg = Predictor::load(&lonely, 0.0, 480.0)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("lonely.json"), "{msg}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn retraining_the_reduced_configuration_reproduces_the_committed_metrics() {
    let python = Command::new("bash")
        .arg(repo().join("scripts/python-env.sh"))
        .output()
        .expect("bash");
    assert!(
        python.status.success(),
        "cannot prepare the Python environment: {}",
        String::from_utf8_lossy(&python.stderr)
    );
    let python = String::from_utf8(python.stdout).unwrap().trim().to_string();
    let meta = load_json(&repo().join("models/wait_time.json"));
    let args = &meta["reproduce"]["args"];
    let out = Command::new(&python)
        .arg(repo().join("models/train.py"))
        .args(["--days", &args["days"].to_string()])
        .args(["--departments", &args["departments"].to_string()])
        .args(["--seed", &args["seed"].to_string()])
        .args(["--gateway", env!("CARGO_BIN_EXE_gateway"), "--metrics-only"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = &meta["reproduce"]["metrics"];
    for key in ["model", "naive_baseline", "mean_predictor"] {
        for m in ["mae", "rmse"] {
            let (g, w) = (
                got[key][m].as_f64().unwrap(),
                want[key][m].as_f64().unwrap(),
            );
            assert!(
                (g - w).abs() <= 0.02 * w,
                "{key}.{m}: got {g}, committed {w}"
            );
        }
    }
    // And the committed full run meets the target.
    assert!(meta["metrics"]["mae_reduction_vs_naive"].as_f64().unwrap() >= 0.30);
}
