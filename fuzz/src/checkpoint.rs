//! yolo-qat's `src/checkpoint/` minus the modules that need libtorch.

#[path = "../../src/checkpoint/archive.rs"]
pub mod archive;
#[path = "../../src/checkpoint/error.rs"]
pub mod error;
#[path = "../../src/checkpoint/graph.rs"]
mod graph;
#[path = "../../src/checkpoint/pickle.rs"]
pub mod pickle;
#[path = "../../src/checkpoint/tensor.rs"]
pub mod tensor;
#[path = "../../src/checkpoint/upstream.rs"]
pub mod upstream;
#[path = "../../src/checkpoint/value.rs"]
pub mod value;
