//! dfd-layout
