//! Test images as textures, made on first use and kept.

use std::collections::HashMap;

use dml_engine::data::{Inputs, image_file};
use dml_engine::image::imageops;
use eframe::egui::{self, ColorImage, TextureHandle, TextureOptions};

/// Largest side of a thumbnail, in pixels.
const SIDE: u32 = 96;

#[derive(Default)]
pub struct Thumbnails {
    cache: HashMap<usize, Option<TextureHandle>>,
}

impl Thumbnails {
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    /// The thumbnail of test item `i` (part 0: the test split or the queries), if its image can
    /// be read.
    pub fn get(&mut self, ctx: &egui::Context, inputs: Option<&Inputs>, i: usize) -> Option<TextureHandle> {
        let inputs = inputs?;
        self.cache
            .entry(i)
            .or_insert_with(|| {
                let image = match inputs {
                    Inputs::Grey { split, .. } => {
                        let (w, h) = (split.test.width, split.test.height);
                        let pixels = split.test.image(i);
                        ColorImage::from_gray([w, h], pixels)
                    }
                    Inputs::Files { .. } => {
                        let path = inputs.test_file(0, i)?;
                        let photo = image_file::decode(&path).ok()?;
                        let scale = SIDE as f64 / photo.width().max(photo.height()) as f64;
                        let (w, h) = (
                            ((photo.width() as f64 * scale).round() as u32).max(1),
                            ((photo.height() as f64 * scale).round() as u32).max(1),
                        );
                        let small = imageops::resize(&photo, w, h, imageops::FilterType::Triangle);
                        ColorImage::from_rgb([w as usize, h as usize], small.as_raw())
                    }
                };
                Some(ctx.load_texture(format!("test-{i}"), image, TextureOptions::NEAREST))
            })
            .clone()
    }
}
