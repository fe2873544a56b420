//! dfd-imaging
