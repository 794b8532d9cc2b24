//! Time to decode one 1280×720 camera frame (JPEG bytes → QR text), as the server does after each
//! `/v2/payment`. Target on a 2-core machine: median ≤ 25 ms. `cargo bench -p byfly-terminal --features simulator`

use std::hint::black_box;

use byfly_terminal::decode_frame;
use byfly_terminal::simulator::render::{
    CameraStyle, corpus_styles, corpus_text, encode_frame, render_frame,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn frame(style: &CameraStyle, text: Option<&str>) -> Vec<u8> {
    let rendered = render_frame(text, style, 11).unwrap_or_else(|err| panic!("render: {err}"));
    encode_frame(&rendered, style).unwrap_or_else(|err| panic!("encode: {err}"))
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_1280x720_frame");
    group.sample_size(30);
    let default = CameraStyle::default();
    let hardest = corpus_styles().into_iter().last().unwrap_or_default();
    let cases = [
        ("default_camera", frame(&default, Some(&corpus_text(1)))),
        (
            "rotated15_blur1.3_noise14_q90",
            frame(&hardest, Some(&corpus_text(2))),
        ),
        ("no_qr_on_screen", frame(&default, None)),
    ];
    for (name, bytes) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let image = image::load_from_memory(black_box(bytes)).unwrap_or_else(|err| panic!("{err}"));
                black_box(decode_frame(&image))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
