//! The retrieval shader ranks as the definition does, ties to the lower gallery row: on vectors of
//! quarter-valued components, whose dot products are exact in f32 in any order of summation (so
//! the GPU must agree to the last bit, and ties abound), against a sort in f64. Query/gallery and
//! leave-one-out, every depth from 1 to the whole gallery, deep lists over a larger gallery, and
//! inputs cut into several chunks and dispatch-grid rows.
//!
//! Needs a wgpu adapter (lavapipe from `mesa-vulkan-drivers` on a machine without a GPU), with
//! the same opt-outs as the engine's wgpu tests: `DML_SKIP_WGPU_TESTS=1` skips, and
//! `DML_WGPU_TESTS_OPTIONAL=1` skips where no adapter is found.

use dml_kernels::retrieval::GpuRanker;

fn adapter() -> Option<wgpu::Adapter> {
    if std::env::var_os("DML_SKIP_WGPU_TESTS").is_some() {
        eprintln!("DML_SKIP_WGPU_TESTS is set: GPU retrieval checks skipped");
        return None;
    }
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let mut adapters = futures_lite::future::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    adapters.sort_by_key(|a| a.get_info().backend != wgpu::Backend::Vulkan);
    match adapters.into_iter().next() {
        Some(adapter) => {
            eprintln!("adapter: {} ({:?})", adapter.get_info().name, adapter.get_info().backend);
            Some(adapter)
        }
        None if std::env::var_os("DML_WGPU_TESTS_OPTIONAL").is_some() => {
            eprintln!("GPU retrieval checks skipped: no wgpu adapter");
            None
        }
        None => panic!("no wgpu adapter (install mesa-vulkan-drivers, or set DML_WGPU_TESTS_OPTIONAL=1 to skip)"),
    }
}

/// `rows × dim` components in {−1, −¾, …, 1} (xorshift), with every fifth row a copy of an
/// earlier one so that equal similarities are common.
fn quarters(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut values = Vec::with_capacity(rows * dim);
    for r in 0..rows {
        if r % 5 == 4 {
            let source = (r * 7) % r;
            values.extend_from_within(source * dim..(source + 1) * dim);
            continue;
        }
        for _ in 0..dim {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values.push((state % 9) as f32 / 4.0 - 1.0);
        }
    }
    values
}

/// The definition: every gallery row by dot product (f64, exact here) descending, then row.
fn reference(queries: &[f32], gallery: &[f32], dim: usize, depth: usize, leave_one_out: bool) -> Vec<Vec<u32>> {
    queries
        .chunks(dim)
        .enumerate()
        .map(|(q, query)| {
            let mut scored: Vec<(f64, u32)> = gallery
                .chunks(dim)
                .enumerate()
                .filter(|&(g, _)| !(leave_one_out && g == q))
                .map(|(g, row)| (query.iter().zip(row).map(|(&a, &b)| a as f64 * b as f64).sum(), g as u32))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.into_iter().take(depth).map(|(_, g)| g).collect()
        })
        .collect()
}

#[test]
fn the_shader_ranks_as_the_definition_with_ties_to_the_lower_row() {
    let Some(adapter) = adapter() else { return };
    let whole = futures_lite::future::block_on(GpuRanker::new(&adapter)).expect("the shader compiles and the device opens");
    let dim = 8;
    let gallery = quarters(300, dim, 1);
    let queries = quarters(37, dim, 2);
    let check = |ranker: &GpuRanker, what: &str, queries: &[f32], depth: usize, leave_one_out: bool| {
        let got = ranker.top_k_blocking(queries, &gallery, dim, depth, leave_one_out).unwrap();
        let want = reference(queries, &gallery, dim, depth, leave_one_out);
        assert_eq!(got.len(), want.len(), "{what}: one list per query");
        for (q, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{what}, depth {depth}: query {q}");
        }
    };
    for depth in [1, 2, 7, 64, 65, 299] {
        check(&whole, "query/gallery", &queries, depth, false);
        check(&whole, "leave-one-out", &gallery, depth, true);
    }
    check(&whole, "query/gallery, the whole gallery", &queries, 300, false);
    // Deep lists over a larger gallery: several dispatches' worth of heap updates per query (a
    // sorted list needed more loop iterations than lavapipe allows one invocation).
    let large = quarters(1500, dim, 4);
    let got = whole.top_k_blocking(&large, &large, dim, 700, true).unwrap();
    assert!(got == reference(&large, &large, dim, 700, true), "leave-one-out over 1,500 rows, depth 700");
    // Buffers of 2,048 bytes: gallery chunks of 64 rows (the last 44), query chunks of 64 rows at
    // depth ≤ 8 and 12 at depth 40; grid rows of 3 workgroups.
    let chunked = futures_lite::future::block_on(GpuRanker::new(&adapter)).unwrap().with_limits(2048, 3);
    for depth in [1, 8, 40] {
        check(&chunked, "chunked query/gallery", &queries, depth, false);
        check(&chunked, "chunked leave-one-out", &gallery, depth, true);
    }
}

#[test]
fn requests_the_shader_cannot_serve_are_refused() {
    let Some(adapter) = adapter() else { return };
    let ranker = futures_lite::future::block_on(GpuRanker::new(&adapter)).unwrap();
    let gallery = quarters(10, 4, 3);
    let err = ranker.top_k_blocking(&gallery, &gallery, 4, 10, true).unwrap_err();
    assert!(err.0.contains("10 neighbours of 9 candidates"), "{err}");
    let err = ranker.top_k_blocking(&gallery[..6], &gallery, 4, 2, false).unwrap_err();
    assert!(err.0.contains("not rows of 4"), "{err}");
}
