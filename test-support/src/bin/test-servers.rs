//! `test-servers sweep`: stops servers left behind by test processes that were killed
//! (`scripts/test.sh` runs it before and after the tests).

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("sweep") => {
            baton_test_support::sweep_orphans();
            std::process::ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: test-servers sweep");
            std::process::ExitCode::from(2)
        }
    }
}
