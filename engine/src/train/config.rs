//! Everything a training run is made of, as one TOML document in which every field has a default.

use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::data::{AugmentConfig, DataConfig, NormalizeKind, SamplerConfig};
use crate::loss::LossConfig;
use crate::model::ModelConfig;

use super::cross_batch_memory::XbmConfig;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub run: RunConfig,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub sampler: SamplerConfig,
    pub augment: AugmentConfig,
    pub optimizer: OptimizerConfig,
    pub eval: EvalConfig,
    pub xbm: XbmConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub iterations: u64,
    /// Evaluate on the test split every this many iterations (0: only before and after).
    pub eval_interval: u64,
    /// Write a resumable checkpoint every this many iterations (0: only at the end).
    pub checkpoint_interval: u64,
    pub seed: u64,
    pub backend: BackendChoice,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self { iterations: 200, eval_interval: 100, checkpoint_interval: 50, seed: 0, backend: BackendChoice::Auto }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adam,
    Adamw,
    Sgd,
}

impl OptimizerKind {
    pub const NAMES: [&'static str; 3] = ["adam", "adamw", "sgd"];
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    pub name: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    /// SGD only.
    pub momentum: f64,
    /// The backbone learns at `lr × backbone_lr_mult`, the embedding head at `lr`.
    pub backbone_lr_mult: f64,
    /// A proxy loss's proxies learn at `lr × loss_lr_mult`; absent: the loss's published setting
    /// (`LossConfig::default_proxy_lr_mult`). The pair losses have nothing to train.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_lr_mult: Option<f64>,
    /// Iterations at which the learning rate is multiplied by `lr_gamma`.
    pub lr_steps: Vec<u64>,
    pub lr_gamma: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            name: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: 5e-4,
            momentum: 0.9,
            backbone_lr_mult: 1.0,
            loss_lr_mult: None,
            lr_steps: Vec::new(),
            lr_gamma: 0.1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// The K of Recall@K.
    pub ks: Vec<usize>,
    /// Images per forward pass when embedding a split.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { ks: vec![1, 2, 4, 8], batch_size: 250 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    Invalid(String),
}

impl TrainConfig {
    /// What `auto` normalisation means for photos: the scheme the backbone's published weights
    /// were trained with.
    fn auto_normalization(&self) -> crate::data::Normalization {
        self.model.backbone.normalization()
    }

    /// Channels of the network input: grey Fashion-MNIST or RGB photos.
    pub fn in_channels(&self) -> usize {
        if self.data.dataset.files().is_some() { 3 } else { 1 }
    }

    /// The dataset with this run's transforms.
    pub fn inputs(&self) -> Result<crate::data::Inputs, crate::data::ListError> {
        self.data.inputs(&self.augment, self.auto_normalization())
    }

    /// The input this run's model takes, for embedding other files.
    pub fn input_format(&self) -> crate::data::InputFormat {
        self.data.input_format(&self.augment, self.auto_normalization())
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: TrainConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(toml_error_line(&e, text)))?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a training config serialises to TOML")
    }

    /// Applies `section.field=value` overrides (the value in TOML syntax; bare words are strings).
    /// A `loss.name` override comes first wherever it is given: it resets the loss parameters to
    /// that loss's defaults, and the other `loss.*` overrides then apply to it.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Self, ConfigError> {
        let base: toml::Table = toml::from_str(&self.to_toml()).expect("own TOML parses");
        let mut items = Vec::with_capacity(overrides.len());
        for item in overrides {
            let (key, raw) = item.split_once('=').ok_or_else(|| ConfigError::Parse(format!("`{item}`: expected section.field=value")))?;
            let path: Vec<&str> = key.trim().split('.').collect();
            items.push((item, path, parse_value(raw.trim())));
        }
        items.sort_by_key(|(_, path, _)| *path != ["loss", "name"]);
        let apply = |doc: &mut toml::Table, (item, path, value): &(&String, Vec<&str>, toml::Value)| {
            if *path == ["loss", "name"] {
                doc.insert("loss".into(), toml::Value::Table(Default::default()));
            }
            set_path(doc, path, value.clone()).map_err(|e| ConfigError::Parse(format!("`{item}`: {e}")))
        };
        let mut doc = base.clone();
        for item in &items {
            apply(&mut doc, item)?;
        }
        let config: TrainConfig = toml::Value::Table(doc).try_into().map_err(|e: toml::de::Error| {
            // Name the first override the config stops deserialising at, replaying them: the
            // error itself only knows the section.
            let mut doc = base;
            let culprit = items
                .iter()
                .find(|item| apply(&mut doc, item).is_ok() && toml::Value::Table(doc.clone()).try_into::<TrainConfig>().is_err());
            ConfigError::Parse(match culprit {
                Some((item, _, _)) => format!("`{item}`: {}", e.message()),
                None => e.message().to_string(),
            })
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        // TOML's integers are signed 64-bit: a larger count read from a file (the TOML reader
        // takes it into a u64) could not be written back to config.toml.
        let margin_seed = match &self.loss {
            LossConfig::Margin(margin) => Some(("loss.seed", margin.seed)),
            _ => None,
        };
        let counts = [
            ("xbm.start_iteration", self.xbm.start_iteration),
            ("run.iterations", self.run.iterations),
            ("run.eval_interval", self.run.eval_interval),
            ("run.checkpoint_interval", self.run.checkpoint_interval),
            ("run.seed", self.run.seed),
        ];
        let steps = self.optimizer.lr_steps.iter().map(|&s| ("optimizer.lr_steps", s));
        if let Some((name, value)) = counts.into_iter().chain(steps).chain(margin_seed).find(|&(_, v)| v > i64::MAX as u64) {
            return bad(format!("{name} = {value}: at most {} (a TOML integer)", i64::MAX));
        }
        // Every float, wherever it is (loss parameters included), is a number: `nan` and `inf`
        // are TOML floats, and would pass the comparisons below or poison training silently.
        let as_toml =
            toml::Value::try_from(self).map_err(|e| ConfigError::Invalid(format!("the config cannot be written as TOML: {e}")))?;
        if let Some((path, value)) = non_finite_float(&as_toml, "") {
            return bad(format!("{path} = {value}: must be a finite number"));
        }
        // Sizes that allocate, bounded far above any published setting and below what would
        // exhaust memory before the first iteration.
        for (name, value, max) in [
            ("sampler.p", self.sampler.p, MAX_P),
            ("sampler.k", self.sampler.k, MAX_K),
            ("model.dim", self.model.dim, MAX_DIM),
            ("augment.crop", self.augment.crop as usize, MAX_CROP),
            ("augment.resize", self.augment.resize as usize, MAX_RESIZE),
            ("data.workers", self.data.workers, MAX_WORKERS),
            ("data.prefetch", self.data.prefetch, MAX_PREFETCH),
            ("eval.batch_size", self.eval.batch_size, MAX_EVAL_BATCH),
            ("eval.ks (largest)", self.eval.ks.iter().copied().max().unwrap_or(1), MAX_K_OF_RECALL),
            ("eval.ks (count)", self.eval.ks.len(), MAX_KS),
        ] {
            if value > max {
                return bad(format!("{name} = {value}: at most {max}"));
            }
        }
        if self.xbm.memory_size > MAX_MEMORY_ROWS || self.xbm.memory_size.saturating_mul(self.model.dim) > MAX_MEMORY_VALUES {
            return bad(format!(
                "xbm.memory_size = {} rows of model.dim = {}: at most {MAX_MEMORY_ROWS} rows and {MAX_MEMORY_VALUES} values",
                self.xbm.memory_size, self.model.dim
            ));
        }
        if self.xbm.enabled() && !self.loss.has_reference_form() {
            return bad(format!(
                "xbm.memory_size = {}: cross-batch memory works with {}, not with the loss {}",
                self.xbm.memory_size,
                crate::loss::LossConfig::REFERENCE_NAMES.join(", "),
                self.loss.name()
            ));
        }
        if self.xbm.weight < 0.0 {
            return bad(format!("xbm.weight = {}: must be ≥ 0", self.xbm.weight));
        }
        if let Some((classes, dim)) = self.loss.proxy_sizes() {
            if classes > MAX_CLASSES {
                return bad(format!("loss.num_classes = {classes}: at most {MAX_CLASSES}"));
            }
            if dim != 0 && dim != self.model.dim {
                return bad(format!(
                    "loss.dim = {dim} but model.dim = {}: the proxies live in the embedding space (leave loss.dim out)",
                    self.model.dim
                ));
            }
        }
        if let Some(mult) = self.optimizer.loss_lr_mult
            && !(mult.is_finite() && mult >= 0.0)
        {
            return bad(format!("optimizer.loss_lr_mult = {mult}: must be ≥ 0"));
        }
        if self.sampler.p * self.sampler.k > MAX_BATCH {
            return bad(format!(
                "sampler.p × sampler.k = {} × {} = {} images a batch: at most {MAX_BATCH}",
                self.sampler.p,
                self.sampler.k,
                self.sampler.p * self.sampler.k
            ));
        }
        if self.model.pretrained.is_some() && self.model.backbone == crate::model::BackboneKind::SmallCnn {
            return bad("model.pretrained: the small CNN has no pretrained weights; choose an ImageNet backbone (--backbone)".into());
        }
        if self.sampler.p < 2 {
            return bad(format!("sampler.p = {}: a batch needs at least 2 classes", self.sampler.p));
        }
        if self.sampler.k < 2 {
            return bad(format!("sampler.k = {}: a batch needs at least 2 images per class", self.sampler.k));
        }
        if self.model.dim == 0 {
            return bad("model.dim must be at least 1".into());
        }
        if !(self.optimizer.lr.is_finite() && self.optimizer.lr > 0.0) {
            return bad(format!("optimizer.lr = {}: must be positive", self.optimizer.lr));
        }
        if !(self.optimizer.weight_decay.is_finite() && self.optimizer.weight_decay >= 0.0) {
            return bad(format!("optimizer.weight_decay = {}: must be ≥ 0", self.optimizer.weight_decay));
        }
        if !(self.optimizer.backbone_lr_mult.is_finite() && self.optimizer.backbone_lr_mult >= 0.0) {
            return bad(format!("optimizer.backbone_lr_mult = {}: must be ≥ 0", self.optimizer.backbone_lr_mult));
        }
        let augment = &self.augment;
        let custom = augment.normalize == NormalizeKind::Custom;
        if custom && (augment.mean.len() != augment.std.len() || !matches!(augment.mean.len(), 1 | 3)) {
            return bad("augment.normalize = \"custom\" needs augment.mean and augment.std with 1 or 3 values each".into());
        }
        if custom && self.data.dataset.files().is_none() && augment.mean.len() != 1 {
            return bad("augment.mean and augment.std: Fashion-MNIST images have 1 channel".into());
        }
        if !custom && (!augment.mean.is_empty() || !augment.std.is_empty()) {
            return bad("augment.mean and augment.std are used only with augment.normalize = \"custom\"".into());
        }
        if augment.std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            return bad("augment.std must be positive".into());
        }
        if augment.crop == 0 || augment.resize < augment.crop {
            return bad(format!("augment.crop = {} and augment.resize = {}: need 1 ≤ crop ≤ resize", augment.crop, augment.resize));
        }
        let [lo, hi] = augment.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return bad(format!("augment.crop_scale = [{lo}, {hi}]: need 0 < low ≤ high ≤ 1"));
        }
        let [lo, hi] = augment.crop_ratio;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return bad(format!("augment.crop_ratio = [{lo}, {hi}]: need 0 < low ≤ high"));
        }
        if self.data.prefetch == 0 {
            return bad("data.prefetch must be at least 1".into());
        }
        if self.eval.ks.is_empty() || self.eval.ks.contains(&0) {
            return bad("eval.ks must list K ≥ 1".into());
        }
        if self.eval.batch_size == 0 {
            return bad("eval.batch_size must be at least 1".into());
        }
        Ok(())
    }
}

/// Upper bounds of the sizes in a config (see [`TrainConfig::validate`]). Published recipes use
/// P ≤ 128, K ≤ 16, batches ≤ 1,000, dim ≤ 2,048 and 224–299-pixel crops.
pub const MAX_P: usize = 100_000;
pub const MAX_K: usize = 10_000;
pub const MAX_BATCH: usize = 100_000;
pub const MAX_DIM: usize = 65_536;
pub const MAX_CROP: usize = 4_096;
pub const MAX_RESIZE: usize = 8_192;
pub const MAX_WORKERS: usize = 1_024;
pub const MAX_PREFETCH: usize = 64;
pub const MAX_EVAL_BATCH: usize = 100_000;
pub const MAX_K_OF_RECALL: usize = 1_000_000;
pub const MAX_KS: usize = 1_000;
/// Cross-batch memory: XBM's published memories hold up to 55,000 rows of 128–512 values.
pub const MAX_MEMORY_ROWS: usize = 10_000_000;
pub const MAX_MEMORY_VALUES: usize = 1 << 31;
/// Proxies of a proxy loss given in the config (SOP, the largest published set, has 11,318).
pub const MAX_CLASSES: usize = 10_000_000;

/// The first float in `value` that is NaN or infinite, with its dotted path.
fn non_finite_float(value: &toml::Value, path: &str) -> Option<(String, f64)> {
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match value {
        toml::Value::Float(f) if !f.is_finite() => Some((path.to_string(), *f)),
        toml::Value::Table(table) => table.iter().find_map(|(k, v)| non_finite_float(v, &join(k))),
        toml::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| non_finite_float(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// A TOML error as one line: where in `text` (line and column, from 1) and what.
fn toml_error_line(e: &toml::de::Error, text: &str) -> String {
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else { return e.message().to_string() };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {}", e.message())
}

fn parse_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut table) => table.remove("v").expect("key v was written"),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.to_string(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => Err(format!("`{first}` is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(overrides: &[&str]) -> String {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        TrainConfig::default().with_overrides(&overrides).expect_err("refused").to_string()
    }

    #[test]
    fn every_float_must_be_finite_and_sizes_have_upper_bounds() {
        assert!(refused(&["loss.beta=nan"]).contains("loss.beta = NaN: must be a finite number"));
        assert!(refused(&["loss.name=margin", "loss.beta=inf"]).contains("loss.beta = inf: must be a finite number"));
        assert!(refused(&["augment.crop_ratio=[0.5, inf]"]).contains("augment.crop_ratio[1] = inf"));
        assert!(refused(&["optimizer.lr_gamma=-inf"]).contains("optimizer.lr_gamma = -inf"));
        assert!(refused(&["augment.crop=100000", "augment.resize=100000"]).contains("augment.crop = 100000: at most 4096"));
        assert!(refused(&["sampler.p=1000", "sampler.k=1000"]).contains("1000 × 1000 = 1000000 images a batch: at most 100000"));
        assert!(refused(&["model.dim=1000000"]).contains("model.dim = 1000000: at most 65536"));
        assert!(refused(&["data.prefetch=1000000"]).contains("data.prefetch = 1000000: at most 64"));
        assert!(refused(&["data.workers=99999"]).contains("data.workers = 99999"));
        assert!(refused(&["eval.batch_size=10000000"]).contains("eval.batch_size = 10000000"));
        assert!(refused(&["eval.ks=[1, 100000000]"]).contains("eval.ks (largest) = 100000000"));
        // Found by the fuzzer: a count past i64::MAX in a file was read, then could not be
        // written back (a panic in validation and in config.toml's writer).
        for (section, key) in [("run", "eval_interval"), ("run", "seed"), ("optimizer", "lr_steps")] {
            let big = "10088888888888888888";
            let value = if key == "lr_steps" { format!("[{big}]") } else { big.to_string() };
            let file = format!("[{section}]\n{key} = {value}\n");
            let message = TrainConfig::from_toml(&file).map(|_| ()).unwrap_err().to_string();
            assert!(message.contains(&format!("{section}.{key} = {big}: at most 9223372036854775807")), "{message}");
        }
        // The same rules hold for a config file.
        let file = TrainConfig::default().to_toml().replace("prefetch = 2", "prefetch = 100");
        assert!(TrainConfig::from_toml(&file).unwrap_err().to_string().contains("data.prefetch = 100: at most 64"));
        // Published settings pass.
        let overrides: Vec<String> = ["sampler.p=16", "sampler.k=5", "augment.crop=227", "augment.resize=256", "model.dim=512"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        TrainConfig::default().with_overrides(&overrides).unwrap();
    }

    #[test]
    fn default_round_trips_through_toml() {
        let config = TrainConfig::default();
        let text = config.to_toml();
        assert_eq!(TrainConfig::from_toml(&text).unwrap(), config);
        assert_eq!(TrainConfig::from_toml("").unwrap(), config);
    }

    #[test]
    fn overrides_reach_nested_fields_and_loss_parameters() {
        let config = TrainConfig::default()
            .with_overrides(&["optimizer.lr=0.01".into(), "loss.name=margin".into(), "loss.beta=1.5".into()])
            .unwrap();
        assert_eq!(config.optimizer.lr, 0.01);
        match config.loss {
            LossConfig::Margin(m) => assert_eq!(m.beta, 1.5),
            other => panic!("expected margin, got {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        assert!(TrainConfig::from_toml("[run]\niteratons = 5\n").is_err());
        assert!(TrainConfig::default().with_overrides(&["sampler.p=1".into()]).is_err());
        assert!(TrainConfig::default().with_overrides(&["optimizer.lr=-1".into()]).is_err());
        assert!(TrainConfig::default().with_overrides(&["optimizer".into()]).is_err());
    }

    #[test]
    fn errors_are_one_line_naming_the_override_or_the_place_in_the_file() {
        let message = |r: Result<TrainConfig, ConfigError>| r.unwrap_err().to_string();
        let config = TrainConfig::default();
        let bad_value = message(config.with_overrides(&["run.seed=3".into(), "loss.beta=abc".into(), "run.iterations=9".into()]));
        assert_eq!(bad_value, "`loss.beta=abc`: invalid type: string \"abc\", expected f64");
        let bad_section = message(config.with_overrides(&["run=5".into()]));
        assert_eq!(bad_section, "`run=5`: invalid type: integer `5`, expected struct RunConfig");
        let unknown = message(config.with_overrides(&["loss.bet=3".into()]));
        assert!(unknown.starts_with("`loss.bet=3`: unknown field `bet`, expected one of `alpha`, `beta`"), "{unknown}");

        let in_file = message(TrainConfig::from_toml("[run]\nseed = 1\n  iteratons = 5\n"));
        assert!(in_file.starts_with("line 3, column 3: unknown field `iteratons`, expected one of `iterations`"), "{in_file}");
        let value_in_file = message(TrainConfig::from_toml("[run]\niterations = \"x\"\n"));
        assert_eq!(value_in_file, "line 2, column 14: invalid type: string \"x\", expected u64");
        for m in [bad_value, bad_section, unknown, in_file, value_in_file] {
            assert!(!m.contains('\n'), "{m:?}");
        }
    }

    #[test]
    fn a_loss_name_override_applies_before_that_loss_parameters_wherever_it_is_given() {
        let config = TrainConfig::default().with_overrides(&["loss.margin=0.3".into(), "loss.name=margin".into()]).unwrap();
        match config.loss {
            LossConfig::Margin(m) => assert_eq!(m.margin, 0.3),
            other => panic!("expected margin, got {other:?}"),
        }
    }

    #[test]
    fn step_schedule() {
        let config = OptimizerConfig { lr_steps: vec![10, 20], lr_gamma: 0.5, ..Default::default() };
        assert_eq!(config.lr_at(0), 1e-3);
        assert_eq!(config.lr_at(10), 5e-4);
        assert_eq!(config.lr_at(25), 2.5e-4);
    }
}
