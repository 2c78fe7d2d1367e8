//! The checked-in JSON Schemas in `schemas/` must equal what the Rust types
//! generate. Regenerate with `SKYNET_BLESS=1 cargo test -p skynet-contract --test schemas`.

use std::path::PathBuf;

#[test]
fn checked_in_schemas_match_the_rust_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let bless = std::env::var_os("SKYNET_BLESS").is_some();
    let generated = skynet_contract::schema::all();
    assert!(generated.len() >= 20, "expected a schema per event type, got {}", generated.len());
    let mut drift = Vec::new();
    for (name, text) in &generated {
        let path = dir.join(name);
        if bless {
            std::fs::write(&path, text).expect("write schema");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if &on_disk == text => {}
            Ok(_) => drift.push(format!("{name}: differs")),
            Err(_) => drift.push(format!("{name}: missing")),
        }
    }
    // A schema file whose type no longer exists is drift too.
    for entry in std::fs::read_dir(&dir).expect("schemas dir") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !generated.iter().any(|(n, _)| *n == name) {
            drift.push(format!("{name}: no Rust type generates it"));
        }
    }
    assert!(
        drift.is_empty(),
        "schemas/ drifted from the contract types (run with SKYNET_BLESS=1 to regenerate):\n{}",
        drift.join("\n")
    );
}
