//! dml's in-browser demo: a run exported by `dml export --web` embeds images in the page with the
//! same Burn model and the same preprocessing as native `dml embed`, on WebGPU where the browser
//! offers it, otherwise on Burn's CPU backend compiled to WebAssembly.

pub mod gallery;

use std::cell::RefCell;
use std::rc::Rc;

use burn::module::Module;
use burn::tensor::Device;
use dml_engine::data::{Batch, InputFormat};
use dml_engine::image::RgbImage;
use dml_engine::model::Embedder;
use dml_engine::train::{TrainConfig, model_from_bytes};
use gallery::Gallery;
use wasm_bindgen::prelude::*;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps the message of a panic for [`last_panic`]: in the page a panic surfaces only as a
/// `RuntimeError: unreachable`, which says nothing of its cause.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
    }));
}

/// The message of the latest panic, if any.
#[wasm_bindgen(js_name = lastPanic)]
pub fn last_panic() -> Option<String> {
    LAST_PANIC.with(|p| p.borrow_mut().take())
}

/// How far a GPU embedding (unit length) may be from the CPU backend's: float32 arithmetic in a
/// different order, never a wrong kernel.
const GPU_TOLERANCE: f32 = 1e-3;

const SELF_CHECK_PASSES: usize = 4;

/// A fixed colourful test image for the GPU's self-check.
fn probe_image() -> RgbImage {
    RgbImage::from_fn(61, 47, |x, y| dml_engine::image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x * y) % 251) as u8]))
}

struct Inner {
    model: Embedder,
    device: Device,
    format: InputFormat,
    gallery: Gallery,
    backend: String,
    backend_detail: String,
    /// dml's retrieval shader on the page's WebGPU, where the model runs there too.
    #[cfg(feature = "webgpu")]
    ranker: Option<dml_kernels::retrieval::GpuRanker>,
}

impl Inner {
    /// The `k` gallery images nearest `query`, and what ranked them: the retrieval shader on
    /// WebGPU where it is open, else the CPU.
    async fn neighbours(&self, query: &[f32], k: usize) -> Result<(Vec<gallery::Neighbour>, &'static str), String> {
        let gallery = &self.gallery;
        #[cfg(feature = "webgpu")]
        if let Some(ranker) = self.ranker.as_ref().filter(|_| k > 0) {
            gallery.check_query(query)?;
            let ranked =
                ranker.top_k(query, &gallery.embeddings, gallery.dim, k.min(gallery.len()), false).await.map_err(|e| e.to_string())?;
            return Ok((gallery.scored(query, ranked[0].iter().map(|&row| row as usize)), "WebGPU shader"));
        }
        Ok((gallery.neighbours(query, k)?, "CPU"))
    }
}

/// A loaded model and gallery.
#[wasm_bindgen]
pub struct Demo {
    inner: Rc<Inner>,
}

/// Loads the exported run: `config` (config.toml), `model` (model.bpk), and the gallery's
/// embeddings, labels and map (`.npy`). With `webgpu`, tries the browser's WebGPU first and falls
/// back to the CPU backend when it is missing or fails.
#[wasm_bindgen(js_name = loadDemo)]
pub async fn load_demo(
    config: String,
    model: Vec<u8>,
    embeddings: Vec<u8>,
    labels: Vec<u8>,
    map: Vec<u8>,
    webgpu: bool,
) -> Result<Demo, JsError> {
    let config = TrainConfig::from_toml(&config).map_err(|e| JsError::new(&format!("config.toml: {e}")))?;
    let gallery = Gallery::from_npy(&embeddings, &labels, &map).map_err(|e| JsError::new(&e))?;
    if gallery.dim != config.model.dim {
        return Err(JsError::new(&format!("gallery.npy has {}-dimensional embeddings, the model {}", gallery.dim, config.model.dim)));
    }
    let (device, Backend { name: backend, detail: backend_detail }, on_gpu) = select_device(webgpu).await;
    // Kept for the GPU's self-check below.
    let model_bytes = on_gpu.then(|| model.clone());
    let model = model_from_bytes(&config, model, &device).map_err(|e| JsError::new(&format!("model.bpk: {e}")))?.valid();
    let format = config.input_format();
    #[cfg_attr(not(feature = "webgpu"), allow(unused_mut))]
    let mut inner = Inner {
        model,
        device,
        format,
        gallery,
        backend,
        backend_detail,
        #[cfg(feature = "webgpu")]
        ranker: None,
    };
    // A first forward pass compiles the GPU kernels, so that the user's first query is not the
    // slow one; and it is checked against the CPU backend, so that a browser whose WebGPU
    // miscompiles a kernel is caught here rather than answering queries wrongly.
    if let Some(bytes) = model_bytes {
        let probe = inner.format.read_rgb(probe_image());
        let cpu = Device::flex();
        let reference =
            model_from_bytes(&config, bytes, &cpu).map_err(|e| JsError::new(&format!("model.bpk: {e}")))?.valid().embed_batch(&probe, &cpu);
        // Several passes: with Burn's autotune on (it is off in this build, see web/Cargo.toml)
        // the first calls run a default kernel and later ones the fastest candidate.
        for pass in 1..=SELF_CHECK_PASSES {
            let got = inner.model.embed_batch_async(&probe, &inner.device).await.map_err(|e| JsError::new(&e))?;
            let diff = reference.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            if diff.is_nan() || diff > GPU_TOLERANCE {
                return Err(JsError::new(&format!(
                    "WebGPU failed its self-check: in pass {pass}, its embedding of a test image differs from the CPU backend's by {diff:.3}"
                )));
            }
        }
    }
    #[cfg(feature = "webgpu")]
    if on_gpu {
        match dml_kernels::retrieval::GpuRanker::open(dml_kernels::retrieval::wgpu::Backends::BROWSER_WEBGPU).await {
            Ok(ranker) => inner.ranker = Some(ranker),
            Err(e) => inner.backend_detail = format!("{}; neighbours ranked on the CPU: {e}", inner.backend_detail),
        }
    }
    Ok(Demo { inner: Rc::new(inner) })
}

/// What computes the embeddings: a few words for the page's badge, and the whole story (why
/// WebGPU is not used, in the words of the error) for its tooltip.
struct Backend {
    name: String,
    detail: String,
}

impl Backend {
    fn cpu(why_not_gpu: Option<String>) -> Self {
        match why_not_gpu {
            None => Backend { name: "CPU (Burn flex, wasm)".into(), detail: "Burn's CPU backend, compiled to WebAssembly".into() },
            Some(why) => {
                Backend { name: format!("CPU (Burn flex, wasm; {})", short_reason(&why)), detail: format!("WebGPU not used: {why}") }
            }
        }
    }
}

/// A few words for why WebGPU is not used. wgpu's error for a browser that exposes WebGPU but has
/// no adapter (headless browsers, many Linux desktops) is 300 characters of debug output.
fn short_reason(why: &str) -> &'static str {
    let lower = why.to_lowercase();
    if lower.contains("no adapter") || lower.contains("found no adapters") || lower.contains("no suitable graphics adapter") {
        "no WebGPU adapter"
    } else if lower.contains("no webgpu") {
        "no WebGPU in this build"
    } else {
        "WebGPU unavailable"
    }
}

/// The device to compute on, its description, and whether it is a GPU.
#[cfg(feature = "webgpu")]
async fn select_device(webgpu: bool) -> (Device, Backend, bool) {
    if !webgpu {
        return (Device::flex(), Backend::cpu(None), false);
    }
    match Device::wgpu_options().init_async().await {
        Ok(device) => {
            (device, Backend { name: "WebGPU (Burn wgpu)".into(), detail: "Burn's wgpu backend on the browser's WebGPU".into() }, true)
        }
        Err(e) => (Device::flex(), Backend::cpu(Some(e.to_string())), false),
    }
}

#[cfg(not(feature = "webgpu"))]
async fn select_device(webgpu: bool) -> (Device, Backend, bool) {
    let why = webgpu.then(|| "this build has no WebGPU (web/build.sh builds pkg-webgpu/ with it)".to_string());
    (Device::flex(), Backend::cpu(why), false)
}

#[wasm_bindgen]
impl Demo {
    /// Which backend computes the embeddings, in a few words.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend.clone()
    }

    /// The same at length: why WebGPU is not used, where it is not.
    #[wasm_bindgen(getter, js_name = backendDetail)]
    pub fn backend_detail(&self) -> String {
        self.inner.backend_detail.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> usize {
        self.inner.gallery.dim
    }

    /// `[channels, height, width]` of the network input.
    #[wasm_bindgen(getter, js_name = inputShape)]
    pub fn input_shape(&self) -> Vec<u32> {
        self.inner.format.item_shape().iter().map(|&d| d as u32).collect()
    }

    /// Embeds an image file's bytes (PNG, JPEG, BMP, GIF, WebP) with the run's test transform.
    /// Resolves to a `Float32Array`; rejects with a message for a file that is not an image.
    #[wasm_bindgen(js_name = embedImage)]
    pub fn embed_image(&self, bytes: &[u8]) -> js_sys::Promise {
        let batch = self.inner.format.read_bytes(bytes);
        self.embed(batch)
    }

    /// Embeds RGBA pixels (a canvas's `ImageData`; alpha is ignored) with the run's test transform.
    #[wasm_bindgen(js_name = embedRgba)]
    pub fn embed_rgba(&self, rgba: &[u8], width: u32, height: u32) -> js_sys::Promise {
        let batch = if rgba.len() != 4 * width as usize * height as usize || width == 0 || height == 0 {
            Err(format!("{} bytes are not {width} × {height} RGBA pixels", rgba.len()))
        } else {
            let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
            let image = RgbImage::from_raw(width, height, rgb).expect("size checked");
            Ok(self.inner.format.read_rgb(image))
        };
        self.embed(batch)
    }

    fn embed(&self, batch: Result<Batch, String>) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let batch = batch.map_err(|e| JsValue::from(JsError::new(&e)))?;
            let embedding = inner.model.embed_batch_async(&batch, &inner.device).await.map_err(|e| JsValue::from(JsError::new(&e)))?;
            Ok(js_sys::Float32Array::from(embedding.as_slice()).into())
        })
    }

    /// The `k` nearest gallery images of an embedding, where it lands on the map and what ranked
    /// them, as a promise of JSON:
    /// `{"neighbours":[{"index":..,"score":..},..],"position":[x,y],"ranked_by":"CPU"}`.
    pub fn search(&self, embedding: Vec<f32>, k: usize) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let (neighbours, ranked_by) = inner.neighbours(&embedding, k).await.map_err(|e| JsValue::from(JsError::new(&e)))?;
            let position = inner.gallery.place(&neighbours);
            Ok(JsValue::from_str(
                &serde_json::json!({ "neighbours": neighbours, "position": position, "ranked_by": ranked_by }).to_string(),
            ))
        })
    }

    /// The gallery's map, `[x0, y0, x1, y1, ..]`.
    #[wasm_bindgen(getter)]
    pub fn map(&self) -> Vec<f32> {
        self.inner.gallery.map.iter().flatten().copied().collect()
    }

    /// The gallery's labels.
    #[wasm_bindgen(getter)]
    pub fn labels(&self) -> Vec<i32> {
        self.inner.gallery.labels.iter().map(|&l| l as i32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_badge_says_why_in_a_few_words() {
        // wgpu's words in headless chromium, which exposes WebGPU without an adapter.
        let headless = "No adapter available for WgpuDevice { kind: DefaultDevice, backend: Auto }: No suitable graphics adapter found; noop not requested, vulkan not requested, metal not requested, dx12 not requested, gl not requested, webgpu found no adapters";
        let backend = Backend::cpu(Some(headless.into()));
        assert_eq!(backend.name, "CPU (Burn flex, wasm; no WebGPU adapter)");
        assert!(backend.detail.ends_with("webgpu found no adapters"));
        assert_eq!(Backend::cpu(Some("device lost".into())).name, "CPU (Burn flex, wasm; WebGPU unavailable)");
        assert_eq!(Backend::cpu(None).name, "CPU (Burn flex, wasm)");
    }
}
