//! Every input a fuzzer ever found (`fuzz/regressions/{target}/`), every golden fixture, and
//! random and truncated bytes, through the fuzz targets' checks: none may panic.

use std::path::{Path, PathBuf};

use baton_fuzz_checks::{MESSAGE_KINDS, envelope, envelope_kind_byte, stored_record, stored_workflow};
use proptest::prelude::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A golden fixture with the byte that picks its message enum.
fn fixtures() -> Vec<Vec<u8>> {
    let dir = workspace().join("shared-schemas/tests/fixtures");
    let fixtures: Vec<Vec<u8>> = files(&dir)
        .into_iter()
        .map(|path| {
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            let kind = name.split('_').next().expect("prefix");
            let byte = envelope_kind_byte(kind).unwrap_or_else(|| panic!("{name}: no message kind `{kind}`"));
            let mut input = vec![byte];
            input.extend(std::fs::read(&path).expect("fixture"));
            input
        })
        .collect();
    assert!(fixtures.len() >= MESSAGE_KINDS.len(), "{} fixtures", fixtures.len());
    fixtures
}

/// A fuzz target's check.
type Check = fn(&[u8]);

#[test]
fn every_input_a_fuzzer_found_is_handled() {
    let targets: [(&str, Check); 3] = [
        ("envelope", envelope),
        ("stored_workflow", stored_workflow),
        ("stored_record", stored_record),
    ];
    for (target, check) in targets {
        for path in files(&workspace().join("fuzz/regressions").join(target)) {
            check(&std::fs::read(&path).expect("regression input"));
        }
    }
}

#[test]
fn every_golden_fixture_round_trips_and_every_truncation_is_refused_quietly() {
    for input in fixtures() {
        envelope(&input);
        for cut in 0..input.len() {
            envelope(&input[..cut]);
        }
        // The same bytes read as stored records or states must not panic either.
        stored_record(&input);
        stored_workflow(&input);
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic_a_decoder(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        envelope(&data);
        stored_workflow(&data);
        stored_record(&data);
    }
}
