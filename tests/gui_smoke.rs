//! `dml gui` under a virtual X server (Xvfb): the window opens on a real run folder and draws
//! something that is not blank. Needs `Xvfb` and ImageMagick's `import` (scripts/test installs
//! both).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::scratch;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Distinct colours and the share of the most common one in a PNG screenshot.
fn colour_spread(path: &Path) -> (usize, f64) {
    let image = dml_engine::image::open(path).unwrap().to_rgb8();
    let mut counts = std::collections::HashMap::new();
    for p in image.pixels() {
        *counts.entry(p.0).or_insert(0usize) += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    (counts.len(), top as f64 / (image.width() * image.height()) as f64)
}

#[test]
fn gui_opens_a_run_and_draws_under_xvfb() {
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: the GUI smoke test runs the window under Xvfb, an X server only Linux CI has");
        return;
    }
    assert!(
        have("Xvfb") && have("import"),
        "this test needs Xvfb and ImageMagick's import: apt-get install xvfb imagemagick (scripts/test does)"
    );
    let dir = scratch("gui-smoke");
    let run = dir.join("runs").join("short");
    let out = Command::new(env!("CARGO_BIN_EXE_dml"))
        .args(["train", "--iterations", "10", "--eval-interval", "0", "--backend", "cpu", "--run-dir", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let display = format!(":{}", 90 + std::process::id() % 9);
    let socket = format!("/tmp/.X11-unix/X{}", &display[1..]);
    let _xvfb = Killed(
        Command::new("Xvfb")
            .args([display.as_str(), "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !Path::new(&socket).exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "Xvfb did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut gui = Killed(
        Command::new(env!("CARGO_BIN_EXE_dml"))
            .args(["gui", run.to_str().unwrap()])
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let shot = dir.join("shot.png");
    let start = Instant::now();
    let (mut colours, mut dominant) = (0, 1.0);
    while start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        if let Ok(Some(status)) = gui.0.try_wait() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(gui.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            panic!("dml gui exited with {status}: {stderr}");
        }
        let taken = Command::new("import").args(["-display", &display, "-window", "root", shot.to_str().unwrap()]).status().unwrap();
        if taken.success() {
            (colours, dominant) = colour_spread(&shot);
            if colours > 30 && dominant < 0.9 {
                break;
            }
        }
    }
    assert!(colours > 30 && dominant < 0.9, "the screen stayed blank: {colours} colours, the commonest covering {:.0} %", dominant * 100.0);
    drop(gui);
    std::fs::remove_dir_all(&dir).unwrap();
}
