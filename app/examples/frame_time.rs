//! CPU time of one frame of the Projection panel with many points (UI logic and tessellation;
//! what is left for the GPU is drawing the triangles). `cargo run --release -p dml-app --example
//! frame_time -- [POINTS]` (default 60,000): a synthetic finished run of POINTS 64-d embeddings
//! in 100 classes, PCA map, the pointer moving over the map; median and worst of 60 frames.

use std::path::PathBuf;
use std::time::Instant;

use dml_app::{DmlApp, Tab};
use dml_engine::npy;
use dml_engine::train::TrainConfig;
use eframe::egui;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(60_000);
    let dim = 64;
    let root = std::env::temp_dir().join(format!("dml-frame-time-{}", std::process::id())).join("runs");
    let run: PathBuf = root.join("synthetic");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.toml"), TrainConfig::default().to_toml()).unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let labels: Vec<i64> = (0..n).map(|i| (i % 100) as i64).collect();
    let centres: Vec<f32> = (0..100 * dim).map(|_| uniform() * 4.0).collect();
    let vectors: Vec<f32> =
        (0..n).flat_map(|i| (0..dim).map(move |d| (i, d))).map(|(i, d)| centres[(i % 100) * dim + d] + uniform()).collect();
    npy::write_matrix_f32(&run.join("embeddings.npy"), n, dim, &vectors).unwrap();
    npy::write_labels(&run.join("labels.npy"), &labels).unwrap();

    let mut app = DmlApp::new(&root, Some(&run));
    app.tab = Tab::Projection;
    let ctx = egui::Context::default();
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 800.0));
    let mut times = Vec::new();
    for frame in 0..62 {
        let pointer = egui::pos2(300.0 + (frame as f32 * 13.0) % 700.0, 150.0 + (frame as f32 * 7.0) % 500.0);
        let input = egui::RawInput { screen_rect: Some(screen), events: vec![egui::Event::PointerMoved(pointer)], ..Default::default() };
        let start = Instant::now();
        let output = ctx.run_ui(input, |ui| app.show(ui));
        let triangles: usize = ctx
            .tessellate(output.shapes, output.pixels_per_point)
            .iter()
            .map(|p| match &p.primitive {
                egui::epaint::Primitive::Mesh(mesh) => mesh.indices.len() / 3,
                _ => 0,
            })
            .sum();
        // The first two frames lay out and compute the PCA map.
        if frame >= 2 {
            times.push((start.elapsed().as_secs_f64() * 1e3, triangles));
        }
    }
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!(
        "{n} points: frame median {:.1} ms, worst {:.1} ms, {} triangles",
        times[times.len() / 2].0,
        times.last().unwrap().0,
        times[0].1
    );
    std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
}
