//! The simulator's camera: a photo-like 1280×720 frame of the terminal's screen.
//!
//! The frame is what a cheap camera on a stand sees: a terminal lying on a counter under uneven
//! light, its screen showing the QR, the whole picture a few degrees off, blurred, noisy and JPEG
//! compressed. Every degradation is a knob, so tests can sweep them and measure the decoder.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{GrayImage, ImageFormat, Luma};
use imageproc::geometric_transformations::{Border, Interpolation, rotate_about_center};
use imageproc::noise::gaussian_noise_mut;
use qrcode::{Color, EcLevel, QrCode};
use serde::{Deserialize, Serialize};

/// Frame width, as the spec's camera.
pub const FRAME_WIDTH: u32 = 1280;
/// Frame height.
pub const FRAME_HEIGHT: u32 = 720;

/// Image format of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameFormat {
    /// JPEG at [`CameraStyle::jpeg_quality`].
    #[default]
    Jpeg,
    /// Lossless PNG.
    Png,
}

/// How the camera sees the screen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CameraStyle {
    /// Clockwise rotation of the whole picture, degrees.
    pub rotation_degrees: f32,
    /// Gaussian blur σ in pixels (0 = sharp).
    pub blur_sigma: f32,
    /// Standard deviation of the sensor noise, in grey levels (0 = none).
    pub noise: f32,
    /// JPEG quality, 1..=100.
    pub jpeg_quality: u8,
    /// JPEG or PNG.
    pub format: FrameFormat,
    /// Size of one QR module in pixels: the lever that matters most (≥ 5.5 reads reliably).
    pub module_px: f32,
    /// Light falling off across the picture, as from a window on one side.
    pub uneven_light: bool,
}

impl Default for CameraStyle {
    fn default() -> Self {
        CameraStyle {
            rotation_degrees: 3.0,
            blur_sigma: 0.8,
            noise: 6.0,
            jpeg_quality: 80,
            format: FrameFormat::Jpeg,
            module_px: 6.0,
            uneven_light: true,
        }
    }
}

/// Why a frame could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The text does not fit a QR code.
    #[error("cannot encode QR: {0}")]
    Qr(String),
    /// Image encoding failed.
    #[error("cannot encode frame: {0}")]
    Encode(String),
}

fn fill(image: &mut GrayImage, x0: i64, y0: i64, x1: i64, y1: i64, level: u8) {
    let clamp_x = |x: i64| x.clamp(0, i64::from(image.width())) as u32;
    let clamp_y = |y: i64| y.clamp(0, i64::from(image.height())) as u32;
    let (x0, x1, y0, y1) = (clamp_x(x0), clamp_x(x1), clamp_y(y0), clamp_y(y1));
    for y in y0..y1 {
        for x in x0..x1 {
            image.put_pixel(x, y, Luma([level]));
        }
    }
}

/// Draws the scene: counter, terminal body, screen, and the QR (when there is one) on the screen.
/// `offset` moves the terminal a little so frames are not all alike.
fn draw_scene(qr: Option<&QrCode>, style: &CameraStyle, offset: (i64, i64)) -> GrayImage {
    let mut frame = GrayImage::from_pixel(FRAME_WIDTH, FRAME_HEIGHT, Luma([120]));
    let center = (
        i64::from(FRAME_WIDTH) / 2 + offset.0,
        i64::from(FRAME_HEIGHT) / 2 + offset.1,
    );
    // The QR with its 4-module quiet zone decides the screen's size.
    let modules = qr.map_or(29, QrCode::width) as f32;
    let code_px = ((modules + 8.0) * style.module_px).round() as i64;
    let screen = (code_px + 60).max(260);
    let (sx0, sy0) = (center.0 - screen / 2, center.1 - screen / 2);
    // Terminal body, then the lit screen.
    fill(
        &mut frame,
        sx0 - 40,
        sy0 - 50,
        sx0 + screen + 40,
        sy0 + screen + 140,
        35,
    );
    fill(&mut frame, sx0, sy0, sx0 + screen, sy0 + screen, 225);
    match qr {
        Some(code) => {
            let origin = (center.0 - code_px / 2, center.1 - code_px / 2);
            fill(
                &mut frame,
                origin.0,
                origin.1,
                origin.0 + code_px,
                origin.1 + code_px,
                240,
            );
            let width = code.width();
            for (index, color) in code.to_colors().into_iter().enumerate() {
                if color != Color::Dark {
                    continue;
                }
                let (mx, my) = ((index % width) as f32 + 4.0, (index / width) as f32 + 4.0);
                let px = |m: f32| (m * style.module_px).round() as i64;
                fill(
                    &mut frame,
                    origin.0 + px(mx),
                    origin.1 + px(my),
                    origin.0 + px(mx + 1.0),
                    origin.1 + px(my + 1.0),
                    25,
                );
            }
        }
        None => {
            // An idle screen: a few lines of "text".
            for line in 0..4 {
                let y = sy0 + 40 + line * 45;
                fill(&mut frame, sx0 + 30, y, sx0 + screen - 30 - line * 25, y + 14, 90);
            }
        }
    }
    // Buttons under the screen.
    for column in 0..3 {
        let x = sx0 + column * (screen / 3) + 10;
        fill(
            &mut frame,
            x,
            sy0 + screen + 30,
            x + screen / 3 - 20,
            sy0 + screen + 80,
            70,
        );
    }
    if style.uneven_light {
        for (x, y, pixel) in frame.enumerate_pixels_mut() {
            let across = x as f32 / FRAME_WIDTH as f32;
            let down = y as f32 / FRAME_HEIGHT as f32;
            let light = 0.62 + 0.38 * (1.0 - across) * (0.85 + 0.15 * down);
            pixel.0[0] = (f32::from(pixel.0[0]) * light).round().clamp(0.0, 255.0) as u8;
        }
    }
    frame
}

/// A camera frame (grey) of the screen showing `qr_text`, or an idle screen for `None`.
pub fn render_frame(qr_text: Option<&str>, style: &CameraStyle, seed: u64) -> Result<GrayImage, RenderError> {
    let code = qr_text
        .map(|text| QrCode::with_error_correction_level(text, EcLevel::M))
        .transpose()
        .map_err(|err| RenderError::Qr(err.to_string()))?;
    let offset = ((seed % 97) as i64 - 48, (seed % 53) as i64 - 26);
    let mut frame = draw_scene(code.as_ref(), style, offset);
    if style.rotation_degrees != 0.0 {
        frame = rotate_about_center(
            &frame,
            style.rotation_degrees.to_radians(),
            Interpolation::Bilinear,
            Border::Constant(Luma([100])),
        );
    }
    if style.blur_sigma > 0.0 {
        frame = imageproc::filter::gaussian_blur_f32(&frame, style.blur_sigma);
    }
    if style.noise > 0.0 {
        gaussian_noise_mut(&mut frame, 0.0, f64::from(style.noise), seed);
    }
    Ok(frame)
}

/// Encodes a frame as the camera sends it.
pub fn encode_frame(frame: &GrayImage, style: &CameraStyle) -> Result<Vec<u8>, RenderError> {
    let mut bytes = Vec::new();
    match style.format {
        FrameFormat::Jpeg => JpegEncoder::new_with_quality(&mut bytes, style.jpeg_quality.clamp(1, 100))
            .encode_image(frame)
            .map_err(|err| RenderError::Encode(err.to_string()))?,
        FrameFormat::Png => frame
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(|err| RenderError::Encode(err.to_string()))?,
    }
    Ok(bytes)
}

/// The camera conditions the decoder is measured on: every combination of rotation (0–15°),
/// module size (5.5–8 px), blur, noise and JPEG quality (40–90) — 405 styles. Tests, the benchmark
/// and `bench/qr_decoders.sh` all use this one corpus.
pub fn corpus_styles() -> Vec<CameraStyle> {
    let mut styles = Vec::new();
    for rotation_degrees in [0.0, 4.0, 8.0, 12.0, 15.0] {
        for module_px in [5.5, 6.5, 8.0] {
            for blur_sigma in [0.0, 0.8, 1.3] {
                for noise in [0.0, 8.0, 14.0] {
                    for jpeg_quality in [40, 65, 90] {
                        styles.push(CameraStyle {
                            rotation_degrees,
                            blur_sigma,
                            noise,
                            jpeg_quality,
                            format: FrameFormat::Jpeg,
                            module_px,
                            uneven_light: true,
                        });
                    }
                }
            }
        }
    }
    styles
}

/// The QR text of corpus frame `index`: a `qr.kaspi.kz` link like the terminal's (version 3).
pub fn corpus_text(index: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let suffix: String = (0..16)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state % ALPHABET.len() as u64) as usize])
        })
        .collect();
    format!("https://qr.kaspi.kz/{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::decode_frame;

    #[test]
    fn default_frames_decode_and_idle_frames_do_not() {
        let style = CameraStyle::default();
        let text = "https://qr.kaspi.kz/AbCdEf0123456789";
        let bytes = encode_frame(&render_frame(Some(text), &style, 7).unwrap(), &style).unwrap();
        let frame = image::load_from_memory(&bytes).unwrap();
        assert_eq!((frame.width(), frame.height()), (FRAME_WIDTH, FRAME_HEIGHT));
        assert_eq!(decode_frame(&frame).as_deref(), Some(text));
        let idle = render_frame(None, &style, 7).unwrap();
        assert_eq!(decode_frame(&image::DynamicImage::ImageLuma8(idle)), None);
    }

    #[test]
    fn bmp_frames_from_a_camera_decode() {
        let style = CameraStyle::default();
        let text = "https://qr.kaspi.kz/bmp";
        let frame = render_frame(Some(text), &style, 3).unwrap();
        let mut bmp = Vec::new();
        frame
            .write_to(&mut Cursor::new(&mut bmp), ImageFormat::Bmp)
            .unwrap();
        assert_eq!(
            decode_frame(&image::load_from_memory(&bmp).unwrap()).as_deref(),
            Some(text)
        );
    }

    #[test]
    fn png_frames_are_lossless() {
        let style = CameraStyle {
            format: FrameFormat::Png,
            ..CameraStyle::default()
        };
        let frame = render_frame(Some("https://qr.kaspi.kz/x"), &style, 1).unwrap();
        let bytes = encode_frame(&frame, &style).unwrap();
        assert_eq!(image::load_from_memory(&bytes).unwrap().to_luma8(), frame);
    }
}
