//! Test images as textures, made on first use and kept. Photos are decoded on worker threads
//! (a large JPEG takes tens of milliseconds, and a retrieval page shows dozens): until one is
//! ready its place stays empty and the window keeps answering.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use dml_engine::data::{Inputs, image_file};
use dml_engine::image::imageops;
use eframe::egui::{self, ColorImage, TextureHandle, TextureOptions};

use crate::run_data::RunData;

/// Largest side of a thumbnail, in pixels.
const SIDE: u32 = 96;

/// Work handed to other threads, each result tagged with the generation it was asked in:
/// [`cancel_all`](Self::cancel_all) starts a new generation, after which results of the old one
/// are dropped and jobs of the old one not yet started do not run.
pub struct BackgroundLoads<T> {
    generation: Arc<AtomicU64>,
    sender: Sender<(u64, usize, T)>,
    receiver: Receiver<(u64, usize, T)>,
    pending: HashSet<usize>,
}

impl<T: Send + 'static> Default for BackgroundLoads<T> {
    fn default() -> Self {
        let (sender, receiver) = channel();
        Self { generation: Arc::new(AtomicU64::new(0)), sender, receiver, pending: HashSet::new() }
    }
}

impl<T: Send + 'static> BackgroundLoads<T> {
    /// Runs `job` for item `key` on rayon's pool unless one is already under way; `then` is
    /// called (on the worker) after the result is queued, to wake the window.
    pub fn request(&mut self, key: usize, job: impl FnOnce() -> T + Send + 'static, then: impl FnOnce() + Send + 'static) {
        if !self.pending.insert(key) {
            return;
        }
        let (generation, asked_in, sender) = (self.generation.clone(), self.generation.load(Ordering::SeqCst), self.sender.clone());
        rayon::spawn(move || {
            if generation.load(Ordering::SeqCst) != asked_in {
                return;
            }
            let _ = sender.send((asked_in, key, job()));
            then();
        });
    }

    /// The results that arrived, of the current generation only.
    pub fn finished(&mut self) -> Vec<(usize, T)> {
        let current = self.generation.load(Ordering::SeqCst);
        let mut out = Vec::new();
        while let Ok((generation, key, value)) = self.receiver.try_recv() {
            if generation == current {
                self.pending.remove(&key);
                out.push((key, value));
            }
        }
        out
    }

    pub fn cancel_all(&mut self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.pending.clear();
    }
}

#[derive(Default)]
pub struct Thumbnails {
    cache: HashMap<usize, Option<TextureHandle>>,
    loads: BackgroundLoads<Option<ColorImage>>,
}

impl Thumbnails {
    pub fn clear(&mut self) {
        self.cache.clear();
        self.loads.cancel_all();
    }

    /// The thumbnail of row `i` of the run's embeddings (the test split, or the gallery): at
    /// once for in-memory images, for photos once a worker has decoded it (`None` till then,
    /// and for an image that cannot be read).
    pub fn get(&mut self, ctx: &egui::Context, run: &RunData, i: usize) -> Option<TextureHandle> {
        for (key, image) in self.loads.finished() {
            let texture = image.map(|image| ctx.load_texture(format!("test-{key}"), image, TextureOptions::NEAREST));
            self.cache.insert(key, texture);
        }
        if let Some(texture) = self.cache.get(&i) {
            return texture.clone();
        }
        match run.inputs.as_deref()? {
            Inputs::Grey { split, .. } => {
                let (w, h) = (split.test.width, split.test.height);
                let image = ColorImage::from_gray([w, h], split.test.image(i));
                let texture = ctx.load_texture(format!("test-{i}"), image, TextureOptions::NEAREST);
                self.cache.insert(i, Some(texture.clone()));
                Some(texture)
            }
            Inputs::Files { .. } => {
                let path = run.row_file(i)?;
                let ctx = ctx.clone();
                self.loads.request(i, move || photo_thumbnail(&path), move || ctx.request_repaint());
                None
            }
        }
    }
}

/// A photo scaled so that its longer side is [`SIDE`] pixels.
fn photo_thumbnail(path: &Path) -> Option<ColorImage> {
    let photo = image_file::decode(path).ok()?;
    let scale = SIDE as f64 / photo.width().max(photo.height()) as f64;
    let (w, h) = (((photo.width() as f64 * scale).round() as u32).max(1), ((photo.height() as f64 * scale).round() as u32).max(1));
    let small = imageops::resize(&photo, w, h, imageops::FilterType::Triangle);
    Some(ColorImage::from_rgb([w as usize, h as usize], small.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for<T: Send + 'static>(loads: &mut BackgroundLoads<T>, count: usize) -> Vec<(usize, T)> {
        let (start, mut got) = (Instant::now(), Vec::new());
        while got.len() < count {
            assert!(start.elapsed() < Duration::from_secs(20), "timed out");
            got.extend(loads.finished());
            std::thread::sleep(Duration::from_millis(5));
        }
        got
    }

    #[test]
    fn results_arrive_once_and_cancelled_ones_never() {
        let mut loads = BackgroundLoads::default();
        loads.request(3, || "three", || {});
        loads.request(3, || "again", || {}); // already under way: not run twice
        let got = wait_for(&mut loads, 1);
        assert_eq!(got, [(3, "three")]);
        // A job that finishes after its generation was cancelled (the user opened another run)
        // is dropped; the new generation's are delivered.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        loads.request(
            7,
            move || {
                let _ = gate.recv();
                "stale"
            },
            || {},
        );
        loads.cancel_all();
        release.send(()).unwrap();
        loads.request(7, || "fresh", || {});
        let got = wait_for(&mut loads, 1);
        assert_eq!(got, [(7, "fresh")]);
        std::thread::sleep(Duration::from_millis(50));
        assert!(loads.finished().is_empty());
    }
}
