//! A query image and its nearest test images, framed green when of the query's class and red
//! otherwise; stepping through queries in order, at random, or worst first.

use std::sync::{Arc, Mutex};

use eframe::egui::{self, Color32, Key, RichText, Stroke, Vec2};

use crate::run_data::Embeddings;

pub struct Retrieval {
    pub query: usize,
    pub k: usize,
    /// Queries by ascending average precision, once computed.
    worst_first: Option<Vec<usize>>,
    pending: Option<Arc<Mutex<Option<Vec<f64>>>>>,
    pub use_worst_first: bool,
    /// Position in the worst-first order.
    position: usize,
    random_state: u64,
}

impl Default for Retrieval {
    fn default() -> Self {
        Self { query: 0, k: 8, worst_first: None, pending: None, use_worst_first: false, position: 0, random_state: 0x5EED }
    }
}

/// What the panel asks of the app around it.
pub struct Thumb<'a> {
    pub show: &'a mut dyn FnMut(&mut egui::Ui, usize, f32),
    pub name: &'a dyn Fn(i64) -> String,
}

impl Retrieval {
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn set_query(&mut self, query: usize) {
        self.query = query;
        self.use_worst_first = false;
    }

    fn step(&mut self, n: usize, forward: bool) {
        if n == 0 {
            return;
        }
        match (&self.worst_first, self.use_worst_first) {
            (Some(order), true) => {
                self.position = if forward { (self.position + 1) % n } else { (self.position + n - 1) % n };
                self.query = order[self.position];
            }
            _ => self.query = if forward { (self.query + 1) % n } else { (self.query + n - 1) % n },
        }
    }

    fn random(&mut self, n: usize) {
        // xorshift: reproducible, no dependency.
        let mut x = self.random_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random_state = x;
        self.use_worst_first = false;
        self.query = (x % n.max(1) as u64) as usize;
    }

    fn poll(&mut self) {
        let done = self.pending.as_ref().and_then(|p| p.lock().expect("ap lock").take());
        if let Some(ap) = done {
            let mut order: Vec<usize> = (0..ap.len()).collect();
            order.sort_by(|&a, &b| ap[a].total_cmp(&ap[b]).then(a.cmp(&b)));
            self.worst_first = Some(order);
            self.pending = None;
            if self.use_worst_first {
                self.position = 0;
                self.query = self.worst_first.as_ref().expect("set above")[0];
            }
        }
    }

    /// The neighbours shown for the current query.
    pub fn neighbours(&self, embeddings: &Embeddings) -> Vec<(usize, f32)> {
        embeddings.neighbours(self.query.min(embeddings.n.saturating_sub(1)), self.k)
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, embeddings: &Arc<Embeddings>, thumb: Thumb<'_>) {
        self.poll();
        let n = embeddings.n;
        if n == 0 {
            return;
        }
        self.query = self.query.min(n - 1);
        ui.horizontal(|ui| {
            if ui.button("< Previous").clicked() || ui.input(|i| i.key_pressed(Key::ArrowLeft)) {
                self.step(n, false);
            }
            if ui.button("Next >").clicked() || ui.input(|i| i.key_pressed(Key::ArrowRight)) {
                self.step(n, true);
            }
            if ui.button("Random").clicked() || ui.input(|i| i.key_pressed(Key::R)) {
                self.random(n);
            }
            let worst = ui.selectable_label(self.use_worst_first, "Worst first");
            if worst.clicked() {
                self.use_worst_first = !self.use_worst_first;
                if self.use_worst_first {
                    match &self.worst_first {
                        Some(order) => {
                            self.position = 0;
                            self.query = order[0];
                        }
                        None if self.pending.is_none() => {
                            let slot = Arc::new(Mutex::new(None));
                            let (out, data, ctx) = (slot.clone(), embeddings.clone(), ui.ctx().clone());
                            std::thread::spawn(move || {
                                *out.lock().expect("ap lock") = Some(data.average_precisions());
                                ctx.request_repaint();
                            });
                            self.pending = Some(slot);
                        }
                        None => {}
                    }
                }
            }
            if self.pending.is_some() {
                ui.spinner();
                ui.label("ranking queries by average precision...");
            }
            ui.separator();
            ui.add(egui::Slider::new(&mut self.k, 1..=32).text("neighbours"));
        });
        ui.separator();
        let label = embeddings.labels[self.query];
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.label(RichText::new("Query").strong());
                (thumb.show)(ui, self.query, 160.0);
                ui.label(format!("#{}  {}", self.query, (thumb.name)(label)));
            });
            ui.separator();
            let neighbours = self.neighbours(embeddings);
            let hits = neighbours.iter().filter(|(j, _)| embeddings.labels[*j] == label).count();
            ui.vertical(|ui| {
                ui.label(RichText::new(format!("Top {}: {hits} of its class", neighbours.len())).strong());
                let per_row = ((ui.available_width() / 112.0).floor() as usize).max(1);
                egui::Grid::new("neighbours").spacing(Vec2::splat(8.0)).show(ui, |ui| {
                    for (rank, (j, sim)) in neighbours.iter().enumerate() {
                        let same = embeddings.labels[*j] == label;
                        let color = if same { Color32::from_rgb(40, 170, 60) } else { Color32::from_rgb(210, 50, 50) };
                        egui::Frame::new().stroke(Stroke::new(3.0, color)).inner_margin(3.0).show(ui, |ui| {
                            ui.vertical(|ui| {
                                (thumb.show)(ui, *j, 96.0);
                                ui.label(format!("{}. {:.3}", rank + 1, sim));
                                ui.label(RichText::new((thumb.name)(embeddings.labels[*j])).small());
                            });
                        });
                        if (rank + 1) % per_row == 0 {
                            ui.end_row();
                        }
                    }
                });
            });
        });
    }
}
