//! Where one file's outputs go while it is written: its data file and its manifest, each an
//! [`OutputFile`] (temporary name, checksum, renamed when finished), appended row group by row
//! group in input order by the scheduler's single writer thread.

use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::SchemaDescriptor;

use arrow_schema::SchemaRef;

use super::decisions::DecisionsWriter;
use super::job::FileJob;
use super::row_group::{DataOut, ManifestOut, OutChunk, RowGroupResult};
use crate::error::{Error, Result};
use crate::io::parquet::FileSource;
use crate::io::{Location, OutputFile, Unsynced, Written};
use crate::summary::FileStats;

/// One output Parquet file being written row group by row group.
struct ChunkFile {
    location: Location,
    writer: SerializedFileWriter<OutputFile>,
}

impl ChunkFile {
    fn create(
        location: Location,
        schema: &SchemaRef,
        props: WriterProperties,
        parquet_schema: Option<&SchemaDescriptor>,
    ) -> Result<ChunkFile> {
        let out = OutputFile::create(&location)?;
        let mut options = ArrowWriterOptions::new().with_properties(props);
        if let Some(d) = parquet_schema {
            options = options.with_parquet_schema(d.clone());
        }
        let writer = ArrowWriter::try_new_with_options(out, schema.clone(), options)
            .and_then(|w| w.into_serialized_writer())
            .map_err(|e| Error::Write {
                path: location.clone(),
                source: e,
            })?
            .0;
        Ok(ChunkFile { location, writer })
    }

    fn append(&mut self, chunks: Vec<OutChunk>) -> Result<()> {
        let location = self.location.clone();
        let mut rg = self.writer.next_row_group().map_err(|e| Error::Write {
            path: location.clone(),
            source: e,
        })?;
        for c in chunks {
            let r = match c {
                OutChunk::Arrow(c) => c.append_to_row_group(&mut rg),
                OutChunk::Raw(raw) => rg.append_column(&raw.bytes, raw.close),
            };
            if let Err(e) = r {
                return Err(Error::Write {
                    path: self.location.clone(),
                    source: e,
                });
            }
        }
        rg.close().map_err(|e| Error::Write {
            path: location,
            source: e,
        })?;
        Ok(())
    }

    /// Copy row group `rg` of `input` unchanged: same pages, statistics and page index. With
    /// `as_written`, the statistics are written back as the writer writes them, legacy min/max
    /// fields included where it writes them (a parse drops that flag): a row group of
    /// corpusgate's own output then comes out byte for byte as it went in.
    fn append_raw(
        &mut self,
        input: &FileSource,
        meta: &ParquetMetaData,
        rg: usize,
        as_written: bool,
    ) -> Result<()> {
        let rg_meta = meta.row_group(rg);
        let page_index = meta.page_index();
        let location = self.location.clone();
        let err = |e| Error::Write {
            path: location.clone(),
            source: e,
        };
        let mut w = self.writer.next_row_group().map_err(err)?;
        for (i, col) in rg_meta.columns().iter().enumerate() {
            let metadata = if as_written {
                as_writer_writes(col).map_err(err)?
            } else {
                col.clone()
            };
            let close = ColumnCloseResult {
                bytes_written: col.compressed_size().max(0) as u64,
                rows_written: rg_meta.num_rows().max(0) as u64,
                metadata,
                bloom_filter: None,
                column_index: page_index.and_then(|p| p.column_index(rg, i)).cloned(),
                offset_index: page_index.and_then(|p| p.offset_index(rg, i)).cloned(),
            };
            w.append_column(input, close).map_err(err)?;
        }
        w.close().map_err(err)?;
        Ok(())
    }

    fn finish(self) -> Result<Unsynced> {
        let location = self.location;
        let out = self.writer.into_inner().map_err(|e| Error::Write {
            path: location.clone(),
            source: e,
        })?;
        out.finish_unsynced()
    }
}

/// `col` with its statistics flagged as the column writer flags them: legacy `min`/`max`
/// written too where the column's sort order is signed.
fn as_writer_writes(
    col: &parquet::file::metadata::ColumnChunkMetaData,
) -> parquet::errors::Result<parquet::file::metadata::ColumnChunkMetaData> {
    use parquet::file::statistics::Statistics as S;
    let Some(stats) = col.statistics() else {
        return Ok(col.clone());
    };
    let legacy = col.column_descr().sort_order().is_signed();
    let stats = match stats.clone() {
        S::Boolean(v) => S::Boolean(v.with_backwards_compatible_min_max(legacy)),
        S::Int32(v) => S::Int32(v.with_backwards_compatible_min_max(legacy)),
        S::Int64(v) => S::Int64(v.with_backwards_compatible_min_max(legacy)),
        S::Int96(v) => S::Int96(v.with_backwards_compatible_min_max(legacy)),
        S::Float(v) => S::Float(v.with_backwards_compatible_min_max(legacy)),
        S::Double(v) => S::Double(v.with_backwards_compatible_min_max(legacy)),
        S::ByteArray(v) => S::ByteArray(v.with_backwards_compatible_min_max(legacy)),
        S::FixedLenByteArray(v) => {
            S::FixedLenByteArray(v.with_backwards_compatible_min_max(legacy))
        }
    };
    col.clone().into_builder().set_statistics(stats).build()
}

/// The outputs of one input file, as written.
pub(super) struct FileWritten {
    pub data: Written,
    pub excluded: Written,
    pub decisions: Option<Written>,
}

/// Where one file's outputs go while it is being written.
pub(super) struct FileSink {
    /// The files being written (`None`: a dry run, or held).
    files: Option<Files>,
    held: Option<Held>,
    /// The input, for row groups copied byte for byte.
    input: FileSource,
    /// Its footer: where each row group's bytes are.
    footer: std::sync::Arc<parquet::file::metadata::ParquetMetaData>,
    pub stats: FileStats,
}

/// What the three output files are made with.
struct Spec {
    out: Location,
    rel: String,
    data_schema: SchemaRef,
    data_props: WriterProperties,
    parquet_schema: std::sync::Arc<SchemaDescriptor>,
    manifest_schema: SchemaRef,
    manifest_props: WriterProperties,
    record_decisions: bool,
}

/// `--reuse`: every row group so far came out exactly as PREV_OUT's did (decided alike, copied
/// from it), so the files may yet turn out to be PREV_OUT's own, taken whole at close. Nothing
/// is written until a row group does not; then the ones held are written first.
struct Held {
    spec: Spec,
    previous: std::sync::Arc<super::job::PreviousRowGroups>,
    /// What each row group held would write (its decisions are read back from PREV_OUT).
    row_groups: Vec<(usize, u64, Out)>,
}

/// What one row group writes to the files.
struct Out {
    data: DataOut,
    manifest: Option<ManifestOut>,
    record: Option<super::decisions::Recorded>,
}

impl Held {
    /// The files, with the row groups held written.
    fn write(self, input: &FileSource) -> Result<Files> {
        let mut files = Files::create(&self.spec)?;
        for (rg, rows, mut out) in self.row_groups {
            out.record = self.previous.record_again(rg, rows)?;
            files.append(input, rg, out)?;
        }
        Ok(files)
    }
}

struct Files {
    data: ChunkFile,
    manifest: ChunkFile,
    decisions: Option<DecisionsWriter>,
}

impl Files {
    fn create(spec: &Spec) -> Result<Files> {
        let data = ChunkFile::create(
            spec.out.join("data").join(&spec.rel),
            &spec.data_schema,
            spec.data_props.clone(),
            Some(spec.parquet_schema.as_ref()),
        )?;
        let manifest = ChunkFile::create(
            spec.out.join("excluded").join(&spec.rel),
            &spec.manifest_schema,
            spec.manifest_props.clone(),
            None,
        )?;
        let decisions = if spec.record_decisions {
            Some(DecisionsWriter::create(
                spec.out.join(crate::journal::DECISIONS_DIR).join(&spec.rel),
            )?)
        } else {
            None
        };
        Ok(Files {
            data,
            manifest,
            decisions,
        })
    }

    /// Append row group `rg`'s outputs (`input`: the input file, for passed-through ones).
    fn append(&mut self, input: &FileSource, rg: usize, r: Out) -> Result<()> {
        match r.data {
            DataOut::Nothing => {}
            DataOut::Encoded(chunks) => self.data.append(chunks)?,
            DataOut::PassThrough(readers) => self.data.append_raw(input, &readers.pq, rg, false)?,
            DataOut::Previous(p, at) => {
                // PREV_OUT made this row group as a fresh run does today: it passed the
                // input's through, statistics as read, or it encoded it, statistics as the
                // writer writes them. Copied back the same way, the bytes are alike.
                let passed = p.passed_through.binary_search(&(rg as u64)).is_ok();
                let source = p.data.source().with_buffer(1 << 20);
                self.data.append_raw(&source, &p.meta, at, !passed)?;
            }
        }
        match r.manifest {
            Some(ManifestOut::Encoded(chunks)) => self.manifest.append(chunks)?,
            Some(ManifestOut::Previous(p, at)) => {
                // Recorded only when it is as recorded (see `PreviousExcluded::file`).
                let (file, meta) = p.excluded.file().ok_or_else(|| {
                    Error::Usage(format!(
                        "{}: no longer readable while reused",
                        p.excluded.at
                    ))
                })?;
                self.manifest
                    .append_raw(&file.source().with_buffer(1 << 20), meta, at, true)?;
            }
            None => {}
        }
        if let (Some(record), Some(d)) = (r.record, self.decisions.as_mut()) {
            d.append(&record)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<ToPlace> {
        Ok(ToPlace::Files(Box::new(UnsyncedFiles {
            data: self.data.finish()?,
            excluded: self.manifest.finish()?,
            decisions: self.decisions.map(|d| d.finish()).transpose()?,
        })))
    }
}

/// A file's outputs, complete, as [`FileSink::close`] leaves them: to be synced and moved to
/// their names ([`ToPlace::place`]) before the file is journaled.
pub(super) enum ToPlace {
    /// In place already (PREV_OUT's files, taken whole).
    Placed(Box<FileWritten>),
    Files(Box<UnsyncedFiles>),
}

pub(super) struct UnsyncedFiles {
    data: Unsynced,
    excluded: Unsynced,
    decisions: Option<Unsynced>,
}

impl ToPlace {
    /// Sync each output and move it to its name (each sync after the first finds most of what
    /// it would write written by the ones before it).
    pub fn place(self) -> Result<FileWritten> {
        match self {
            ToPlace::Placed(w) => Ok(*w),
            ToPlace::Files(f) => Ok(FileWritten {
                data: f.data.place()?,
                excluded: f.excluded.place()?,
                decisions: f.decisions.map(Unsynced::place).transpose()?,
            }),
        }
    }
}

impl FileSink {
    pub fn open(job: &FileJob, out: Option<&Location>) -> Result<FileSink> {
        let stats = FileStats {
            rel: job.input.file.rel.clone(),
            bytes: job.input.file.bytes,
            footer_sha256: job.input.parquet.footer_sha256.clone(),
            row_groups: job.num_row_groups() as u64,
            ..Default::default()
        };
        // Copies stream whole chunks: read them in large pieces.
        let input = job.input.parquet.source().with_buffer(1 << 20);
        let footer = job.input.parquet.parquet_meta().clone();
        let Some(out) = out else {
            return Ok(FileSink {
                files: None,
                held: None,
                input,
                footer,
                stats,
            });
        };
        let spec = Spec {
            out: out.clone(),
            rel: job.input.file.rel.clone(),
            data_schema: job.data_schema.clone(),
            data_props: job.data_props.clone(),
            parquet_schema: footer.file_metadata().schema_descr_ptr(),
            manifest_schema: job.manifest_schema.clone(),
            manifest_props: job.manifest_props.clone(),
            record_decisions: job.record_decisions,
        };
        // Held only when PREV_OUT's files could stand for all three.
        let (files, held) = match &job.previous {
            Some(p) if job.record_decisions && p.can_stand_whole() => (
                None,
                Some(Held {
                    spec,
                    previous: p.clone(),
                    row_groups: Vec::new(),
                }),
            ),
            _ => (Some(Files::create(&spec)?), None),
        };
        Ok(FileSink {
            files,
            held,
            input,
            footer,
            stats,
        })
    }

    pub fn append(&mut self, r: RowGroupResult) -> Result<()> {
        self.stats.rows += r.rows;
        self.stats.kept += r.kept;
        self.stats.excluded += r.rows - r.kept;
        self.stats.unmatched += r.unmatched;
        self.stats.kept_per_row_group.push(r.kept);
        self.stats.decisions_reused += r.decisions_reused;
        if r.pages_reused > 0 || r.manifest_pages_reused > 0 {
            self.stats.row_groups_spliced += 1;
        }
        self.stats.pages_from_previous += r.pages_reused;
        self.stats.manifest_pages_from_previous += r.manifest_pages_reused;
        match &r.data {
            DataOut::PassThrough(_) => self.stats.passed_through_row_groups.push(r.rg as u64),
            DataOut::Previous(p, _) => {
                if p.passed_through.binary_search(&(r.rg as u64)).is_ok() {
                    self.stats.passed_through_row_groups.push(r.rg as u64);
                }
                self.stats.row_groups_from_previous += 1;
            }
            DataOut::Nothing | DataOut::Encoded(_) => {}
        }
        let (rg, rows) = (r.rg, r.rows);
        let out = Out {
            data: r.data,
            manifest: r.manifest,
            record: r.record,
        };
        match self.held.as_mut() {
            Some(h) if r.as_previous => {
                // Its decisions are PREV_OUT's: read back from there should it be written.
                h.row_groups.push((
                    rg,
                    rows,
                    Out {
                        record: None,
                        ..out
                    },
                ));
            }
            _ => {
                if let Some(h) = self.held.take() {
                    self.files = Some(h.write(&self.input)?);
                }
                if let Some(f) = self.files.as_mut() {
                    f.append(&self.input, rg, out)?;
                }
            }
        }
        // What was fetched for this row group is no longer needed.
        self.input.release(Some(self.row_group_bytes(rg)));
        Ok(())
    }

    fn row_group_bytes(&self, rg: usize) -> std::ops::Range<u64> {
        let group = self.footer.row_group(rg);
        let starts = group.columns().iter().map(|c| {
            let start = c
                .dictionary_page_offset()
                .unwrap_or(c.data_page_offset())
                .max(0) as u64;
            (
                start,
                start.saturating_add(c.compressed_size().max(0) as u64),
            )
        });
        let (lo, hi) = starts.fold((u64::MAX, 0), |(lo, hi), (s, e)| (lo.min(s), hi.max(e)));
        lo.min(hi)..hi
    }

    /// Finish the files (a dry run writes none).
    pub fn close(self) -> Result<(FileStats, Option<ToPlace>)> {
        self.input.release(None);
        let files = match self.held {
            Some(h) => match h.previous.take_whole(&h.spec.out)? {
                Some(w) => return Ok((self.stats, Some(ToPlace::Placed(Box::new(w))))),
                // PREV_OUT's files are not as recorded: written after all.
                None => Some(h.write(&self.input)?),
            },
            None => self.files,
        };
        Ok((self.stats, files.map(Files::finish).transpose()?))
    }
}
