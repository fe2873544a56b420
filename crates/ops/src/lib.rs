//! dfd-ops
