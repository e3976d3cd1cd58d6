//! nested-detect: a pure verdict on whether hv runs nested.
#![no_std]
#![forbid(unsafe_code)]
