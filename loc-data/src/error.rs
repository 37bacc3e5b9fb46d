use std::path::PathBuf;

use burn_dataset::DatasetError;

/// Failures that leave nothing usable: a data set that cannot be opened at all. Item-level
/// problems are [`Skip`](crate::Skip)s instead.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
    #[error("{}: no usable items ({skipped} skipped)", path.display())]
    Empty { path: PathBuf, skipped: usize },
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| DataError::Io { path, source }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("index {index} is out of range for a data set of {len} items")]
pub struct OutOfRange {
    pub index: usize,
    pub len: usize,
}

pub(crate) fn check_index(index: usize, len: usize) -> Result<(), DatasetError> {
    if index < len { Ok(()) } else { Err(DatasetError::new(OutOfRange { index, len })) }
}

/// `items[index]`, cloned, or the out-of-range error.
pub(crate) fn get_cloned<T: Clone>(items: &[T], index: usize) -> Result<T, DatasetError> {
    check_index(index, items.len())?;
    Ok(items[index].clone())
}
