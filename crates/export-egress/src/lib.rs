#![doc = include_str!("../README.md")]

mod proxy;
mod tls;

pub use proxy::{resolve, EgressError, EgressProxy, EgressSession};
pub use tls::install_crypto_provider;
