//! One training run in memory: model, optimiser, loss, sampler and data, advanced a step at a time.

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, OptimizerRecord, SgdConfig};
use burn::store::{ModuleRecord, RecordError};
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use super::checkpoint::{Checkpoint, TrainState};
use super::config::{OptimizerConfig, OptimizerKind, TrainConfig};
use crate::data::sampler::mix;
use crate::data::{DatasetError, GreyImages, GreyTransform, PkSampler, SamplerError, Split};
use crate::eval::{RetrievalConfig, RetrievalMetrics};
use crate::loss::MetricLoss;
use crate::model::Embedder;

/// Stream id of the augmentation randomness (the sampler uses its own streams).
const AUGMENT_STREAM: u64 = 0xA0_6E;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Data(#[from] DatasetError),
    #[error("{0}")]
    Sampler(#[from] SamplerError),
    #[error("{what} at iteration {iteration}; training stopped")]
    NonFinite { iteration: u64, what: String },
    #[error("checkpoint: {0}")]
    Record(#[from] RecordError),
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// The iteration just completed (1-based).
    pub iteration: u64,
    pub loss: f64,
    /// Learning rate of the head in this step.
    pub lr: f64,
}

/// Embeddings of the test split with their retrieval metrics.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub metrics: RetrievalMetrics,
    /// `labels.len() × dim`, row-major.
    pub embeddings: Vec<f32>,
    pub dim: usize,
    pub labels: Vec<i64>,
}

pub struct Trainer {
    config: TrainConfig,
    /// The training device, with autodiff.
    device: Device,
    /// `None` only while an optimiser step owns it.
    model: Option<Embedder>,
    optimizer: ModuleOptimizer,
    loss: MetricLoss,
    sampler: PkSampler,
    split: Split,
    transform: GreyTransform,
    iteration: u64,
}

fn optimizer(config: &OptimizerConfig) -> ModuleOptimizer {
    let decay = (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.name {
        // ε as in PyTorch, whose reference runs these defaults reproduce.
        OptimizerKind::Adam => AdamConfig::new().with_epsilon(1e-8).with_weight_decay(decay).init(),
        OptimizerKind::Adamw => {
            AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(config.weight_decay as f32).init()
        }
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum((config.momentum > 0.0).then(|| {
                MomentumConfig::new().with_momentum(config.momentum).with_dampening(0.0)
            }))
            .init(),
    }
}

impl Trainer {
    /// A fresh run: the model initialised from the run's seed.
    pub fn new(config: &TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let split = config.data.load()?;
        let sampler = PkSampler::new(&split.train.labels, config.sampler.p, config.sampler.k, config.run.seed)?;
        let device = device.clone().autodiff();
        let model = config.model.init_seeded(1, config.run.seed, &device);
        let transform = GreyTransform::from_config(&config.augment);
        Ok(Self {
            config: config.clone(),
            loss: config.loss.init(&device),
            optimizer: optimizer(&config.optimizer),
            model: Some(model),
            device,
            sampler,
            split,
            transform,
            iteration: 0,
        })
    }

    /// Continues a run exactly where `checkpoint` left it.
    pub fn resume(config: &TrainConfig, device: &Device, checkpoint: &Checkpoint) -> Result<Self, TrainError> {
        let mut trainer = Self::new(config, device)?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(checkpoint.model.clone()))?;
        let model = trainer.model.take().expect("model present").try_load_record(record)?;
        trainer.model = Some(model);
        let optim_record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(checkpoint.optimizer.clone()))?;
        trainer.optimizer = trainer.optimizer.load_record(optim_record);
        trainer.sampler.resume(checkpoint.state.sampler);
        trainer.loss.set_random_calls(checkpoint.state.loss_calls);
        trainer.iteration = checkpoint.state.iteration;
        Ok(trainer)
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    pub fn model(&self) -> &Embedder {
        self.model.as_ref().expect("model present between steps")
    }

    pub fn split(&self) -> &Split {
        &self.split
    }

    /// One optimiser step on the next P×K batch. A NaN or infinite loss leaves the model as it
    /// was and is an error.
    pub fn step(&mut self) -> Result<StepReport, TrainError> {
        let indices = self.sampler.next_batch();
        let train = &self.split.train;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(self.config.run.seed, self.iteration, AUGMENT_STREAM));
        let pixels = self.transform.batch(train, &indices, self.config.augment.hflip.then_some(&mut rng));
        let n = indices.len();
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [n, 1, train.height, train.width]), &self.device);
        let labels: Vec<i64> = indices.iter().map(|&i| train.labels[i]).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &self.device);

        let model = self.model.take().expect("model present between steps");
        let embeddings = model.forward(images);
        // Mining compares similarities, and every comparison with NaN is false: NaN embeddings
        // would silently give a zero loss instead of a NaN one, so they are checked themselves.
        let broken = embeddings.clone().is_nan().any().into_scalar::<bool>()
            || embeddings.clone().is_inf().any().into_scalar::<bool>();
        let loss = self.loss.forward(embeddings, labels);
        let value = loss.clone().into_scalar::<f32>() as f64;
        if broken || !value.is_finite() {
            self.model = Some(model);
            let what = if broken { "the embeddings are not finite (NaN or ∞)".to_string() } else { format!("the loss is {value}") };
            return Err(TrainError::NonFinite { iteration: self.iteration + 1, what });
        }
        let grads = loss.backward();
        let lr = self.config.optimizer.lr_at(self.iteration);
        let mult = self.config.optimizer.backbone_lr_mult;
        let model = if mult == 1.0 {
            let grads = burn::optim::GradientsParams::from_grads(grads, &model);
            self.optimizer.step(lr, model, grads)
        } else {
            let (backbone, head) = model.split_gradients(grads);
            let model = self.optimizer.step(lr * mult, model, backbone);
            self.optimizer.step(lr, model, head)
        };
        self.model = Some(model);
        self.iteration += 1;
        Ok(StepReport { iteration: self.iteration, loss: value, lr })
    }

    /// Embeds `images` with the model in inference mode (batch-norm running statistics).
    pub fn embed(&self, images: &GreyImages) -> (Vec<f32>, usize) {
        let device = self.device.clone().inner();
        (self.model().embed_grey(images, &self.transform, self.config.eval.batch_size, &device), self.config.model.dim)
    }

    /// Recall@K, MAP@R and R-Precision on the unseen test classes.
    pub fn evaluate(&self) -> Evaluation {
        let (embeddings, dim) = self.embed(&self.split.test);
        let labels = self.split.test.labels.clone();
        let device = self.device.clone().inner();
        let tensor = Tensor::<2>::from_data(TensorData::new(embeddings.clone(), [labels.len(), dim]), &device);
        let metrics = RetrievalConfig::new(&self.config.eval.ks).evaluate(tensor, &labels);
        Evaluation { metrics, embeddings, dim, labels }
    }

    /// The model's parameters and running statistics as burnpack bytes.
    pub fn model_bytes(&self) -> Result<Vec<u8>, TrainError> {
        // Through `valid`: batch-norm running statistics live in per-thread buffers until synced,
        // and `valid` syncs them; a record of the training module could miss the last update.
        Ok(self.model().valid().into_record().into_bytes()?.to_vec())
    }

    pub fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        Ok(Checkpoint {
            state: TrainState {
                iteration: self.iteration,
                sampler: self.sampler.state(),
                loss_calls: self.loss.random_calls(),
            },
            model: self.model_bytes()?,
            optimizer: self.optimizer.to_record().into_bytes()?.to_vec(),
        })
    }
}
