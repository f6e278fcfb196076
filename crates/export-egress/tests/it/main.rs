//! The egress proxy against real listeners on loopback ports.

mod proxy;
