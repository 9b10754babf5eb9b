//! Retrieval on the GPU: each query's `depth` most similar gallery rows, ranked, computed by a
//! WGSL compute shader (`top_k.wgsl`) through wgpu on Vulkan, Metal, DX12 or a browser's WebGPU.
//!
//! The shader scores a block of the gallery against each query and merges the scores into the
//! query's running top-k at once: the similarity matrix is never stored (memory is the embeddings
//! plus `depth` entries per query) and no row is sorted on the GPU. The gallery goes to the GPU in
//! blocks, one dispatch each, the entries carried from one to the next in a heap per query; the
//! host sorts each query's `depth` entries at the end. Ranks follow the CPU path: similarity
//! descending, equal similarities by the lower gallery row.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

pub use wgpu;
use wgpu::util::DeviceExt;

/// The largest buffer the ranker binds (a chunk of queries, gallery or lists): 64 MiB, half of
/// WebGPU's default storage-binding limit, less where the adapter allows less.
const CHUNK_BYTES: u64 = 64 << 20;

/// Invocations per workgroup in `top_k.wgsl` (its `TILE`).
const TILE: usize = 64;

/// Loop iterations an invocation may run per dispatch: lavapipe (Mesa's software Vulkan) ends an
/// invocation's loops after 65,535 in all, silently; the rest is margin.
const LOOP_BUDGET: usize = 60_000;

/// A compiled retrieval shader on one GPU adapter.
pub struct GpuRanker {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    adapter: String,
    chunk_bytes: u64,
    max_groups: u32,
}

/// Why the GPU could not rank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuError(pub String);

impl std::fmt::Display for GpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GpuError {}

impl GpuRanker {
    /// Opens `adapter` and compiles the shader on it.
    pub async fn new(adapter: &wgpu::Adapter) -> Result<Self, GpuError> {
        let supported = adapter.limits();
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: supported.max_storage_buffer_binding_size.min(CHUNK_BYTES),
            max_buffer_size: supported.max_buffer_size.min(CHUNK_BYTES),
            ..wgpu::Limits::default()
        };
        let descriptor = wgpu::DeviceDescriptor { label: Some("dml retrieval"), required_limits: limits.clone(), ..Default::default() };
        let (device, queue) =
            adapter.request_device(&descriptor).await.map_err(|e| GpuError(format!("cannot open the GPU for retrieval: {e}")))?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("top_k.wgsl"),
            source: wgpu::ShaderSource::Wgsl(include_str!("top_k.wgsl").into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("top_k"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Ok(Self {
            device,
            queue,
            pipeline,
            adapter: adapter.get_info().name,
            chunk_bytes: limits.max_storage_buffer_binding_size.min(limits.max_buffer_size),
            max_groups: limits.max_compute_workgroups_per_dimension,
        })
    }

    /// The ranker on the adapter wgpu prefers among `backends` (in a browser,
    /// `wgpu::Backends::BROWSER_WEBGPU`: the page's WebGPU).
    pub async fn open(backends: wgpu::Backends) -> Result<Self, GpuError> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        descriptor.backends = backends;
        let instance = wgpu::Instance::new(descriptor);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions::default())
            .await
            .map_err(|e| GpuError(format!("no GPU adapter for retrieval: {e}")))?;
        Self::new(&adapter).await
    }

    /// The ranker on the adapter named `name` (as wgpu reports it), opened once per process and
    /// shared: the adapter of the graphics API Burn's wgpu runtime prefers where several APIs
    /// offer the same device.
    #[cfg(not(target_family = "wasm"))]
    pub fn on_adapter_named(name: &str) -> Result<Arc<GpuRanker>, GpuError> {
        use std::collections::HashMap;
        use std::sync::OnceLock;
        static RANKERS: OnceLock<Mutex<HashMap<String, Arc<GpuRanker>>>> = OnceLock::new();
        let mut rankers = RANKERS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ranker) = rankers.get(name) {
            return Ok(ranker.clone());
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let preference = [wgpu::Backend::Metal, wgpu::Backend::Vulkan, wgpu::Backend::Dx12, wgpu::Backend::Gl];
        let mut adapters = futures_lite::future::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        adapters.retain(|a| a.get_info().name == name);
        adapters.sort_by_key(|a| preference.iter().position(|&b| b == a.get_info().backend).unwrap_or(preference.len()));
        let adapter = adapters.first().ok_or_else(|| GpuError(format!("wgpu finds no adapter named {name:?}")))?;
        let ranker = Arc::new(futures_lite::future::block_on(GpuRanker::new(adapter))?);
        rankers.insert(name.to_string(), ranker.clone());
        Ok(ranker)
    }

    /// The ranker on the GPU behind `device`, a Burn device of a cubecl runtime (wgpu's Vulkan,
    /// Metal or DX12, CUDA, …), where wgpu can open the same GPU; `None` for a device of another
    /// backend (the CPU's).
    #[cfg(not(target_family = "wasm"))]
    pub fn for_device(device: &burn::tensor::Device) -> Option<Result<Arc<GpuRanker>, GpuError>> {
        let identity = device.as_dispatch().identity()?;
        Some(Self::on_adapter_named(&identity.name))
    }

    /// The adapter's name.
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// At most `bytes` per bound buffer and `groups` workgroups per row of a dispatch grid, below
    /// what the adapter allows: tests use this to make small inputs take several chunks and grid
    /// rows.
    pub fn with_limits(mut self, bytes: u64, groups: u32) -> Self {
        self.chunk_bytes = bytes.min(self.chunk_bytes);
        self.max_groups = groups.clamp(1, self.max_groups);
        self
    }

    /// For each query (rows of `queries`, `dim` values each), the `depth` gallery rows (of
    /// `gallery`) with the largest dot products, best first, equal products by the lower row.
    /// With `leave_one_out` the queries are the gallery itself and each skips its own row. The
    /// vectors are expected to be unit length (dot product = cosine similarity), though nothing
    /// here depends on it.
    pub async fn top_k(
        &self,
        queries: &[f32],
        gallery: &[f32],
        dim: usize,
        depth: usize,
        leave_one_out: bool,
    ) -> Result<Vec<Vec<u32>>, GpuError> {
        let plan = Plan::new(queries.len(), gallery.len(), dim, depth, leave_one_out, self.chunk_bytes)?;
        // The gallery, transposed chunk by chunk: invocations that score neighbouring rows read
        // neighbouring addresses.
        let chunks: Vec<(usize, usize, wgpu::Buffer)> = (0..plan.gallery_rows)
            .step_by(plan.gallery_chunk)
            .map(|start| {
                let rows = plan.gallery_chunk.min(plan.gallery_rows - start);
                let mut bytes = Vec::with_capacity(rows * dim * 4);
                for c in 0..dim {
                    for r in start..start + rows {
                        bytes.extend_from_slice(&gallery[r * dim + c].to_le_bytes());
                    }
                }
                (start, rows, self.storage("gallery chunk", &bytes, wgpu::BufferUsages::empty()))
            })
            .collect();
        let mut ranked = Vec::with_capacity(plan.query_rows);
        for start in (0..plan.query_rows).step_by(plan.query_chunk) {
            let rows = plan.query_chunk.min(plan.query_rows - start);
            ranked.extend(self.rank_chunk(&plan, &queries[start * dim..(start + rows) * dim], start, rows, &chunks).await?);
        }
        Ok(ranked)
    }

    /// [`Self::top_k`], waiting for the GPU on this thread.
    #[cfg(not(target_family = "wasm"))]
    pub fn top_k_blocking(
        &self,
        queries: &[f32],
        gallery: &[f32],
        dim: usize,
        depth: usize,
        leave_one_out: bool,
    ) -> Result<Vec<Vec<u32>>, GpuError> {
        futures_lite::future::block_on(self.top_k(queries, gallery, dim, depth, leave_one_out))
    }

    /// One chunk of queries against every gallery chunk: one dispatch per gallery chunk, the
    /// lists read back at the end.
    async fn rank_chunk(
        &self,
        plan: &Plan,
        queries: &[f32],
        query_start: usize,
        rows: usize,
        gallery: &[(usize, usize, wgpu::Buffer)],
    ) -> Result<Vec<Vec<u32>>, GpuError> {
        let bytes = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let queries = self.storage("queries", &bytes(queries), wgpu::BufferUsages::empty());
        let list_bytes = (rows * plan.depth * 4) as u64;
        let similarities = self.scratch("top similarities", list_bytes, wgpu::BufferUsages::COPY_SRC);
        let top_rows = self.scratch("top rows", list_bytes, wgpu::BufferUsages::COPY_SRC);
        let filled = self.scratch("filled", (rows * 4) as u64, wgpu::BufferUsages::empty());
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("top entries, read back"),
            size: 2 * list_bytes,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        let grid_width = rows.min(self.max_groups as usize) as u32;
        let grid_height = rows.div_ceil(grid_width as usize) as u32;
        let layout = self.pipeline.get_bind_group_layout(0);
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("top_k") });
        for (gallery_start, gallery_rows, chunk) in gallery {
            let params: Vec<u8> =
                [plan.dim, *gallery_rows, *gallery_start, plan.depth, rows, query_start, plan.leave_one_out as usize, grid_width as usize]
                    .iter()
                    .flat_map(|&v| (v as u32).to_le_bytes())
                    .collect();
            let params = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("top_k params"),
                contents: &params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("top_k bindings"),
                layout: &layout,
                entries: &[&params, &queries, chunk, &similarities, &top_rows, &filled]
                    .iter()
                    .enumerate()
                    .map(|(i, buffer)| wgpu::BindGroupEntry { binding: i as u32, resource: buffer.as_entire_binding() })
                    .collect::<Vec<_>>(),
            });
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("top_k"), timestamp_writes: None });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(grid_width, grid_height, 1);
        }
        encoder.copy_buffer_to_buffer(&similarities, 0, &readback, 0, list_bytes);
        encoder.copy_buffer_to_buffer(&top_rows, 0, &readback, list_bytes, list_bytes);
        self.queue.submit([encoder.finish()]);
        let bytes = self.read(&readback).await?;
        let words = |bytes: &[u8]| bytes.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect::<Vec<[u8; 4]>>();
        let (similarities, top_rows) = bytes.split_at(list_bytes as usize);
        let similarities: Vec<f32> = words(similarities).into_iter().map(f32::from_le_bytes).collect();
        let top_rows: Vec<u32> = words(top_rows).into_iter().map(u32::from_le_bytes).collect();
        // Each query's heap, in rank order.
        Ok(similarities
            .chunks(plan.depth)
            .zip(top_rows.chunks(plan.depth))
            .map(|(s, r)| {
                let mut entries: Vec<(f32, u32)> = s.iter().copied().zip(r.iter().copied()).collect();
                entries.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                entries.into_iter().map(|(_, row)| row).collect()
            })
            .collect())
    }

    fn storage(&self, label: &str, contents: &[u8], extra: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE | extra,
        })
    }

    /// A storage buffer of `size` bytes, zeroed (wgpu clears new buffers).
    fn scratch(&self, label: &str, size: u64, extra: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4),
            usage: wgpu::BufferUsages::STORAGE | extra,
            mapped_at_creation: false,
        })
    }

    /// The bytes of a mappable buffer once the GPU has written them.
    async fn read(&self, buffer: &wgpu::Buffer) -> Result<Vec<u8>, GpuError> {
        let state = Arc::new(Mutex::new(Mapping::default()));
        let callback_state = state.clone();
        buffer.map_async(wgpu::MapMode::Read, .., move |result| {
            let mut mapping = callback_state.lock().unwrap_or_else(|e| e.into_inner());
            mapping.result = Some(result.map_err(|e| e.to_string()));
            if let Some(waker) = mapping.waker.take() {
                waker.wake();
            }
        });
        // Natively the callback runs from a poll; in a browser from the event loop.
        #[cfg(not(target_family = "wasm"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError(format!("the GPU failed: {e}")))?;
        MappingDone(state).await.map_err(|e| GpuError(format!("cannot read the GPU's results: {e}")))?;
        let bytes = buffer.get_mapped_range(..).map_err(|e| GpuError(format!("cannot read the GPU's results: {e:?}")))?.to_vec();
        buffer.unmap();
        Ok(bytes)
    }
}

#[derive(Default)]
struct Mapping {
    result: Option<Result<(), String>>,
    waker: Option<Waker>,
}

/// Ready when the buffer's mapping callback has run.
struct MappingDone(Arc<Mutex<Mapping>>);

impl Future for MappingDone {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut mapping = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match mapping.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                mapping.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The sizes of one ranking and how it is cut into chunks.
#[derive(Debug)]
struct Plan {
    dim: usize,
    depth: usize,
    leave_one_out: bool,
    query_rows: usize,
    gallery_rows: usize,
    query_chunk: usize,
    gallery_chunk: usize,
}

impl Plan {
    fn new(
        query_values: usize,
        gallery_values: usize,
        dim: usize,
        depth: usize,
        leave_one_out: bool,
        chunk_bytes: u64,
    ) -> Result<Self, GpuError> {
        if dim == 0 || !query_values.is_multiple_of(dim) || !gallery_values.is_multiple_of(dim) {
            return Err(GpuError(format!("{query_values} query and {gallery_values} gallery values are not rows of {dim}")));
        }
        let (query_rows, gallery_rows) = (query_values / dim, gallery_values / dim);
        let candidates = gallery_rows - (leave_one_out as usize).min(gallery_rows);
        if depth == 0 || depth > candidates {
            return Err(GpuError(format!("cannot keep {depth} neighbours of {candidates} candidates")));
        }
        if leave_one_out && query_rows != gallery_rows {
            return Err(GpuError("leave-one-out needs the queries to be the gallery".into()));
        }
        if [query_rows, gallery_rows, dim, depth].iter().any(|&n| n > u32::MAX as usize) {
            return Err(GpuError("more rows than 32-bit indices reach".into()));
        }
        // A query chunk binds its vectors and its lists, a gallery chunk its vectors.
        let query_bytes = (dim.max(depth) * 4) as u64;
        if query_bytes > chunk_bytes {
            return Err(GpuError(format!("one row of {dim} values (or {depth} neighbours) outgrows the GPU's {chunk_bytes}-byte buffers")));
        }
        let query_chunk = (chunk_bytes / query_bytes) as usize;
        // A gallery block per dispatch: what one binding holds, and what keeps the loops of the
        // first invocation within the budget: per tile, the tile loop and the dot product, then
        // up to one heap step per candidate (the heap's height, and one).
        let binding_rows = (chunk_bytes / (dim * 4) as u64) as usize;
        let height = (usize::BITS - depth.leading_zeros()) as usize;
        let per_tile = 1 + dim + TILE * (2 + height);
        if per_tile > LOOP_BUDGET {
            return Err(GpuError(format!("{dim} components are more than one dispatch of the shader can score")));
        }
        let gallery_chunk = binding_rows.min(LOOP_BUDGET / per_tile * TILE);
        // Blocks in whole tiles, so that only the last has a ragged tile.
        let gallery_chunk = if gallery_chunk >= TILE { gallery_chunk / TILE * TILE } else { gallery_chunk };
        Ok(Plan { dim, depth, leave_one_out, query_rows, gallery_rows, query_chunk, gallery_chunk })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cut_rows_into_chunks_that_fit_the_buffers() {
        let plan = Plan::new(10 * 4, 1000 * 4, 4, 4, false, 64 * 16 * 3).unwrap();
        assert_eq!((plan.query_rows, plan.gallery_rows), (10, 1000));
        assert_eq!(plan.query_chunk, 192, "16-byte rows in 3,072-byte buffers");
        assert_eq!(plan.gallery_chunk, 192, "three whole tiles");
        let deep = Plan::new(10 * 4, 1000 * 4, 4, 100, false, 4000).unwrap();
        assert_eq!(deep.query_chunk, 10, "a query's list of 100 takes 400 bytes");
        assert_eq!(deep.gallery_chunk, 192, "gallery rows bind no list");
        let long = Plan::new(10 * 512, 100_000 * 512, 512, 1000, false, 64 << 20).unwrap();
        assert_eq!(long.gallery_chunk, 46 * 64, "60,000 loop iterations: 46 tiles of 1 + 512 + 64 × (2 + 10)");
        let small = Plan::new(10 * 4, 1000 * 4, 4, 1, false, 16 * 40).unwrap();
        assert_eq!(small.gallery_chunk, 40, "fewer rows than a tile stay as they are");
    }

    #[test]
    fn impossible_requests_are_refused() {
        assert!(Plan::new(10, 40, 4, 2, false, 1 << 20).is_err(), "10 values are not rows of 4");
        assert!(Plan::new(40, 40, 4, 10, true, 1 << 20).is_err(), "9 candidates for 10 neighbours");
        assert!(Plan::new(40, 40, 4, 0, false, 1 << 20).is_err(), "depth 0");
        assert!(Plan::new(8, 40, 4, 2, true, 1 << 20).is_err(), "leave-one-out over different sets");
        assert!(Plan::new(4 << 20, 4 << 20, 1 << 20, 1, false, 1 << 20).is_err(), "a row over the buffer size");
        assert!(Plan::new(1 << 16, 1 << 16, 1 << 16, 1, false, 1 << 20).is_err(), "a dot product over the loop budget");
    }
}
