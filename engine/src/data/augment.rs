//! Turning stored images into normalised network input, with the training-time augmentation.

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;

use super::fashion_mnist::GreyImages;

/// `(x / 255 − mean) / std`, optionally mirrored left–right.
#[derive(Clone, Debug, PartialEq)]
pub struct GreyTransform {
    pub mean: f32,
    pub std: f32,
}

impl GreyTransform {
    pub fn from_config(config: &super::AugmentConfig) -> Self {
        let (mean, std) = config.grey_statistics();
        Self { mean, std }
    }

    /// The images `indices` as one `[n, 1, h, w]` buffer; `flip` draws a fair coin per image.
    pub fn batch(&self, images: &GreyImages, indices: &[usize], mut flip: Option<&mut Xoshiro256PlusPlus>) -> Vec<f32> {
        let (h, w) = (images.height, images.width);
        let scale = 1.0 / (255.0 * self.std);
        let shift = self.mean / self.std;
        let mut out = Vec::with_capacity(indices.len() * h * w);
        for &i in indices {
            let mirrored = flip.as_mut().is_some_and(|rng| rng.random_bool(0.5));
            let pixels = images.image(i);
            for row in pixels.chunks_exact(w) {
                if mirrored {
                    out.extend(row.iter().rev().map(|&p| p as f32 * scale - shift));
                } else {
                    out.extend(row.iter().map(|&p| p as f32 * scale - shift));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn normalises_and_mirrors_whole_rows() {
        let images = GreyImages { height: 2, width: 3, pixels: vec![0, 51, 255, 102, 0, 0], labels: vec![0] };
        let t = GreyTransform { mean: 0.2, std: 0.5 };
        let plain = t.batch(&images, &[0], None);
        let expected: Vec<f32> = [0.0f32, 0.2, 1.0, 0.4, 0.0, 0.0].iter().map(|x| (x - 0.2) / 0.5).collect();
        for (a, b) in plain.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6);
        }
        // Over many draws both orientations appear, and a flipped image is the row-reversed one.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut seen = [false; 2];
        for _ in 0..32 {
            let out = t.batch(&images, &[0], Some(&mut rng));
            let flipped = out[0] != plain[0];
            if flipped {
                assert_eq!(out[..3], [plain[2], plain[1], plain[0]]);
                assert_eq!(out[3..], [plain[5], plain[4], plain[3]]);
            } else {
                assert_eq!(out, plain);
            }
            seen[flipped as usize] = true;
        }
        assert_eq!(seen, [true, true]);
    }
}
