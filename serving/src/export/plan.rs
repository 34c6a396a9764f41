//! An export cut into chunks: the validated query, the bucket chunks it is answered in, and
//! the rendering of one chunk of one code into bytes.
//!
//! The range's buckets are computed once up front ([`bucket_spans`], at most
//! [`MAX_BUCKETS`], so `range_too_long` and `unsupported_tz_offset` surface before anything is
//! sent). They are grouped into chunks of [`CHUNK_BUCKETS`] buckets ([`CHUNK_BUCKETS_DIMS`]
//! with a breakdown, which multiplies the rows per bucket); each chunk is one query over whole
//! buckets (the first and last clipped to the range exactly like the stats endpoint clips
//! them), answered by the views or, for what they no longer hold or do not maintain, the
//! long-term store ([`RowSource`]), so the bytes produced equal one big query's rows in bucket
//! order while memory stays bounded by one chunk.
//!
//! Consistency: each chunk reflects the views as of its own query; a click applied while an
//! export runs shows up in the chunks not yet rendered.

use chrono_tz::Tz;
use sluice_dataflows::views::query::MAX_BUCKETS;
use sluice_dataflows::views::tz::bucket_spans;
use sluice_dataflows::views::{OrderBy, StatsQuery, Views};

use super::source::RowSource;
use super::writer::{ExportFormat, RowWriter};
use crate::error::ApiError;
use crate::reports::view_error as views_error;
use crate::stats::params::StatsParams;

/// Buckets per chunk without a breakdown (one row per bucket at most).
pub const CHUNK_BUCKETS: usize = 1024;
/// Buckets per chunk with a breakdown.
pub const CHUNK_BUCKETS_DIMS: usize = 16;

/// A validated export of one or more codes (module docs).
#[derive(Debug, Clone)]
pub struct ExportPlan {
    range: StatsParams,
    format: ExportFormat,
    /// CSV formula escaping ([`RowWriter::escaping_formulas`]).
    escape_formulas: bool,
    /// Query ranges `[from, to)` of the chunks, in order, clipped to the range.
    chunks: Vec<(i64, i64)>,
}

impl ExportPlan {
    /// Plans an export of `range` (its `limit` and `order_by` are ignored: exports hold every
    /// row in bucket order). Errors: 400 `range_too_long`, `unsupported_tz_offset`.
    pub fn new(range: &StatsParams, format: ExportFormat) -> Result<ExportPlan, ApiError> {
        let range = StatsParams { order_by: OrderBy::Bucket, ..range.clone() };
        let spans = bucket_spans(range.tz, range.bucket, range.from_ms, range.to_ms, MAX_BUCKETS).map_err(views_error)?;
        let per = if range.dimensions.is_empty() { CHUNK_BUCKETS } else { CHUNK_BUCKETS_DIMS };
        let chunks = spans.chunks(per).filter_map(|c| Some((c.first()?.0.max(range.from_ms), c.last()?.1.min(range.to_ms)))).collect();
        Ok(ExportPlan { range, format, escape_formulas: false, chunks })
    }

    /// The same plan with CSV formula escaping on or off ([`RowWriter::escaping_formulas`]).
    pub fn escaping_formulas(mut self, on: bool) -> ExportPlan {
        self.escape_formulas = on;
        self
    }

    /// The output format.
    pub fn format(&self) -> ExportFormat {
        self.format
    }

    /// The validated range.
    pub fn range(&self) -> &StatsParams {
        &self.range
    }

    /// Number of chunks per code.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// A row encoder for this export.
    pub fn writer(&self) -> RowWriter {
        RowWriter::new(self.format, &self.range.dimensions, self.range.tz).escaping_formulas(self.escape_formulas)
    }

    fn query(&self, code: &str, (from_ms, to_ms): (i64, i64)) -> StatsQuery {
        let r = &self.range;
        StatsQuery {
            code: code.to_owned(),
            from_ms,
            to_ms,
            bucket: r.bucket,
            tz: r.tz,
            dimensions: r.dimensions.clone(),
            include_bots: r.include_bots,
            limit: None,
            order_by: OrderBy::Bucket,
        }
    }

    /// Checks before anything is sent that `code`'s rows can be read, so a stream does not
    /// fail after its first bytes: without a long-term store, that the views still hold the
    /// range ([`crate::stats::retained::retained_check`], also at minute edges); then reads
    /// the first and the last bucket of the range from where [`RowSource::rows`] reads them
    /// (the views; a long-term store for what they no longer hold or do not maintain, which
    /// checks it answers). Errors: those of [`RowSource::rows`] (`range_not_retained`,
    /// `invalid_dimensions`, 503 `stats_not_local`, `stats_history_unavailable`, …).
    pub fn preflight(&self, source: &RowSource, code: &str) -> Result<(), ApiError> {
        if !source.has_history() {
            // A range older than the views hold is refused, never exported as zero clicks.
            self.retained(source.views())?;
        }
        let (Some(&first), Some(&last)) = (self.chunks.first(), self.chunks.last()) else { return Ok(()) };
        let spans = |(a, b): (i64, i64)| bucket_spans(self.range.tz, self.range.bucket, a, b, MAX_BUCKETS).map_err(views_error);
        let head = spans(first)?.first().map(|s| (first.0, s.1.min(first.1)));
        let tail = spans(last)?.last().map(|s| (s.0.max(last.0), last.1));
        let pieces = if head == tail { vec![head] } else { vec![head, tail] };
        for piece in pieces.into_iter().flatten() {
            source.rows(&self.query(code, piece))?;
        }
        Ok(())
    }

    /// The check of [`Self::preflight`] that does not depend on the code: 400
    /// `range_not_retained` when the views no longer hold the range (for a server without
    /// a long-term store; report jobs check it when they are created).
    pub fn retained(&self, views: &Views) -> Result<(), ApiError> {
        crate::stats::retained::retained_check(views, self.range.from_ms, self.range.to_ms, self.range.bucket)
    }

    /// Appends the rows of chunk `index` of `code` to `out`; returns how many were written.
    /// Blocks (reads [`RowSource::rows`]): call it on a blocking thread. Errors: as
    /// [`Self::preflight`] (e.g. rows evicted while a long export ran without a long-term
    /// store, or that store failing).
    pub fn render_chunk(&self, source: &RowSource, code: &str, index: usize, writer: &mut RowWriter, out: &mut Vec<u8>) -> Result<u64, ApiError> {
        let Some(&piece) = self.chunks.get(index) else { return Ok(0) };
        let result = source.rows(&self.query(code, piece))?;
        for row in &result.rows {
            writer.row(out, code, row);
        }
        Ok(result.rows.len() as u64)
    }

    /// Zone of the bucket labels.
    pub fn tz(&self) -> Tz {
        self.range.tz
    }
}
