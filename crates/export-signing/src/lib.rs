//! Keys, DSSE envelopes and in-toto provenance statements for Export Center (SPEC §6).
#![doc = include_str!("../README.md")]

mod dsse;
mod error;
mod keyring;
mod keys;
mod provenance;

pub use dsse::{
    pae, sign_envelope, verify_envelope, DsseEnvelope, DsseSignature, IN_TOTO_PAYLOAD_TYPE,
    MANIFEST_PAYLOAD_TYPE,
};
pub use error::SigningError;
pub use keyring::{KeyRefError, Keyring};
pub use keys::{generate, KeyAlgorithm, SigningKey, VerifyingKey};
pub use provenance::{
    provenance_statement, statement_subjects, ProvenanceInput, BUILD_TYPE, PROVENANCE_PREDICATE_TYPE,
    STATEMENT_TYPE,
};
