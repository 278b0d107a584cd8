//! Reading `torch.save` checkpoints without libtorch: a zip container, a
//! pickle interpreter that executes nothing, and the extraction of upstream
//! YOLOv9 models from what it yields.

pub mod archive;
pub mod epoch_checkpoints;
pub mod error;
mod graph;
pub mod load;
pub mod native;
pub mod pickle;
pub mod tensor;
pub mod upstream;
pub mod value;

pub use archive::{load_pickle, load_pickle_bytes, Archive};
pub use error::{CheckpointError, ErrorKind};
pub use tensor::{DType, RawTensor};
pub use upstream::{read_upstream, read_upstream_bytes, UpstreamModel};
pub use value::{Object, Value};
