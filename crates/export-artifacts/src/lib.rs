//! The artifact store over object_store.
