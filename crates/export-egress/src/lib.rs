#![doc = include_str!("../README.md")]

mod proxy;

pub use proxy::{resolve, EgressError, EgressProxy, EgressSession};
