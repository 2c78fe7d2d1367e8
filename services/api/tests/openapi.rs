//! The checked-in OpenAPI document equals the generated one.
//! Regenerate with `SKYNET_BLESS=1 cargo test -p skynet-api --test openapi`.

#[test]
fn checked_in_openapi_matches_the_handlers() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let generated = skynet_api::openapi::json();
    if std::env::var_os("SKYNET_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.json");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "services/api/openapi.json drifted from the handlers; run with SKYNET_BLESS=1 to regenerate"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).expect("json");
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    for path in
        ["/v1/tasks", "/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/approve", "/v1/events", "/v1/plan", "/v1/execute"]
    {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
}
