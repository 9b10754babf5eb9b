//! A loaded dataset with its transforms: batches of network input for training and evaluation,
//! decoded on worker threads ahead of use.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rayon::prelude::*;

use super::fashion_mnist::GreyImages;
use super::image_file::{self, ImageTransform};
use super::image_list::{ImageDataset, ImageList, TestSet};
use super::sampler::mix;
use super::{GreyTransform, Split};

/// Network input for a batch of images with their labels.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// `shape[0] × shape[1] × shape[2] × shape[3]` floats, channel-major per image.
    pub pixels: Vec<f32>,
    pub shape: [usize; 4],
    pub labels: Vec<i64>,
    /// Images that could not be read and were left out (only with `skip_bad_images`).
    pub skipped: Vec<BadImage>,
    /// For each image of the batch, its position among the images asked for: `0..n` unless
    /// some were left out (or, in training, stood in for by another image of their class).
    pub sources: Vec<usize>,
}

/// An image file that could not be read or decoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct BadImage {
    pub path: PathBuf,
    pub message: String,
}

/// One evaluated set of the test classes: `test` (leave-one-out), or `query` and `gallery`.
#[derive(Clone, Copy, Debug)]
pub struct TestPart<'a> {
    pub name: &'static str,
    pub labels: &'a [i64],
}

/// The two kinds of data: the bundled grey images in memory, and photo datasets on disk.
pub enum Inputs {
    Grey { split: Split, transform: GreyTransform },
    Files { dataset: ImageDataset, transform: ImageTransform, skip_bad: bool, pool: rayon::ThreadPool },
}

/// A batch being prepared on a worker thread.
pub struct Pending<T>(Receiver<std::thread::Result<T>>);

impl<T> Pending<T> {
    /// Blocks until the batch is ready. A panic of the job (a bug: panics of decoders are caught
    /// per image and become [`BadImage`]s) resumes here, on the thread that waits, as a
    /// `JoinHandle` would: the worker pool and the process survive it.
    pub fn wait(self) -> T {
        match self.0.recv().expect("the data worker sends a result or its panic") {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The text of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Decodes and transforms one image file with `view`; a decoder that panics on a hostile or
/// damaged file (a bug of that decoder, but not one to take the whole run down) gives a
/// [`BadImage`] for that file like any other decoding error, so `skip_bad_images` skips it.
fn read_view(path: PathBuf, view: impl FnOnce(&std::path::Path) -> Result<Vec<f32>, String>) -> Result<Vec<f32>, BadImage> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| view(&path))) {
        Ok(Ok(pixels)) => Ok(pixels),
        Ok(Err(message)) => Err(BadImage { path, message }),
        Err(panic) => Err(BadImage { message: format!("the image decoder failed ({})", panic_message(panic.as_ref())), path }),
    }
}

impl Inputs {
    /// Photo datasets decode on `workers` threads (0: one per core).
    pub fn files(dataset: ImageDataset, transform: ImageTransform, skip_bad: bool, workers: usize) -> Self {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("dml-data-{i}"))
            .build()
            .expect("data worker threads start");
        Inputs::Files { dataset, transform, skip_bad, pool }
    }

    pub fn train_labels(&self) -> &[i64] {
        match self {
            Inputs::Grey { split, .. } => &split.train.labels,
            Inputs::Files { dataset, .. } => &dataset.train.labels,
        }
    }

    pub fn test_parts(&self) -> Vec<TestPart<'_>> {
        match self {
            Inputs::Grey { split, .. } => vec![TestPart { name: "test", labels: &split.test.labels }],
            Inputs::Files { dataset, .. } => match &dataset.test {
                TestSet::LeaveOneOut(list) => vec![TestPart { name: "test", labels: &list.labels }],
                TestSet::QueryGallery { query, gallery } => {
                    vec![TestPart { name: "query", labels: &query.labels }, TestPart { name: "gallery", labels: &gallery.labels }]
                }
            },
        }
    }

    /// The file of test item `index` of part `part` (photo datasets).
    pub fn test_file(&self, part: usize, index: usize) -> Option<PathBuf> {
        Some(self.dataset_root()?.join(self.test_path(part, index)?))
    }

    /// Test item `index` of part `part` as its list names it, relative to
    /// [`dataset_root`](Self::dataset_root) (photo datasets).
    pub fn test_path(&self, part: usize, index: usize) -> Option<&std::path::Path> {
        match self {
            Inputs::Grey { .. } => None,
            Inputs::Files { dataset, .. } => Some(test_list(dataset, part).paths.get(index)?),
        }
    }

    /// The folder that the lists' image paths are relative to (photo datasets).
    pub fn dataset_root(&self) -> Option<&std::path::Path> {
        match self {
            Inputs::Grey { .. } => None,
            Inputs::Files { dataset, .. } => Some(&dataset.root),
        }
    }

    /// The test part that a run's `embeddings.npy` holds: the test split (part 0), or the
    /// gallery (part 1) of a query/gallery dataset, whose queries are `query_embeddings.npy`.
    pub fn gallery_part(&self) -> usize {
        self.test_parts().len() - 1
    }

    /// Runs `job` on a data worker (photo datasets) or right here (in-memory images).
    pub fn prefetch<T: Send + 'static>(self: &Arc<Self>, job: impl FnOnce(&Inputs) -> T + Send + 'static) -> Pending<T> {
        let (sender, receiver) = sync_channel(1);
        match self.as_ref() {
            Inputs::Grey { .. } => {
                let _ = sender.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(self))));
            }
            Inputs::Files { pool, .. } => {
                let inputs = Arc::clone(self);
                // Caught here: a panic that leaves a rayon `spawn` aborts the process.
                pool.spawn(move || {
                    let _ = sender.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&inputs))));
                });
            }
        }
        Pending(receiver)
    }

    /// The augmented training images `indices`, with randomness drawn from `seed` only.
    pub fn train_batch(&self, indices: &[usize], seed: u64, hflip: bool) -> Result<Batch, BadImage> {
        match self {
            Inputs::Grey { split, transform } => {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
                Ok(grey_batch(&split.train, transform, indices, hflip.then_some(&mut rng)))
            }
            Inputs::Files { dataset, transform, skip_bad, .. } => {
                let views = indices
                    .par_iter()
                    .enumerate()
                    .map(|(position, &i)| {
                        read_view(dataset.root.join(&dataset.train.paths[i]), |path| {
                            let image = image_file::decode(path)?;
                            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(seed, position as u64, 0x1A6E));
                            let mut out = Vec::with_capacity(transform.floats_per_image());
                            transform.write_chw(&transform.train_view(&image, &mut rng), &mut out);
                            Ok(out)
                        })
                    })
                    .collect();
                let labels: Vec<i64> = indices.iter().map(|&i| dataset.train.labels[i]).collect();
                assemble(views, labels, transform.item_shape(), *skip_bad, true)
            }
        }
    }

    /// Test items `items` of part `part`, untransformed but for resizing and centring.
    pub fn test_batch(&self, part: usize, items: Range<usize>) -> Result<Batch, BadImage> {
        match self {
            Inputs::Grey { split, transform } => {
                let indices: Vec<usize> = items.collect();
                Ok(grey_batch(&split.test, transform, &indices, None))
            }
            Inputs::Files { dataset, transform, skip_bad, .. } => {
                let list = test_list(dataset, part);
                let views = items
                    .clone()
                    .into_par_iter()
                    .map(|i| {
                        read_view(dataset.root.join(&list.paths[i]), |path| {
                            let image = image_file::decode(path)?;
                            let mut out = Vec::with_capacity(transform.floats_per_image());
                            transform.write_chw(&transform.test_view(&image), &mut out);
                            Ok(out)
                        })
                    })
                    .collect();
                assemble(views, list.labels[items].to_vec(), transform.item_shape(), *skip_bad, false)
            }
        }
    }
}

/// What network input a trained model expects, without its dataset: for embedding any files.
#[derive(Clone, Debug)]
pub enum InputFormat {
    /// Grey images of this size (a model trained on Fashion-MNIST): files are converted to grey
    /// and resized to it.
    Grey { height: usize, width: usize, transform: GreyTransform },
    /// Photos: the test-time resize and centre crop.
    Photo(ImageTransform),
}

impl InputFormat {
    /// The files `paths` as one batch of test-time input (labels all 0). A bad file is an error
    /// unless `skip_bad`, when it is left out and listed in `skipped`.
    pub fn read_files(&self, paths: &[PathBuf], skip_bad: bool) -> Result<(Batch, Vec<usize>), BadImage> {
        let views: Vec<Result<Vec<f32>, BadImage>> =
            paths.par_iter().map(|path| read_view(path.clone(), |path| Ok(self.view(image_file::decode(path)?)))).collect();
        let batch = assemble(views, vec![0; paths.len()], self.item_shape(), skip_bad, false)?;
        let kept = batch.sources.clone();
        Ok((batch, kept))
    }

    /// An image file's bytes as a batch of one (label 0); the error says why it is not an image.
    pub fn read_bytes(&self, bytes: &[u8]) -> Result<Batch, String> {
        let image = image_file::decode_bytes(bytes)?;
        Ok(self.batch_of_one(self.view(image)))
    }

    /// 8-bit RGB pixels (a canvas, say) as a batch of one.
    pub fn read_rgb(&self, image: image::RgbImage) -> Batch {
        self.batch_of_one(self.view(image))
    }

    fn batch_of_one(&self, pixels: Vec<f32>) -> Batch {
        let [c, h, w] = self.item_shape();
        Batch { pixels, shape: [1, c, h, w], labels: vec![0], skipped: Vec::new(), sources: vec![0] }
    }

    /// `[channels, height, width]` of one network input.
    pub fn item_shape(&self) -> [usize; 3] {
        match self {
            InputFormat::Grey { height, width, .. } => [1, *height, *width],
            InputFormat::Photo(t) => t.item_shape(),
        }
    }

    /// The test-time network input of one decoded image.
    pub fn view(&self, image: image::RgbImage) -> Vec<f32> {
        match self {
            InputFormat::Grey { height, width, transform } => {
                let grey = image::DynamicImage::ImageRgb8(image).to_luma8();
                let resized = image::imageops::resize(&grey, *width as u32, *height as u32, image::imageops::FilterType::Triangle);
                let one = GreyImages { height: *height, width: *width, pixels: resized.into_raw(), labels: vec![0] };
                transform.batch(&one, &[0], None)
            }
            InputFormat::Photo(transform) => {
                let mut out = Vec::with_capacity(transform.floats_per_image());
                transform.write_chw(&transform.test_view(&image), &mut out);
                out
            }
        }
    }
}

fn test_list(dataset: &ImageDataset, part: usize) -> &ImageList {
    match (&dataset.test, part) {
        (TestSet::LeaveOneOut(list), 0) => list,
        (TestSet::QueryGallery { query, .. }, 0) => query,
        (TestSet::QueryGallery { gallery, .. }, 1) => gallery,
        _ => panic!("no test part {part}"),
    }
}

fn grey_batch(images: &GreyImages, transform: &GreyTransform, indices: &[usize], flip: Option<&mut Xoshiro256PlusPlus>) -> Batch {
    Batch {
        pixels: transform.batch(images, indices, flip),
        shape: [indices.len(), 1, images.height, images.width],
        labels: indices.iter().map(|&i| images.labels[i]).collect(),
        skipped: Vec::new(),
        sources: (0..indices.len()).collect(),
    }
}

/// Joins decoded views into a batch. A bad image is an error unless `skip_bad`; then, in a
/// training batch, it is replaced by another image of its class from the same batch (P×K batches
/// hold K of each class), and left out where there is none.
fn assemble(
    views: Vec<Result<Vec<f32>, BadImage>>,
    labels: Vec<i64>,
    [channels, height, width]: [usize; 3],
    skip_bad: bool,
    substitute: bool,
) -> Result<Batch, BadImage> {
    let mut batch = Batch { pixels: Vec::with_capacity(views.len() * channels * height * width), ..Default::default() };
    for (i, view) in views.iter().enumerate() {
        match view {
            Ok(pixels) => {
                batch.pixels.extend_from_slice(pixels);
                batch.labels.push(labels[i]);
                batch.sources.push(i);
            }
            Err(bad) if skip_bad => {
                batch.skipped.push(bad.clone());
                let stand_in = substitute.then(|| (0..views.len()).find(|&j| views[j].is_ok() && labels[j] == labels[i])).flatten();
                if let Some(j) = stand_in {
                    batch.pixels.extend_from_slice(views[j].as_ref().expect("a readable view"));
                    batch.labels.push(labels[j]);
                    batch.sources.push(j);
                }
            }
            Err(bad) => return Err(bad.clone()),
        }
    }
    batch.shape = [batch.labels.len(), channels, height, width];
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::image_file::Normalization;
    use image::{Rgb, RgbImage};

    fn dataset(dir: &std::path::Path, corrupt: &[&str]) -> ImageDataset {
        let mut train = ImageList::default();
        for (name, label, value) in [("a0.png", 0, 10u8), ("a1.png", 0, 20), ("b0.png", 1, 200), ("b1.png", 1, 210)] {
            if corrupt.contains(&name) {
                std::fs::write(dir.join(name), b"not an image").unwrap();
            } else {
                RgbImage::from_pixel(12, 9, Rgb([value, value, value])).save(dir.join(name)).unwrap();
            }
            train.push(name.into(), label);
        }
        ImageDataset { root: dir.to_path_buf(), train: train.clone(), test: TestSet::LeaveOneOut(train) }
    }

    fn transform() -> ImageTransform {
        ImageTransform {
            resize: 8,
            crop: 8,
            scale: [0.16, 1.0],
            ratio: [0.75, 4.0 / 3.0],
            hflip: true,
            normalization: Normalization { bgr: false, range: 255.0, mean: [0.0; 3], std: [1.0; 3] },
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dml-inputs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn batches_are_reproducible_and_carry_their_labels() {
        let dir = scratch("ok");
        let inputs = Arc::new(Inputs::files(dataset(&dir, &[]), transform(), false, 2));
        let a = inputs.train_batch(&[3, 0, 1], 42, true).unwrap();
        let b = inputs.prefetch(|inputs| inputs.train_batch(&[3, 0, 1], 42, true)).wait().unwrap();
        assert_eq!(a.pixels, b.pixels);
        assert_eq!((a.shape, a.labels.clone()), ([3, 3, 8, 8], vec![1, 0, 0]));
        // Flat images stay flat through crop and resize: image 3 is 210 everywhere.
        assert!(a.pixels[..192].iter().all(|&v| (v - 210.0).abs() < 1e-3));
        let test = inputs.test_batch(0, 1..3).unwrap();
        assert_eq!((test.shape, test.labels), ([2, 3, 8, 8], vec![0, 1]));
        assert!(test.pixels[192..].iter().all(|&v| (v - 200.0).abs() < 1e-3));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_image_is_an_error_naming_it_unless_skipped() {
        let dir = scratch("bad");
        let data = dataset(&dir, &["a1.png"]);
        let strict = Inputs::files(data.clone(), transform(), false, 1);
        let err = strict.train_batch(&[0, 1, 2], 1, false).unwrap_err();
        assert_eq!(err.path, dir.join("a1.png"));
        assert!(strict.test_batch(0, 0..4).is_err());

        let lenient = Inputs::files(data, transform(), true, 1);
        // In training the bad image is replaced by the other image of its class...
        let batch = lenient.train_batch(&[0, 1, 2], 1, false).unwrap();
        assert_eq!((batch.labels.clone(), batch.skipped.len()), (vec![0, 0, 1], 1));
        assert_eq!(batch.pixels[..192], batch.pixels[192..384]);
        // ...and left out where its class has no other image in the batch, and in evaluation.
        let alone = lenient.train_batch(&[1, 2, 3], 1, false).unwrap();
        assert_eq!(alone.labels, vec![1, 1]);
        let test = lenient.test_batch(0, 0..4).unwrap();
        assert_eq!((test.shape[0], test.labels, test.skipped[0].path.clone()), (3, vec![0, 1, 1], dir.join("a1.png")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_panicking_decoder_is_a_bad_image_and_a_panicking_job_does_not_abort() {
        // A decoder bug on one file: that file's error, which skip_bad_images can skip.
        let bad = read_view(PathBuf::from("x.jpg"), |_| panic!("index out of bounds in a decoder"));
        let bad = bad.unwrap_err();
        assert_eq!(bad.path, PathBuf::from("x.jpg"));
        assert!(bad.message.contains("the image decoder failed (index out of bounds in a decoder)"), "{}", bad.message);
        let batch = assemble(vec![Err(bad), Ok(vec![1.0; 3])], vec![0, 0], [3, 1, 1], true, true).unwrap();
        assert_eq!((batch.labels, batch.skipped.len()), (vec![0, 0], 1));

        // A job that panics on a worker thread (a rayon pool aborts the process on an uncaught
        // one): the panic reaches the waiting thread, and the pool keeps working.
        let dir = scratch("panic");
        let inputs = Arc::new(Inputs::files(dataset(&dir, &[]), transform(), false, 1));
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inputs.prefetch(|_| -> usize { panic!("a bug in a batch job") }).wait()
        }));
        assert_eq!(panic_message(waited.unwrap_err().as_ref()), "a bug in a batch job");
        assert_eq!(inputs.prefetch(|inputs| inputs.train_batch(&[0, 2], 3, false)).wait().unwrap().labels, vec![0, 1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
