//! Secrets from mounted files, as the Helm chart gives them: the Redis password
//! (`storage.password_file`, with an ACL user) and the API's bearer tokens
//! (`api.tokens_file`), through the real binaries against a Redis that requires a password.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use baton_test_support::{ComponentProcess, RedisServer, built_binaries, free_port};

const USER_PASSWORD: &str = "user-secret-7f3a";

/// `redis-server` arguments for the ACL user `baton` with [`USER_PASSWORD`].
fn acl_user() -> Vec<String> {
    [
        "--user",
        "baton",
        "on",
        &format!(">{USER_PASSWORD}"),
        "~*",
        "&*",
        "+@all",
    ]
    .map(String::from)
    .to_vec()
}

fn redis_with_an_acl_user() -> RedisServer {
    let mut args = vec!["--requirepass".to_string(), "default-secret-91c2".to_string()];
    args.extend(acl_user());
    RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn secret_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("baton-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write secret");
    path
}

/// One HTTP/1.0 request; the status code.
fn status_of(address: SocketAddr, method: &str, path: &str, token: Option<&str>) -> u16 {
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = if method == "POST" { "{}" } else { "" };
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response.get(9..12).and_then(|s| s.parse().ok()).expect("a status line")
}

/// `binary --print-config` (plus `args`) with `env`: what it printed and its exit.
fn print_config(binary: &str, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    Command::new(built_binaries().join(binary))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .arg("--print-config")
        .output()
        .unwrap_or_else(|e| panic!("{binary}: {e}"))
}

#[test]
fn a_component_signs_in_to_redis_with_a_user_and_a_password_file() {
    let redis = redis_with_an_acl_user();
    let password = secret_file("redis-password", &format!("{USER_PASSWORD}\n"));
    let env = vec![
        ("BATON_TRANSPORT__URL", "memory://".to_string()),
        ("BATON_STORAGE__URL", redis.url.clone()),
        ("BATON_STORAGE__USERNAME", "baton".to_string()),
        ("BATON_STORAGE__PASSWORD_FILE", password.display().to_string()),
    ];
    let mut timers = ComponentProcess::start("timer-service", &[], &env);
    timers.wait_ready_status(200, Duration::from_secs(20));
    assert!(
        !timers.log_text().contains(USER_PASSWORD),
        "the password never reaches the log"
    );
    drop(timers);

    // A wrong password, or none, is a setting that cannot work, not an outage: the start ends
    // at once with exit 2, naming the settings, never showing the password.
    let wrong = secret_file("wrong-password", "not-the-password\n");
    let cases = [
        vec![
            ("BATON_STORAGE__USERNAME", "baton".to_string()),
            ("BATON_STORAGE__PASSWORD_FILE", wrong.display().to_string()),
        ],
        vec![],
    ];
    for credentials in cases {
        let mut env = vec![
            ("BATON_TRANSPORT__URL", "memory://".to_string()),
            ("BATON_STORAGE__URL", redis.url.clone()),
            ("BATON_PROCESS__STARTUP_DEADLINE_SECS", "60".to_string()),
        ];
        env.extend(credentials);
        let mut refused = ComponentProcess::start("timer-service", &[], &env);
        let exit = refused
            .wait_exit(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("a refused sign-in must end the start:\n{}", refused.log_text()));
        let log = refused.log_text();
        assert_eq!(exit.code(), Some(2), "{log}");
        assert!(
            log.contains("refused the sign-in (storage.username, storage.password"),
            "{log}"
        );
        assert!(
            !log.contains("not-the-password"),
            "the password never reaches the log:\n{log}"
        );
    }

    // A missing file is a setting that cannot work: exit 2 at once, naming it.
    let missing_file = (
        "BATON_STORAGE__PASSWORD_FILE",
        "/nonexistent/redis-password".to_string(),
    );
    let output = print_config(
        "timer-service",
        &[("BATON_STORAGE__URL", redis.url.clone()), missing_file.clone()],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("storage.password_file /nonexistent/redis-password"),
        "{stderr}"
    );
    // Workers do not use Redis: the same setting does not stop them.
    let services = secret_file(
        "services.toml",
        "[[services]]\nname = \"Inventory\"\n[services.methods.reserve]\nurl = \"http://127.0.0.1:1/reserve\"\n",
    );
    let worker = print_config(
        "service-worker",
        &[missing_file],
        &["--services", &services.display().to_string()],
    );
    assert!(worker.status.success(), "{}", String::from_utf8_lossy(&worker.stderr));
}

#[test]
fn the_api_accepts_the_tokens_of_its_tokens_file_and_never_prints_them() {
    let redis = redis_with_an_acl_user();
    let password = secret_file("api-redis-password", USER_PASSWORD);
    let operator = "operator-token-5d1e9b0c44a7";
    let reader = "reader-token-0a8f6e2d19c3";
    let tokens = secret_file(
        "tokens",
        &format!("# mounted from a Secret\noperator:{operator}\nreader:{reader}\n"),
    );
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let env = vec![
        ("BATON_TRANSPORT__URL", "memory://".to_string()),
        ("BATON_STORAGE__URL", redis.url.clone()),
        ("BATON_STORAGE__USERNAME", "baton".to_string()),
        ("BATON_STORAGE__PASSWORD_FILE", password.display().to_string()),
        ("BATON_API__LISTEN", listen.to_string()),
        ("BATON_API__TOKENS_FILE", tokens.display().to_string()),
        ("BATON_API__WORKFLOWS", "[Booking]".to_string()),
    ];
    let mut api = ComponentProcess::start("baton-api", &[], &env);
    api.wait_ready_status(200, Duration::from_secs(20));
    let page = "/api/v1/instances?workflow=Booking";
    assert_eq!(status_of(listen, "GET", page, None), 401, "no token");
    assert_eq!(status_of(listen, "GET", page, Some("not-a-token-of-the-file")), 401);
    assert_eq!(status_of(listen, "GET", page, Some(reader)), 200, "a reader reads");
    assert_eq!(status_of(listen, "GET", page, Some(operator)), 200, "an operator reads");
    let start = "/api/v1/workflows/Booking/instances";
    assert_eq!(
        status_of(listen, "POST", start, Some(reader)),
        403,
        "a reader cannot start"
    );

    // --print-config shows where the tokens come from, and their roles, never the tokens.
    let output = print_config("baton-api", &env, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("<redacted>") && printed.contains("operator"),
        "{printed}"
    );
    assert!(!printed.contains(operator) && !printed.contains(reader), "{printed}");

    // A bad line is refused at start, naming the file and line, not the token.
    let bad = secret_file("bad-tokens", &format!("operator:{operator}\nadmin:{reader}\n"));
    let output = print_config(
        "baton-api",
        &[("BATON_API__TOKENS_FILE", bad.display().to_string())],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("api.tokens_file") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert!(!stderr.contains(reader), "{stderr}");
}

/// Environment variables of a component process.
type Env = Vec<(&'static str, String)>;

#[test]
fn a_component_reaches_redis_over_mutual_tls_and_refuses_an_untrusted_one_at_once() {
    use baton_test_support::TestCertificates;
    let certs = TestCertificates::generate("secrets");
    let user = acl_user();
    let redis = RedisServer::start_tls(&certs, true, &user.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(redis.url.starts_with("rediss://"), "{}", redis.url);
    let password = secret_file("tls-redis-password", USER_PASSWORD);
    let path = |p: &std::path::Path| p.display().to_string();
    let base = vec![
        ("BATON_TRANSPORT__URL", "memory://".to_string()),
        ("BATON_STORAGE__URL", redis.url.clone()),
        ("BATON_STORAGE__USERNAME", "baton".to_string()),
        ("BATON_STORAGE__PASSWORD_FILE", path(&password)),
        ("BATON_PROCESS__STARTUP_DEADLINE_SECS", "60".to_string()),
    ];
    let with = |more: &[(&'static str, String)]| {
        let mut env = base.clone();
        env.extend(more.iter().cloned());
        env
    };
    let trusted = [
        ("BATON_STORAGE__TLS_CA_FILE", path(&certs.ca)),
        ("BATON_STORAGE__TLS_CERT_FILE", path(&certs.client_cert)),
        ("BATON_STORAGE__TLS_KEY_FILE", path(&certs.client_key)),
    ];
    let mut timers = ComponentProcess::start("timer-service", &[], &with(&trusted));
    timers.wait_ready_status(200, Duration::from_secs(20));
    drop(timers);

    // Each of these can never work, so the start ends at once (exit 2) and names the settings.
    let plain_url = redis.url.replace("rediss://", "redis://");
    let cases: [(&str, Env, &str); 3] = [
        ("the system's roots do not know the test CA", Vec::new(), "TLS failed"),
        (
            "no client certificate for a server that requires one",
            vec![("BATON_STORAGE__TLS_CA_FILE", path(&certs.ca))],
            "TLS failed",
        ),
        (
            "TLS files with a plain redis:// URL",
            [trusted.to_vec(), vec![("BATON_STORAGE__URL", plain_url)]].concat(),
            "need a rediss:// storage.url",
        ),
    ];
    for (case, more, needle) in cases {
        let mut refused = ComponentProcess::start("timer-service", &[], &with(&more));
        let exit = refused
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{case}: must end the start:\n{}", refused.log_text()));
        let log = refused.log_text();
        assert_eq!(exit.code(), Some(2), "{case}:\n{log}");
        assert!(log.contains(needle), "{case}: expected `{needle}` in:\n{log}");
    }
}

#[test]
fn no_password_in_a_url_reaches_print_config_or_an_error() {
    let secret = "url-s3cret-9c41";
    // Redis and the OTLP endpoint take credentials in their URLs: printed redacted.
    let env = vec![
        ("BATON_TRANSPORT__URL", "memory://".to_string()),
        ("BATON_ENGINE__WORKFLOWS", "[Booking]".to_string()),
        ("BATON_API__WORKFLOWS", "[Booking]".to_string()),
        ("BATON_TAG_ENGINE__WORKFLOWS", "[Booking]".to_string()),
        ("BATON_STORAGE__URL", format!("redis://:{secret}@127.0.0.1:6379/0")),
        (
            "BATON_TELEMETRY__OTLP_ENDPOINT",
            format!("http://otel:{secret}@127.0.0.1:4318/?token={secret}"),
        ),
    ];
    for binary in ["workflow-engine", "timer-service", "tag-engine", "baton-api"] {
        let output = print_config(binary, &env, &[]);
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{binary}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!printed.contains(secret), "{binary} printed the password:\n{printed}");
        assert!(
            printed.contains("redis://:<redacted>@127.0.0.1:6379/0")
                && printed.contains("http://otel:<redacted>@127.0.0.1:4318/?token=<redacted>"),
            "{binary}:\n{printed}"
        );
    }
    // Pulsar and Kafka take none there: refused (exit 2), without echoing it.
    for (transport, hint) in [
        (
            format!("pulsar://app:{secret}@127.0.0.1:6650"),
            "transport.pulsar.token",
        ),
        (
            format!("kafka://app:{secret}@127.0.0.1:9092"),
            "transport.kafka.sasl_username",
        ),
    ] {
        let env = vec![
            ("BATON_TRANSPORT__URL", transport.clone()),
            ("BATON_ENGINE__WORKFLOWS", "[Booking]".to_string()),
            ("BATON_STORAGE__URL", "memory://".to_string()),
        ];
        let output = print_config("workflow-engine", &env, &[]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.status.code(), Some(2), "{transport}: {all}");
        assert!(!all.contains(secret) && all.contains(hint), "{transport}: {all}");
    }
    // A URL with an unknown scheme is named in the error, redacted.
    let env = vec![("BATON_STORAGE__URL", format!("postgres://app:{secret}@db/baton"))];
    let output = print_config("timer-service", &env, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        !stderr.contains(secret) && stderr.contains("postgres://app:<redacted>@db/baton"),
        "{stderr}"
    );
}
