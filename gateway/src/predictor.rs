//! The wait-time predictor: the ONNX model in `models/`, run by tract.
//!
//! Loaded once, optimised for a symbolic batch size `N × WIDTH`, then each
//! call predicts a whole batch. Loading refuses, with the file named and the
//! problem stated: a missing or corrupt model, a missing or unreadable
//! metadata file (`wait_time.json` beside it), a feature version other than
//! [`FEATURE_VERSION`], or a model whose input width is not [`WIDTH`].

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::features::{Row, FEATURE_NAMES, FEATURE_VERSION, WIDTH};

/// Why the model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The model file does not exist.
    #[error("model file {0} does not exist (train one with models/train.py)")]
    Missing(String),
    /// The model file is not a loadable ONNX model.
    #[error("model file {path} is not a loadable ONNX model: {detail}")]
    Corrupt {
        /// The file.
        path: String,
        /// tract's message.
        detail: String,
    },
    /// The metadata file is missing or malformed.
    #[error("model metadata {path}: {detail}")]
    Metadata {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The model was built for other features.
    #[error("model {path} does not match this build's features: {detail}")]
    Mismatch {
        /// The file.
        path: String,
        /// What differs.
        detail: String,
    },
    /// Running the model failed.
    #[error("prediction failed: {0}")]
    Run(String),
}

/// What `models/wait_time.json` says about the model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelMeta {
    /// Identifies the trained model; stored with every prediction.
    pub model_version: String,
    /// Feature layout the model was trained on.
    pub feature_version: u32,
    /// Feature names, in input order.
    pub feature_names: Vec<String>,
    /// How the model's output maps to minutes: `none`, or `sqrt` (the model
    /// predicts the square root of the wait).
    #[serde(default = "no_transform")]
    pub target_transform: String,
}

fn no_transform() -> String {
    "none".into()
}

type Plan = SimplePlan<TypedFact, Box<dyn TypedOp>, Graph<TypedFact, Box<dyn TypedOp>>>;

/// A loaded, optimised model.
pub struct Predictor {
    plan: Plan,
    meta: ModelMeta,
    min: f32,
    max: f32,
}

/// `models/wait_time.onnx` -> `models/wait_time.json`.
pub fn metadata_path(model: &Path) -> PathBuf {
    model.with_extension("json")
}

impl Predictor {
    /// Load and check the model at `path`; predictions are clipped to `min..=max` minutes.
    pub fn load(path: &Path, min: f64, max: f64) -> Result<Predictor, PredictError> {
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(PredictError::Missing(shown));
        }
        let meta_path = metadata_path(path);
        let meta_text =
            std::fs::read_to_string(&meta_path).map_err(|e| PredictError::Metadata {
                path: meta_path.display().to_string(),
                detail: e.to_string(),
            })?;
        let meta: ModelMeta =
            serde_json::from_str(&meta_text).map_err(|e| PredictError::Metadata {
                path: meta_path.display().to_string(),
                detail: e.to_string(),
            })?;
        let mismatch = |detail: String| PredictError::Mismatch {
            path: shown.clone(),
            detail,
        };
        if meta.feature_version != FEATURE_VERSION {
            return Err(mismatch(format!(
                "trained on feature version {}, this build computes version {FEATURE_VERSION}",
                meta.feature_version
            )));
        }
        if !["none", "sqrt"].contains(&meta.target_transform.as_str()) {
            return Err(PredictError::Metadata {
                path: meta_path.display().to_string(),
                detail: format!(
                    "target_transform {:?} is not none or sqrt",
                    meta.target_transform
                ),
            });
        }
        if meta.feature_names != FEATURE_NAMES {
            return Err(mismatch(format!(
                "feature names {:?} differ from this build's {:?}",
                meta.feature_names, FEATURE_NAMES
            )));
        }
        let corrupt = |e: TractError| PredictError::Corrupt {
            path: shown.clone(),
            detail: format!("{e:#}"),
        };
        let model = tract_onnx::onnx().model_for_path(path).map_err(corrupt)?;
        // The width the file declares must be ours.
        let declared = model.input_fact(0).map_err(corrupt)?.shape.clone();
        let width = declared
            .dims()
            .last()
            .and_then(|w| w.concretize())
            .and_then(|w| w.to_i64().ok());
        if let Some(w) = width {
            if w != WIDTH as i64 {
                return Err(mismatch(format!(
                    "its input has {w} features, this build computes {WIDTH}"
                )));
            }
        }
        let n = model.sym("N");
        let plan = model
            .with_input_fact(0, f32::fact([n.to_dim(), WIDTH.to_dim()]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| mismatch(format!("{e:#}")))?;
        Ok(Predictor {
            plan,
            meta,
            min: min as f32,
            max: max as f32,
        })
    }

    /// The model's version string, stored with each prediction.
    pub fn model_version(&self) -> &str {
        &self.meta.model_version
    }

    /// Predict a batch of rows in one call; minutes, clipped.
    pub fn predict(&self, rows: &[Row]) -> Result<Vec<f32>, PredictError> {
        let sqrt = self.meta.target_transform == "sqrt";
        Ok(self
            .predict_raw(rows)?
            .into_iter()
            .map(|v| if sqrt { v.max(0.0).powi(2) } else { v })
            .map(|v| v.clamp(self.min, self.max))
            .collect())
    }

    /// The model's own outputs, before the target transform and clipping
    /// (what onnxruntime computes; used to compare the two).
    pub fn predict_raw(&self, rows: &[Row]) -> Result<Vec<f32>, PredictError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let input = tract_ndarray::Array2::from_shape_vec((rows.len(), WIDTH), flat)
            .map_err(|e| PredictError::Run(e.to_string()))?;
        let out = self
            .plan
            .run(tvec!(input.into_tensor().into()))
            .map_err(|e| PredictError::Run(format!("{e:#}")))?;
        let view = out[0]
            .to_array_view::<f32>()
            .map_err(|e| PredictError::Run(e.to_string()))?;
        let values: Vec<f32> = view.iter().copied().collect();
        if values.len() != rows.len() {
            return Err(PredictError::Run(format!(
                "model returned {} values for {} rows",
                values.len(),
                rows.len()
            )));
        }
        Ok(values)
    }
}
