//! The fuzz targets on stable: every file of `fuzz/corpus/<target>/` (seeds,
//! and inputs that once crashed a target) goes through the same invariant
//! checks the fuzzers assert (`fuzz/checks.rs`). CI runs this; the fuzzers
//! themselves need nightly (`scripts/fuzz.sh`).

#[path = "../fuzz/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("seed-") || name.starts_with("crash-")) {
            continue; // the fuzzer's own finds stay local (fuzz/.gitignore)
        }
        let data = std::fs::read(&path).unwrap();
        check(&data);
        // Also every prefix cut at a few points: truncated bodies are inputs too.
        for cut in [
            1,
            data.len() / 3,
            data.len() / 2,
            data.len().saturating_sub(1),
        ] {
            check(&data[..cut.min(data.len())]);
        }
        n += 1;
    }
    assert!(n > 0, "no corpus files for {target}");
    println!("fuzz corpus {target}: {n} files replayed");
    n
}

#[test]
fn alert_parse_corpus() {
    replay("alert_parse", checks::alert_parse);
}

#[test]
fn url_normalize_corpus() {
    replay("url_normalize", checks::url_normalize);
}

#[test]
fn hunting_corpus() {
    replay("hunting", checks::hunting);
}

#[test]
fn vmray_parse_corpus() {
    replay("vmray_parse", checks::vmray_parse);
}

#[test]
fn render_corpus() {
    replay("render", checks::render);
}
