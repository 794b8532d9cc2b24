//! Writes the QR corpus (the simulator's camera across rotation × module size × blur × noise ×
//! JPEG quality) to a folder, and measures our decoder on it. `bench/qr_decoders.sh` runs this,
//! then Debian's `zbarimg` on the same files, and prints both side by side.
//!
//! `cargo run --release -p byfly-terminal --features simulator --example qr_corpus -- OUT_DIR`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use byfly_terminal::decode_frame;
use byfly_terminal::simulator::render::{corpus_styles, corpus_text, encode_frame, render_frame};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: qr_corpus OUT_DIR")?);
    std::fs::create_dir_all(&out)?;
    let styles = corpus_styles();
    let mut expected = String::new();
    let mut times: Vec<Duration> = Vec::new();
    let mut decoded = 0;
    for (index, style) in styles.iter().enumerate() {
        let text = corpus_text(index);
        let frame = render_frame(Some(&text), style, index as u64)?;
        let jpeg = encode_frame(&frame, style)?;
        std::fs::write(out.join(format!("frame_{index:03}.jpg")), &jpeg)?;
        // zbar's best configuration reads a lightly blurred copy (spec: "-Sdisable -Sqrcode.enable
        // on a lightly blurred copy"); it is made here so the script needs no ImageMagick.
        let received = image::load_from_memory(&jpeg)?.to_luma8();
        imageproc::filter::gaussian_blur_f32(&received, 1.0)
            .save(out.join(format!("frame_{index:03}_blur.png")))?;
        expected.push_str(&format!("frame_{index:03} {text}\n"));

        let started = Instant::now();
        let found = decode_frame(&image::load_from_memory(&jpeg)?);
        times.push(started.elapsed());
        if found.as_deref() == Some(text.as_str()) {
            decoded += 1;
        }
    }
    std::fs::write(out.join("expected.txt"), expected)?;
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "rqrr (ours, release): {decoded}/{} = {:.1} %, median {:.1} ms per frame (JPEG decode included), p90 {:.1} ms",
        styles.len(),
        100.0 * f64::from(decoded) / styles.len() as f64,
        median.as_secs_f64() * 1000.0,
        times[times.len() * 9 / 10].as_secs_f64() * 1000.0
    );
    Ok(())
}
