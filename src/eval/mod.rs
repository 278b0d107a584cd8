//! val.py's evaluation: NMS, prediction/label matching, AP metrics and COCO json export.

pub mod coco_json;
pub mod confusion;
pub mod masks;
pub mod matching;
pub mod metrics;
pub mod nms;
pub mod predict;
pub mod samples;
pub mod validate;
