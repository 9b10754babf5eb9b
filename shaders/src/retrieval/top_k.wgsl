// Retrieval on the GPU: the similarity (dot product of unit vectors) of each query to a block of
// the gallery, merged into that query's running top-k in one pass, so that no similarity matrix is
// ever stored and no row is ever sorted here.
//
// One workgroup serves one query. Its 64 invocations score 64 gallery rows at a time (the gallery
// is stored transposed, so that they read neighbouring addresses); the rows that rank before the
// worst entry kept so far become candidates, and the first invocation adds them to the query's
// entries: a heap with the worst entry at its root, in `top_similarities` / `top_rows` between
// dispatches, so that adding one costs O(log depth). The host sorts each query's final entries.
// Rank order: similarity descending, equal similarities by the lower gallery row.
//
// Each dispatch covers a bounded number of rows: Mesa's software Vulkan (lavapipe) ends the loops
// of an invocation after 65,535 iterations in all, so the host sizes the blocks to stay below that
// (the heap keeps each addition to a few iterations; a sorted list would not).

struct Params {
    // Components per embedding.
    dim: u32,
    // Gallery rows in this chunk, and the gallery index of its first.
    gallery_rows: u32,
    gallery_start: u32,
    // Entries kept per query.
    depth: u32,
    // Queries in this dispatch, and the query index of the first (for leave-one-out).
    queries: u32,
    query_start: u32,
    // 1: the queries are the gallery, and each query skips its own row.
    skip_own: u32,
    // Workgroups per row of the dispatch grid (queries past 65,535 take a second grid row).
    grid_width: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// [queries, dim], row-major.
@group(0) @binding(1) var<storage, read> queries: array<f32>;
// [dim, gallery_rows]: column j is gallery row gallery_start + j.
@group(0) @binding(2) var<storage, read> gallery: array<f32>;
// [queries, depth] each: the first `filled[q]` entries of row q, a heap whose root ranks last.
@group(0) @binding(3) var<storage, read_write> top_similarities: array<f32>;
@group(0) @binding(4) var<storage, read_write> top_rows: array<u32>;
@group(0) @binding(5) var<storage, read_write> filled: array<u32>;

const TILE: u32 = 64u;

var<workgroup> candidate_similarity: array<f32, TILE>;
var<workgroup> candidate_row: array<u32, TILE>;
var<workgroup> candidates: atomic<u32>;
// The heap's root once it holds `depth` entries: a row enters only if it ranks before it.
var<workgroup> full: u32;
var<workgroup> last_similarity: f32;
var<workgroup> last_row: u32;

// Whether (s, r) ranks before (t, q).
fn before(s: f32, r: u32, t: f32, q: u32) -> bool {
    return s > t || (s == t && r < q);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    // The same for every invocation of the workgroup, so the early return keeps control uniform.
    let query = group.y * params.grid_width + group.x;
    if query >= params.queries {
        return;
    }
    let list = query * params.depth;
    if lane == 0u {
        full = select(0u, 1u, filled[query] == params.depth);
        last_similarity = top_similarities[list];
        last_row = top_rows[list];
    }
    workgroupBarrier();
    let own = params.query_start + query;
    let q = query * params.dim;
    for (var tile = 0u; tile < params.gallery_rows; tile += TILE) {
        if lane == 0u {
            atomicStore(&candidates, 0u);
        }
        workgroupBarrier();
        let j = tile + lane;
        if j < params.gallery_rows {
            var s = 0.0;
            for (var c = 0u; c < params.dim; c += 1u) {
                s += queries[q + c] * gallery[c * params.gallery_rows + j];
            }
            let row = params.gallery_start + j;
            let skipped = params.skip_own == 1u && row == own;
            if !skipped && (full == 0u || before(s, row, last_similarity, last_row)) {
                let slot = atomicAdd(&candidates, 1u);
                candidate_similarity[slot] = s;
                candidate_row[slot] = row;
            }
        }
        workgroupBarrier();
        if lane == 0u {
            let count = atomicLoad(&candidates);
            var n = filled[query];
            for (var c = 0u; c < count; c += 1u) {
                let s = candidate_similarity[c];
                let r = candidate_row[c];
                if n < params.depth {
                    // Not full: a new leaf, moved up past the parents that rank before it.
                    var i = n;
                    n += 1u;
                    while i > 0u {
                        let parent = (i - 1u) / 2u;
                        if !before(top_similarities[list + parent], top_rows[list + parent], s, r) {
                            break;
                        }
                        top_similarities[list + i] = top_similarities[list + parent];
                        top_rows[list + i] = top_rows[list + parent];
                        i = parent;
                    }
                    top_similarities[list + i] = s;
                    top_rows[list + i] = r;
                } else if before(s, r, top_similarities[list], top_rows[list]) {
                    // Full: the candidate replaces the root and moves down past the children
                    // that rank after it, the later-ranked child first.
                    var i = 0u;
                    loop {
                        let left = 2u * i + 1u;
                        if left >= n {
                            break;
                        }
                        var child = left;
                        let right = left + 1u;
                        if right < n && before(top_similarities[list + left], top_rows[list + left], top_similarities[list + right], top_rows[list + right]) {
                            child = right;
                        }
                        if !before(s, r, top_similarities[list + child], top_rows[list + child]) {
                            break;
                        }
                        top_similarities[list + i] = top_similarities[list + child];
                        top_rows[list + i] = top_rows[list + child];
                        i = child;
                    }
                    top_similarities[list + i] = s;
                    top_rows[list + i] = r;
                }
            }
            filled[query] = n;
            if n == params.depth {
                full = 1u;
                last_similarity = top_similarities[list];
                last_row = top_rows[list];
            }
        }
        workgroupBarrier();
    }
}
