//! Pretrained weights: PyTorch files (`.pth` / `.pt` in the zip format of PyTorch ≥ 1.6, and the
//! older pickle + raw storage format) and `.safetensors` files, read by Burn's store and renamed
//! into dml's backbones. A file either loads whole or not at all: every tensor the backbone needs
//! must be present with its shape before any is applied.

pub mod keys;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, SafetensorsStore, bridge};
use burn::tensor::DType;

use crate::io::one_line;
use crate::model::BackboneKind;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WeightError {
    pub path: PathBuf,
    pub message: String,
}

fn error(path: &Path, message: impl std::fmt::Display) -> WeightError {
    WeightError { path: path.to_path_buf(), message: message.to_string() }
}

/// Containers that training scripts wrap a state dict in, stripped when every name has them.
const WRAPPERS: [&str; 4] = ["state_dict.", "model_state_dict.", "model.", "module."];

/// The tensors of a weight file, by name; their bytes are read only when applied.
pub struct WeightFile {
    pub path: PathBuf,
    /// What kind of file it is, in words.
    pub format: String,
    /// A wrapper prefix (`state_dict.`, DataParallel's `module.`) removed from every name.
    pub stripped: Vec<String>,
    tensors: BTreeMap<String, PackTensor>,
}

/// One tensor's entry in a file.
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl WeightFile {
    pub fn open(path: &Path) -> Result<Self, WeightError> {
        let mut head = [0u8; 16];
        let read = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).map_err(|e| error(path, e))?;
        let head = &head[..read];
        let safetensors = read >= 9 && head[8] == b'{';
        let (format, tensors) = if safetensors {
            let mut store = SafetensorsStore::from_file(path).map_indices_contiguous(false);
            let tensors = store.get_all_tensors().map_err(|e| error(path, format!("not a readable safetensors file: {e}")))?;
            ("safetensors".to_string(), tensors.values().cloned().collect::<Vec<_>>())
        } else {
            let reader = PytorchReader::new(path).map_err(|e| error(path, one_line(e.to_string())))?;
            let format = if reader.metadata().is_legacy_format() {
                "PyTorch, legacy format (pickle and raw storages, PyTorch < 1.6)"
            } else if reader.metadata().is_modern_format() {
                "PyTorch, zip format"
            } else {
                "PyTorch"
            };
            let tensors = reader.into_tensors().into_values().map(bridge::from_pytorch).collect();
            (format.to_string(), tensors)
        };
        if tensors.is_empty() {
            return Err(error(path, "holds no tensors"));
        }
        let mut tensors: BTreeMap<String, PackTensor> = tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
        let mut stripped = Vec::new();
        while let Some(wrapper) = WRAPPERS.iter().find(|w| tensors.keys().all(|name| name.starts_with(**w))) {
            tensors = tensors
                .into_iter()
                .map(|(name, mut t)| {
                    t.name = name[wrapper.len()..].to_string();
                    (t.name.clone(), t)
                })
                .collect();
            stripped.push(wrapper.to_string());
        }
        Ok(Self { path: path.to_path_buf(), format, stripped, tensors })
    }

    /// Every tensor, sorted by name.
    pub fn tensors(&self) -> Vec<TensorInfo> {
        self.tensors.values().map(|t| TensorInfo { name: t.name.clone(), shape: t.shape.to_vec(), dtype: t.dtype }).collect()
    }

    /// How this file's tensors line up with what `module` (a backbone, or a [`crate::model::Classifier`]
    /// with `classifier`) needs.
    pub fn match_module<M: ModuleSnapshot>(&self, module: &M, kind: BackboneKind, classifier: bool) -> Matching {
        let plan = Plan::new(kind, classifier);
        let mut matching = Matching::default();
        let mut used = std::collections::HashSet::new();
        for expected in module.collect(None, None, true) {
            let module_path = expected.name.clone();
            let Some((file_name, transposed)) = plan.file_name(&module_path) else {
                // A path of the module that no file unit names: the key tables are wrong.
                matching.missing.push(format!("(no file name for module tensor {module_path})"));
                continue;
            };
            let mut shape = expected.shape.to_vec();
            if transposed {
                shape.reverse();
            }
            match self.tensors.get(&file_name) {
                None => matching.missing.push(file_name),
                Some(found) if found.shape.to_vec() != shape => {
                    used.insert(file_name.clone());
                    matching.mismatched.push(Mismatch { name: file_name, file: found.shape.to_vec(), expected: shape });
                }
                Some(_) => {
                    used.insert(file_name.clone());
                    matching.matched.push((file_name, module_path));
                }
            }
        }
        for name in self.tensors.keys() {
            if used.contains(name) {
                continue;
            }
            if name.ends_with(".num_batches_tracked") {
                matching.ignored.push(name.clone());
            } else {
                matching.unexpected.push(name.clone());
            }
        }
        matching
    }

    /// Loads the backbone's tensors (and, with `classifier`, the ImageNet layer's) into
    /// `module`, or fails before changing it when the file lacks one or has it in another shape.
    pub fn load_into<M: ModuleSnapshot>(&self, module: &mut M, kind: BackboneKind, classifier: bool) -> Result<Matching, WeightError> {
        let matching = self.match_module(module, kind, classifier);
        let hint =
            format!("`dml weights inspect {} --backbone {}` lists how the file and the backbone differ", self.path.display(), kind.name());
        if let Some(first) = matching.missing.first() {
            return Err(error(
                &self.path,
                format!(
                    "{first}: missing from the file, which is not {} weights ({} of the {} tensors it needs are missing; {hint})",
                    kind.name(),
                    matching.missing.len(),
                    matching.missing.len() + matching.matched.len() + matching.mismatched.len()
                ),
            ));
        }
        if let Some(m) = matching.mismatched.first() {
            return Err(error(
                &self.path,
                format!(
                    "{}: shape {:?} in the file, {} needs {:?} ({} tensors differ; {hint})",
                    m.name,
                    m.file,
                    kind.name(),
                    m.expected,
                    matching.mismatched.len()
                ),
            ));
        }
        let mut file_names = HashMap::new();
        let mut tensors = Vec::with_capacity(matching.matched.len());
        for (file_name, module_path) in &matching.matched {
            let mut tensor = self.tensors[file_name].clone();
            let tensor = match tensor.dtype {
                DType::F32 => {
                    tensor.name = module_path.clone();
                    tensor
                }
                DType::F64 | DType::F16 | DType::BF16 => {
                    let shape = tensor.shape.clone();
                    bridge::map_data(tensor, module_path.clone(), DType::F32, shape, |d| d.convert::<f32>())
                }
                other => {
                    return Err(error(&self.path, format!("{file_name}: holds {other:?} values, a floating-point tensor is needed")));
                }
            };
            file_names.insert(module_path.clone(), file_name.clone());
            tensors.push(tensor);
        }
        let result = module.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true);
        if let Some(first) = result.errors.first() {
            let (path, what) = match first {
                burn::store::ApplyError::ShapeMismatch { path, expected, found } => {
                    (path, format!("shape {found:?}, expected {expected:?}"))
                }
                burn::store::ApplyError::DTypeMismatch { path, expected, found } => {
                    (path, format!("{found:?} values, expected {expected:?}"))
                }
                burn::store::ApplyError::AdapterError { path, message } | burn::store::ApplyError::LoadError { path, message } => {
                    (path, one_line(message.clone()))
                }
            };
            let name = file_names.get(path).unwrap_or(path);
            return Err(error(
                &self.path,
                format!(
                    "{name}: {what} ({} of {} tensors could not be read; the model is not used)",
                    result.errors.len(),
                    matching.matched.len()
                ),
            ));
        }
        if let Some((path, _)) = result.missing.first() {
            return Err(error(&self.path, format!("{path}: not loaded")));
        }
        Ok(matching)
    }
}

/// A tensor whose shape in the file differs from the backbone's.
#[derive(Debug)]
pub struct Mismatch {
    pub name: String,
    pub file: Vec<usize>,
    pub expected: Vec<usize>,
}

/// A file's tensors against a backbone's.
#[derive(Debug, Default)]
pub struct Matching {
    /// (name in the file, path in the module).
    pub matched: Vec<(String, String)>,
    /// Names the backbone needs that the file lacks.
    pub missing: Vec<String>,
    pub mismatched: Vec<Mismatch>,
    /// File tensors the backbone has no place for (a classification layer, another model's).
    pub unexpected: Vec<String>,
    /// Batch norm's `num_batches_tracked` counters, which Burn does not keep.
    pub ignored: Vec<String>,
}

/// Module path → file name, for one backbone.
struct Plan {
    units: HashMap<String, String>,
    classifier: Option<&'static str>,
    /// `backbone.` inside a classifier; nothing when loading a backbone itself.
    prefix: &'static str,
}

impl Plan {
    fn new(kind: BackboneKind, classifier: bool) -> Self {
        Self {
            units: keys::backbone_units(kind).into_iter().map(|(file, module)| (module, file)).collect(),
            classifier: if classifier { keys::classifier_unit(kind) } else { None },
            prefix: if classifier { "backbone." } else { "" },
        }
    }

    /// The file's name for a module tensor, and whether the file stores it transposed.
    fn file_name(&self, module_path: &str) -> Option<(String, bool)> {
        let (unit, parameter) = module_path.rsplit_once('.')?;
        if let Some(fc) = self.classifier
            && unit == "fc"
        {
            return Some((format!("{fc}.{parameter}"), parameter == "weight"));
        }
        let unit = unit.strip_prefix(self.prefix)?;
        let file_unit = self.units.get(unit)?;
        Some((format!("{file_unit}.{}", keys::file_parameter(parameter)), false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backbone, Classifier};
    use burn::tensor::Device;

    /// Every tensor of every backbone has a file name, and no two share one.
    #[test]
    fn key_tables_cover_every_backbone_tensor_once() {
        let device = Device::flex();
        for kind in [BackboneKind::Resnet18, BackboneKind::Resnet50, BackboneKind::BnInception, BackboneKind::EfficientnetLite0] {
            let classifier = Classifier::new(kind, 1000, &device).unwrap();
            let plan = Plan::new(kind, true);
            let tensors = classifier.collect(None, None, true);
            let mut names = std::collections::HashSet::new();
            for t in &tensors {
                let (name, _) = plan.file_name(&t.name).unwrap_or_else(|| panic!("{kind:?}: no file name for {}", t.name));
                assert!(names.insert(name.clone()), "{kind:?}: {name} named twice");
            }
            let backbone = Backbone::new(kind, 3, false, &device).unwrap();
            assert_eq!(backbone.collect(None, None, true).len() + 2, tensors.len());
        }
    }

    /// Tensors and values of the published networks' state dicts (without the
    /// `num_batches_tracked` counters): BN-Inception from `BNInception` of PyPI's
    /// `pretrainedmodels` 0.7.4, the ResNets from torchvision 0.29.2's definitions
    /// (bench/published_layout_check.py), EfficientNet-Lite0 from the real
    /// `efficientnet-lite0-57934424.pth` (296 tensors, 4,694,073 values, 49 of them counters).
    #[test]
    fn backbones_hold_as_many_values_as_the_published_networks() {
        let device = Device::flex();
        for (kind, tensors, values) in [
            (BackboneKind::BnInception, 416, 11_315_272),
            (BackboneKind::Resnet18, 102, 11_699_112),
            (BackboneKind::Resnet50, 267, 25_610_152),
            (BackboneKind::EfficientnetLite0, 247, 4_694_073 - 49),
        ] {
            let classifier = Classifier::new(kind, 1000, &device).unwrap();
            let held = classifier.collect(None, None, true);
            let total: usize = held.iter().map(|t| t.shape.iter().product::<usize>()).sum();
            assert_eq!((held.len(), total), (tensors, values), "{kind:?}");
        }
    }
}
