//! `test-servers resolve`: resolves the test brokers' jars from Maven Central into the local
//! Maven repository, once, so the tests start brokers without waiting for Maven.
//! `test-servers sweep`: stops servers left behind by test processes that were killed.

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("resolve") => {
            baton_test_support::maven::require_java();
            for broker in ["pulsar", "kafka"] {
                let classpath = baton_test_support::maven::classpath(broker);
                println!("{broker}: {} jars", classpath.split(':').count());
            }
            std::process::ExitCode::SUCCESS
        }
        Some("sweep") => {
            baton_test_support::sweep_orphans();
            std::process::ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: test-servers resolve|sweep");
            std::process::ExitCode::from(2)
        }
    }
}
