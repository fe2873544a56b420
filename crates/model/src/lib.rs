//! dfd-model
