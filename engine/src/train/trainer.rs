//! One training run in memory: model, optimiser, loss, sampler and data, advanced a step at a time.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::store::{ModuleRecord, RecordError};
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use super::checkpoint::{Checkpoint, TrainSetSummary, TrainState};
use super::config::TrainConfig;
use super::cross_batch_memory::{CrossBatchMemory, MemoryFormatError};
use super::evaluation::{EmbedError, EmbedProgress, Evaluation, evaluate};
use crate::data::sampler::mix;
use crate::data::{BadImage, Batch, Inputs, ListError, Pending, PkSampler, SamplerError, SamplerState};
use crate::loss::MetricLoss;
use crate::model::Embedder;

/// Stream id of the augmentation randomness (the sampler uses its own streams).
const AUGMENT_STREAM: u64 = 0xA0_6E;
/// Stream id of a proxy loss's initial proxies.
const PROXY_STREAM: u64 = 0x9B_0C;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Data(#[from] ListError),
    #[error("{0}")]
    BadImage(#[from] BadImage),
    #[error("{0}")]
    Sampler(#[from] SamplerError),
    /// The config does not fit the data (a proxy loss's num_classes, say).
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Memory(#[from] MemoryFormatError),
    #[error("{what} at iteration {iteration}; training stopped")]
    NonFinite { iteration: u64, what: String },
    #[error("checkpoint: {0}")]
    Record(#[from] RecordError),
    #[error(
        "the training set changed since the run started ({} images of {} classes then, {} of {} now): resuming would train on other classes under the same labels; start a new run",
        then.images, then.classes, now.images, now.classes
    )]
    TrainSetChanged { then: TrainSetSummary, now: TrainSetSummary },
    /// An evaluation's progress callback asked to stop before the test images were all embedded.
    #[error("evaluation stopped")]
    EvaluationStopped,
    #[cfg(feature = "pretrained")]
    #[error("{0}")]
    Pretrained(#[from] crate::weights::WeightError),
}

impl From<EmbedError> for TrainError {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::BadImage(bad) => TrainError::BadImage(bad),
            EmbedError::Stopped => TrainError::EvaluationStopped,
        }
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// The iteration just completed (1-based).
    pub iteration: u64,
    pub loss: f64,
    /// Learning rate of the head in this step.
    pub lr: f64,
    /// The cross-batch memory's term (before `xbm.weight`), on steps that used the memory.
    pub xbm_loss: Option<f64>,
}

pub struct Trainer {
    config: TrainConfig,
    /// The training device, with autodiff.
    device: Device,
    /// `None` only while an optimiser step owns it.
    model: Option<Embedder>,
    optimizer: ModuleOptimizer,
    /// `None` only while an optimiser step owns it (a proxy loss's W is trained).
    loss: Option<MetricLoss>,
    /// The training split's labels in increasing order: the loss sees label `classes[c]` as `c`,
    /// the numbering a proxy loss's rows need (the pair losses only compare labels).
    classes: Vec<i64>,
    /// With `[xbm]`: the embeddings of earlier batches.
    memory: Option<CrossBatchMemory>,
    sampler: PkSampler,
    inputs: Arc<Inputs>,
    /// Training batches being decoded, oldest first, each with the sampler state before it was
    /// drawn (what a checkpoint records while batches are in flight).
    queue: VecDeque<(SamplerState, Pending<Result<Batch, BadImage>>)>,
    /// Images left out so far (with `skip_bad_images`), each reported once.
    skipped: BTreeSet<PathBuf>,
    new_skipped: Vec<BadImage>,
    iteration: u64,
}

impl Trainer {
    /// A fresh run: the model initialised from the run's seed, its backbone then from
    /// `model.pretrained` where the config names a file.
    pub fn new(config: &TrainConfig, device: &Device) -> Result<Self, TrainError> {
        #[cfg_attr(not(feature = "pretrained"), allow(unused_mut))]
        let mut trainer = Self::initialised(config, device)?;
        #[cfg(feature = "pretrained")]
        if let Some(path) = &config.model.pretrained {
            let file = crate::weights::WeightFile::open(path)?;
            let model = trainer.model.as_mut().expect("model present");
            let backbone = model.backbone_mut().ok_or_else(|| crate::weights::WeightError {
                path: path.clone(),
                message: "the small CNN has no pretrained weights; choose an ImageNet backbone".into(),
            })?;
            file.load_into(backbone, config.model.backbone, false)?;
        }
        Ok(trainer)
    }

    fn initialised(config: &TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let inputs = config.inputs()?;
        let sampler = PkSampler::new(inputs.train_labels(), config.sampler.p, config.sampler.k, config.run.seed)?;
        let device = device.clone().autodiff();
        let model = config.model.init_seeded(config.in_channels(), config.run.seed, &device);
        let mut classes = inputs.train_labels().to_vec();
        classes.sort_unstable();
        classes.dedup();
        let loss = config.loss.clone().sized_for(classes.len(), config.model.dim).map_err(TrainError::Config)?;
        Ok(Self {
            config: config.clone(),
            loss: Some(loss.init_seeded(mix(config.run.seed, 0, PROXY_STREAM), &device)),
            memory: config.xbm.enabled().then(|| config.xbm.init(config.model.dim, &device)),
            classes,
            optimizer: config.optimizer.init(),
            model: Some(model),
            device,
            sampler,
            inputs: Arc::new(inputs),
            queue: VecDeque::new(),
            skipped: BTreeSet::new(),
            new_skipped: Vec::new(),
            iteration: 0,
        })
    }

    /// Continues a run exactly where `checkpoint` left it.
    /// Burn loads the optimiser state onto its default device (`BURN_DEVICE`, else the GPU runtime
    /// in a build with wgpu), from where the first step moves it to `device`: where no GPU driver
    /// exists, set `BURN_DEVICE=flex` (the `dml` command does).
    pub fn resume(config: &TrainConfig, device: &Device, checkpoint: &Checkpoint) -> Result<Self, TrainError> {
        let mut trainer = Self::initialised(config, device)?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(checkpoint.model.clone()))?;
        let model = trainer.model.take().expect("model present").try_load_record(record)?;
        trainer.model = Some(model);
        let optim_record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(checkpoint.optimizer.clone()))?;
        trainer.optimizer = trainer.optimizer.load_record(optim_record);
        if !checkpoint.loss.is_empty() {
            let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(checkpoint.loss.clone()))?;
            let loss = trainer.loss.take().expect("loss present").try_load_record(record)?;
            trainer.loss = Some(loss);
        }
        if let Some(memory) = trainer.memory.as_mut()
            && !checkpoint.memory.is_empty()
        {
            memory.load(&checkpoint.memory)?;
        }
        if let Some(started_on) = &checkpoint.state.train_set {
            let now = trainer.train_set();
            if *started_on != now {
                return Err(TrainError::TrainSetChanged { then: started_on.clone(), now });
            }
        }
        trainer.sampler.resume(checkpoint.state.sampler)?;
        trainer.loss().set_random_calls(checkpoint.state.loss_calls);
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

    /// The loss, with its trained proxies for a proxy loss.
    pub fn loss(&self) -> &MetricLoss {
        self.loss.as_ref().expect("loss present between steps")
    }

    /// The cross-batch memory, with `[xbm]`.
    pub fn memory(&self) -> Option<&CrossBatchMemory> {
        self.memory.as_ref()
    }

    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    /// Images left out since the last call (each image once per run).
    pub fn take_skipped(&mut self) -> Vec<BadImage> {
        std::mem::take(&mut self.new_skipped)
    }

    fn note_skipped(&mut self, bad: &[BadImage]) {
        for b in bad {
            if self.skipped.insert(b.path.clone()) {
                self.new_skipped.push(b.clone());
            }
        }
    }

    /// The next training batch; batches after it start decoding in the background.
    fn next_batch(&mut self) -> Result<Batch, BadImage> {
        let depth = self.config.data.prefetch.max(1);
        let hflip = self.config.augment.hflip;
        while self.queue.len() < depth {
            let iteration = self.iteration + self.queue.len() as u64;
            let before = self.sampler.state();
            let indices = self.sampler.next_batch();
            let seed = mix(self.config.run.seed, iteration, AUGMENT_STREAM);
            let pending = self.inputs.prefetch(move |inputs| inputs.train_batch(&indices, seed, hflip));
            self.queue.push_back((before, pending));
        }
        let (_, pending) = self.queue.pop_front().expect("queue filled above");
        pending.wait()
    }

    /// The sampler state a resumed run must start from: before the first batch not yet used.
    fn sampler_state(&self) -> SamplerState {
        self.queue.front().map_or_else(|| self.sampler.state(), |(state, _)| *state)
    }

    /// One optimiser step on the next P×K batch. A NaN or infinite loss leaves the model as it
    /// was and is an error.
    pub fn step(&mut self) -> Result<StepReport, TrainError> {
        let batch = self.next_batch()?;
        self.note_skipped(&batch.skipped);
        let n = batch.labels.len();
        let classes = &self.classes;
        let labels: Vec<i64> =
            batch.labels.iter().map(|l| classes.binary_search(l).expect("a training label is one of the split's") as i64).collect();
        let images = Tensor::<4>::from_data(TensorData::new(batch.pixels, batch.shape), &self.device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &self.device);

        let model = self.model.take().expect("model present between steps");
        let loss_fn = self.loss.take().expect("loss present between steps");
        let embeddings = model.forward(images);
        // Mining compares similarities, and every comparison with NaN is false: NaN embeddings
        // would silently give a zero loss instead of a NaN one, so they are checked themselves.
        let broken = embeddings.clone().is_nan().any().into_scalar::<bool>() || embeddings.clone().is_inf().any().into_scalar::<bool>();
        let mut loss = loss_fn.forward(embeddings.clone(), labels.clone());
        let xbm = &self.config.xbm;
        let remembers = xbm.active_after(self.iteration);
        let memory_term = match &self.memory {
            Some(memory) if remembers && !memory.is_empty() => {
                let term = loss_fn.forward_against(embeddings.clone(), labels.clone(), memory.rows(), memory.labels());
                loss = loss + term.clone().mul_scalar(xbm.weight);
                Some(term.into_scalar::<f32>() as f64)
            }
            _ => None,
        };
        let value = loss.clone().into_scalar::<f32>() as f64;
        if broken || !value.is_finite() {
            self.model = Some(model);
            self.loss = Some(loss_fn);
            let what = if broken { "the embeddings are not finite (NaN or ∞)".to_string() } else { format!("the loss is {value}") };
            return Err(TrainError::NonFinite { iteration: self.iteration + 1, what });
        }
        let mut grads = loss.backward();
        let lr = self.config.optimizer.lr_at(self.iteration);
        // A proxy loss's W first: what remains are the model's gradients.
        let proxy_grads = GradientsParams::from_module(&mut grads, &loss_fn);
        let mult = self.config.optimizer.backbone_lr_mult;
        let model = if mult == 1.0 {
            let grads = GradientsParams::from_grads(grads, &model);
            self.optimizer.step(lr, model, grads)
        } else {
            let (backbone, head) = model.split_gradients(grads);
            let model = self.optimizer.step(lr * mult, model, backbone);
            self.optimizer.step(lr, model, head)
        };
        self.model = Some(model);
        self.loss = Some(match self.config.loss.default_proxy_lr_mult() {
            Some(default) => {
                let mult = self.config.optimizer.loss_lr_mult.unwrap_or(default);
                self.optimizer.step(lr * mult, loss_fn, proxy_grads)
            }
            None => loss_fn,
        });
        if let Some(memory) = self.memory.as_mut().filter(|_| remembers) {
            memory.push(embeddings, labels);
        }
        self.iteration += 1;
        Ok(StepReport { iteration: self.iteration, loss: value, lr, xbm_loss: memory_term })
    }

    /// Recall@K, MAP@R and R-Precision on the unseen test classes, with the model in inference
    /// mode; `progress` follows the embedding of the test images and may stop it
    /// ([`TrainError::EvaluationStopped`]).
    pub fn evaluate(&mut self, progress: EmbedProgress) -> Result<Evaluation, TrainError> {
        let device = self.device.clone().inner();
        let evaluation = evaluate(&self.model().valid(), &self.inputs, &self.config, &device, progress)?;
        self.note_skipped(&evaluation.skipped);
        Ok(evaluation)
    }

    /// The model's parameters and running statistics as burnpack bytes.
    pub fn model_bytes(&self) -> Result<Vec<u8>, TrainError> {
        // Through `valid`: batch-norm running statistics live in per-thread buffers until synced,
        // and `valid` syncs them; a record of the training module could miss the last update.
        Ok(self.model().valid().into_record().into_bytes()?.to_vec())
    }

    /// The summary of the training split, as a checkpoint records it.
    pub fn train_set(&self) -> TrainSetSummary {
        let paths = match self.inputs.as_ref() {
            Inputs::Files { dataset, .. } => Some(&dataset.train.paths[..]),
            Inputs::Grey { .. } => None,
        };
        TrainSetSummary::of(self.inputs.train_labels(), paths)
    }

    pub fn checkpoint(&self) -> Result<Checkpoint, TrainError> {
        Ok(Checkpoint {
            state: TrainState {
                iteration: self.iteration,
                sampler: self.sampler_state(),
                loss_calls: self.loss().random_calls(),
                train_set: Some(self.train_set()),
            },
            model: self.model_bytes()?,
            optimizer: self.optimizer.to_record().into_bytes()?.to_vec(),
            loss: match self.loss().proxies() {
                Some(_) => self.loss().clone().into_record().into_bytes()?.to_vec(),
                None => Vec::new(),
            },
            memory: self.memory.as_ref().map(CrossBatchMemory::to_bytes).unwrap_or_default(),
        })
    }
}
