//! Class colours: the ten of matplotlib's `tab10`, then hues spread by the golden angle.

use eframe::egui::{Color32, ecolor::Hsva};

const TAB10: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

pub fn class_color(label: i64) -> Color32 {
    match usize::try_from(label).ok().and_then(|i| TAB10.get(i)) {
        Some([r, g, b]) => Color32::from_rgb(*r, *g, *b),
        None => Hsva::new((label as f32 * 0.618_034).rem_euclid(1.0), 0.65, 0.85, 1.0).into(),
    }
}
