//! dfd-metrics
