//! The decoder against the simulator's camera: every corpus style, each frame encoded as the camera
//! sends it and decoded as the server does. The rate must stay at or above 99 %.

#![cfg(feature = "simulator")]
// Test code: a panic is a failed assertion with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use byfly_terminal::decode_frame;
use byfly_terminal::simulator::render::{corpus_styles, corpus_text, encode_frame, render_frame};

#[test]
fn camera_frames_decode_at_99_percent_or_better() {
    let styles = corpus_styles();
    assert!(styles.len() >= 200);
    // Rendering dominates the time: split the corpus over the machine's cores.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results: Vec<(usize, Option<String>, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let styles = &styles;
                scope.spawn(move || {
                    let mut results = Vec::new();
                    for index in (worker..styles.len()).step_by(workers) {
                        let frame =
                            render_frame(Some(&corpus_text(index)), &styles[index], index as u64).unwrap();
                        let bytes = encode_frame(&frame, &styles[index]).unwrap();
                        let started = Instant::now();
                        let decoded = decode_frame(&image::load_from_memory(&bytes).unwrap());
                        results.push((index, decoded, started.elapsed()));
                    }
                    results
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    });
    let mut failures = Vec::new();
    let mut decode_times = Vec::new();
    for (index, decoded, took) in results {
        decode_times.push(took);
        match decoded {
            Some(found) => assert_eq!(found, corpus_text(index), "a decoded QR is always the right one"),
            None => failures.push(format!("{:?}", styles[index])),
        }
    }
    decode_times.sort();
    let rate = 100.0 * (styles.len() - failures.len()) as f64 / styles.len() as f64;
    println!(
        "QR corpus: {} frames, {} decoded ({rate:.1} %), median decode {:?} (test build; see BENCHMARKS.md for release)",
        styles.len(),
        styles.len() - failures.len(),
        decode_times[decode_times.len() / 2]
    );
    for failure in &failures {
        println!("  not decoded: {failure}");
    }
    assert!(rate >= 99.0, "decode rate {rate:.1} % is below 99 %");
}
