//! The app on a fixture run folder, rendered headless (egui_kittest on a software wgpu adapter):
//! a snapshot of each panel, and clicking a point of the map makes its image the query of the
//! retrieval panel.

use std::fs;
use std::path::PathBuf;

use dml_app::{DmlApp, Tab};
use dml_engine::data::fashion_mnist;
use dml_engine::npy;
use dml_engine::train::TrainConfig;
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

/// A finished default run: its config, 200 training lines, evaluations at 0, 100 and 200, and
/// test embeddings in which each class is a direction plus deterministic noise (some classes
/// overlap, like real ones).
fn fixture(test: &str) -> (PathBuf, PathBuf) {
    // One folder per test: the tests run in parallel. The shown root name is always "runs".
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gui-{test}")).join("runs");
    let run = root.join("2026-11-27_12-00-00");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&run).unwrap();
    fs::write(run.join("config.toml"), TrainConfig::default().to_toml()).unwrap();
    let mut lines = Vec::new();
    for (it, r1, map) in [(0, 0.815, 0.222), (100, 0.889, 0.311), (200, 0.908, 0.347)] {
        lines.push(format!(
            r#"{{"iteration":{it},"split":"test","recall_at_k":{{"1":{r1},"2":{},"4":{},"8":{}}},"map_at_r":{map},"r_precision":{}}}"#,
            r1 + 0.04,
            r1 + 0.06,
            r1 + 0.07,
            map + 0.12
        ));
        if it < 200 {
            for i in it + 1..=it + 100 {
                let loss = 0.9 + 1.4 * (-(i as f64) / 60.0).exp() + 0.05 * ((i * 7) as f64).sin();
                lines.push(format!(r#"{{"iteration":{i},"loss":{loss},"lr":0.001}}"#));
            }
        }
    }
    // Training lines precede the evaluation of their iteration, as dml writes them.
    fs::write(run.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
    let images = fashion_mnist::bundled();
    let (_, test) = fashion_mnist::zero_shot_split(&images);
    let dim = 8;
    let mut vectors = Vec::new();
    for (i, &label) in test.labels.iter().enumerate() {
        for d in 0..dim {
            let direction = if d == (label as usize - 5) {
                1.0
            } else if label == 6 && d == 0 {
                0.7
            } else {
                0.0
            };
            let noise = (uniform((i * dim + d) as u64) - 0.5) * 0.9;
            vectors.push(direction + noise);
        }
    }
    npy::write_matrix_f32(&run.join("embeddings.npy"), test.len(), dim, &vectors).unwrap();
    npy::write_labels(&run.join("labels.npy"), &test.labels).unwrap();
    (root, run)
}

/// A hash of `x` as a uniform number in [0, 1) (SplitMix64).
fn uniform(x: u64) -> f32 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
}

fn harness(test: &str, tab: Tab) -> Harness<'static, DmlApp> {
    let (root, run) = fixture(test);
    let mut harness = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).build_eframe(move |_cc| DmlApp::new(&root, Some(&run)));
    harness.state_mut().tab = tab;
    harness.run();
    harness
}

/// Compares the rendered panel with `snapshots/<name>.png`, rendered by Mesa's lavapipe. Other
/// rasterisers (WARP on Windows, Metal on macOS) differ in anti-aliasing; CI on those systems sets
/// `DML_SKIP_SNAPSHOTS` to the reason, and the comparison is skipped saying so.
fn compare_snapshot(harness: &mut Harness<'static, DmlApp>, name: &str) {
    match std::env::var("DML_SKIP_SNAPSHOTS") {
        Ok(reason) => eprintln!("snapshot {name} not compared: {reason}"),
        Err(_) => harness.snapshot(name),
    }
}

#[test]
fn dashboard_panel() {
    let mut harness = harness("dashboard", Tab::Dashboard);
    assert!(harness.state().run().is_some());
    compare_snapshot(&mut harness, "dashboard");
}

#[test]
fn projection_panel() {
    let mut harness = harness("projection", Tab::Projection);
    assert_eq!(harness.state().projection.points.len(), 5000);
    compare_snapshot(&mut harness, "projection_pca");
}

#[test]
fn retrieval_panel() {
    let mut harness = harness("retrieval", Tab::Retrieval);
    compare_snapshot(&mut harness, "retrieval");
    // The arrow keys step through the queries; 1, 2, 3 switch panels.
    harness.key_press(egui::Key::ArrowRight);
    harness.run();
    assert_eq!(harness.state().retrieval.query, 1);
    harness.key_press(egui::Key::ArrowLeft);
    harness.run();
    assert_eq!(harness.state().retrieval.query, 0);
    harness.key_press(egui::Key::Num1);
    harness.run();
    assert_eq!(harness.state().tab, Tab::Dashboard);
    harness.key_press(egui::Key::Num2);
    harness.run();
    assert_eq!(harness.state().tab, Tab::Projection);
}

#[test]
fn light_theme() {
    let mut harness = harness("light", Tab::Retrieval);
    harness.ctx.set_theme(egui::Theme::Light);
    harness.run();
    assert_eq!(harness.ctx.theme(), egui::Theme::Light);
    compare_snapshot(&mut harness, "retrieval_light");
}

#[test]
fn clicking_a_point_makes_it_the_retrieval_query() {
    let mut harness = harness("click", Tab::Projection);
    let (target, position) = isolated_point(&mut harness);
    harness.hover_at(position);
    harness.run();
    harness.drag_at(position);
    harness.drop_at(position);
    harness.run();
    assert_eq!(harness.state().tab, Tab::Retrieval);
    assert_eq!(harness.state().retrieval.query, target);
}

/// A point of the map with no other within the 6-pixel pick radius, so pointing at it is unambiguous.
fn isolated_point(harness: &mut Harness<'static, DmlApp>) -> (usize, egui::Pos2) {
    let n = harness.state().projection.points.len();
    let positions: Vec<egui::Pos2> = (0..n).map(|i| harness.state_mut().projection.screen_position(i).unwrap()).collect();
    let target = (0..n)
        .rev()
        .find(|&i| positions.iter().enumerate().all(|(j, p)| j == i || p.distance(positions[i]) > 7.0))
        .expect("an isolated point");
    (target, positions[target])
}

#[test]
fn hovering_a_point_shows_its_label() {
    let mut harness = harness("hover", Tab::Projection);
    let (target, position) = isolated_point(&mut harness);
    let label = harness.state().run().unwrap().embeddings.as_ref().unwrap().labels[target];
    let text = format!("#{target}  {}", harness.state().run().unwrap().class_name(label));
    assert!(harness.query_by_label(&text).is_none());
    harness.hover_at(position);
    harness.run();
    harness.get_by_label(&text);
    // Away from every point the tooltip goes.
    harness.hover_at(egui::pos2(5.0, 795.0));
    harness.run();
    assert!(harness.query_by_label(&text).is_none());
}

#[test]
fn tsne_map_animates_while_it_runs() {
    let mut harness = harness("tsne", Tab::Projection);
    harness.get_by_label("t-SNE").click();
    harness.run();
    harness.state_mut().projection.tsne.iterations = 150;
    harness.get_by_label("Compute").click();
    harness.step();
    assert!(harness.state().projection.running());
    // Each frame shows the worker's latest map: record the distinct ones until it finishes.
    let mut frames: Vec<(String, Vec<[f32; 2]>)> = Vec::new();
    let start = std::time::Instant::now();
    while harness.state().projection.running() {
        assert!(start.elapsed().as_secs() < 300, "t-SNE did not finish");
        std::thread::sleep(std::time::Duration::from_millis(10));
        harness.step();
        let projection = &harness.state().projection;
        if frames.last().is_none_or(|(status, _)| *status != projection.status) {
            frames.push((projection.status.clone(), projection.points.clone()));
        }
    }
    let intermediate: Vec<&(String, Vec<[f32; 2]>)> = frames.iter().filter(|(s, _)| s.contains(" of 150")).collect();
    assert!(intermediate.len() >= 3, "{:?}", frames.iter().map(|f| &f.0).collect::<Vec<_>>());
    assert!(intermediate.windows(2).all(|w| w[0].1 != w[1].1), "consecutive frames show different maps");
    let (last, map) = frames.last().unwrap();
    assert!(last.starts_with("t-SNE: 150 iterations, KL divergence"), "{last}");
    assert_eq!(map.len(), 5000);
    assert!(map.iter().all(|p| p[0].is_finite() && p[1].is_finite()));
}

/// The README's screenshots, from a real run: `DML_SCREENSHOT_RUN=runs/<run> cargo test --release
/// -p dml-app --test gui -- --ignored readme_screenshots` writes docs/screenshots/*.png.
#[test]
#[ignore]
fn readme_screenshots() {
    let run = PathBuf::from(std::env::var("DML_SCREENSHOT_RUN").expect("DML_SCREENSHOT_RUN names a run folder"));
    let root = run.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    fs::create_dir_all(&out).unwrap();
    let mut harness = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).build_eframe(move |_cc| DmlApp::new(&root, Some(&run)));
    harness.run();
    harness.render().unwrap().save(out.join("dashboard.png")).unwrap();
    harness.state_mut().tab = Tab::Projection;
    harness.state_mut().projection.method = dml_app::projection::Method::Tsne;
    harness.run();
    while harness.state().projection.running() {
        std::thread::sleep(std::time::Duration::from_millis(200));
        harness.run_steps(1);
    }
    harness.state_mut().retrieval.set_query(17);
    harness.run();
    harness.render().unwrap().save(out.join("projection.png")).unwrap();
    harness.state_mut().tab = Tab::Retrieval;
    harness.run();
    harness.render().unwrap().save(out.join("retrieval.png")).unwrap();
}

/// Steps the app until `done` holds, giving the background thread time (at most `seconds`).
fn wait_until(harness: &mut Harness<'static, DmlApp>, seconds: u64, done: impl Fn(&DmlApp) -> bool) {
    let start = std::time::Instant::now();
    while !done(harness.state()) {
        assert!(start.elapsed().as_secs() < seconds, "timed out");
        std::thread::sleep(std::time::Duration::from_millis(100));
        harness.step();
    }
}

/// The app on an empty runs folder (returned too), as after a first start.
fn app_without_runs(test: &str) -> (PathBuf, Harness<'static, DmlApp>) {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gui-{test}")).join("runs");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    let folder = root.clone();
    let harness = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).build_eframe(move |_cc| DmlApp::new(&folder, None));
    (root, harness)
}

#[test]
fn a_training_started_from_the_app_runs_and_opens() {
    let (root, mut harness) = app_without_runs("train");
    harness.state_mut().form.iterations = 3;
    harness.state_mut().form.eval_interval = 0;
    harness.state_mut().form.extra = "loss.beta=50\nsampler.k=8".into();
    harness.run();
    harness.get_by_label("New training").click();
    harness.run();
    harness.get_by_label("Start").click();
    harness.step();
    wait_until(&mut harness, 120, |app| app.training.as_ref().is_some_and(|t| t.finished()));
    let status = harness.state().training.as_ref().unwrap().status.lock().unwrap().clone();
    assert!(status.ended.as_deref().unwrap().starts_with("finished: Recall@1"), "{status:?}");
    assert_eq!(status.run_dir.parent(), Some(root.as_path()));
    let config = fs::read_to_string(status.run_dir.join("config.toml")).unwrap();
    assert!(config.contains("beta = 50.0") && config.contains("k = 8"), "{config}");
    let metrics = fs::read_to_string(status.run_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().filter(|l| l.contains("\"loss\"")).count(), 3);
    // The app opened the new run and picks up its test embeddings once written.
    wait_until(&mut harness, 10, |app| app.run().is_some_and(|r| r.embeddings.is_some()));
    assert_eq!(harness.state().run().unwrap().path, status.run_dir);
}

#[test]
fn stop_checkpoints_a_running_training() {
    let (_root, mut harness) = app_without_runs("stop");
    harness.state_mut().form.iterations = 100_000;
    harness.run();
    harness.get_by_label("New training").click();
    harness.run();
    harness.get_by_label("Start").click();
    harness.step();
    wait_until(&mut harness, 120, |app| app.training.as_ref().is_some_and(|t| t.status.lock().unwrap().iteration >= 2));
    harness.get_by_label("Stop").click();
    harness.step();
    wait_until(&mut harness, 60, |app| app.training.as_ref().is_some_and(|t| t.finished()));
    let status = harness.state().training.as_ref().unwrap().status.lock().unwrap().clone();
    assert!(status.ended.as_deref().unwrap().starts_with("stopped at iteration"), "{status:?}");
    assert!(status.run_dir.join("checkpoint.dml").is_file());
}

#[test]
fn runs_open_in_the_background_and_the_last_one_chosen_wins() {
    let (root, first) = fixture("open-first");
    let (_, second) = fixture("open-second");
    let mut harness = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).build_eframe(move |_cc| DmlApp::new(&root, None));
    harness.run();
    let ctx = harness.ctx.clone();
    // Opening returns at once; a second choice before the first is read supersedes it.
    harness.state_mut().open(&first, &ctx);
    harness.state_mut().open(&second, &ctx);
    assert!(harness.state().opening() && harness.state().run().is_none());
    wait_until(&mut harness, 60, |app| !app.opening());
    assert_eq!(harness.state().run().unwrap().path, second);
    assert!(harness.state().run().unwrap().embeddings.is_some());
}
