//! Upstream `polygon2mask` (`utils/segment/general.py`): a polygon's points truncated
//! to int32 and drawn with `cv2.fillPoly` (colour 1, LINE_8, shift 0) into an (h, w)
//! u8 mask. OpenCV's `fillPoly` (`modules/imgproc/src/drawing.cpp`) outlines every
//! edge with an 8-connected Bresenham line and fills the scanlines between active
//! edges in 16.16 fixed point: edge x advances by a truncated dx per row, each span
//! runs from ceil(left x) to floor(right x), a row y belongs to an edge when
//! y0 <= y < y1. Reproduced here, clipping included, so that ground-truth masks
//! (and so mask IoU) agree pixel for pixel.

const XY_SHIFT: u32 = 16;
const XY_ONE: i64 = 1 << XY_SHIFT;

type Pt = (i64, i64);

/// The (h, w) row-major 0/1 mask of `polygon` (pixel coordinates, any float values).
pub fn polygon_mask(h: usize, w: usize, polygon: &[[f32; 2]]) -> Vec<u8> {
    let mut mask = Mask { data: vec![0; h * w], w: w as i64, h: h as i64 };
    if polygon.is_empty() || h == 0 || w == 0 {
        return mask.data;
    }
    // numpy's astype(np.int32): truncation toward zero
    let pts: Vec<Pt> = polygon.iter().map(|&[x, y]| (x as i32 as i64, y as i32 as i64)).collect();
    let edges = collect_edges(&mut mask, &pts);
    fill_edges(&mut mask, edges);
    mask.data
}

struct Mask {
    data: Vec<u8>,
    w: i64,
    h: i64,
}

impl Mask {
    fn set(&mut self, x: i64, y: i64) {
        self.data[(y * self.w + x) as usize] = 1;
    }
    fn inside(&self, p: Pt) -> bool {
        (0..self.w).contains(&p.0) && (0..self.h).contains(&p.1)
    }
}

struct Edge {
    y0: i64,
    y1: i64,
    /// x at row y0, 16.16 fixed point.
    x: i64,
    dx: i64,
}

/// OpenCV's `CollectPolyEdges` for integer points: draws each edge's outline and
/// returns the non-horizontal edges (with clipped end points when off the image).
fn collect_edges(mask: &mut Mask, pts: &[Pt]) -> Vec<Edge> {
    let mut edges = Vec::with_capacity(pts.len());
    let mut p0 = pts[pts.len() - 1];
    for &p1 in pts {
        let (mut t0, mut t1) = (p0, p1);
        line(mask, t0, t1);
        let (mut c0y, mut c1y) = (p0.1, p1.1);
        if !mask.inside(t0) || !mask.inside(t1) {
            clip_line(mask.w, mask.h, &mut t0, &mut t1);
            if t0.1 != t1.1 {
                (c0y, c1y) = (t0.1, t1.1);
            }
        }
        let (c0x, c1x) = (t0.0 << XY_SHIFT, t1.0 << XY_SHIFT);
        if p0.1 != p1.1 {
            let dx = (c1x - c0x) / (c1y - c0y); // C++ division: truncates toward zero
            let e = if p0.1 < p1.1 {
                Edge { y0: p0.1, y1: p1.1, x: c0x + (p0.1 - c0y) * dx, dx }
            } else {
                Edge { y0: p1.1, y1: p0.1, x: c1x + (p1.1 - c1y) * dx, dx }
            };
            edges.push(e);
        }
        p0 = p1;
    }
    edges
}

/// OpenCV's `FillEdgeCollection`: per row, the active edges in x order, filled pairwise.
fn fill_edges(mask: &mut Mask, edges: Vec<Edge>) {
    if edges.len() < 2 {
        return;
    }
    let y_min = edges.iter().map(|e| e.y0).min().unwrap_or(0);
    let y_max = edges.iter().map(|e| e.y1).max().unwrap_or(0);
    let ends = edges.iter().flat_map(|e| [e.x, e.x + (e.y1 - e.y0) * e.dx]);
    let (x_min, x_max) = ends.fold((i64::MAX, i64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if y_max < 0 || y_min >= mask.h || x_max < 0 || x_min >= mask.w << XY_SHIFT {
        return;
    }
    let mut xs: Vec<i64> = Vec::new();
    for y in y_min.max(0)..y_max.min(mask.h) {
        xs.clear();
        xs.extend(edges.iter().filter(|e| e.y0 <= y && y < e.y1).map(|e| e.x + (y - e.y0) * e.dx));
        xs.sort_unstable();
        for pair in xs.chunks_exact(2) {
            let x1 = (pair[0] + XY_ONE - 1) >> XY_SHIFT;
            let x2 = pair[1] >> XY_SHIFT;
            if x1 < mask.w && x2 >= 0 {
                for x in x1.max(0)..=x2.min(mask.w - 1) {
                    mask.set(x, y);
                }
            }
        }
    }
}

/// OpenCV's `Line` with an 8-connected `LineIterator`, drawn left to right.
fn line(mask: &mut Mask, mut p1: Pt, mut p2: Pt) {
    if (!mask.inside(p1) || !mask.inside(p2)) && !clip_line(mask.w, mask.h, &mut p1, &mut p2) {
        return;
    }
    if p2.0 < p1.0 {
        std::mem::swap(&mut p1, &mut p2);
    }
    let dx = p2.0 - p1.0;
    let ystep = if p2.1 < p1.1 { -1 } else { 1 };
    let dy = (p2.1 - p1.1).abs();
    let y_major = dy > dx;
    let (major, minor) = if y_major { (dy, dx) } else { (dx, dy) };
    let (mut x, mut y) = p1;
    let mut err = major - 2 * minor;
    for _ in 0..=major {
        mask.set(x, y);
        let step_minor = err < 0;
        err += -2 * minor + if step_minor { 2 * major } else { 0 };
        if y_major {
            y += ystep;
            x += step_minor as i64;
        } else {
            x += 1;
            y += if step_minor { ystep } else { 0 };
        }
    }
}

/// OpenCV's `clipLine(Size2l, Point2l&, Point2l&)`: Cohen–Sutherland against the image,
/// intersections in double, truncated. False when the line misses the image.
fn clip_line(w: i64, h: i64, p1: &mut Pt, p2: &mut Pt) -> bool {
    let (right, bottom) = (w - 1, h - 1);
    let code = |p: &Pt| (p.0 < 0) as i32 + (p.0 > right) as i32 * 2 + (p.1 < 0) as i32 * 4 + (p.1 > bottom) as i32 * 8;
    let x_code = |x: i64| (x < 0) as i32 + (x > right) as i32 * 2;
    let (mut c1, mut c2) = (code(p1), code(p2));
    if (c1 & c2) == 0 && (c1 | c2) != 0 {
        if c1 & 12 != 0 {
            let a = if c1 < 8 { 0 } else { bottom };
            p1.0 += ((a - p1.1) as f64 * (p2.0 - p1.0) as f64 / (p2.1 - p1.1) as f64) as i64;
            p1.1 = a;
            c1 = x_code(p1.0);
        }
        if c2 & 12 != 0 {
            let a = if c2 < 8 { 0 } else { bottom };
            p2.0 += ((a - p2.1) as f64 * (p2.0 - p1.0) as f64 / (p2.1 - p1.1) as f64) as i64;
            p2.1 = a;
            c2 = x_code(p2.0);
        }
        if (c1 & c2) == 0 && (c1 | c2) != 0 {
            if c1 != 0 {
                let a = if c1 == 1 { 0 } else { right };
                p1.1 += ((a - p1.0) as f64 * (p2.1 - p1.1) as f64 / (p2.0 - p1.0) as f64) as i64;
                p1.0 = a;
                c1 = 0;
            }
            if c2 != 0 {
                let a = if c2 == 1 { 0 } else { right };
                p2.1 += ((a - p2.0) as f64 * (p2.1 - p1.1) as f64 / (p2.0 - p1.0) as f64) as i64;
                p2.0 = a;
                c2 = 0;
            }
        }
    }
    (c1 | c2) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(m: &[u8], w: usize) -> Vec<String> {
        m.chunks(w).map(|r| r.iter().map(|&v| if v == 1 { '#' } else { '.' }).collect()).collect()
    }

    #[test]
    fn square_includes_both_ends() {
        // cv2.fillPoly(np.zeros((6, 6), np.uint8), [np.array([[1, 1], [4, 1], [4, 3], [1, 3]])], 1)
        let m = polygon_mask(6, 6, &[[1.0, 1.0], [4.0, 1.0], [4.0, 3.0], [1.0, 3.0]]);
        assert_eq!(rows(&m, 6), ["......", ".####.", ".####.", ".####.", "......", "......"]);
    }

    #[test]
    fn points_are_truncated_like_astype_int32() {
        let a = polygon_mask(8, 8, &[[1.9, 1.9], [5.99, 1.2], [5.5, 6.7], [1.0, 6.0]]);
        let b = polygon_mask(8, 8, &[[1.0, 1.0], [5.0, 1.0], [5.0, 6.0], [1.0, 6.0]]);
        assert_eq!(a, b);
    }

    #[test]
    fn triangle_outline_is_bresenham() {
        // The hypotenuse (0, 0) -> (4, 2) is drawn (0,0) (1,0) (2,1) (3,1) (4,2); the fill
        // adds row 1 from x 0 to 2 (edge x 0 and 2 at y = 1); row 2 is the bottom line.
        let m = polygon_mask(4, 6, &[[0.0, 0.0], [4.0, 2.0], [0.0, 2.0]]);
        assert_eq!(rows(&m, 6), ["##....", "####..", "#####.", "......"]);
    }

    #[test]
    fn points_off_the_image_are_clipped() {
        // a square reaching past the right and bottom borders fills to the border
        let m = polygon_mask(4, 4, &[[2.0, 2.0], [6.0, 2.0], [6.0, 6.0], [2.0, 6.0]]);
        assert_eq!(rows(&m, 4), ["....", "....", "..##", "..##"]);
    }
}
