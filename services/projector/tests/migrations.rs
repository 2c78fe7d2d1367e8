//! Applying every migration to an empty database gives the expected schema,
//! and applying them again changes nothing.

use skynet_testkit::TestDb;

#[tokio::test]
async fn migrations_build_the_expected_schema_idempotently() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let pool = db.pool().await?;
    skynet_projector::migrate(&pool).await?;
    skynet_projector::migrate(&pool).await?;
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&pool)
    .await?;
    let table = |t: &str| columns.iter().filter(|(tb, _)| tb == t).map(|(_, c)| c.as_str()).collect::<Vec<_>>();
    assert_eq!(table("projection_checkpoint"), ["projection", "last_seq", "updated_at"]);
    assert_eq!(table("audit_events"), ["seq", "event_id", "type", "source", "subject", "nats_subject", "time", "data"]);
    for (t, must) in [
        ("jobs", &["id", "status", "intent", "requested_by", "risk", "provider", "executor", "error", "last_seq"][..]),
        ("steps", &["job_id", "idx", "action", "status", "exit_code", "output_ref", "stdout", "stderr"][..]),
        ("approvals", &["seq", "job_id", "decision", "actor"][..]),
        ("artifacts", &["job_id", "name", "sha256", "size_bytes", "content_type"][..]),
        ("executors", &["id", "jobs_started", "last_seen"][..]),
        ("rejections", &["seq", "code", "reason"][..]),
    ] {
        let have = table(t);
        for c in must {
            assert!(have.contains(c), "{t}.{c} in {have:?}");
        }
    }
    // The audit table's identifiers compare bytewise, and a lookup by a
    // (default-collation) parameter still uses their index.
    let collations: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT column_name::text, collation_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = 'audit_events' AND column_name IN ('subject', 'type')
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(collations, [("subject".into(), Some("C".into())), ("type".into(), Some("C".into()))]);
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await?;
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN SELECT seq FROM audit_events WHERE subject = $1 ORDER BY seq")
        .bind("a-job")
        .fetch_all(&mut *tx)
        .await?;
    assert!(plan.iter().any(|l| l.contains("audit_events_subject_seq")), "{plan:#?}");
    Ok(())
}
