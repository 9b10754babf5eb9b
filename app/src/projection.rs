//! The 2-D map of the test embeddings: PCA at once, or t-SNE animated while it runs on a
//! background thread; points coloured by class, hover for the image, click to pick a query.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use dml_engine::project::{Tsne, TsneConfig, pca};
use eframe::egui::{self, Color32, Pos2, Rect, Sense, Stroke, Vec2};

use crate::palette::class_color;
use crate::run_data::Embeddings;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Pca,
    Tsne,
}

/// The latest t-SNE map published by the worker: (iteration, points, KL when finished).
type Snapshot = Option<(usize, Vec<f64>, Option<f64>)>;

struct Worker {
    latest: Arc<Mutex<Snapshot>>,
    stop: Arc<AtomicBool>,
    /// Kept only to say that the thread is not joined: see `Drop`.
    _handle: JoinHandle<()>,
}

impl Drop for Worker {
    /// Asks the thread to stop and lets it go without waiting: joining here, on the UI thread,
    /// froze the window until the current step (or the whole affinity computation of a large
    /// set, which cannot be interrupted) ended. The thread's last map goes to an `Arc` nobody
    /// reads any more.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

pub struct Projection {
    pub method: Method,
    pub tsne: TsneConfig,
    /// The map, one point per test item.
    pub points: Vec<[f32; 2]>,
    pub status: String,
    worker: Option<Worker>,
    /// Where the map was last drawn.
    last_rect: Option<Rect>,
    bounds: Option<(Pos2, Pos2)>,
}

impl Default for Projection {
    fn default() -> Self {
        Self {
            method: Method::Pca,
            tsne: TsneConfig::default(),
            points: Vec::new(),
            status: String::new(),
            worker: None,
            last_rect: None,
            bounds: None,
        }
    }
}

impl Projection {
    pub fn reset(&mut self) {
        self.worker = None;
        self.points.clear();
        self.bounds = None;
        self.status.clear();
    }

    pub fn running(&self) -> bool {
        self.worker.is_some()
    }

    /// Starts the chosen method on `embeddings` (PCA finishes here; t-SNE starts a thread).
    pub fn compute(&mut self, embeddings: &Embeddings, ctx: &egui::Context) {
        self.reset();
        match self.method {
            Method::Pca => {
                let result = pca(&embeddings.vectors, embeddings.n, embeddings.dim, 2.min(embeddings.dim));
                self.points = result.plane().iter().map(|p| [p[0] as f32, p[1] as f32]).collect();
                self.status = format!(
                    "PCA: the axes explain {:.1} % and {:.1} % of the variance",
                    100.0 * result.explained[0],
                    100.0 * result.explained.get(1).copied().unwrap_or(0.0)
                );
            }
            Method::Tsne => {
                let latest = Arc::new(Mutex::new(None));
                let stop = Arc::new(AtomicBool::new(false));
                let (vectors, n, dim, config) = (embeddings.vectors.clone(), embeddings.n, embeddings.dim, self.tsne.clone());
                let (publish, halt, ctx) = (latest.clone(), stop.clone(), ctx.clone());
                let handle = std::thread::spawn(move || {
                    let mut tsne = Tsne::new(&vectors, n, dim, &config);
                    while !tsne.finished() && !halt.load(Ordering::SeqCst) {
                        tsne.step();
                        if tsne.iteration().is_multiple_of(5) || tsne.finished() {
                            let kl = tsne.finished().then(|| tsne.kl_divergence());
                            *publish.lock().expect("map lock") = Some((tsne.iteration(), tsne.embedding().to_vec(), kl));
                            ctx.request_repaint();
                        }
                    }
                });
                self.status = "t-SNE: computing affinities...".into();
                self.worker = Some(Worker { latest, stop, _handle: handle });
            }
        }
    }

    /// Takes the worker's latest map.
    pub fn poll(&mut self) {
        let Some(worker) = &self.worker else { return };
        let Some((iteration, map, kl)) = worker.latest.lock().expect("map lock").take() else { return };
        self.points = map.chunks_exact(2).map(|p| [p[0] as f32, p[1] as f32]).collect();
        self.bounds = None;
        self.status = match kl {
            Some(kl) => format!("t-SNE: {iteration} iterations, KL divergence {kl:.4}"),
            None => format!("t-SNE: iteration {iteration} of {}", self.tsne.iterations),
        };
        if kl.is_some() {
            self.worker = None;
        }
    }

    fn data_bounds(&mut self) -> (Pos2, Pos2) {
        *self.bounds.get_or_insert_with(|| {
            let (mut lo, mut hi) = (Pos2::new(f32::MAX, f32::MAX), Pos2::new(f32::MIN, f32::MIN));
            for p in &self.points {
                lo = lo.min(Pos2::new(p[0], p[1]));
                hi = hi.max(Pos2::new(p[0], p[1]));
            }
            (lo, hi)
        })
    }

    /// Where point `i` was drawn on screen.
    pub fn screen_position(&mut self, i: usize) -> Option<Pos2> {
        let rect = self.last_rect?;
        let p = *self.points.get(i)?;
        Some(self.place_on_screen(rect, p))
    }

    fn place_on_screen(&mut self, rect: Rect, p: [f32; 2]) -> Pos2 {
        let (lo, hi) = self.data_bounds();
        let inner = rect.shrink(12.0);
        let span = (hi - lo).max(Vec2::splat(1e-12));
        // One scale for both axes: distances on the map mean the same in every direction.
        let scale = (inner.width() / span.x).min(inner.height() / span.y);
        let centre = inner.center();
        let mid = lo + (hi - lo) / 2.0;
        Pos2::new(centre.x + (p[0] - mid.x) * scale, centre.y - (p[1] - mid.y) * scale)
    }

    /// Draws the map; returns the point clicked, if any. `highlight` are the query's neighbours.
    pub fn map_ui(
        &mut self,
        ui: &mut egui::Ui,
        labels: &[i64],
        query: Option<usize>,
        highlight: &[usize],
        hover_ui: &mut dyn FnMut(&mut egui::Ui, usize),
    ) -> Option<usize> {
        let size = ui.available_size().max(Vec2::splat(100.0));
        let (response, painter) = ui.allocate_painter(size, Sense::click());
        let rect = response.rect;
        self.last_rect = Some(rect);
        painter.rect_filled(rect, 4.0, ui.visuals().extreme_bg_color);
        if self.points.is_empty() {
            return None;
        }
        let screen: Vec<Pos2> = (0..self.points.len()).map(|i| self.place_on_screen(rect, self.points[i])).collect();
        for (i, pos) in screen.iter().enumerate() {
            painter.circle_filled(*pos, 2.2, class_color(labels[i]));
        }
        let ring = ui.visuals().strong_text_color();
        for &j in highlight {
            painter.circle_stroke(screen[j], 5.0, Stroke::new(1.5, ring));
        }
        if let Some(q) = query {
            painter.circle_filled(screen[q], 6.0, class_color(labels[q]));
            painter.circle_stroke(screen[q], 7.0, Stroke::new(2.5, ring));
        }
        let nearest = response.hover_pos().and_then(|pointer| {
            screen
                .iter()
                .enumerate()
                .map(|(i, p)| (i, p.distance_sq(pointer)))
                .filter(|&(_, d)| d <= 36.0)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
        });
        if let Some(i) = nearest {
            painter.circle_stroke(screen[i], 4.0, Stroke::new(1.0, Color32::WHITE));
            response.clone().on_hover_ui_at_pointer(|ui| hover_ui(ui, i));
        }
        if response.clicked() { nearest } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_worker_does_not_wait_for_its_thread() {
        // A thread that cannot finish until the test lets it: a drop that joined would never
        // return (the test would hang, as the window did).
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = stop.clone();
        let handle = std::thread::spawn(move || {
            let _ = blocked.recv();
            assert!(seen.load(Ordering::SeqCst), "the thread was asked to stop before it was released");
        });
        drop(Worker { latest: Arc::new(Mutex::new(None)), stop, _handle: handle });
        release.send(()).unwrap();
    }
}
