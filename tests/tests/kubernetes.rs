//! examples/kubernetes.yaml, checked structurally: parsed with python3's `yaml` (PyYAML, from
//! tests/requirements.txt), then the hardening fields, the exec probes, the termination log, the
//! writable mounts the policy needs, and a command line that `shim --check` accepts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use husk_tests::{bin, require_root, run};
use serde_json::{json, Value};

/// The manifest's documents as JSON.
fn manifest() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes.yaml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run python3 (needed to parse YAML)");
    assert!(
        out.status.success(),
        "python3 could not parse {}: {}\n(PyYAML missing? `pip install -r tests/requirements.txt`)",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn deployment() -> Value {
    let docs = manifest();
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(found.len(), 1, "one Deployment expected");
    assert_eq!(found[0]["apiVersion"], "apps/v1");
    found[0].clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")).to_string())
        .collect()
}

/// The value of `--NAME=VALUE` or `--NAME VALUE` options in a shim command line (before `--`).
fn option_values(args: &[String], name: &str) -> Vec<String> {
    let flag = format!("--{name}");
    let mut values = Vec::new();
    let mut it = args.iter().take_while(|a| *a != "--");
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
            values.push(v.to_string());
        } else if *a == flag {
            values.push(it.next().expect("option value").clone());
        }
    }
    values
}

#[test]
fn the_kubernetes_example_is_hardened_and_uses_the_probe_and_the_termination_log() {
    let d = deployment();
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{pod}");
    assert!(pod["securityContext"]["runAsUser"].as_u64().is_some_and(|u| u != 0));
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{sc}");
    assert!(sc["capabilities"]["add"].is_null(), "no capability is added back: {sc}");
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);

    // The shim is the entrypoint and the app comes after `--`.
    assert_eq!(strings(&c["command"]), ["/shim"]);
    let args = strings(&c["args"]);
    let dashdash = args.iter().position(|a| a == "--").expect("`--` before the app");
    assert_eq!(args[dashdash + 1..], ["/app".to_string()]);

    // Exec probes with the probe, no shell.
    for probe in ["livenessProbe", "readinessProbe"] {
        let command = strings(&c[probe]["exec"]["command"]);
        assert_eq!(command[..2], ["/probe".to_string(), "health".to_string()], "{probe}");
    }

    // The termination message file is the one the shim writes.
    let termination = c["terminationMessagePath"].as_str().expect("terminationMessagePath");
    let written = option_values(&args, "termination-log");
    assert!(
        written == [termination] || (written.is_empty() && termination == "/dev/termination-log"),
        "the shim writes {written:?} (default /dev/termination-log), Kubernetes reads {termination}"
    );

    // With a read-only root, every path the shim must write (its socket under /dev/shm) or the
    // app may write (--fs-rw) is a mounted volume, and every mount names a pod volume.
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mounts: Vec<(&str, &str)> = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| (m["mountPath"].as_str().unwrap(), m["name"].as_str().unwrap()))
        .collect();
    for (_, name) in &mounts {
        assert!(volumes.contains(name), "volumeMount {name} has no volume");
    }
    let mut writable = option_values(&args, "fs-rw");
    writable.push("/dev/shm".to_string());
    for path in &writable {
        assert!(
            mounts.iter().any(|(m, _)| Path::new(path).starts_with(m)),
            "{path} must be writable with a read-only root: mount a volume there"
        );
    }

    // Landlock lets the app bind only the ports the pod declares.
    let ports: Vec<String> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p["containerPort"].to_string())
        .collect();
    for port in option_values(&args, "tcp-bind") {
        assert!(ports.contains(&port), "--tcp-bind {port} is not a containerPort");
    }

    // The shim leaves its leftovers' grace inside the pod's termination grace period.
    let grace = option_values(&args, "grace");
    let grace: u64 = grace[0].strip_suffix('s').expect("--grace in seconds").parse().unwrap();
    assert!(grace < pod["terminationGracePeriodSeconds"].as_u64().expect("grace period"));

    // And `shim --check` accepts the command line (the helper standing in for /app; /tmp
    // exists here as the emptyDir does in the pod).
    if !require_root("the_kubernetes_example_is_hardened_and_uses_the_probe_and_the_termination_log") {
        return;
    }
    let mut cmd = Command::new(bin("shim"));
    cmd.arg("--check")
        .args(&args[..dashdash])
        .arg("--")
        .arg(bin("husk-helper"));
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(
        out.code,
        Some(0),
        "shim --check {:?}: {}",
        &args[..dashdash],
        out.stderr
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["grace"], "20s", "{plan}");
    assert_eq!(plan["tcp-bind"], json!([8080]), "{plan}");
}
