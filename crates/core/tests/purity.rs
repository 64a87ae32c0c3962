//! The core stays pure: no runtime, network, protobuf or database crate in its normal
//! dependency tree, and no filesystem, socket, thread or clock use in its source.

use std::path::Path;
use std::process::Command;

const FORBIDDEN_CRATES: [&str; 7] = ["tokio", "tonic", "prost", "sled", "redb", "mio", "hyper"];
const FORBIDDEN_APIS: [&str; 6] = ["std::fs", "std::net", "std::thread", "Instant", "SystemTime", "std::process"];

#[test]
fn normal_dependency_tree_has_no_runtime_network_or_database_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--package", "d-engine-core", "--edges", "normal", "--prefix", "none", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let crates: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(crates.contains(&"d-engine-core"), "the tree lists the core itself:\n{tree}");
    for forbidden in FORBIDDEN_CRATES {
        assert!(!crates.contains(&forbidden), "d-engine-core depends on {forbidden}:\n{tree}");
    }
}

#[test]
fn source_uses_no_filesystem_socket_thread_or_clock() {
    let mut offenders = Vec::new();
    visit(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut offenders);
    assert!(offenders.is_empty(), "I/O, threads or clocks in the core:\n{}", offenders.join("\n"));
}

fn visit(dir: &Path, offenders: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            visit(&path, offenders);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).expect("source is utf-8");
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for api in FORBIDDEN_APIS {
                    if code.contains(api) {
                        offenders.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
                    }
                }
            }
        }
    }
}
