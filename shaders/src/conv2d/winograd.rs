//! 3 × 3 convolutions at stride 1 with padding 1 by Winograd's minimal filtering F(2×2, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), forward and
//! backward.
//!
//! The im2col GEMM spends 36 multiply-adds per 2 × 2 output tile and channel pair. Winograd's
//! algorithm transforms each 4 × 4 input tile and each 3 × 3 filter into a 4 × 4 domain where the
//! tile costs 16 element-wise products; summed over input channels, the products at each of the
//! 16 points are one GEMM. The transforms only add, subtract and halve.
//!
//! The backward pass is the transpose of the same bilinear algorithm: with `Z = A·gy·Aᵀ` for each
//! output-gradient tile, the weight gradient is `Gᵀ·(Σ Z ⊙ V)·G` (16 GEMMs summing over tiles)
//! and the input gradient `B·(U ⊙ Z)·Bᵀ` (16 GEMMs summing over output channels), scattered back
//! onto the overlapping input tiles.
//!
//! Matrices (`d` a 4 × 4 input tile, `g` a 3 × 3 filter, `m` a 4 × 4 product):
//! `Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]`, `G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]`,
//! `Aᵀ = [1 1 1 0; 0 1 −1 −1]`; `V = Bᵀ·d·B`, `U = G·g·Gᵀ`, `y = Aᵀ·m·A`.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::geometry::ConvGeometry;
use super::gradients::chunked_gradients;
use crate::common::gemm::{lane_sum, matmul};
use crate::common::parallel::{par_written, with_scratch, zeroed};
use crate::common::simd::isa_dispatch;

/// Points of the transform domain: 4 × 4.
const POINTS: usize = 16;

/// Below this many input channels the im2col GEMM, whose inner dimension is 9 × the channels,
/// stays cheaper than 16 GEMMs of that few channels plus the transforms.
const MIN_CHANNELS: usize = 8;

/// Images narrower or shorter than this stay with im2col: at 7 × 7 a quarter of the tiles are
/// the extra column (4 × 5 per image) and the GEMMs, 20 tiles wide per image, run slowly; both of
/// ResNet-18's and the small CNN's 7 × 7 layers measured slower than by im2col (`kernel_times`).
const MIN_SIDE: usize = 8;

/// Transformed values a block of tiles aims at per channel-side buffer (512 KB: a core's L2
/// cache on the test machine), so that the transforms' output is still in cache when its GEMMs
/// read it.
const BLOCK_VALUES: usize = 1 << 17;

/// Whether [`forward`] and [`backward`] compute this convolution.
pub fn applies(g: &ConvGeometry) -> bool {
    g.kernel == [3, 3] && g.stride == [1, 1] && g.padding == [1, 1] && g.channels_in >= MIN_CHANNELS && g.height.min(g.width) >= MIN_SIDE
}

/// The 2 × 2 output tiles of one image, `rows × cols`, numbered row by row `stride = cols + 1`
/// apart. The extra tile per row lets every transform run as a few long vector operations over a
/// whole image, a neighbouring tile one or `stride` values away; the extra tiles read zeros or
/// garbage and their results are dropped (in the backward pass, zeros: their output gradient is
/// zero).
#[derive(Clone, Copy)]
struct TileGrid {
    rows: usize,
    cols: usize,
}

impl TileGrid {
    fn of(g: &ConvGeometry) -> Self {
        TileGrid { rows: g.height.div_ceil(2), cols: g.width.div_ceil(2) }
    }

    fn stride(&self) -> usize {
        self.cols + 1
    }

    fn per_image(&self) -> usize {
        self.rows * self.stride()
    }

    /// Values of a parity plane over `rows` tile rows: one more row (the tiles' lower halves),
    /// and one more value (the extra tile of the last row reads one past it).
    fn plane_len(&self, rows: usize) -> usize {
        (rows + 1) * self.stride() + 1
    }
}

/// Tile rows `rows` of image `image`: a block holds one or more segments, their tiles numbered
/// consecutively.
#[derive(Debug)]
struct Segment {
    image: usize,
    rows: Range<usize>,
}

/// The images `images` cut into blocks of about `target` tiles: several whole images per block
/// when images are small, an image's tile rows in several blocks when it is large.
fn blocks(grid: TileGrid, images: Range<usize>, target: usize) -> Vec<Vec<Segment>> {
    let per_image = grid.per_image();
    if per_image <= target {
        let group = (target / per_image).max(1);
        let images: Vec<usize> = images.collect();
        return images.chunks(group).map(|c| c.iter().map(|&image| Segment { image, rows: 0..grid.rows }).collect()).collect();
    }
    let rows = (target / grid.stride()).clamp(1, grid.rows);
    images
        .flat_map(|image| {
            (0..grid.rows.div_ceil(rows)).map(move |b| vec![Segment { image, rows: b * rows..((b + 1) * rows).min(grid.rows) }])
        })
        .collect()
}

/// Tile rows of the block's longest segment: the size of its per-segment scratch rows.
fn longest_segment(block: &[Segment]) -> usize {
    block.iter().map(|s| s.rows.len()).max().unwrap_or(0)
}

fn block_tiles(grid: TileGrid, block: &[Segment]) -> usize {
    block.iter().map(|s| s.rows.len() * grid.stride()).sum()
}

/// Tiles per block for these channel counts: the larger side's transformed block near
/// [`BLOCK_VALUES`].
fn target_tiles(g: &ConvGeometry) -> usize {
    (BLOCK_VALUES / (POINTS * g.channels_in.max(g.channels_out))).max(16)
}

/// `U[ξ][o][c] = (G·w[o][c]·Gᵀ)[ξ]`.
fn transform_filters(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let (co, ci) = (g.channels_out, g.channels_in);
    let g_times = |[a, b, d]: [f32; 3]| [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
    let mut u = vec![0.0f32; POINTS * co * ci];
    for o in 0..co {
        for c in 0..ci {
            let w = &weight[(o * ci + c) * 9..][..9];
            // G·w, four rows of three, then each row times Gᵀ.
            let columns = [0, 1, 2].map(|j| g_times([w[j], w[3 + j], w[6 + j]]));
            for k in 0..4 {
                for (l, v) in g_times([columns[0][k], columns[1][k], columns[2][k]]).into_iter().enumerate() {
                    u[((4 * k + l) * co + o) * ci + c] = v;
                }
            }
        }
    }
    u
}

/// `gw[o][c] = Gᵀ·m[·][o][c]·G` for the summed products `m[ξ][o][c]`.
fn filter_gradient(g: &ConvGeometry, m: &[f32]) -> Vec<f32> {
    let (co, ci) = (g.channels_out, g.channels_in);
    let gt_times = |[m0, m1, m2, m3]: [f32; 4]| [m0 + 0.5 * (m1 + m2), 0.5 * (m1 - m2), 0.5 * (m1 + m2) + m3];
    let mut gw = vec![0.0f32; co * ci * 9];
    for o in 0..co {
        for c in 0..ci {
            let at = |k: usize, l: usize| m[((4 * k + l) * co + o) * ci + c];
            // Gᵀ·m, three rows of four, then each row times G.
            let columns = [0, 1, 2, 3].map(|l| gt_times([at(0, l), at(1, l), at(2, l), at(3, l)]));
            let out = &mut gw[(o * ci + c) * 9..][..9];
            for i in 0..3 {
                out[3 * i..3 * i + 3].copy_from_slice(&gt_times([columns[0][i], columns[1][i], columns[2][i], columns[3][i]]));
            }
        }
    }
    gw
}

/// `out[i] = a[i] + b[i]` over the shortest length; inlined into the AVX2 copies, where it
/// vectorises.
#[inline(always)]
fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = a + b;
    }
}

#[inline(always)]
fn sub(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = a - b;
    }
}

#[inline(always)]
fn add_onto(out: &mut [f32], a: &[f32]) {
    for (o, a) in out.iter_mut().zip(a) {
        *o += a;
    }
}

#[inline(always)]
fn sub_from(out: &mut [f32], a: &[f32]) {
    for (o, a) in out.iter_mut().zip(a) {
        *o -= a;
    }
}

/// Writes `row[x] = first[x / 2]` for even `x`, `second[x / 2]` for odd `x` (plus `offset`).
#[inline(always)]
fn interleave(row: &mut [MaybeUninit<f32>], first: &[f32], second: &[f32], offset: f32) {
    let n = row.len() / 2;
    let (pairs, a, b) = (&mut row[..2 * n], &first[..n], &second[..n]);
    for s in 0..n {
        pairs[2 * s].write(a[s] + offset);
        pairs[2 * s + 1].write(b[s] + offset);
    }
    if row.len() % 2 == 1 {
        row[2 * n].write(first[n] + offset);
    }
}

/// `first[s] = row[2s]`, `second[s] = row[2s + 1]`, zero past the row.
#[inline(always)]
fn deinterleave(row: &[f32], first: &mut [f32], second: &mut [f32]) {
    let n = (row.len() / 2).min(first.len()).min(second.len());
    // Sliced to the loop's exact length, the stride-2 loads vectorise as shuffles.
    let (pairs, a, b) = (&row[..2 * n], &mut first[..n], &mut second[..n]);
    for s in 0..n {
        a[s] = pairs[2 * s];
        b[s] = pairs[2 * s + 1];
    }
    first[n..].fill(0.0);
    second[n..].fill(0.0);
    if row.len() % 2 == 1 {
        first[n] = row[2 * n];
    }
}

isa_dispatch! {
    /// The four parity planes of tile rows `rows` of a zero-padded image plane:
    /// `p[2a + b][r·stride + s] = padded[2(rows.start + r) + a][2s + b]`, where
    /// `padded[y][x] = plane[y − 1][x − 1]` (zero outside).
    fn parity_planes(plane: &[f32], height: usize, width: usize, rows: Range<usize>, stride: usize, p: &mut [Vec<f32>; 4]) -> () {
        let covered = (rows.len() + 1) * stride;
        for v in p.iter_mut() {
            v[covered..].fill(0.0);
        }
        let [p00, p01, p10, p11] = p;
        for r in 0..=rows.len() {
            for (a, even, odd) in [(0, &mut *p00, &mut *p01), (1, &mut *p10, &mut *p11)] {
                let (even, odd) = (&mut even[r * stride..][..stride], &mut odd[r * stride..][..stride]);
                match (2 * (rows.start + r) + a).checked_sub(1).filter(|&y| y < height) {
                    // Padded column 2s + 1 is image column 2s; padded column 2s is image column
                    // 2s − 1.
                    Some(y) => {
                        deinterleave(&plane[y * width..][..width], odd, &mut even[1..]);
                        even[0] = 0.0;
                    }
                    None => {
                        even.fill(0.0);
                        odd.fill(0.0);
                    }
                }
            }
        }
    }
}

isa_dispatch! {
    /// `V = Bᵀ·d·B` of `n` consecutive tiles from parity planes (see [`parity_planes`]):
    /// `out[4k + l][t]`; `t8` is scratch, eight rows of at least `n + 1`.
    fn input_transform(p: [&[f32]; 4], stride: usize, n: usize, t8: &mut [Vec<f32>; 8], out: &mut [&mut [f32]; POINTS]) -> () {
        let m = n + 1;
        // Bᵀ down the tile's rows (d0 − d2, d1 + d2, d2 − d1, d1 − d3), rows 2 and 3 being rows
        // 0 and 1 of the next tile row: t8[2k + b] holds row k of the tiles, columns of parity b
        // (column 2 and 3 of a tile being columns 0 and 1 of the next tile).
        for b in 0..2 {
            let (d0, d1) = (&p[b][..m], &p[2 + b][..m]);
            let (d2, d3) = (&p[b][stride..stride + m], &p[2 + b][stride..stride + m]);
            sub(&mut t8[b], d0, d2);
            add(&mut t8[2 + b], d1, d2);
            sub(&mut t8[4 + b], d2, d1);
            sub(&mut t8[6 + b], d1, d3);
        }
        // and across its columns.
        for k in 0..4 {
            let (c0, c1) = (&t8[2 * k][..n], &t8[2 * k + 1][..n]);
            let (c2, c3) = (&t8[2 * k][1..m], &t8[2 * k + 1][1..m]);
            sub(out[4 * k], c0, c2);
            add(out[4 * k + 1], c1, c2);
            sub(out[4 * k + 2], c2, c1);
            sub(out[4 * k + 3], c1, c3);
        }
    }
}

isa_dispatch! {
    /// `y = Aᵀ·m·A` of `n` consecutive tiles: `y[2a + b][t]` is row `a`, column `b` of tile `t`'s
    /// output; `p8` is scratch, eight rows of at least `n`.
    fn output_transform(m: [&[f32]; POINTS], p8: &mut [Vec<f32>; 8], y: &mut [Vec<f32>; 4]) -> () {
        // Aᵀ across the columns (m0 + m1 + m2, m1 − m2 − m3): p8[2k + b] is row k, column b.
        for k in 0..4 {
            let [c0, c1] = p8.get_disjoint_mut([2 * k, 2 * k + 1]).expect("distinct rows");
            add(c0, m[4 * k], m[4 * k + 1]);
            add_onto(c0, m[4 * k + 2]);
            sub(c1, m[4 * k + 1], m[4 * k + 2]);
            sub_from(c1, m[4 * k + 3]);
        }
        // and down the rows.
        for b in 0..2 {
            let [y0, y1] = y.get_disjoint_mut([b, 2 + b]).expect("distinct rows");
            add(y0, &p8[b], &p8[2 + b]);
            add_onto(y0, &p8[4 + b]);
            sub(y1, &p8[2 + b], &p8[4 + b]);
            sub_from(y1, &p8[6 + b]);
        }
    }
}

isa_dispatch! {
    /// `Z = A·u·Aᵀ` of `n` consecutive output-gradient tiles `u[2a + b][t]` (row `a`, column `b`):
    /// `out[4k + l][t]`; `z8` is scratch, eight rows of at least `n`.
    fn gradient_transform(u: [&[f32]; 4], z8: &mut [Vec<f32>; 8], out: &mut [&mut [f32]; POINTS]) -> () {
        // A across the columns: z0 = u0, z1 = u0 + u1, z2 = u0 − u1, z3 = −u1; z8[4a + l].
        for a in 0..2 {
            let (u0, u1) = (u[2 * a], u[2 * a + 1]);
            z8[4 * a][..u0.len()].copy_from_slice(u0);
            add(&mut z8[4 * a + 1], u0, u1);
            sub(&mut z8[4 * a + 2], u0, u1);
            for (o, v) in z8[4 * a + 3].iter_mut().zip(u1) {
                *o = -v;
            }
        }
        // and down the rows.
        for l in 0..4 {
            let (z0, z1) = (&z8[l][..], &z8[4 + l][..]);
            let n = out[l].len();
            out[l].copy_from_slice(&z0[..n]);
            add(out[4 + l], z0, z1);
            sub(out[8 + l], z0, z1);
            for (o, v) in out[12 + l].iter_mut().zip(z1) {
                *o = -v;
            }
        }
    }
}

/// Row `i` of `B·(m0, m1, m2, m3)`: `m0`, `m1 − m2 + m3`, `m1 + m2 − m0`, `−m3`, over
/// `out.len()` tiles.
#[inline(always)]
fn b_row(i: usize, out: &mut [f32], [m0, m1, m2, m3]: [&[f32]; 4]) {
    match i {
        0 => out.copy_from_slice(&m0[..out.len()]),
        1 => {
            sub(out, m1, m2);
            add_onto(out, m3);
        }
        2 => {
            add(out, m1, m2);
            sub_from(out, m0);
        }
        _ => out.iter_mut().zip(m3).for_each(|(o, v)| *o = -v),
    }
}

isa_dispatch! {
    /// `B·m·Bᵀ` of `n` consecutive tiles, added onto the parity planes `p` of the padded input
    /// gradient (see [`parity_planes`]); `r4` and `c` are scratch rows of at least `n`.
    fn scatter_transform(m: [&[f32]; POINTS], stride: usize, r4: &mut [Vec<f32>; 4], c: &mut [f32], p: &mut [Vec<f32>; 4]) -> () {
        let n = m[0].len();
        let c = &mut c[..n];
        for i in 0..4 {
            // B down the rows: row i of the tile, r4[l] its column l.
            for (l, r) in r4.iter_mut().enumerate() {
                b_row(i, &mut r[..n], [m[l], m[4 + l], m[8 + l], m[12 + l]]);
            }
            // B across the columns, each column j added at row i, column j of the padded tile.
            for j in 0..4 {
                b_row(j, c, [&r4[0][..n], &r4[1][..n], &r4[2][..n], &r4[3][..n]]);
                add_onto(&mut p[2 * (i % 2) + j % 2][(i / 2) * stride + j / 2..][..n], c);
            }
        }
    }
}

/// The 16 slices `buf[ξ][channel][start..start + len]` of a `[16][channels][tiles]` buffer.
fn split_points(buf: &mut [f32], channels: usize, tiles: usize, channel: usize, start: usize, len: usize) -> [&mut [f32]; POINTS] {
    let mut rest = buf;
    let mut taken = 0;
    std::array::from_fn(|xi| {
        let at = (xi * channels + channel) * tiles + start;
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(at - taken);
        let (piece, tail) = tail.split_at_mut(len);
        rest = tail;
        taken = at + len;
        piece
    })
}

fn points(buf: &[f32], channels: usize, tiles: usize, channel: usize, start: usize, len: usize) -> [&[f32]; POINTS] {
    std::array::from_fn(|xi| &buf[(xi * channels + channel) * tiles + start..][..len])
}

fn rows_of<const N: usize>(len: usize) -> [Vec<f32>; N] {
    std::array::from_fn(|_| vec![0.0f32; len])
}

/// `V[ξ][c][t]` of a block's tiles for all input channels, `V` rows `tiles` long.
fn transform_inputs(g: &ConvGeometry, grid: TileGrid, x: &[f32], block: &[Segment], tiles: usize, v: &mut [f32]) {
    let plane = g.height * g.width;
    let longest = longest_segment(block);
    let mut p = rows_of::<4>(grid.plane_len(longest));
    let mut t8 = rows_of::<8>(longest * grid.stride() + 1);
    let mut offset = 0;
    for seg in block {
        let n = seg.rows.len() * grid.stride();
        for c in 0..g.channels_in {
            let src = &x[(seg.image * g.channels_in + c) * plane..][..plane];
            parity_planes(src, g.height, g.width, seg.rows.clone(), grid.stride(), &mut p);
            let mut out = split_points(v, g.channels_in, tiles, c, offset, n);
            input_transform([&p[0][..], &p[1], &p[2], &p[3]], grid.stride(), n, &mut t8, &mut out);
        }
        offset += n;
    }
}

/// Writes a block's outputs `y[n][o][..]` (plus `bias`) from the products `m[ξ][o][t]`; `out` holds
/// the outputs of the images from `first_image` on.
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    g: &ConvGeometry,
    grid: TileGrid,
    m: &[f32],
    block: &[Segment],
    tiles: usize,
    bias: Option<&[f32]>,
    first_image: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let (h, w, stride) = (g.height, g.width, grid.stride());
    let plane = h * w;
    let longest = longest_segment(block) * stride;
    let mut p8 = rows_of::<8>(longest);
    let mut y = rows_of::<4>(longest);
    let mut offset = 0;
    for seg in block {
        let n = seg.rows.len() * stride;
        for o in 0..g.channels_out {
            let b = bias.map_or(0.0, |b| b[o]);
            output_transform(points(m, g.channels_out, tiles, o, offset, n), &mut p8, &mut y);
            let dst = &mut out[((seg.image - first_image) * g.channels_out + o) * plane..][..plane];
            for (r, ty) in seg.rows.clone().enumerate() {
                for a in 0..2 {
                    let row = 2 * ty + a;
                    if row < h {
                        interleave(
                            &mut dst[row * w..][..w],
                            &y[2 * a][r * stride..][..grid.cols],
                            &y[2 * a + 1][r * stride..][..grid.cols],
                            b,
                        );
                    }
                }
            }
        }
        offset += n;
    }
}

/// `y = conv(x, weight) + bias` for a geometry that [`applies`].
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    forward_with_target(g, target_tiles(g), x, weight, bias)
}

/// [`forward`] in blocks of about `target` tiles.
fn forward_with_target(g: &ConvGeometry, target: usize, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let grid = TileGrid::of(g);
    let (ci, co) = (g.channels_in, g.channels_out);
    let u = transform_filters(g, weight);
    let out_len = co * g.height * g.width;
    // Work units of whole images: a block's images, or one image cut into blocks.
    let group = (target / grid.per_image()).max(1);
    let fill = |unit: usize, out: &mut [MaybeUninit<f32>]| {
        let first = unit * group;
        let block_list = blocks(grid, first..(first + group).min(g.batch), target);
        let most = block_list.iter().map(|b| block_tiles(grid, b)).max().unwrap_or(0);
        with_scratch([POINTS * ci * most, POINTS * co * most], |v, m| {
            for block in &block_list {
                let tiles = block_tiles(grid, block);
                let (v, m) = (&mut v[..POINTS * ci * tiles], &mut m[..POINTS * co * tiles]);
                transform_inputs(g, grid, x, block, tiles, v);
                for xi in 0..POINTS {
                    // M[ξ] (co × tiles) = U[ξ] (co × ci) · V[ξ] (ci × tiles)
                    matmul(
                        co,
                        tiles,
                        ci,
                        &mut m[xi * co * tiles..][..co * tiles],
                        tiles,
                        false,
                        &u[xi * co * ci..][..co * ci],
                        (ci, 1),
                        &v[xi * ci * tiles..][..ci * tiles],
                        (tiles, 1),
                    );
                }
                write_outputs(g, grid, m, block, tiles, bias, first, out);
            }
        });
    };
    // SAFETY: the blocks of a unit cover every tile row of its images, so every output.
    unsafe { par_written(g.batch * out_len, group * out_len, fill) }.0
}

/// `Z[ξ][o][t]` of a block's output-gradient tiles.
fn transform_gradients(g: &ConvGeometry, grid: TileGrid, gy: &[f32], block: &[Segment], tiles: usize, z: &mut [f32]) {
    let (h, w, stride) = (g.height, g.width, grid.stride());
    let plane = h * w;
    let longest = longest_segment(block) * stride;
    let mut u = rows_of::<4>(longest);
    let mut z8 = rows_of::<8>(longest);
    let mut offset = 0;
    for seg in block {
        let n = seg.rows.len() * stride;
        for o in 0..g.channels_out {
            let src = &gy[(seg.image * g.channels_out + o) * plane..][..plane];
            for (r, ty) in seg.rows.clone().enumerate() {
                for a in 0..2 {
                    let [first, second] = u.get_disjoint_mut([2 * a, 2 * a + 1]).expect("distinct rows");
                    let (first, second) = (&mut first[r * stride..][..stride], &mut second[r * stride..][..stride]);
                    match (2 * ty + a < h).then(|| &src[(2 * ty + a) * w..][..w]) {
                        Some(row) => deinterleave(row, first, second),
                        None => {
                            first.fill(0.0);
                            second.fill(0.0);
                        }
                    }
                }
            }
            let mut out = split_points(z, g.channels_out, tiles, o, offset, n);
            gradient_transform([&u[0][..n], &u[1][..n], &u[2][..n], &u[3][..n]], &mut z8, &mut out);
        }
        offset += n;
    }
}

/// Adds a block's input gradient, from the products `m[ξ][c][t]`, onto `gx` (the input gradients
/// of the images from `first_image` on).
#[allow(clippy::too_many_arguments)]
fn scatter_inputs(g: &ConvGeometry, grid: TileGrid, m: &[f32], block: &[Segment], tiles: usize, first_image: usize, gx: &mut [f32]) {
    let (h, w, stride) = (g.height, g.width, grid.stride());
    let plane = h * w;
    let longest = longest_segment(block);
    let mut p = rows_of::<4>(grid.plane_len(longest));
    let mut r4 = rows_of::<4>(longest * stride);
    let mut c = vec![0.0f32; longest * stride];
    let mut offset = 0;
    for seg in block {
        let n = seg.rows.len() * stride;
        for ch in 0..g.channels_in {
            p.iter_mut().for_each(|v| v.fill(0.0));
            scatter_transform(points(m, g.channels_in, tiles, ch, offset, n), stride, &mut r4, &mut c, &mut p);
            let dst = &mut gx[((seg.image - first_image) * g.channels_in + ch) * plane..][..plane];
            for r in 0..=seg.rows.len() {
                for a in 0..2 {
                    let Some(y) = (2 * (seg.rows.start + r) + a).checked_sub(1).filter(|&y| y < h) else { continue };
                    // Image column 2s is padded column 2s + 1 (plane b = 1), image column 2s + 1
                    // padded column 2s + 2 (plane b = 0, one tile on).
                    let (odd, even) = (&p[2 * a + 1][r * stride..][..stride], &p[2 * a][r * stride + 1..][..stride]);
                    let row = &mut dst[y * w..][..w];
                    let mut pairs = row.chunks_exact_mut(2);
                    for ((pair, a), b) in (&mut pairs).zip(odd).zip(even) {
                        pair[0] += a;
                        pair[1] += b;
                    }
                    if let [last] = pairs.into_remainder() {
                        *last += odd[w / 2];
                    }
                }
            }
        }
        offset += n;
    }
}

/// Gradients of [`forward`] from the output gradient `gy`: `(input gradient if wanted, weight
/// gradient, bias gradient)`, as [`super::backward`] gives them, the batch in fixed
/// chunks of `chunk` images.
pub fn backward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    gy: &[f32],
    want_input: bool,
    chunk: usize,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    backward_with_target(g, target_tiles(g), x, weight, gy, want_input, chunk)
}

/// [`backward`] in blocks of about `target` tiles.
#[allow(clippy::too_many_arguments)]
fn backward_with_target(
    g: &ConvGeometry,
    target: usize,
    x: &[f32],
    weight: &[f32],
    gy: &[f32],
    want_input: bool,
    chunk: usize,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let grid = TileGrid::of(g);
    let (ci, co) = (g.channels_in, g.channels_out);
    let u = want_input.then(|| transform_filters(g, weight));
    let plane = g.height * g.width;
    // Each fixed chunk of images has its own partial sums, which `chunked_gradients` adds in
    // chunk order.
    let chunk_grads = |c: usize, gx_chunk: Option<&mut [MaybeUninit<f32>]>| {
        let first = c * chunk;
        let images = first..(first + chunk).min(g.batch);
        let mut mw = vec![0.0f32; POINTS * co * ci];
        let mut gb = vec![0.0f32; co];
        let mut gx_chunk = gx_chunk.map(zeroed);
        let block_list = blocks(grid, images.clone(), target);
        let most = block_list.iter().map(|b| block_tiles(grid, b)).max().unwrap_or(0);
        with_scratch([POINTS * ci * most, POINTS * co * most], |v, z| {
            for block in &block_list {
                let tiles = block_tiles(grid, block);
                let (v, z) = (&mut v[..POINTS * ci * tiles], &mut z[..POINTS * co * tiles]);
                transform_inputs(g, grid, x, block, tiles, v);
                transform_gradients(g, grid, gy, block, tiles, z);
                for xi in 0..POINTS {
                    let (v, z) = (&v[xi * ci * tiles..][..ci * tiles], &z[xi * co * tiles..][..co * tiles]);
                    // Mw[ξ] (co × ci) += Z[ξ] (co × tiles) · V[ξ]ᵀ (tiles × ci)
                    matmul(co, ci, tiles, &mut mw[xi * co * ci..][..co * ci], ci, true, z, (tiles, 1), v, (1, tiles));
                }
                let (Some(u), Some(gx)) = (u.as_deref(), gx_chunk.as_deref_mut()) else { continue };
                // The input transform is spent: its buffer takes the input gradient's products.
                for xi in 0..POINTS {
                    // Md[ξ] (ci × tiles) = U[ξ]ᵀ (ci × co) · Z[ξ] (co × tiles)
                    matmul(
                        ci,
                        tiles,
                        co,
                        &mut v[xi * ci * tiles..][..ci * tiles],
                        tiles,
                        false,
                        &u[xi * co * ci..][..co * ci],
                        (1, ci),
                        &z[xi * co * tiles..][..co * tiles],
                        (tiles, 1),
                    );
                }
                scatter_inputs(g, grid, v, block, tiles, first, gx);
            }
        });
        for n in images {
            for (b, row) in gb.iter_mut().zip(gy[n * co * plane..][..co * plane].chunks(plane)) {
                *b += lane_sum(row);
            }
        }
        (mw, gb)
    };
    // SAFETY: `chunk_grads` zeroes (then adds onto) every image of its chunk.
    let (gx, mw, gb) = unsafe { chunked_gradients(g, chunk, want_input, (POINTS * co * ci, co), chunk_grads) };
    (gx, filter_gradient(g, &mw), gb)
}

#[cfg(test)]
mod tests {
    use super::super::reference::reference;
    use super::*;
    use crate::common::test_values as values;

    /// 3 × 3, stride 1, padding 1: odd and even sides, a one-pixel and a one-row image, more
    /// output than input channels and fewer.
    fn geometries() -> Vec<ConvGeometry> {
        [(2, 8, 7, 6, 3), (3, 9, 1, 1, 2), (1, 8, 2, 5, 4), (2, 10, 5, 5, 12), (3, 8, 8, 8, 2), (2, 8, 1, 9, 3), (1, 11, 9, 1, 2)]
            .into_iter()
            .map(|(batch, ci, h, w, co)| ConvGeometry {
                batch,
                channels_in: ci,
                height: h,
                width: w,
                channels_out: co,
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
            })
            .collect()
    }

    /// Block sizes from one tile row at a time to several whole images, and the default.
    fn targets(g: &ConvGeometry) -> Vec<usize> {
        let grid = TileGrid::of(g);
        vec![1, grid.stride() + 1, 2 * grid.per_image() + 1, target_tiles(g)]
    }

    #[test]
    fn forward_matches_the_definition() {
        for (t, g) in geometries().into_iter().enumerate() {
            let x = values(g.batch * g.channels_in * g.height * g.width, 1 + t as u64);
            let w = values(g.channels_out * g.channels_in * 9, 100 + t as u64);
            let b = values(g.channels_out, 200 + t as u64);
            let expected = reference(&g, &x, &w, &b);
            for target in targets(&g) {
                let y = forward_with_target(&g, target, &x, &w, Some(&b));
                assert_eq!(y.len(), expected.len());
                for (i, (a, e)) in y.iter().zip(&expected).enumerate() {
                    assert!((*a as f64 - e).abs() < 1e-5, "{g:?}, blocks of {target} tiles, output {i}: {a} vs {e}");
                }
            }
        }
    }

    /// The gradients as the adjoint identity against the f64 definition, `⟨u, J·v⟩ = ⟨Jᵀ·u, v⟩` in
    /// each argument, for every block size and chunking of the batch.
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for (t, g) in geometries().into_iter().enumerate() {
            let x_len = g.batch * g.channels_in * g.height * g.width;
            let x = values(x_len, 1 + t as u64);
            let w = values(g.channels_out * g.channels_in * 9, 100 + t as u64);
            let u = values(g.batch * g.channels_out * g.height * g.width, 300 + t as u64);
            let (vx, vw) = (values(x_len, 400 + t as u64), values(w.len(), 500 + t as u64));
            let zeros = vec![0.0f32; g.channels_out];
            let dot = |a: &[f64], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * *q as f64).sum::<f64>();
            let input_lhs = dot(&reference(&g, &vx, &w, &zeros), &u);
            let weight_lhs = dot(&reference(&g, &x, &vw, &zeros), &u);
            let positions = g.height * g.width;
            for target in targets(&g) {
                for chunk in 1..=g.batch {
                    let (gx, gw, gb) = backward_with_target(&g, target, &x, &w, &u, true, chunk);
                    let as_f64 = |v: &[f32]| v.iter().map(|a| *a as f64).collect::<Vec<_>>();
                    let input_rhs = dot(&as_f64(&gx.unwrap()), &vx);
                    assert!(
                        (input_lhs - input_rhs).abs() < 1e-4 * (1.0 + input_lhs.abs()),
                        "{g:?}, {target} tiles, chunks of {chunk}: input {input_lhs} vs {input_rhs}"
                    );
                    let weight_rhs = dot(&as_f64(&gw), &vw);
                    assert!(
                        (weight_lhs - weight_rhs).abs() < 1e-4 * (1.0 + weight_lhs.abs()),
                        "{g:?}, {target} tiles, chunks of {chunk}: weight {weight_lhs} vs {weight_rhs}"
                    );
                    for (o, got) in gb.iter().enumerate() {
                        let expected: f64 =
                            (0..g.batch).flat_map(|n| &u[(n * g.channels_out + o) * positions..][..positions]).map(|v| *v as f64).sum();
                        assert!((*got as f64 - expected).abs() < 1e-4, "{g:?} bias {o}: {got} vs {expected}");
                    }
                    let (none, gw_alone, _) = backward_with_target(&g, target, &x, &w, &u, false, chunk);
                    assert!(none.is_none());
                    assert_eq!(gw, gw_alone, "the weight gradient does not depend on whether the input gradient is wanted");
                }
            }
        }
    }

    /// Element by element, the gradients agree with the im2col kernel's, which
    /// `conv2d::tests` checks against the definition: an adjoint identity alone could hide errors
    /// that cancel in the sum.
    #[test]
    fn gradients_match_the_im2col_kernel() {
        for (t, g) in geometries().into_iter().enumerate() {
            let x = values(g.batch * g.channels_in * g.height * g.width, 7 + t as u64);
            let w = values(g.channels_out * g.channels_in * 9, 70 + t as u64);
            let u = values(g.batch * g.channels_out * g.height * g.width, 700 + t as u64);
            let (gx0, gw0, gb0) = super::super::im2col::im2col_backward(&g, &x, &w, &u, true);
            for target in targets(&g) {
                let (gx, gw, gb) = backward_with_target(&g, target, &x, &w, &u, true, g.batch.div_ceil(2));
                for (name, got, expected) in
                    [("input", gx.unwrap(), gx0.clone().unwrap()), ("weight", gw, gw0.clone()), ("bias", gb, gb0.clone())]
                {
                    for (i, (a, e)) in got.iter().zip(&expected).enumerate() {
                        assert!((a - e).abs() < 2e-5, "{g:?}, {target} tiles: {name} gradient {i}: {a} vs {e}");
                    }
                }
            }
        }
    }

    /// The kernel computes any image size (the tests above use small ones); the policy sends it
    /// only the same-size 3 × 3 convolutions where it measured faster.
    #[test]
    fn only_same_size_three_by_three_convolutions_with_enough_channels_and_pixels_apply() {
        let g = |ci, size, k, stride, pad| ConvGeometry::square(2, ci, size, 16, k, stride, pad);
        for small_cnn_or_resnet in
            [g(32, 28, 3, 1, 1), g(64, 14, 3, 1, 1), g(64, 56, 3, 1, 1), g(256, 14, 3, 1, 1), g(MIN_CHANNELS, MIN_SIDE, 3, 1, 1)]
        {
            assert!(applies(&small_cnn_or_resnet), "{small_cnn_or_resnet:?}");
        }
        for other in [
            g(1, 28, 3, 1, 1),
            g(MIN_CHANNELS - 1, 28, 3, 1, 1),
            g(512, 7, 3, 1, 1),
            g(64, 7, 3, 1, 1),
            g(16, 28, 3, 2, 1),
            g(16, 28, 3, 1, 0),
            g(16, 28, 1, 1, 0),
            g(16, 28, 5, 1, 2),
        ] {
            assert!(!applies(&other), "{other:?}");
        }
        let wide_but_short = ConvGeometry { height: MIN_SIDE - 1, ..g(16, 28, 3, 1, 1) };
        assert!(!applies(&wide_but_short));
    }
}
