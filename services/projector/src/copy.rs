//! `COPY … FROM STDIN` plumbing shared by the writers: chunked sending and
//! the binary format's framing.
//!
//! Rows go in binary: every field is its length and its bytes, so neither
//! side escapes or scans for delimiters, and Postgres reads numbers, times and
//! ids as they are instead of parsing them from text (its text-field splitting
//! and `timestamptz` parsing were 7% of a rebuild's CPU).

use chrono::{DateTime, Utc};

/// Bytes of COPY data sent at a time: Postgres parses and inserts one chunk
/// while the next is written, instead of waiting for the whole batch.
pub(crate) const CHUNK: usize = 128 * 1024;

/// Sends the COPY data written so far once it holds at least `min` bytes.
pub(crate) async fn send_from<C: std::ops::DerefMut<Target = sqlx::PgConnection>>(
    copy: &mut sqlx::postgres::PgCopyIn<C>,
    buf: &mut Vec<u8>,
    min: usize,
) -> Result<(), sqlx::Error> {
    if !buf.is_empty() && buf.len() >= min {
        copy.send(buf.as_slice()).await?;
        buf.clear();
    }
    Ok(())
}

/// `COPY table (columns) FROM STDIN` in the binary format, each row's fields
/// written by `fields` in the order of `columns`, sent in [`CHUNK`]s.
pub(crate) async fn rows<R: Sync>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &str,
    columns: &[&str],
    rows: &[R],
    fields: fn(&mut Binary, &R),
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!("COPY {table} ({}) FROM STDIN (FORMAT binary)", columns.join(", "));
    let mut copy = tx.copy_in_raw(&sql).await?;
    let count = i16::try_from(columns.len()).unwrap_or(i16::MAX);
    let mut out = Binary::new();
    for row in rows {
        out.row(count);
        fields(&mut out, row);
        send_from(&mut copy, &mut out.buf, CHUNK).await?;
    }
    out.finish();
    send_from(&mut copy, &mut out.buf, 1).await?;
    copy.finish().await?;
    Ok(())
}

/// Microseconds from the Unix epoch to Postgres's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// `t` as Postgres stores a `timestamptz`: microseconds since 2000-01-01 UTC,
/// rounded exactly as Postgres rounds the RFC 3339 text of `t` (its
/// `ParseFractionalSecond`: `rint(strtod(".fraction") * 1e6)`), so a row
/// written in binary and the same row written as text hold the same instant.
/// `nanos / 1e9` is the double `strtod` reads from the fraction's digits:
/// both are the exact quotient, correctly rounded. (sqlx's own encoding of a
/// `DateTime` truncates instead.)
///
/// A leap second (chrono's nanoseconds past 1e9, written `:60`) is the next
/// second plus its own fraction, as Postgres reads `:60.fraction`. Times
/// outside years 1–9999, whose text Postgres refuses, are written as any
/// other (audit rows and rebuilds always wrote them so).
pub(crate) fn pg_micros(t: &DateTime<Utc>) -> i64 {
    let nanos = t.timestamp_subsec_nanos();
    let (leap, nanos) = (i64::from(nanos / 1_000_000_000), nanos % 1_000_000_000);
    let fraction = f64::from(nanos) / 1e9;
    // At most 1,000,000 (a fraction of .9999995 or more): carried into the sum.
    let micros = (fraction * 1e6).round_ties_even() as i64;
    (t.timestamp() + leap).saturating_mul(1_000_000) + micros - PG_EPOCH_MICROS
}

/// A `timestamptz` bound as a query parameter in binary, rounded as
/// [`pg_micros`] rounds it (so the live writer's rows equal a rebuild's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgTime(i64);

impl From<&DateTime<Utc>> for PgTime {
    fn from(t: &DateTime<Utc>) -> Self {
        PgTime(pg_micros(t))
    }
}

impl sqlx::Type<sqlx::Postgres> for PgTime {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <DateTime<Utc> as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl sqlx::postgres::PgHasArrayType for PgTime {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        <DateTime<Utc> as sqlx::postgres::PgHasArrayType>::array_type_info()
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for PgTime {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <i64 as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.0, buf)
    }

    fn size_hint(&self) -> usize {
        8
    }
}

/// COPY data in the binary format (`FORMAT binary`): a header, then per row
/// its field count and each field as a length and bytes, then a trailer.
pub(crate) struct Binary {
    /// What is written and not sent yet (see [`send_from`]).
    pub(crate) buf: Vec<u8>,
}

impl Binary {
    /// The data so far: the format's header.
    pub(crate) fn new() -> Self {
        let mut buf = Vec::with_capacity(2 * CHUNK);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        Binary { buf }
    }

    /// Starts a row of `fields` fields.
    pub(crate) fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    pub(crate) fn bigint(&mut self, v: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// `text` and `json` alike: their binary form is the UTF-8 text.
    pub(crate) fn text(&mut self, s: &str) {
        // Never longer than an event, which the stream caps at megabytes;
        // the saturated length would only ever meet Postgres's own 1 GiB limit.
        self.buf.extend_from_slice(&i32::try_from(s.len()).unwrap_or(i32::MAX).to_be_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// Writes `v` with `write`, or SQL NULL for `None`.
    pub(crate) fn opt<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match v {
            Some(v) => write(self, v),
            None => self.null(),
        }
    }

    pub(crate) fn int(&mut self, v: i32) {
        self.buf.extend_from_slice(&4i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn smallint(&mut self, v: i16) {
        self.buf.extend_from_slice(&2i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn boolean(&mut self, v: bool) {
        self.buf.extend_from_slice(&1i32.to_be_bytes());
        self.buf.push(u8::from(v));
    }

    pub(crate) fn uuid(&mut self, v: &uuid::Uuid) {
        self.buf.extend_from_slice(&16i32.to_be_bytes());
        self.buf.extend_from_slice(v.as_bytes());
    }

    /// A `jsonb`: its format version (1) and the JSON text. JSON `null` is
    /// SQL NULL, as `json_populate_recordset` makes it (and `db::jsonb`).
    pub(crate) fn jsonb(&mut self, v: &serde_json::Value) {
        if v.is_null() {
            return self.null();
        }
        let at = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        self.buf.push(1);
        // Writing a `Value` into a `Vec` cannot fail: its keys are strings
        // and a `Vec` takes every byte.
        let _ = serde_json::to_writer(&mut self.buf, v);
        let len = i32::try_from(self.buf.len() - at - 4).unwrap_or(i32::MAX);
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// A `timestamptz`, as [`pg_micros`] makes it.
    pub(crate) fn timestamptz(&mut self, t: &DateTime<Utc>) {
        self.bigint(pg_micros(t));
    }

    /// The trailer that ends the data.
    pub(crate) fn finish(&mut self) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_fields_are_framed() {
        let mut b = Binary::new();
        b.row(3);
        b.bigint(7);
        b.text("é");
        b.null();
        b.finish();
        let buf = b.buf;
        let mut want = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        want.extend_from_slice(&[
            0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2, 0xc3, 0xa9, 0xff, 0xff, 0xff, 0xff,
        ]);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(buf, want);
    }

    #[test]
    fn typed_fields_are_framed() {
        let mut b = Binary { buf: Vec::new() };
        b.int(-2);
        b.smallint(3);
        b.boolean(true);
        b.uuid(&uuid::Uuid::from_bytes([7; 16]));
        b.jsonb(&serde_json::json!({"a": [1]}));
        b.jsonb(&serde_json::Value::Null);
        b.opt(None::<i32>, Binary::int);
        b.opt(Some(5), Binary::int);
        let mut want = vec![0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 2, 0, 3, 0, 0, 0, 1, 1, 0, 0, 0, 16];
        want.extend_from_slice(&[7; 16]);
        want.extend_from_slice(&[0, 0, 0, 10, 1]);
        want.extend_from_slice(br#"{"a":[1]}"#);
        want.extend_from_slice(&[0xff; 8]);
        want.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 5]);
        assert_eq!(b.buf, want);
    }

    #[test]
    fn times_round_as_postgres_rounds_text() {
        let micros = |s: &str| {
            let t: DateTime<Utc> = s.parse().unwrap_or_default();
            let mut b = Binary { buf: Vec::new() };
            b.timestamptz(&t);
            i64::from_be_bytes(b.buf[4..12].try_into().unwrap_or_default())
        };
        assert_eq!(micros("2000-01-01T00:00:00Z"), 0);
        assert_eq!(micros("2000-01-01T00:00:01.000001Z"), 1_000_001);
        assert_eq!(micros("2000-01-01T00:00:00.0000014Z"), 1);
        assert_eq!(micros("2000-01-01T00:00:00.0000016Z"), 2);
        assert_eq!(micros("1999-12-31T23:59:59.999999Z"), -1);
        assert_eq!(micros("2000-01-01T00:00:00.9999996Z"), 1_000_000, "carried into the seconds");
        assert_eq!(micros("1999-12-31T23:59:60.5000005Z"), 500_000, "a leap second is the next second");
        assert_eq!(micros("1999-12-31T23:59:60.0000005Z"), 0, "its fraction rounded alone");
    }

    /// Every time's microseconds, as Postgres reads the RFC 3339 text events
    /// carry (and the live writer sent before it bound times in binary) and as
    /// written here, agree — exact halves of a microsecond and leap seconds
    /// included, where a rounding of our own would differ now and then.
    #[tokio::test]
    async fn times_agree_with_postgres_reading_their_text() -> anyhow::Result<()> {
        let db = skynet_testkit::TestDb::create().await?;
        let pool = db.pool().await?;
        let base = DateTime::<Utc>::from_timestamp(1_796_000_000, 0).unwrap_or_default();
        // Every seventh exact half below a second, and some times between.
        let nanos = (0..1_000_000u32).step_by(7).map(|n| n * 1000 + 500).chain((0..1_000_000_000).step_by(999_983));
        let mut times: Vec<DateTime<Utc>> = nanos.map(|n| base + chrono::Duration::nanoseconds(i64::from(n))).collect();
        // Leap seconds (`:60`) at the end of a minute: 1_796_000_039 % 60 == 59.
        let leaps = (0..1_000_000u32).step_by(997).map(|n| 1_000_000_000 + n * 1000 + 500);
        times.extend(leaps.filter_map(|n| DateTime::<Utc>::from_timestamp(1_796_000_039, n)));
        assert!(times.iter().any(|t| t.timestamp_subsec_nanos() >= 1_000_000_000), "leap seconds made");
        // As events carry them, and as the live writer sent them before it
        // bound them in binary: serde's RFC 3339.
        let texts: Vec<String> = times
            .iter()
            .map(|t| serde_json::to_value(t).map(|v| v.as_str().unwrap_or_default().to_owned()))
            .collect::<Result<_, _>>()?;
        let read: Vec<i64> = sqlx::query_scalar(
            "SELECT (EXTRACT(EPOCH FROM (t::timestamptz - timestamptz '2000-01-01 00:00:00+00')) * 1000000)::bigint
             FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i",
        )
        .bind(&texts)
        .fetch_all(&pool)
        .await?;
        assert_eq!(read.len(), times.len());
        let mut differ = Vec::new();
        for ((t, text), pg) in times.iter().zip(&texts).zip(&read) {
            let mut b = Binary { buf: Vec::new() };
            b.timestamptz(t);
            let ours = i64::from_be_bytes(b.buf[4..12].try_into().unwrap_or_default());
            if ours != *pg {
                differ.push((text.clone(), ours, *pg));
            }
        }
        assert!(
            differ.is_empty(),
            "{} of {} differ, e.g. {:?}",
            differ.len(),
            times.len(),
            &differ[..differ.len().min(5)]
        );
        Ok(())
    }
}
