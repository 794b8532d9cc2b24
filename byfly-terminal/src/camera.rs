//! Reading the payment QR that the terminal draws on its screen, through a camera.
//!
//! The terminal shows its QR only on its own screen; a camera pointed at the screen serves one
//! frame per HTTP request. A real frame is not a clean QR: it is small in a large picture, a few
//! degrees off, blurred, noisy, unevenly lit and JPEG-compressed. [`decode_frame`] therefore tries a
//! few cheap variants of each frame (measured on synthetic camera frames: the frame as it is reads
//! only about 70 % of them, the variants below about 99 %), and [`read_qr`] keeps fetching frames
//! until one decodes or the deadline passes.

use std::time::{Duration, Instant};

use image::{DynamicImage, GrayImage};
use imageproc::contrast::{ThresholdType, adaptive_threshold, otsu_level, threshold};
use imageproc::filter::gaussian_blur_f32;

use crate::error::CameraError;

/// Reads one QR from a grey image, if rqrr finds and decodes one.
fn try_decode(image: GrayImage) -> Option<String> {
    let mut prepared = rqrr::PreparedImage::prepare(image);
    prepared
        .detect_grids()
        .into_iter()
        .find_map(|grid| grid.decode().ok().map(|(_, text)| text))
}

/// Side of the square blocks in which [`qr_region`] measures edge density.
const BLOCK: u32 = 16;
/// A step between neighbouring pixels this large is an edge, not sensor noise.
const EDGE_STEP: u8 = 40;

/// Where the QR most likely is: the cluster of blocks densest in strong edges (a QR is a field of
/// black-white steps; the counter, the terminal's body and noise have few), with a margin.
/// Decoding a crop instead of the whole frame is what keeps a frame within a few milliseconds.
fn qr_region(grey: &GrayImage) -> Option<(u32, u32, u32, u32)> {
    let (width, height) = grey.dimensions();
    let (columns, rows) = (width / BLOCK, height / BLOCK);
    if columns < 4 || rows < 4 {
        return None;
    }
    let pixels = grey.as_raw();
    let at = |x: u32, y: u32| pixels[(y * width + x) as usize];
    let mut density = vec![0u32; (columns * rows) as usize];
    for y in (0..rows * BLOCK - 1).step_by(2) {
        for x in 0..columns * BLOCK - 1 {
            let here = at(x, y);
            let edges = u32::from(here.abs_diff(at(x + 1, y)) > EDGE_STEP)
                + u32::from(here.abs_diff(at(x, y + 1)) > EDGE_STEP);
            density[((y / BLOCK) * columns + x / BLOCK) as usize] += edges;
        }
    }
    let (peak_index, &peak) = density.iter().enumerate().max_by_key(|(_, d)| **d)?;
    // A QR block has dozens of strong edges; fewer means there is no QR worth cropping to.
    if peak < 24 {
        return None;
    }
    // Grow the peak's cluster over blocks with at least a quarter of its density.
    let floor = peak / 4;
    let mut inside = vec![false; density.len()];
    let mut stack = vec![peak_index];
    inside[peak_index] = true;
    let (mut x0, mut y0, mut x1, mut y1) = (columns, rows, 0, 0);
    while let Some(index) = stack.pop() {
        let (cx, cy) = (index as u32 % columns, index as u32 / columns);
        (x0, y0, x1, y1) = (x0.min(cx), y0.min(cy), x1.max(cx), y1.max(cy));
        for (dx, dy) in [
            (-1i64, -1i64),
            (0, -1),
            (1, -1),
            (-1, 0),
            (1, 0),
            (-1, 1),
            (0, 1),
            (1, 1),
        ] {
            let (nx, ny) = (i64::from(cx) + dx, i64::from(cy) + dy);
            if nx < 0 || ny < 0 || nx >= i64::from(columns) || ny >= i64::from(rows) {
                continue;
            }
            let neighbour = (ny as u32 * columns + nx as u32) as usize;
            if !inside[neighbour] && density[neighbour] >= floor {
                inside[neighbour] = true;
                stack.push(neighbour);
            }
        }
    }
    let margin = 2;
    let (x0, y0) = (
        x0.saturating_sub(margin) * BLOCK,
        y0.saturating_sub(margin) * BLOCK,
    );
    let (x1, y1) = (
        ((x1 + 1 + margin) * BLOCK).min(width),
        ((y1 + 1 + margin) * BLOCK).min(height),
    );
    let (w, h) = (x1 - x0, y1 - y0);
    // Too small to hold a QR, or most of the frame (then cropping gains nothing).
    if w < 4 * BLOCK
        || h < 4 * BLOCK
        || u64::from(w) * u64::from(h) * 10 > u64::from(width) * u64::from(height) * 8
    {
        return None;
    }
    Some((x0, y0, w, h))
}

/// Half resolution by 2×2 averaging: it averages away pixel noise and sharpens a blurred code.
fn half(image: &GrayImage) -> GrayImage {
    image::imageops::thumbnail(image, (image.width() / 2).max(1), (image.height() / 2).max(1))
}

/// The decoding passes, cheapest and most successful first. A frame with no QR costs all of them,
/// which stays well below the interval between frames.
fn passes(grey: &GrayImage) -> impl Iterator<Item = GrayImage> + '_ {
    let crop = qr_region(grey).map(|(x, y, w, h)| image::imageops::crop_imm(grey, x, y, w, h).to_image());
    let crop_passes: Vec<GrayImage> = match &crop {
        // The crop at half and at full resolution (small modules need the full one).
        Some(crop) => vec![half(crop), crop.clone()],
        None => Vec::new(),
    };
    let whole_frame: [Box<dyn Fn() -> GrayImage + '_>; 4] = [
        // No usable crop (or it did not read): the whole frame at half resolution.
        Box::new(move || half(grey)),
        // A local threshold copes with uneven light across the screen.
        Box::new(move || adaptive_threshold(&half(grey), 12, 0)),
        // Light blur first, for JPEG blocks and sensor noise.
        Box::new(move || adaptive_threshold(&gaussian_blur_f32(&half(grey), 1.0), 12, 0)),
        // A global threshold at full resolution, for frames with even light but low contrast.
        Box::new(move || {
            let level = otsu_level(grey);
            threshold(grey, level, ThresholdType::Binary)
        }),
    ];
    crop_passes
        .into_iter()
        .chain(whole_frame.into_iter().map(|make| make()))
}

/// Decodes the QR of one camera frame, trying each pass until one reads.
pub fn decode_frame(frame: &DynamicImage) -> Option<String> {
    let grey = frame.to_luma8();
    passes(&grey).find_map(try_decode)
}

/// The customer's payment link for a QR text: the `qr.kaspi.kz` link with its host rewritten to
/// `pay.kaspi.kz/pay`; any other text is used as it is.
pub fn payment_url(qr_text: &str) -> String {
    for prefix in ["https://qr.kaspi.kz/", "http://qr.kaspi.kz/"] {
        if let Some(rest) = qr_text.strip_prefix(prefix) {
            return format!("https://pay.kaspi.kz/pay/{rest}");
        }
    }
    qr_text.to_owned()
}

/// A camera snapshot URL.
#[derive(Debug, Clone)]
pub struct Camera {
    http: reqwest::Client,
    url: String,
}

/// How long to keep trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QrScan {
    /// Pause between frames (default 300 ms).
    pub interval: Duration,
    /// Give up after this long (default 10 s).
    pub deadline: Duration,
}

impl Default for QrScan {
    fn default() -> Self {
        QrScan {
            interval: Duration::from_millis(300),
            deadline: Duration::from_secs(10),
        }
    }
}

impl Camera {
    /// A camera at `url` (an HTTP snapshot endpoint returning one JPEG, PNG or BMP frame).
    pub fn new(url: impl Into<String>, request_timeout: Duration) -> Result<Camera, CameraError> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .no_proxy()
            .build()
            .map_err(|err| CameraError::Unavailable(err.to_string()))?;
        Ok(Camera {
            http,
            url: url.into(),
        })
    }

    /// One frame.
    pub async fn snapshot(&self) -> Result<DynamicImage, CameraError> {
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|err| CameraError::Unavailable(err.to_string()))?;
        if !response.status().is_success() {
            return Err(CameraError::Unavailable(format!(
                "HTTP {}",
                response.status().as_u16()
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|err| CameraError::Unavailable(err.to_string()))?;
        image::load_from_memory(&bytes).map_err(|err| CameraError::BadFrame(err.to_string()))
    }
}

/// Fetches frames every `scan.interval` until one decodes, or fails after `scan.deadline`.
/// Camera errors on single frames are retried like unreadable frames.
pub async fn read_qr(camera: &Camera, scan: QrScan) -> Result<String, CameraError> {
    read_new_qr(camera, scan, &[]).await
}

/// The QR one frame shows now, if any (what the screen shows before a new operation starts).
pub async fn qr_on_screen(camera: &Camera) -> Option<String> {
    let frame = camera.snapshot().await.ok()?;
    tokio::task::spawn_blocking(move || decode_frame(&frame))
        .await
        .ok()
        .flatten()
}

/// As [`read_qr`], but a frame whose QR is one of `stale` counts as unreadable: right after a new
/// operation starts, the screen may still show the previous operation's QR (the terminal redraws
/// late), and handing that to the next customer would send them to a finished operation.
pub async fn read_new_qr(camera: &Camera, scan: QrScan, stale: &[&str]) -> Result<String, CameraError> {
    let started = Instant::now();
    let mut frames = 0u32;
    let mut stale_frames = 0u32;
    loop {
        if let Ok(frame) = camera.snapshot().await {
            frames += 1;
            // Decoding is CPU work: keep it off the async workers.
            let decoded = tokio::task::spawn_blocking(move || decode_frame(&frame))
                .await
                .ok()
                .flatten();
            match decoded {
                Some(text) if stale.contains(&text.as_str()) => stale_frames += 1,
                Some(text) => return Ok(text),
                None => {}
            }
        }
        if started.elapsed() + scan.interval > scan.deadline {
            if stale_frames > 0 {
                tracing::warn!(stale_frames, "the camera showed only the previous operation's QR");
            }
            return Err(CameraError::QrNotFound {
                frames,
                millis: started.elapsed().as_millis(),
            });
        }
        tokio::time::sleep(scan.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_url_rewrites_only_kaspi_qr_links() {
        assert_eq!(
            payment_url("https://qr.kaspi.kz/abc123"),
            "https://pay.kaspi.kz/pay/abc123"
        );
        assert_eq!(
            payment_url("http://qr.kaspi.kz/x/y?z=1"),
            "https://pay.kaspi.kz/pay/x/y?z=1"
        );
        assert_eq!(payment_url("https://example.kz/abc"), "https://example.kz/abc");
        assert_eq!(payment_url("plain text"), "plain text");
    }

    #[test]
    fn a_blank_frame_has_no_qr() {
        let blank = DynamicImage::ImageLuma8(GrayImage::from_pixel(640, 360, image::Luma([200])));
        assert_eq!(decode_frame(&blank), None);
    }
}
