//! The brokers' classpaths, resolved by Maven from the checked-in POMs under `brokers/`.
//!
//! Each broker has a `pom.xml` with pinned versions; `brokers/settings.xml` sends every
//! repository those POMs declare through Maven Central. `mvn dependency:build-classpath` downloads
//! the jars once into the local Maven repository (`~/.m2`) and writes the classpath, which is
//! cached in `{temp}/baton-maven/` under a hash of the POM, so later starts run no Maven at all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// The folder holding each broker's `pom.xml`.
pub fn brokers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("brokers")
}

/// FNV-1a, enough to tell one POM from another.
fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Checks that a Java 17 or newer runtime is on the `PATH`.
pub fn require_java() {
    let output = Command::new("java").arg("-version").output().unwrap_or_else(|e| {
        panic!(
            "`java` cannot be run ({e}): the test brokers (Apache Pulsar, Apache Kafka) need Java 17 \
             or newer; install it with `apt-get install openjdk-17-jre-headless`"
        )
    });
    let text = String::from_utf8_lossy(&output.stderr);
    let major = text
        .split('"')
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= 17 => {}
        _ => panic!(
            "the test brokers need Java 17 or newer; `java -version` says: {}",
            text.trim()
        ),
    }
}

/// The classpath of broker `name` (`pulsar` or `kafka`): every jar, joined by `:`.
pub fn classpath(name: &str) -> String {
    let dir = brokers_dir();
    let pom = dir.join(name).join("pom.xml");
    let settings = dir.join("settings.xml");
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    let hash = fingerprint(&[&read(&pom), &read(&settings)]);
    let cache_dir = std::env::temp_dir().join("baton-maven");
    std::fs::create_dir_all(&cache_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", cache_dir.display()));
    let cache = cache_dir.join(format!("{name}-{hash:016x}.classpath"));
    if let Some(cp) = cached(&cache) {
        return cp;
    }
    let _lock = Lock::take(cache_dir.join(format!("{name}.lock")));
    // Another process may have resolved it while this one waited for the lock.
    if let Some(cp) = cached(&cache) {
        return cp;
    }
    let partial = cache.with_extension("partial");
    let output = Command::new("mvn")
        .arg("-B")
        .arg("-q")
        .arg("-s")
        .arg(&settings)
        .arg("-f")
        .arg(&pom)
        .arg("dependency:build-classpath")
        .arg(format!("-Dmdep.outputFile={}", partial.display()))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "`mvn` cannot be run ({e}): the test brokers' jars are resolved by Maven from Maven \
                 Central; install it with `apt-get install maven`"
            )
        });
    if !output.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).take(5).collect();
        panic!(
            "Maven could not resolve the {name} broker from {} (is Maven Central reachable?):\n{}",
            pom.display(),
            errors.join("\n")
        );
    }
    std::fs::rename(&partial, &cache).unwrap_or_else(|e| panic!("cannot write {}: {e}", cache.display()));
    cached(&cache).unwrap_or_else(|| panic!("Maven wrote an unusable classpath to {}", cache.display()))
}

/// A cached classpath whose jars all still exist.
fn cached(file: &Path) -> Option<String> {
    let cp = std::fs::read_to_string(file).ok()?;
    let cp = cp.trim().to_string();
    (!cp.is_empty() && cp.split(':').all(|jar| Path::new(jar).exists())).then_some(cp)
}

/// A lock file held while Maven runs, so concurrent test processes resolve once.
struct Lock(PathBuf);

impl Lock {
    fn take(path: PathBuf) -> Self {
        let deadline = Instant::now() + Duration::from_secs(30 * 60);
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Self(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A lock older than the longest resolution was left by a killed process.
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age > Duration::from_secs(20 * 60));
                    if stale {
                        let _ = std::fs::remove_file(&path);
                    }
                    assert!(Instant::now() < deadline, "timed out waiting for {}", path.display());
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How a broker's JVM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jvm {
    /// Quick to start and small: the client compiler only and a serial collector, for tests,
    /// where brokers start often and carry little load.
    Test,
    /// As the brokers' own start scripts run them: both compilers, G1 and a 1 GiB heap, for
    /// figures that should not charge a broker for a JVM tuned to start fast.
    Server,
}

impl Jvm {
    /// The JVM options.
    pub fn options(self) -> &'static [&'static str] {
        match self {
            Jvm::Test => &["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"],
            Jvm::Server => &[
                "-Xms1g",
                "-Xmx1g",
                "-XX:MaxDirectMemorySize=1g",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=10",
                "-XX:+ParallelRefProcEnabled",
                "-XX:+DisableExplicitGC",
            ],
        }
    }
}
