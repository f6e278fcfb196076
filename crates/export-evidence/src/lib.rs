//! Evidence parsing: format detection, ids and metadata, canonical form. No IO.
