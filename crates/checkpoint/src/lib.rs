//! Reading `torch.save` checkpoints without libtorch: a zip container, a pickle
//! interpreter that executes nothing (globals are recognised by name, never
//! imported), typed tensors, and the extraction of an upstream YOLOv9 model
//! (`models/yolo.py`'s `Model` as `train.py` pickles it) from what it yields.
//!
//! The crate knows nothing of yolo-qat's model or quantizers: it returns raw tensor
//! bytes, the model yaml and class names, and one-line typed errors. The binary
//! builds models from that; the fuzz targets call it directly.

pub mod archive;
pub mod arena;
pub mod error;
pub mod pickle;
pub mod tensor;
pub mod upstream;
pub mod value;

pub use archive::{load_pickle, load_pickle_bytes, Archive};
pub use error::{CheckpointError, ErrorKind};
pub use tensor::{DType, RawTensor};
pub use upstream::{read_upstream, read_upstream_bytes, UpstreamModel};
pub use value::{Object, Value};
