//! The Python module `corpusgate._corpusgate`: corpusgate's policy engine on Arrow data in
//! memory, and its command line in-process. Arrow data crosses by the Arrow C Data and Stream
//! Interfaces (`arrow-pyarrow`), never row by row; work runs with the GIL released.
//!
//! The Python package (`python/corpusgate/__init__.py`) wraps this module: it selects the
//! columns a policy reads before they cross, and applies the keep mask with pyarrow.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_pyarrow::{PyArrowType, Table, ToPyArrow};
use corpusgate::batch::{check_policy, BatchFilter, BatchSource};
use corpusgate::cli::ExitStatus;
use corpusgate::error::Error;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

pyo3::create_exception!(
    _corpusgate,
    CorpusgateError,
    PyException,
    "A corpusgate error; `exit_code` is the exit code the command line gives it."
);
pyo3::create_exception!(
    _corpusgate,
    PolicyError,
    CorpusgateError,
    "The policy is not valid: the message names its file, line and column."
);
pyo3::create_exception!(
    _corpusgate,
    SchemaError,
    CorpusgateError,
    "The data does not fit the policy: a column missing or of a type the policy cannot use."
);
pyo3::create_exception!(
    _corpusgate,
    UsageError,
    CorpusgateError,
    "Arguments that do not fit together (a snapshot the policy does not join, a list missing)."
);
pyo3::create_exception!(
    _corpusgate,
    RunError,
    CorpusgateError,
    "A failure while running: I/O, corrupt input, an interrupted run."
);

/// The Python exception for a corpusgate error, carrying the CLI's exit code.
fn py_err(py: Python<'_>, e: &Error) -> PyErr {
    let status = e.exit_status();
    let message = e.to_string();
    let err = match e {
        Error::Policy { .. } | Error::PolicySyntax { .. } => PolicyError::new_err(message),
        Error::Schema { .. } => SchemaError::new_err(message),
        _ if status == ExitStatus::Usage => UsageError::new_err(message),
        _ => RunError::new_err(message),
    };
    let _ = err.value(py).setattr("exit_code", status.code());
    err
}

/// A validated policy.
#[pyclass(frozen, module = "corpusgate._corpusgate")]
struct Policy {
    policy: Arc<corpusgate::policy::Policy>,
    path: PathBuf,
}

impl Policy {
    fn new(policy: corpusgate::policy::Policy, path: PathBuf) -> Policy {
        Policy {
            policy: Arc::new(policy),
            path,
        }
    }
}

/// A policy bound to its consent snapshot and user lists, which it loads on first use and
/// keeps: what `Policy` decides with. The Python package holds one per distinct snapshot and
/// lists, so they are loaded once.
#[pyclass(frozen, module = "corpusgate._corpusgate")]
struct Join {
    filter: BatchFilter,
}

/// A snapshot or list given from Python: a path (str or os.PathLike), else Arrow data.
fn batch_source(given: &Bound<'_, PyAny>) -> PyResult<BatchSource> {
    if let Ok(path) = given.extract::<PathBuf>() {
        return Ok(BatchSource::Path(path));
    }
    let PyArrowType(table) = given.extract::<PyArrowType<Table>>()?;
    let (batches, schema) = table.into_inner();
    Ok(BatchSource::Arrow { schema, batches })
}

#[pymethods]
impl Policy {
    /// Read and validate a policy file.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Policy> {
        let policy = py
            .detach(|| corpusgate::policy::Policy::load(&path))
            .map_err(|e| py_err(py, &e))?;
        Ok(Policy::new(policy, path))
    }

    /// Validate policy text; `name` stands for the file in messages.
    #[staticmethod]
    #[pyo3(signature = (text, name = "<policy>"))]
    fn from_text(py: Python<'_>, text: &str, name: &str) -> PyResult<Policy> {
        let path = PathBuf::from(name);
        let sha256 = corpusgate::batch::sha256_hex(text.as_bytes());
        let policy = corpusgate::policy::Policy::from_text(&path, text, sha256)
            .map_err(|e| py_err(py, &e))?;
        Ok(Policy::new(policy, path))
    }

    /// The policy's `id`.
    #[getter]
    fn id(&self) -> &str {
        &self.policy.id
    }

    /// SHA-256 of the policy text, as summary.json and the output metadata record it.
    #[getter]
    fn sha256(&self) -> &str {
        &self.policy.sha256
    }

    /// The corpus columns a decision reads (and the record and user id columns the manifest
    /// names), in a stable order.
    #[getter]
    fn columns(&self) -> Vec<String> {
        BatchFilter::columns(&self.policy)
    }

    /// Run the policy's own tests; raises `PolicyError` naming every failing test, else
    /// returns how many passed.
    fn check(&self, py: Python<'_>) -> PyResult<usize> {
        let (passed, failures) = check_policy(&self.policy);
        if failures.is_empty() {
            return Ok(passed);
        }
        let lines: Vec<String> = failures.iter().map(ToString::to_string).collect();
        let err = PolicyError::new_err(format!(
            "{}: {} of {} policy tests failed ({passed} passed):\n{}",
            self.path.display(),
            failures.len(),
            self.policy.tests.len(),
            lines.join("\n")
        ));
        let _ = err.value(py).setattr("exit_code", ExitStatus::Usage.code());
        Err(err)
    }

    /// This policy with a snapshot (a path or Arrow data) and (name, path or Arrow data) of
    /// each list: checked against what the policy joins now, loaded on first use.
    #[pyo3(signature = (consent_table = None, user_lists = None))]
    fn _join(
        &self,
        py: Python<'_>,
        consent_table: Option<Bound<'_, PyAny>>,
        user_lists: Option<Vec<(String, Bound<'_, PyAny>)>>,
    ) -> PyResult<Join> {
        let consent_table = consent_table.as_ref().map(batch_source).transpose()?;
        let user_lists = user_lists
            .unwrap_or_default()
            .iter()
            .map(|(n, s)| Ok((n.clone(), batch_source(s)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let filter = BatchFilter::new(self.policy.clone(), &self.path, consent_table, user_lists)
            .map_err(|e| py_err(py, &e))?;
        Ok(Join { filter })
    }

    /// Decide every row: a `pyarrow.RecordBatch` of `keep`, `rule`, `region`.
    fn _decide(
        &self,
        py: Python<'_>,
        data: PyArrowType<Table>,
        join: &Join,
    ) -> PyResult<Py<PyAny>> {
        let (batches, _) = data.0.into_inner();
        let f = &join.filter;
        let out = py
            .detach(|| -> corpusgate::error::Result<RecordBatch> {
                let decided = batches
                    .iter()
                    .map(|b| f.decide_batch(b))
                    .collect::<corpusgate::error::Result<Vec<_>>>()?;
                concat(&corpusgate::batch::decision_schema(), &decided)
            })
            .map_err(|e| py_err(py, &e))?;
        Ok(out.to_pyarrow(py)?.unbind())
    }

    /// The keep mask (a `pyarrow.BooleanArray`) and the manifest rows (a `pyarrow.RecordBatch`).
    fn _filter(
        &self,
        py: Python<'_>,
        data: PyArrowType<Table>,
        join: &Join,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let (batches, data_schema) = data.0.into_inner();
        let f = &join.filter;
        let (keep, manifest) = py
            .detach(|| -> corpusgate::error::Result<(ArrayRef, RecordBatch)> {
                let mut keeps = Vec::new();
                let mut manifests = Vec::new();
                let mut schema = None;
                let mut first_row = 0i64;
                for b in &batches {
                    let (keep, manifest) = f.keep_and_manifest(b, first_row)?;
                    first_row += b.num_rows() as i64;
                    schema = Some(manifest.schema());
                    keeps.push(keep);
                    manifests.push(manifest);
                }
                let keep: Vec<&dyn arrow_array::Array> =
                    keeps.iter().map(|k| k as &dyn arrow_array::Array).collect();
                let keep = if keep.is_empty() {
                    Arc::new(BooleanArray::from(Vec::<bool>::new())) as ArrayRef
                } else {
                    arrow_select::concat::concat(&keep).map_err(|e| batch_err(&e))?
                };
                let manifest = match schema {
                    Some(s) => concat(&s, &manifests)?,
                    None => f.empty_manifest(&data_schema),
                };
                Ok((keep, manifest))
            })
            .map_err(|e| py_err(py, &e))?;
        let keep = keep.to_data().to_pyarrow(py)?.unbind();
        Ok((keep, manifest.to_pyarrow(py)?.unbind()))
    }

    fn __repr__(&self) -> String {
        format!(
            "corpusgate.Policy(id={:?}, path={:?})",
            self.policy.id,
            self.path.display().to_string()
        )
    }
}

fn batch_err(e: &arrow_schema::ArrowError) -> Error {
    Error::Usage(format!("combining batches: {e}"))
}

fn concat(
    schema: &arrow_schema::SchemaRef,
    batches: &[RecordBatch],
) -> corpusgate::error::Result<RecordBatch> {
    arrow_select::concat::concat_batches(schema, batches).map_err(|e| batch_err(&e))
}

/// Run a corpusgate command line in this process (`argv[0]` is the program name), GIL
/// released. Returns the exit code and the error lines it printed (empty on success).
#[pyfunction]
fn run(py: Python<'_>, argv: Vec<String>) -> (u8, String) {
    py.detach(|| match corpusgate::cli::run_args_embedded(argv) {
        Ok(status) => (status.code(), String::new()),
        Err((status, message)) => (status.code(), message),
    })
}

/// The `corpusgate` command of the wheel: the binary's behaviour, errors on stderr.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| corpusgate::cli::run_command_line(argv).code())
}

#[pymodule]
fn _corpusgate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Policy>()?;
    m.add_class::<Join>()?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add("CorpusgateError", py.get_type::<CorpusgateError>())?;
    m.add("PolicyError", py.get_type::<PolicyError>())?;
    m.add("SchemaError", py.get_type::<SchemaError>())?;
    m.add("UsageError", py.get_type::<UsageError>())?;
    m.add("RunError", py.get_type::<RunError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
