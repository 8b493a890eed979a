//! The Helm chart and the images against the binaries they run.
//!
//! The chart (`k8s/baton`) is rendered by the real Helm for every values file in
//! `k8s/baton/ci`, and the manifests are read back: every Deployment probes the port its
//! binary serves, has resources and a locked-down security context, waits out the binary's
//! shutdown deadline, is scaled and protected as its values say, and the shared ConfigMap is
//! accepted by each binary's `--print-config` with the Deployment's own arguments, environment
//! and mounted files, so the chart and the binaries cannot drift apart. The Dockerfiles'
//! targets are checked against the workspace's binaries.
//!
//! Helm comes from `scripts/k8s-check.sh --install` (which `scripts/test.sh` runs first); the
//! same script lints the chart and validates the manifests against the Kubernetes schemas.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// The Helm release every test renders (named like the chart, so objects are `baton-…`).
const RELEASE: &str = "baton";
const NAMESPACE: &str = "baton";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn chart() -> PathBuf {
    workspace().join("k8s/baton")
}

/// The Helm that `scripts/k8s-check.sh` installs (or `BATON_HELM`).
fn helm() -> PathBuf {
    if let Ok(path) = std::env::var("BATON_HELM") {
        return PathBuf::from(path);
    }
    let script = std::fs::read_to_string(workspace().join("scripts/k8s-check.sh")).expect("k8s-check.sh");
    let version = script
        .lines()
        .find_map(|l| l.strip_prefix("HELM_VERSION=\""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("HELM_VERSION in k8s-check.sh");
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache"));
    let helm = cache.join(format!("baton/helm-{version}/bin/helm"));
    assert!(
        helm.exists(),
        "Helm {version} is not installed at {}: run scripts/k8s-check.sh --install",
        helm.display()
    );
    helm
}

/// The values files the chart is checked with.
fn values_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("k8s/baton/ci")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "values files: {files:?}");
    files
}

/// `helm template` with `args`: the rendered objects, or Helm's error.
fn template(args: &[&str]) -> Result<Vec<Value>, String> {
    let output = Command::new(helm())
        .args(["template", RELEASE])
        .arg(chart())
        .args(["--namespace", NAMESPACE])
        .args(args)
        .output()
        .expect("running helm");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8(output.stdout).expect("UTF-8 manifests");
    let mut objects = Vec::new();
    for document in yaml_serde::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).map_err(|e| format!("rendered YAML: {e}"))?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

fn render(values: &Path) -> Rendered {
    let objects = template(&["-f", values.to_str().expect("path")])
        .unwrap_or_else(|e| panic!("helm template -f {}: {e}", values.display()));
    Rendered {
        name: values.file_name().expect("name").to_string_lossy().into_owned(),
        objects,
    }
}

/// One values file's manifests.
struct Rendered {
    name: String,
    objects: Vec<Value>,
}

impl Rendered {
    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// The shared configuration, parsed.
    fn config(&self) -> toml::Table {
        let map = self
            .named("ConfigMap", &format!("{RELEASE}-config"))
            .unwrap_or_else(|| panic!("{}: no ConfigMap {RELEASE}-config", self.name));
        let text = map["data"]["baton.toml"].as_str().expect("baton.toml");
        text.parse()
            .unwrap_or_else(|e| panic!("{}: baton.toml is not TOML: {e}\n{text}", self.name))
    }
}

fn health_port(config: &toml::Table) -> u64 {
    let listen = config["process"]["health_listen"]
        .as_str()
        .expect("process.health_listen");
    listen.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("selector labels");
    !selector.is_empty() && selector.iter().all(|(k, v)| &labels[k] == v)
}

#[test]
fn the_chart_is_versioned_with_the_workspace() {
    let cargo: toml::Table = std::fs::read_to_string(workspace().join("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("Cargo.toml is TOML");
    let version = cargo["workspace"]["package"]["version"]
        .as_str()
        .expect("workspace version");
    let chart: Value = yaml_serde::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml"))
        .expect("Chart.yaml is YAML");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["version"], version, "Chart.yaml version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
}

#[test]
fn every_deployment_probes_the_port_its_binary_serves_and_is_locked_down() {
    for values in values_files() {
        let rendered = render(&values);
        let file = &rendered.name;
        let config = rendered.config();
        let port = health_port(&config);
        let deadline = config["process"]["shutdown_deadline_secs"]
            .as_integer()
            .expect("deadline");
        let deployments: Vec<&Value> = rendered.of_kind("Deployment").collect();
        assert!(deployments.len() >= 4, "{file}: {} Deployments", deployments.len());
        for deployment in deployments {
            let name = deployment["metadata"]["name"].as_str().expect("name");
            let at = format!("{file}: {name}");
            let pod = &deployment["spec"]["template"]["spec"];
            let containers = pod["containers"].as_array().expect("containers");
            assert_eq!(containers.len(), 1, "{at}: one container");
            let container = &containers[0];
            let ports = container["ports"].as_array().expect("ports");
            let health = ports.iter().find(|p| p["name"] == "health").expect("a health port");
            assert_eq!(
                health["containerPort"], port,
                "{at}: the health port is process.health_listen's"
            );
            for (probe, path) in [
                ("livenessProbe", "/health"),
                ("readinessProbe", "/ready"),
                ("startupProbe", "/health"),
            ] {
                let get = &container[probe]["httpGet"];
                assert_eq!(get["path"], path, "{at}: {probe}");
                assert_eq!(get["port"], "health", "{at}: {probe} port");
            }
            if name.ends_with("-api") {
                let http = ports.iter().find(|p| p["name"] == "http").expect("an http port");
                let listen = config["api"]["listen"].as_str().expect("api.listen");
                assert_eq!(
                    listen.rsplit(':').next(),
                    Some(http["containerPort"].to_string().as_str()),
                    "{at}: the http port is api.listen's"
                );
            }
            let resources = &container["resources"];
            assert!(
                resources["requests"]["cpu"].is_string() && resources["requests"]["memory"].is_string(),
                "{at}: requests {resources}"
            );
            assert!(resources["limits"]["memory"].is_string(), "{at}: a memory limit");
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{at}");
            assert!(
                pod["securityContext"]["runAsUser"].as_u64().unwrap_or(0) > 0,
                "{at}: a non-root uid"
            );
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{at}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{at}");
            assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{at}");
            let grace = pod["terminationGracePeriodSeconds"].as_i64().expect("grace period");
            let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_i64()
                .unwrap_or(0);
            assert!(
                grace > deadline + pre_stop,
                "{at}: grace {grace}s must outlast the shutdown deadline {deadline}s (+{pre_stop}s preStop)"
            );
            let env = container["env"].as_array().expect("env");
            assert!(
                env.iter()
                    .any(|e| e["name"] == "BATON_CONFIG" && e["value"] == "/etc/baton/baton.toml"),
                "{at}: BATON_CONFIG"
            );
            let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
            assert!(
                labels_match(&deployment["spec"]["selector"]["matchLabels"], pod_labels),
                "{at}: selector"
            );
            for label in [
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/component",
            ] {
                assert!(pod_labels[label].is_string(), "{at}: label {label}");
            }

            // Scaled as its values say: a fixed count, or a HorizontalPodAutoscaler.
            let hpa = rendered.named("HorizontalPodAutoscaler", name);
            match hpa {
                Some(hpa) => {
                    assert!(deployment["spec"]["replicas"].is_null(), "{at}: the HPA owns replicas");
                    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], name, "{at}");
                    assert!(
                        hpa["spec"]["minReplicas"].as_u64() <= hpa["spec"]["maxReplicas"].as_u64(),
                        "{at}: HPA bounds"
                    );
                    assert!(
                        !hpa["spec"]["metrics"].as_array().expect("metrics").is_empty(),
                        "{at}: HPA metrics"
                    );
                }
                None => assert!(deployment["spec"]["replicas"].as_u64().is_some(), "{at}: replicas"),
            }
            if let Some(pdb) = rendered.named("PodDisruptionBudget", name) {
                assert!(
                    labels_match(&pdb["spec"]["selector"]["matchLabels"], pod_labels),
                    "{at}: PDB selector"
                );
            }
            let metrics = rendered
                .named("Service", &format!("{name}-metrics"))
                .unwrap_or_else(|| panic!("{at}: no metrics Service"));
            assert!(
                labels_match(&metrics["spec"]["selector"], pod_labels),
                "{at}: metrics selector"
            );
            assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "health", "{at}");
            assert_eq!(metrics["metadata"]["labels"]["baton/metrics"], "true", "{at}");

            // Every mounted volume exists, and every Secret or ConfigMap it names is rendered
            // here or is one the values say exists.
            let volumes = pod["volumes"].as_array().expect("volumes");
            for mount in container["volumeMounts"].as_array().expect("mounts") {
                let volume = volumes
                    .iter()
                    .find(|v| v["name"] == mount["name"])
                    .unwrap_or_else(|| panic!("{at}: mount {} has no volume", mount["name"]));
                if let Some(map) = volume["configMap"]["name"].as_str() {
                    assert!(rendered.named("ConfigMap", map).is_some(), "{at}: ConfigMap {map}");
                }
                if let Some(secret) = volume["secret"]["secretName"].as_str() {
                    if secret == format!("{RELEASE}-secrets") {
                        let key = volume["secret"]["items"][0]["key"].as_str().expect("key");
                        let rendered_secret = rendered.named("Secret", secret).expect("the chart's Secret");
                        assert!(rendered_secret["data"][key].is_string(), "{at}: Secret key {key}");
                    }
                }
            }
        }
        for hpa in rendered.of_kind("HorizontalPodAutoscaler") {
            let target = hpa["spec"]["scaleTargetRef"]["name"].as_str().expect("target");
            assert!(
                rendered.named("Deployment", target).is_some(),
                "{file}: HPA of {target}"
            );
        }
    }
}

/// The binaries the chart's Deployments run that this workspace builds: the stock images'
/// and the example worker's.
const BINARIES: [&str; 6] = [
    "workflow-engine",
    "timer-service",
    "tag-engine",
    "baton-api",
    "service-worker",
    "booking-worker",
];

/// A stock image's component (the image name's last segment) and the binary in it.
fn stock_binary(image: &str) -> Option<&'static str> {
    let name = image.rsplit('/').next()?.split(':').next()?;
    BINARIES.into_iter().find(|b| *b == name)
}

/// Lays out a pod's mounted files under `root`: ConfigMaps as rendered, the chart's Secret as
/// rendered, an existing Secret (not in the manifests) as a stand-in value of the right shape.
fn mount_files(rendered: &Rendered, pod: &Value, container: &Value, root: &Path) -> Vec<(String, PathBuf)> {
    let volumes = pod["volumes"].as_array().expect("volumes");
    let mut mounts = Vec::new();
    for mount in container["volumeMounts"].as_array().expect("mounts") {
        let path = mount["mountPath"].as_str().expect("mountPath");
        let local = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&local).expect("mount dir");
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("volume");
        if volume["emptyDir"].is_object() {
            // Scratch space (/tmp): no setting names a file in it.
            continue;
        }
        if let Some(map) = volume["configMap"]["name"].as_str() {
            let map = rendered.named("ConfigMap", map).expect("ConfigMap");
            for (file, text) in map["data"].as_object().expect("data") {
                std::fs::write(local.join(file), text.as_str().expect("text")).expect("write");
            }
        }
        if let Some(name) = volume["secret"]["secretName"].as_str() {
            for item in volume["secret"]["items"].as_array().expect("items") {
                let key = item["key"].as_str().expect("key");
                let value = match rendered.named("Secret", name) {
                    Some(secret) => {
                        use base64::Engine as _;
                        let encoded = secret["data"][key].as_str().expect("secret data");
                        base64::engine::general_purpose::STANDARD
                            .decode(encoded)
                            .expect("base64")
                    }
                    // An existing Secret: a value of the shape the binary reads.
                    None if mount["name"] == "api-tokens" => b"operator:existing-secret-token-0123456789\n".to_vec(),
                    None => b"existing-secret-value\n".to_vec(),
                };
                std::fs::write(local.join(item["path"].as_str().expect("path")), value).expect("write");
            }
        }
        mounts.push((path.to_string(), local));
    }
    // Longest first, so /etc/baton-bridge is not taken for /etc/baton.
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    mounts
}

fn relocate(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut text = text.to_string();
    for (path, local) in mounts {
        text = text.replace(&format!("{path}/"), &format!("{}/", local.display()));
    }
    text
}

#[test]
fn each_binary_accepts_the_configuration_its_deployment_gives_it() {
    let binaries = baton_test_support::built_binaries();
    let mut checked = BTreeSet::new();
    for values in values_files() {
        let rendered = render(&values);
        let config = rendered.config();
        for deployment in rendered.of_kind("Deployment") {
            let name = deployment["metadata"]["name"].as_str().expect("name");
            let pod = &deployment["spec"]["template"]["spec"];
            let container = &pod["containers"][0];
            let image = container["image"].as_str().expect("image");
            let Some(binary) = stock_binary(image) else {
                // A user's own worker image: its structure is checked above; there is no
                // binary of it here to run.
                continue;
            };
            let root = tempdir(&format!("{}-{name}", rendered.name));
            let mounts = mount_files(&rendered, pod, container, &root);
            // The mounted configuration names files at their mount paths; here they are below
            // `root`.
            let config_file = root.join("etc/baton/baton.toml");
            let text = std::fs::read_to_string(&config_file).expect("mounted baton.toml");
            std::fs::write(&config_file, relocate(&text, &mounts)).expect("write");
            let mut command = Command::new(binaries.join(binary));
            command
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
            for var in container["env"].as_array().expect("env") {
                if let Some(value) = var["value"].as_str() {
                    command.env(var["name"].as_str().expect("env name"), relocate(value, &mounts));
                }
            }
            if let Some(args) = container["args"].as_array() {
                command.args(args.iter().map(|a| relocate(a.as_str().expect("arg"), &mounts)));
            }
            let output = command.arg("--print-config").output().expect("running the binary");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "{}: {binary} refused its Deployment's configuration ({}):\n{stderr}\n{text}",
                rendered.name,
                output.status
            );
            let printed: toml::Table = String::from_utf8_lossy(&output.stdout)
                .parse()
                .expect("--print-config prints TOML");
            // The binary runs with what the chart meant: the same broker, store, ports and
            // deadline.
            for (section, key) in [
                ("transport", "url"),
                ("storage", "url"),
                ("process", "health_listen"),
                ("process", "shutdown_deadline_secs"),
                ("api", "listen"),
            ] {
                assert_eq!(
                    printed[section][key], config[section][key],
                    "{}: {binary}'s {section}.{key}",
                    rendered.name
                );
            }
            assert_eq!(
                printed["engine"]["workflows"], config["engine"]["workflows"],
                "{}: {binary}",
                rendered.name
            );
            // Secrets are read from their files and never printed.
            let out = String::from_utf8_lossy(&output.stdout);
            assert!(
                !out.contains("ci-redis-password") && !out.contains("ci-operator-token"),
                "{out}"
            );
            checked.insert(binary);
            let _ = std::fs::remove_dir_all(&root);
        }
    }
    assert_eq!(
        checked,
        BINARIES.into(),
        "every stock binary and the example worker ran"
    );
}

fn tempdir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "baton-chart-{}-{}",
        std::process::id(),
        label.replace(['/', '.'], "-")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn the_service_monitor_scrapes_every_metrics_service() {
    let values = chart().join("ci/kafka-values.yaml");
    let rendered = render(&values);
    let monitor = rendered
        .of_kind("ServiceMonitor")
        .next()
        .expect("the Kafka values enable the ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    let scraped: Vec<&Value> = rendered
        .of_kind("Service")
        .filter(|s| labels_match(selector, &s["metadata"]["labels"]))
        .collect();
    let deployments = rendered.of_kind("Deployment").count();
    assert_eq!(scraped.len(), deployments, "one scraped Service per component");
    for service in scraped {
        assert!(
            service["spec"]["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .any(|p| p["name"] == endpoint["port"]),
            "{}: no port {}",
            service["metadata"]["name"],
            endpoint["port"]
        );
    }
    let ingress = rendered
        .of_kind("Ingress")
        .next()
        .expect("the Kafka values enable the Ingress");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    let api = rendered
        .named("Service", backend["name"].as_str().expect("backend"))
        .expect("API Service");
    assert!(
        api["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == backend["port"]["name"]),
        "the Ingress points at the API Service's port"
    );
}

#[test]
fn custom_workers_each_get_a_deployment_of_their_own() {
    let rendered = render(&chart().join("ci/workers-values.yaml"));
    let workers: BTreeMap<String, &Value> = rendered
        .of_kind("Deployment")
        .filter_map(|d| {
            let name = d["metadata"]["name"].as_str()?;
            name.strip_prefix(&format!("{RELEASE}-worker-"))
                .map(|w| (w.to_string(), d))
        })
        .collect();
    assert_eq!(workers.keys().collect::<Vec<_>>(), ["billing", "booking"]);
    let booking = &workers["booking"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(booking["image"], "registry.example.com/booking-worker:1.4.2");
    assert_eq!(booking["resources"]["requests"]["cpu"], "500m");
    assert!(
        booking["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "RUST_LOG")
    );
    assert!(
        rendered
            .named("HorizontalPodAutoscaler", &format!("{RELEASE}-worker-booking"))
            .is_some()
    );
    let billing = &workers["billing"];
    assert_eq!(billing["spec"]["replicas"], 1);
    assert_eq!(
        billing["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["/usr/local/bin/billing-worker"])
    );
    assert!(
        rendered
            .named("PodDisruptionBudget", &format!("{RELEASE}-worker-billing"))
            .is_none()
    );
    // Workers use the broker, not Redis: the Redis password is not mounted in them.
    for worker in workers.values() {
        let mounts = &worker["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
        assert!(
            !mounts
                .as_array()
                .expect("mounts")
                .iter()
                .any(|m| m["name"] == "redis-password"),
            "{mounts}"
        );
    }
}

#[test]
fn bad_values_are_refused_with_the_setting_named() {
    let error = template(&[]).expect_err("no workflows");
    assert!(error.contains("workflows: name the workflows"), "{error}");
    // Each case: `--set` values over a valid base (one workflow), and what the error names.
    let cases: [(&[&str], &str); 9] = [
        (&["transport.kind=rabbitmq"], "/transport/kind"),
        (&["workflowEngin.replicas=3"], "workflowEngin"),
        (&["api.tokens.values={admin:short}"], "/api/tokens/values/0"),
        (
            &["redis.password.existingSecret=r", "redis.password.value=x"],
            "redis.password: set existingSecret or a value, not both",
        ),
        (
            &[
                "workers[0].name=Bad_Name",
                "workers[0].image.repository=r",
                "workers[0].image.tag=1",
            ],
            "/workers/0/name",
        ),
        (&["workers[0].name=booking"], "/workers/0"),
        (&["httpBridge.enabled=true"], "httpBridge.services"),
        (
            &[
                "workflowEngine.autoscaling.enabled=true",
                "workflowEngine.autoscaling.targetCPUUtilizationPercentage=0",
            ],
            "workflow-engine: autoscaling needs targetCPUUtilizationPercentage",
        ),
        (
            &[
                "timerService.autoscaling.enabled=true",
                "timerService.autoscaling.minReplicas=5",
                "timerService.autoscaling.maxReplicas=3",
            ],
            "timer-service: autoscaling.minReplicas 5 is above maxReplicas 3",
        ),
    ];
    for (sets, needle) in cases {
        let mut args = vec!["--set", "workflows={Booking}"];
        for set in sets {
            args.extend(["--set", set]);
        }
        let error = template(&args).expect_err(needle);
        assert!(error.contains(needle), "{sets:?}: expected `{needle}` in:\n{error}");
    }
}

/// A Dockerfile's stages: name → its instructions (continuation lines joined).
fn dockerfile_stages(path: &Path) -> Vec<(String, String, Vec<String>)> {
    let text = std::fs::read_to_string(path).expect("Dockerfile");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    joined.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    let mut stages: Vec<(String, String, Vec<String>)> = Vec::new();
    for instruction in joined {
        if let Some(from) = instruction.strip_prefix("FROM ") {
            let mut words = from.split_whitespace();
            let base = words.next().expect("FROM image").to_string();
            let name = match (words.next(), words.next()) {
                (Some(kw), Some(name)) if kw.eq_ignore_ascii_case("as") => name.to_string(),
                _ => String::new(),
            };
            stages.push((name, base, Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.2.push(instruction);
        }
    }
    stages
}

#[test]
fn the_images_run_the_workspace_binaries_as_a_non_root_user() {
    let binaries = baton_test_support::built_binaries();
    let stages = dockerfile_stages(&workspace().join("k8s/images/Dockerfile"));
    let stage = |name: &str| stages.iter().find(|(n, _, _)| n == name);
    let (_, _, build) = stage("build").expect("a build stage");
    let build_run = build.iter().find(|i| i.contains("cargo build")).expect("cargo build");
    assert!(
        build_run.contains("--release") && build_run.contains("--locked"),
        "{build_run}"
    );
    let (_, runtime_base, runtime) = stage("runtime").expect("a runtime stage");
    assert!(
        runtime_base.starts_with("gcr.io/distroless/"),
        "small base: {runtime_base}"
    );
    let user = runtime
        .iter()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("a numeric uid");
    assert_ne!(uid, 0, "not root");

    // The chart's stock components, by the image each Deployment names.
    let rendered = render(&chart().join("ci/workers-values.yaml"));
    let images: BTreeSet<String> = rendered
        .of_kind("Deployment")
        .filter_map(|d| d["spec"]["template"]["spec"]["containers"][0]["image"].as_str())
        .filter(|i| i.starts_with("docker.io/baton/"))
        .map(|i| {
            i["docker.io/baton/".len()..]
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(images.len(), 5, "{images:?}");
    for target in &images {
        let (_, base, instructions) = stage(target).unwrap_or_else(|| panic!("no Dockerfile target {target}"));
        assert_eq!(base, "runtime", "{target} builds on the non-root runtime stage");
        let entrypoint = instructions
            .iter()
            .find_map(|i| i.strip_prefix("ENTRYPOINT "))
            .unwrap_or_else(|| panic!("{target}: ENTRYPOINT"));
        let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("exec-form ENTRYPOINT");
        let binary = entrypoint[0]
            .strip_prefix("/usr/local/bin/")
            .expect("in /usr/local/bin");
        assert_eq!(binary, target, "{target} runs its own binary");
        assert!(binaries.join(binary).exists(), "{binary} is a binary of the workspace");
        assert!(
            instructions
                .iter()
                .any(|i| i == &format!("COPY --from=build /out/{binary} /usr/local/bin/{binary}")),
            "{target}: copies {binary} from the build stage"
        );
        assert!(
            build_run.contains(&format!("target/release/{binary}")),
            "the build stage builds {binary}"
        );
    }

    let worker = dockerfile_stages(&workspace().join("k8s/images/worker.Dockerfile"));
    let (_, base, instructions) = worker.last().expect("a final stage");
    assert!(base.starts_with("gcr.io/distroless/"), "{base}");
    assert!(instructions.iter().any(|i| i == "USER 65532:65532"), "{instructions:?}");
    assert!(
        instructions
            .iter()
            .any(|i| i == r#"ENTRYPOINT ["/usr/local/bin/worker"]"#)
    );
    let dockerignore = std::fs::read_to_string(workspace().join(".dockerignore")).expect(".dockerignore");
    assert!(
        dockerignore.lines().any(|l| l.trim() == "target/"),
        "the build context leaves target/ out"
    );
}
